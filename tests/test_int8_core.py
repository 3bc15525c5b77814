"""The native core's int8 trunk (cpp/src/int8_trunk.cpp, kernels.h "int8"): byte for byte the exact integer
reference gazecrop.int8.run_trunk on every kernel set, the float ops after it as gazecrop.int8.run, and the
precision switch (run(precision=...), GAZECROP_PRECISION, the file's default)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gazecrop import int8, weights
from gazecrop._testing import inverted_residual_net, random_network, student_like, with_head_map, with_int8_trunk

from _native_helpers import core
from test_int8 import _images, _trunk_net

ROOT = Path(__file__).resolve().parents[1]
LITE0 = ROOT / "weights" / "candidate-lite0" / "gazecrop-fast.gzw"
SETS = core.supported_kernel_sets()


@pytest.fixture(autouse=True)
def _restore_kernel_set():
    before = core.kernel_set()
    yield
    core.set_kernel_set(before)


def _int8net(seed: int = 0, precision: str = "int8") -> weights.Network:
    net = _trunk_net(seed)
    net.int8 = int8.calibrate(net, _images(3, seed=seed), 6)
    net.precision = precision
    return net


def _nets():
    """The fixed trunk network and random inverted-residual networks (every padding mode, strides, 3x3 / 5x5,
    odd channel counts), one with a head map, each with a calibrated int8 trunk."""
    out = [("trunk", _int8net())]
    for s in range(4):
        rng = np.random.default_rng(100 + s)
        net = inverted_residual_net(rng, stages=2, max_channels=21)
        if s == 3:
            net = with_head_map(net, rng)
        out.append((f"ir{s}", with_int8_trunk(net, rng)))
    # DenseNets: stem, pools (max with padding, 2x2 and other average pools), dense blocks of odd widths
    out.append(("dense", with_int8_trunk(student_like(3, stem=7, blocks=(((5, 9), (3, 6)), ((6, 5),) * 3),
                                                      readout=(4,), input_long_side=64), np.random.default_rng(9))))
    seed = 0
    while sum(n.startswith("rdense") for n, _ in out) < 3:
        rng = np.random.default_rng(200 + seed)
        seed += 1
        try:  # random_network may start with a softplus stem or a kernel-1 average pool: no int8 trunk
            out.append((f"rdense{seed}", with_int8_trunk(random_network(rng), rng)))
        except ValueError:
            continue
    return out


NETS = _nets()


def _check_trunk(m, net, img):
    want = int8.run_trunk(net, net.int8, img)
    got = m.int8_values(img)
    assert len(got) == len(want) == net.int8.n_ops + 1
    for v, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == np.int8
        np.testing.assert_array_equal(g, w.reshape(-1), err_msg=f"value {v}")


@pytest.mark.parametrize("ks", SETS)
@pytest.mark.parametrize("name,net", NETS, ids=[n for n, _ in NETS])
def test_trunk_bytes_equal_the_reference(ks, name, net):
    core.set_kernel_set(ks)
    m = core.Model.from_bytes(weights.to_bytes(net))
    rng = np.random.default_rng(7)
    for hw in [(13, 21), (40, 56), (33, 17), (64, 48)]:
        img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        try:
            int8.run_trunk(net, net.int8, img)
        except ValueError:  # too small for this network: the core refuses it too
            with pytest.raises(ValueError):
                m.run(img, precision="int8")
            continue
        _check_trunk(m, net, img)
        got = m.run(img, precision="int8")
        want = int8.run(net, net.int8, img)
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
        np.testing.assert_array_equal(m.run(img, precision="int8", fuse=False), got)
        np.testing.assert_array_equal(m.run(img, precision="int8", threads=3), got)
        if m.has_head_map:
            lg, hm = m.run(img, precision="int8", head_map=True)
            np.testing.assert_array_equal(lg, got)
            np.testing.assert_allclose(hm, int8.run(net, net.int8, img, head_map=True)[1], rtol=0, atol=2e-5)


def _rescaled_trunks(count: int = 40):
    """Random inverted-residual trunks whose value scales are multiplied by random powers of two (2^-1 .. 2^8)
    and whose zero points are random: requantisation shifts well above the calibrated ones (up to the 40s) and
    every zero point; the ones the format rejects are skipped."""
    out = []
    for s in range(count):
        rng = np.random.default_rng(7000 + s)
        try:
            net = with_int8_trunk(inverted_residual_net(rng, stages=2, max_channels=int(rng.integers(8, 40))), rng)
            t = net.int8
            t.scales = (t.scales * np.exp2(rng.integers(-1, 9, t.scales.shape))).astype(np.float32)
            t.zero_points = rng.integers(-128, 128, t.zero_points.shape).astype(np.int32)
            t.validate(net)
            out.append((net, weights.to_bytes(net)))
        except ValueError:
            continue
    return out


RESCALED = _rescaled_trunks()


@pytest.mark.parametrize("ks", SETS)
def test_trunk_bytes_with_large_shifts_and_any_zero_point(ks):
    # the VNNI requantisation takes the high halves of 64-bit products and shifts by (shift - 32): exact only
    # if every rule holds for every shift, which these trunks exercise beyond the calibrated ones
    assert len(RESCALED) >= 10
    core.set_kernel_set(ks)
    for net, data in RESCALED:
        m = core.Model.from_bytes(data)
        img = np.random.default_rng(len(data)).integers(0, 256, (29, 37, 3), dtype=np.uint8)
        _check_trunk(m, net, img)


@pytest.mark.skipif(not LITE0.is_file(), reason="the Lite0 candidate is absent")
def test_lite0_candidate_on_the_sample_photo():
    from PIL import Image

    from gazecrop.train.calibrate import model_input

    net = weights.read_weights(LITE0)
    photo = np.asarray(Image.open(ROOT / "examples" / "photo.jpg").convert("RGB"))
    x = model_input(net, photo)
    net.int8 = int8.calibrate(net, [x, np.ascontiguousarray(x[::-1])])
    m = core.Model.from_bytes(weights.to_bytes(net))
    want = int8.run(net, net.int8, x)
    for ks in SETS:
        core.set_kernel_set(ks)
        _check_trunk(m, net, x)
        np.testing.assert_allclose(m.run(x, precision="int8"), want, rtol=0, atol=2e-5)
    # int8 is close to float32: the same map to a few thousandths of its mass
    p8 = np.exp(m.run(x, precision="int8").astype(np.float64))
    p32 = np.exp(m.run(x, precision="fp32").astype(np.float64))
    assert 0.5 * np.abs(p8 - p32).sum() < 0.05


def test_precision_switch():
    net = _int8net(precision="int8")
    m = core.Model.from_bytes(weights.to_bytes(net))
    img = _images(1, (40, 56))[0]
    q, f = m.run(img, precision="int8"), m.run(img, precision="fp32")
    assert not np.array_equal(q, f)
    for ks in SETS:  # the file's default int8 runs where the int8 kernels beat float32 (AVX-512 VNNI) only
        core.set_kernel_set(ks)
        fast = core.int8_kernel_set() == "avx512vnni"
        assert core.int8_kernel_set() in ("avx512vnni", "avx2", "scalar")
        q_here = m.run(img, precision="int8")  # asked for: on every set (the float head agrees to ~1e-6)
        np.testing.assert_allclose(q_here, q, rtol=0, atol=2e-5)
        np.testing.assert_array_equal(m.run(img), q_here if fast else m.run(img, precision="fp32"))
    core.set_kernel_set(SETS[-1])
    fimg = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)
    np.testing.assert_array_equal(m.run(fimg), m.run(fimg, precision="fp32"))  # float images: float32
    with pytest.raises(ValueError, match="uint8"):
        m.run(fimg, precision="int8")
    for bad in ("int4", "", 1, b"int8"):
        with pytest.raises(ValueError, match="precision"):
            m.run(img, precision=bad)
    plain = core.Model.from_bytes(weights.to_bytes(_trunk_net()))
    with pytest.raises(ValueError, match="no int8 trunk"):
        plain.run(img, precision="int8")
    with pytest.raises(ValueError, match="no int8 trunk"):
        plain.int8_values(img)
    fp32_default = core.Model.from_bytes(weights.to_bytes(_int8net(precision="fp32")))
    np.testing.assert_array_equal(fp32_default.run(img), f)
    batch = np.stack([img, img[::-1].copy()])
    out = m.run(batch, precision="int8")
    np.testing.assert_array_equal(out[0], q)
    np.testing.assert_array_equal(out[1], m.run(np.ascontiguousarray(img[::-1]), precision="int8"))


@pytest.mark.parametrize("env,expect", [("fp32", "fp32"), ("int8", "int8"), ("bogus", "default")])
def test_gazecrop_precision_overrides_the_default(tmp_path, env, expect):
    path = tmp_path / "m.gzw"
    weights.write_weights(path, _int8net(precision="int8"))
    code = ("import sys, numpy as np; from gazecrop import _core; m = _core.Model(sys.argv[1]); "
            "img = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8); "
            "a = m.run(img); print(np.array_equal(a, m.run(img, precision='int8')), "
            "np.array_equal(a, m.run(img, precision='fp32')))")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                       env={**os.environ, "GAZECROP_PRECISION": env}, check=True)
    is8, is32 = r.stdout.split()
    if expect == "default":  # an unknown value is ignored: the file's int8, where the int8 kernels are fast
        expect = "int8" if core.int8_kernel_set() == "avx512vnni" else "fp32"
    assert (is8, is32) == (("True", "False") if expect == "int8" else ("False", "True"))


def test_runs_int8_and_precision_in_use(tmp_path, monkeypatch):
    import gazecrop

    net = _int8net(precision="int8")
    m = core.Model.from_bytes(weights.to_bytes(net))
    fast = core.int8_kernel_set() == "avx512vnni"
    assert m.runs_int8() == fast and m.runs_int8("int8") and not m.runs_int8("fp32")
    with pytest.raises(ValueError, match="precision"):
        m.runs_int8("int4")
    assert not core.Model.from_bytes(weights.to_bytes(_trunk_net())).runs_int8()
    path = tmp_path / "m.gzw"
    weights.write_weights(path, net)
    assert gazecrop.load_model(path).precision_in_use == ("int8" if fast else "fp32")
    assert gazecrop.load_model(path, precision="fp32").precision_in_use == "fp32"
    monkeypatch.setattr(gazecrop.model, "_WARNED_ENV", False)
    monkeypatch.setenv("GAZECROP_PRECISION", "int4")
    with pytest.warns(RuntimeWarning, match="GAZECROP_PRECISION"):
        gazecrop.load_model(path)


def test_int8_values_only_needs_the_trunk():
    # a trunk that stops early (at a softplus add): a size too small for the ops after the trunk still gives the
    # trunk's values, as gazecrop.int8.run_trunk does (found by review: seed 153)
    rng = np.random.default_rng(153)
    mc = int(rng.choice([2, 5, 17, 33, 48, 70]))
    net = inverted_residual_net(rng, stages=int(rng.integers(1, 4)), max_channels=mc,
                                max_expand=int(rng.integers(1, 7)))
    if rng.random() < 0.4:
        net = with_head_map(net, rng)
    net = with_int8_trunk(net, rng)
    m = core.Model.from_bytes(weights.to_bytes(net))
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="too small"):
        m.run(img)
    want = int8.run_trunk(net, net.int8, img)
    got = m.int8_values(img)
    assert len(got) == net.int8.n_ops + 1 < len(net.ops)
    assert all(np.array_equal(g, w.reshape(-1)) for g, w in zip(got, want))


def test_int8_values_bad_input():
    m = core.Model.from_bytes(weights.to_bytes(_int8net()))
    for bad in (np.zeros((16, 16), np.uint8), np.zeros((16, 16, 4), np.uint8)):
        with pytest.raises(ValueError):
            m.int8_values(bad)
    with pytest.raises(TypeError, match="uint8"):
        m.int8_values(np.zeros((16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        m.int8_values(np.zeros((16, 32, 3), np.uint8)[:, ::2])
    with pytest.raises(ValueError):
        m.int8_values(np.zeros((1, 1, 3), np.uint8))  # too small for the stride-2 stem


def test_python_model_precision(tmp_path):
    import gazecrop

    path = tmp_path / "m.gzw"
    weights.write_weights(path, _int8net(precision="fp32"))
    img = _images(1, (40, 56))[0]
    m8, m32, mdef = (gazecrop.load_model(path, precision=p) for p in ("int8", "fp32", None))
    raw = core.Model(str(path))
    np.testing.assert_array_equal(m8.run(img), raw.run(img, precision="int8"))  # asked for: on any kernel set
    np.testing.assert_array_equal(m32.run(img), raw.run(img, precision="fp32"))
    np.testing.assert_array_equal(mdef.run(img), raw.run(img, precision="fp32"))  # the file's default
    assert "precision='int8'" in repr(m8)
    with pytest.raises(ValueError, match="precision"):
        gazecrop.load_model(path, precision="int4")
    plain = tmp_path / "plain.gzw"
    weights.write_weights(plain, _trunk_net())
    with pytest.raises(ValueError, match="int8 trunk"):
        gazecrop.load_model(plain, precision="int8")
