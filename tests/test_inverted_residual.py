"""Inverted-residual networks (MobileNetV2 / EfficientNet-Lite style, gazecrop._testing.inverted_residual_net)
in the native core against the NumPy reference: hypothesis-generated stacks with odd channel counts, both
strides, both depthwise kernels and every padding mode, on every kernel set this machine has (max relative
error 1e-4 on the log-density); any thread count gives bitwise the serial result; a batch gives bitwise the
per-image results; one model shared by several Python threads (its pool taken by one call at a time)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gazecrop import weights
from gazecrop._testing import inverted_residual_net

from _native_helpers import KERNEL_SETS, check_network, core, image, load

TOL = 1e-4


@pytest.mark.parametrize("isa", KERNEL_SETS)
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(16, 56), w=st.integers(16, 56),
       stages=st.integers(1, 4), max_channels=st.sampled_from([7, 13, 37]), kind=st.sampled_from(["uint8", "float32"]))
def test_inverted_residual_stacks_match_reference(isa, seed, h, w, stages, max_channels, kind):
    rng = np.random.default_rng(seed)
    net = inverted_residual_net(rng, stages=stages, max_channels=max_channels)
    check_network(net, image(rng, h, w, kind), isa, f"seed={seed}", TOL)


def test_generator_covers_the_new_features():
    kinds, pads, dwk, strides, acts = set(), set(), set(), set(), set()
    for seed in range(20):
        for op in inverted_residual_net(np.random.default_rng(seed)).ops:
            kinds.add(op.kind)
            if op.kind == "depthwise_conv2d":
                pads.add(op.ip(6))
                dwk.add(op.ip(2))
                strides.add(op.ip(3))
                acts.add(op.ip(5))
    assert {"depthwise_conv2d", "add", "conv2d"} <= kinds
    assert pads == {0, 1, 2} and dwk == {3, 5} and strides == {1, 2} and acts == {0, 1, 3}


def _net(seed=11):
    return inverted_residual_net(np.random.default_rng(seed), stages=4, max_blocks=2, max_channels=37)


@pytest.mark.parametrize("isa", KERNEL_SETS)
def test_threads_identical_to_serial(isa):
    from _native_helpers import kernel_set

    m = load(_net())
    img = image(np.random.default_rng(0), 61, 77)
    with kernel_set(isa):
        serial = m.run(img, threads=1)
        for t in (2, 3, 7):
            np.testing.assert_array_equal(m.run(img, threads=t), serial)


@pytest.mark.parametrize("kind", ["uint8", "float32"])
def test_batch_equals_single_images(kind):
    m = load(_net())
    rng = np.random.default_rng(1)
    imgs = [image(rng, 40, 52, kind) for _ in range(3)]
    batch = np.ascontiguousarray(np.stack(imgs))
    for threads in (1, 3):
        out = m.run(batch, threads=threads)
        assert out.shape == (3,) + m.output_size(40, 52) and out.dtype == np.float32
        for i, img in enumerate(imgs):
            np.testing.assert_array_equal(out[i], m.run(img))


def test_shared_model_from_many_threads():
    m = load(_net())
    rng = np.random.default_rng(2)
    imgs = [image(rng, 33 + i, 47, "uint8") for i in range(6)]
    want = [m.run(img) for img in imgs]
    with ThreadPoolExecutor(4) as ex:  # calls race for the model's pool; losers get their own
        got = list(ex.map(lambda i: m.run(imgs[i % 6], threads=2), range(24)))
    for i, g in enumerate(got):
        np.testing.assert_array_equal(g, want[i % 6])


def test_python_model_run_batch(tmp_path):
    import gazecrop

    p = tmp_path / "ir.gzw"
    weights.write_weights(p, _net())
    model = gazecrop.load_model(p)
    rng = np.random.default_rng(4)
    batch = np.stack([image(rng, 32, 48) for _ in range(2)])
    out = model.run(batch)
    assert out.shape[0] == 2
    np.testing.assert_array_equal(out[1], model.run(batch[1]))
    assert core.Model(str(p)).name == "ir-random"
