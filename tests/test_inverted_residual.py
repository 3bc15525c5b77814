"""Inverted-residual networks (MobileNetV2 / EfficientNet-Lite style, gazecrop._testing.inverted_residual_net)
in the native core against the NumPy reference: hypothesis-generated stacks with odd channel counts, both
strides, both depthwise kernels and every padding mode, on every kernel set this machine has (max relative
error 1e-4 on the log-density); any thread count gives bitwise the serial result; a batch gives bitwise the
per-image results; one model shared by several Python threads (its pool taken by one call at a time).
The loader's fusion of inverted residuals (row bands): fused equals op by op bit for bit on every kernel set,
per block over kernel, stride, padding, expansion, skip and size (tile edges, 1x1, many bands, several threads),
each block also within the per-op tolerance of the reference; where the pattern breaks nothing is fused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gazecrop import weights
from gazecrop._testing import inverted_residual_net, random_conv, random_depthwise, tol

from _native_helpers import KERNEL_SETS, check_network, core, image, load
from test_ops import _head, _ids

TOL = 1e-4


@pytest.mark.parametrize("isa", KERNEL_SETS)
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(16, 56), w=st.integers(16, 56),
       stages=st.integers(1, 4), max_channels=st.sampled_from([7, 13, 37]), kind=st.sampled_from(["uint8", "float32"]))
def test_inverted_residual_stacks_match_reference(isa, seed, h, w, stages, max_channels, kind):
    rng = np.random.default_rng(seed)
    net = inverted_residual_net(rng, stages=stages, max_channels=max_channels)
    check_network(net, image(rng, h, w, kind), isa, f"seed={seed}", TOL)


@pytest.mark.parametrize("isa", KERNEL_SETS)
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(16, 56), w=st.integers(16, 56), stages=st.integers(1, 4))
def test_fused_stacks_equal_op_by_op(isa, seed, h, w, stages):
    """The loader's fusion changes no bit: random stacks, fused against op by op on the same kernel set."""
    from _native_helpers import kernel_set

    net = inverted_residual_net(np.random.default_rng(seed), stages=stages, max_channels=37)
    m = load(net)
    assert any("inverted_residual" in s for s in m.steps())
    img = image(np.random.default_rng(seed), h, w)
    with kernel_set(isa):
        try:
            plain = m.run(img, fuse=False)
        except ValueError:  # too small for this network
            return
        np.testing.assert_array_equal(m.run(img), plain)
        np.testing.assert_array_equal(m.run(img, threads=3), plain)


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


# --- The loader's fusion (cpp/src/ops/inverted_residual.cpp): [expand ->] depthwise -> project [-> add] run in
# row bands. Fused and op by op must agree bit for bit on each kernel set (same kernels, same order per output
# element); both are checked against the reference through a raw 1x1 head (the test_ops.py pattern).

def _block_net(rng, cin, ce, k, s, pad, *, expand, residual, dw_act="relu6", add_act="none"):
    """pre (1x1 to cin, softplus: never fused as an expansion) -> [expand 1x1 ReLU6 ->] depthwise k x k / s ->
    project 1x1 [-> add] -> raw 1x1 head."""
    net = weights.Network()
    x = net.conv2d(0, *random_conv(rng, cin, 3, 1), activation="softplus", name="pre")
    h = net.conv2d(x, *random_conv(rng, ce, cin, 1), activation="relu6", name="expand") if expand else x
    w, b = random_depthwise(rng, net.channels(h), k)
    h = net.depthwise_conv2d(h, 3 * w, b, stride=s, padding=pad, activation=dw_act, name="dw")
    h = net.conv2d(h, *random_conv(rng, cin if residual else 11, net.channels(h), 1), activation="none",
                   name="project")
    if residual:
        h = net.add(x, h, activation=add_act)
    _head(net, h, rng)
    return net


def _check_fused(net, hw, isa, k_red, threads=(1,), fused_ops=None):
    """Fused == op by op bitwise (any thread count), the fused step present, and both within the per-op
    tolerance of the reference."""
    from _native_helpers import kernel_set, run_both

    model = load(net)
    steps = model.steps()
    fused = [s for s in steps if "inverted_residual" in s]
    assert len(fused) == 1 and fused[0] == fused_ops, steps
    assert model.steps(fuse=False) == [f"op {i} ({op.kind})" for i, op in enumerate(net.ops)]
    img = image(np.random.default_rng(7), *hw, "float32")
    both = run_both(net, img, isa)
    if both is None:  # too small for the network: refused fused too
        with kernel_set(isa), pytest.raises(ValueError):
            model.run(img, fuse=True)
        return
    out, ref = both
    with kernel_set(isa):
        plain = model.run(img, fuse=False)
        for t in threads:
            np.testing.assert_array_equal(model.run(img, threads=t, fuse=True), plain)
    np.testing.assert_array_equal(out, plain)  # run_both ran the default: fused
    err = float(np.max(np.abs(out.astype(np.float64) - ref)))
    assert err <= tol(k_red, float(np.max(np.abs(ref)))), f"max abs err {err:.3g}"


def _pads(k):
    return {"sym": k // 2, "same": "same", "expl": (0, k // 2, k // 2, 1), "zero": 0}


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("hw", [(1, 1), (2, 7), (9, 16), (17, 33)], ids=_ids)
@pytest.mark.parametrize("pad", ["sym", "same", "expl", "zero"])
@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 1), (5, 2)], ids=_ids)
@pytest.mark.parametrize("expand", [True, False], ids=["expand", "noexpand"])
def test_fused_block_matches_op_by_op_and_reference(expand, k, s, pad, hw, isa):
    rng = np.random.default_rng(k * 10 + s + 100 * expand)
    residual = s == 1 and pad in ("sym", "same")
    net = _block_net(rng, 13, 37, k, s, _pads(k)[pad], expand=expand, residual=residual,
                     dw_act=["none", "relu", "relu6"][(k + s) % 3], add_act="relu6" if k == 5 else "none")
    last = 1 + expand + 1 + residual
    _check_fused(net, hw, isa, 3 + 13 + 37 + k * k + 37, threads=(1, 3), fused_ops=f"ops 1-{last} (inverted_residual)")


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("k,s,pad", [(3, 1, "same"), (5, 1, "expl"), (3, 2, "same"), (5, 2, "sym")], ids=_ids)
def test_fused_block_in_many_bands(k, s, pad, isa):
    """Wide expansions on a large grid: many row bands (expanded rows carried from band to band), split
    between threads at several counts, padding rows inside bands."""
    rng = np.random.default_rng(k + s)
    net = _block_net(rng, 24, 200, k, s, _pads(k)[pad], expand=True, residual=s == 1)
    # 200 expanded channels of 120 (+ 2) floats per row: bands of 3 output rows (256 pixels at least)
    _check_fused(net, (61, 120), isa, 3 + 24 + 200 + k * k + 200, threads=(1, 2, 5),
                 fused_ops=f"ops 1-{3 + (s == 1)} (inverted_residual)")


def test_not_fused_where_the_pattern_breaks():
    """An expanded value read by a second op, a softplus add, or padding beyond the band layout's two
    columns stay op by op (their ops run unfused, with the same results)."""
    rng = np.random.default_rng(3)
    net = weights.Network()
    x = net.conv2d(0, *random_conv(rng, 8, 3, 1), activation="none", name="pre")
    e = net.conv2d(x, *random_conv(rng, 20, 8, 1), activation="relu6", name="expand")
    d = net.depthwise_conv2d(e, *random_depthwise(rng, 20, 3), padding=1, name="dw")
    p = net.conv2d(d, *random_conv(rng, 20, 20, 1), activation="none", name="project")
    y = net.add(e, p, activation="softplus")  # reads the expanded value: expand cannot fuse, the add neither
    _head(net, y, rng)
    steps = load(net).steps()
    assert steps[1:5] == ["op 1 (conv2d)", "ops 2-3 (inverted_residual)", "op 4 (add)", "op 5 (conv2d)"], steps
