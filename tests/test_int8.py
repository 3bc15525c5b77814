"""The int8 trunk's exact integer reference and its calibration (gazecrop.int8; issue 22, docs/int8-plan.md).

The rules are checked against exact rational arithmetic (Python ints / fractions), the vectorised reference
against an independent per-pixel loop written from the module docstring's formulas, and the calibrated trunk
of a real model against the float reference."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gazecrop import int8, reference, weights
from gazecrop._testing import random_conv, random_depthwise, student_like

ROOT = Path(__file__).resolve().parents[1]
LITE0 = ROOT / "weights" / "candidate-lite0" / "gazecrop-fast.gzw"


def _trunk_net(seed: int = 5) -> weights.Network:
    """A small inverted-residual network: stem 3x3 / 2 "same" (ReLU6), expand 1x1, depthwise 5x5, project,
    skip add (ReLU), depthwise 3x3 / 2 with per-side padding, then a float head (1x1, log-softmax)."""
    rng = np.random.default_rng(seed)
    net = weights.Network(input_long_side=64, size_multiple=8)
    x = net.conv2d(0, *random_conv(rng, 8, 3, 3), stride=2, padding="same", activation="relu6", name="stem")
    h = net.conv2d(x, *random_conv(rng, 13, 8, 1), activation="relu6", name="e")
    h = net.depthwise_conv2d(h, *random_depthwise(rng, 13, 5), padding=2, name="dw")
    h = net.conv2d(h, *random_conv(rng, 8, 13, 1), activation="none", name="p")
    h = net.add(x, h, activation="relu")
    h = net.depthwise_conv2d(h, *random_depthwise(rng, 8, 3), stride=2, padding=(0, 1, 1, 0), activation="none",
                             name="dw2")
    h = net.conv2d(h, *random_conv(rng, 1, 8, 1), activation="none", name="out")
    net.log_softmax(h)
    return net


def _images(n: int, hw=(24, 40), seed: int = 1):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(n)]


# ------------------------------------------------------------------------------------------ the rules


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=2.0 ** -31, max_value=2.0 ** 29, allow_nan=False, allow_infinity=False))
def test_multiplier_is_the_nearest_31_bit_fraction(real):
    mult, shift = int8.multiplier(real)
    assert 2 ** 30 <= mult < 2 ** 31 and 1 <= shift <= 62
    exact = Fraction(real) * 2 ** shift
    assert abs(Fraction(mult) - exact) <= Fraction(1, 2)


@pytest.mark.parametrize("real", [0.0, -1.0, math.inf, math.nan, 2.0 ** -40, 2.0 ** 31])
def test_multiplier_out_of_range(real):
    with pytest.raises(ValueError):
        int8.multiplier(real)


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2 ** 31) + 1, 2 ** 31 - 1), st.integers(2 ** 30, 2 ** 31 - 1), st.integers(1, 62),
       st.integers(-128, 127))
def test_requantise_rounds_half_up(acc, mult, shift, z):
    got = int(int8.requantise(np.array([acc], np.int64), mult, shift, z, -128, 127)[0])
    exact = Fraction(acc * mult, 2 ** shift) + Fraction(1, 2)
    want = min(127, max(-128, z + math.floor(exact)))
    assert got == want


def test_value_params_keep_zero_exact():
    for lo, hi in [(-1.3, 4.2), (0.0, 6.0), (-7.0, 0.0), (0.2, 3.0), (-3.0, -1.0), (0.0, 0.0)]:
        s, z = int8.value_params(lo, hi)
        assert s > 0 and -128 <= z <= 127
        assert int8.dequantise(np.array([z], np.int8), s, z)[0] == 0.0
        lo0, hi0 = min(lo, 0.0), max(hi, 0.0)
        # the range's ends are within one step of the int8 grid's ends
        assert float(s) * (-128 - z) <= lo0 + float(s) and float(s) * (127 - z) >= hi0 - float(s)
    assert int8.value_params(0.0, 6.0) == (np.float32(6.0 / 255.0), -128)


def test_quantise_weights_rounding():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((7, 5, 3, 3)).astype(np.float32)
    w[2] = 0.0
    q, s = int8.quantise_weights(w)
    assert q.dtype == np.int8 and s.dtype == np.float32 and q.shape == w.shape
    assert q.min() >= -127 and s[2] == s.max() and not q[2].any()  # the zero channel: the largest other scale
    assert int8.quantise_weights(np.zeros((3, 4), np.float32))[1].tolist() == [1.0, 1.0, 1.0]
    err = np.abs(q.astype(np.float64) * s[:, None, None, None] - w)
    assert np.all(err <= s[:, None, None, None] * 0.5 + 1e-7)
    assert np.all(np.abs(q.reshape(7, -1)).max(axis=1)[[0, 1, 3, 4, 5, 6]] == 127)


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-4, 1e2), st.floats(1e-4, 1e2), st.floats(1e-4, 1e2))
def test_add_multipliers(sa, sb, sy):
    ma, mb, shift = int8.add_multipliers(sa, sb, sy)
    assert max(ma, mb) < 2 ** 31 and 1 <= shift <= 62
    for m, r in ((ma, sa / sy), (mb, sb / sy)):
        assert abs(Fraction(m) - Fraction(r) * 2 ** shift) <= Fraction(1, 2)


def test_input_table_matches_preprocess():
    net = _trunk_net()
    s, z = int8.value_params(-1.0, 1.0)
    table = int8.input_table(net, float(s), z)
    x = reference.preprocess(net, np.arange(256, dtype=np.uint8)[None, :, None].repeat(3, axis=2))
    want = np.clip(np.rint(x[:, 0, :] / s) + z, -128, 127)
    np.testing.assert_array_equal(table, want)


# ------------------------------------------------------------------------- an independent loop version


def _loop_trunk(net: weights.Network, trunk: int8.Int8Trunk, image: np.ndarray):
    """The module docstring's formulas, one output number at a time, in Python ints and fractions."""
    def rint(fr: Fraction) -> int:  # round half to even
        return round(fr)

    mean = [np.float32(m) for m in net.mean]
    std = [np.float32(s) for s in net.std]
    s0, z0 = trunk.scales[0], int(trunk.zero_points[0])
    h, w, _ = image.shape
    x0 = np.empty((3, h, w), np.int64)
    for c in range(3):
        for i in range(h):
            for j in range(w):
                v = np.float32(np.float32(np.float32(image[i, j, c]) - mean[c]) / std[c])
                x0[c, i, j] = min(127, max(-128, rint(Fraction(float(np.float32(v / s0)))) + z0))
    vals = [x0]
    for k, op in enumerate(net.ops[:trunk.n_ops]):
        sy, zy = Fraction(float(trunk.scales[k + 1])), int(trunk.zero_points[k + 1])
        act = op.ip(0) if op.kind == "add" else op.ip(5)
        lo = max(-128, zy) if act in (1, 3) else -128
        hi = min(127, zy + int(np.rint(6.0 / float(sy)))) if act == 3 else 127
        if op.kind == "add":
            a, b = (vals[v] for v in op.inputs)
            ma, mb, shift = int8.add_multipliers(*(float(trunk.scales[v]) for v in op.inputs), float(sy))
            za, zb = (int(trunk.zero_points[v]) for v in op.inputs)
            out = np.empty_like(a)
            for idx in np.ndindex(a.shape):
                t = (int(a[idx]) - za) * ma + (int(b[idx]) - zb) * mb
                out[idx] = min(hi, max(lo, zy + ((t + (1 << (shift - 1))) >> shift)))
            vals.append(out)
            continue
        x = vals[op.inputs[0]]
        sx, zx = float(trunk.scales[op.inputs[0]]), int(trunk.zero_points[op.inputs[0]])
        if op.kind in ("max_pool", "avg_pool"):
            kk, stride, pad = op.ip(0), op.ip(1), op.ip(2) if op.kind == "max_pool" else 0
            ho, wo = (x.shape[1] + 2 * pad - kk) // stride + 1, (x.shape[2] + 2 * pad - kk) // stride + 1
            out = np.empty((x.shape[0], ho, wo), np.int64)
            mult, shift = int8.multiplier(1.0 / (kk * kk))
            for idx in np.ndindex(out.shape):
                c, i, j = idx
                win = [int(x[c, r, q]) for r in range(i * stride - pad, i * stride - pad + kk)
                       for q in range(j * stride - pad, j * stride - pad + kk)
                       if 0 <= r < x.shape[1] and 0 <= q < x.shape[2]]
                if op.kind == "max_pool":
                    out[idx] = max(win)
                else:
                    t = sum(v - zy for v in win)
                    out[idx] = min(127, max(-128, zy + ((t * mult + (1 << (shift - 1))) >> shift)))
            vals.append(out)
            continue
        if op.kind == "dense_block":
            d = trunk.dense[k]
            state = x
            for li in range(op.ip(1)):
                sm, zm = float(d.mid_scales[li]), int(d.mid_zero_points[li])
                mid = _loop_conv(state, sx, zx, d.weights[2 * li], d.weight_scales[2 * li], d.biases[2 * li], 1,
                                 (0, 0, 0, 0), sm, zm, max(-128, zm), 127, False)
                new = _loop_conv(mid, sm, zm, d.weights[2 * li + 1], d.weight_scales[2 * li + 1],
                                 d.biases[2 * li + 1], 1, (1, 1, 1, 1), float(sy), zy, max(-128, zy), 127, False)
                state = np.concatenate([state, new], 0)
            vals.append(state)
            continue
        vals.append(_loop_conv(x, sx, zx, trunk.weights[k], trunk.weight_scales[k], trunk.biases[k], op.ip(3),
                               weights.op_padding(op, x.shape[1], x.shape[2]), float(sy), zy, lo, hi,
                               op.kind == "depthwise_conv2d"))
    return vals


def _loop_conv(x, sx: float, zx: int, wq, ws, b, stride: int, pads, sy: float, zy: int, lo: int, hi: int,
               depthwise: bool):
    """One int8 convolution by the formulas, one output number at a time (double arithmetic of the spec for
    B[m] and the multiplier)."""
    m_out, kk = wq.shape[0], wq.shape[2]
    pt, pb, pl, pr = pads
    ho, wo = (x.shape[1] + pt + pb - kk) // stride + 1, (x.shape[2] + pl + pr - kk) // stride + 1
    out = np.empty((m_out, ho, wo), np.int64)
    for m in range(m_out):
        big_b = int(np.rint(float(b[m]) / (sx * float(ws[m]))))
        mult, shift = int8.multiplier(sx * float(ws[m]) / sy)
        chans = [m] if depthwise else range(x.shape[0])
        for i in range(ho):
            for j in range(wo):
                acc = big_b
                for ci, c in enumerate(chans):
                    for u in range(kk):
                        for v in range(kk):
                            r, q = i * stride + u - pt, j * stride + v - pl
                            inside = 0 <= r < x.shape[1] and 0 <= q < x.shape[2]
                            xv = int(x[c, r, q]) if inside else zx
                            acc += int(wq[m, 0 if depthwise else ci, u, v]) * (xv - zx)
                assert abs(acc) < 2 ** 31
                out[m, i, j] = min(hi, max(lo, zy + ((acc * mult + (1 << (shift - 1))) >> shift)))
    return out


def _dense_net(seed: int = 3) -> weights.Network:
    """A small DenseNet (gazecrop._testing.student_like): stem, max pool, two dense blocks with a transition
    (1x1 conv + 2x2 average pool) between them, then the float readout and head; int8 trunk = ops 0-5."""
    return student_like(seed, stem=5, blocks=(((3, 4), (2, 5)), ((3, 3),)), readout=(4,), input_long_side=64)


@pytest.mark.parametrize("make,n_ops,cal_hw,hw,seed", [(_trunk_net, 6, (24, 40), (13, 21), 9),
                                                      (_dense_net, None, (48, 64), (21, 27), 4)],
                         ids=["inverted-residual", "dense"])
def test_run_trunk_equals_the_loop_version(make, n_ops, cal_hw, hw, seed):
    net = make()
    trunk = int8.calibrate(net, _images(3, cal_hw), n_ops)
    # odd sizes: "same" and per-side padding at work, the pools' windows clipped / dropped at the edges
    img = _images(1, hw, seed=seed)[0]
    got = int8.run_trunk(net, trunk, img)
    want = _loop_trunk(net, trunk, img)
    assert len(got) == len(want) == trunk.n_ops + 1 == 7
    for v, (a, b) in enumerate(zip(got, want)):
        assert a.dtype == np.int8, v
        np.testing.assert_array_equal(a.astype(np.int64), b, err_msg=f"value {v}")


def test_dense_calibration_shares_one_quantisation_per_block():
    net = _dense_net()
    trunk = int8.calibrate(net, _images(3, (48, 64)))
    # stem -> max pool -> block 1, and transition -> avg pool -> block 2: one (scale, zero point) each
    for group in ((1, 2, 3), (4, 5, 6)):
        assert len({(float(trunk.scales[v]), int(trunk.zero_points[v])) for v in group}) == 1, group
    assert trunk.scales[3] != trunk.scales[6]
    for i, d in trunk.dense.items():
        assert len(d.weights) == 2 * net.ops[i].ip(1) and d.mid_scales.shape == (net.ops[i].ip(1),)
    imgs = _images(4, (48, 64), seed=8)
    for img in imgs:
        q, f = int8.run_trunk(net, trunk, img), reference.values(net, img, upto=6)
        for v in range(7):
            deq = int8.dequantise(q[v], float(trunk.scales[v]), int(trunk.zero_points[v]))
            # errors grow through a block's layers (random weights, noise images): within 12 % of the range
            assert np.abs(deq - f[v]).max() <= 0.12 * float(trunk.scales[v]) * 255, v
    plain = int8.calibrate(net, _images(3, (48, 64)), bias_correction=False)
    assert any(not np.array_equal(a, b) for i in trunk.dense for a, b in zip(trunk.dense[i].biases,
                                                                              plain.dense[i].biases))


def test_dense_calibration_edge_cases():
    import copy

    net = _dense_net()
    imgs = _images(2, (48, 64))

    def with_layer0(edit):
        q = copy.deepcopy(net)
        op = q.ops[2]
        ts = [(n, t.copy()) for n, t in op.tensors]
        edit(ts)
        op.tensors = ts
        return q

    # all-zero output channels: their scale is the largest other channel's, so every factor stays in range
    q = with_layer0(lambda ts: (ts[0][1].__setitem__(0, 0), ts[2][1].__setitem__(0, 0)))
    t = int8.calibrate(q, imgs)
    assert t.dense[2].weight_scales[0][0] == t.dense[2].weight_scales[0].max()
    q.int8 = t
    assert weights.from_bytes(weights.to_bytes(q)).int8 is not None
    # weights no int8 scales can hold (a dense layer's cycle of factors cannot stay below 0.5): a clear error
    with pytest.raises(ValueError, match="weights too large for int8"):
        int8.calibrate(with_layer0(lambda ts: [ts[j][1].__imul__(np.float32(1e3)) for j in (0, 2)]), imgs)
    # a nearly dead channel (weights 1e-8 of the others): its scale is floored at 2^-16 of the largest, so its
    # factor stays in range (before the floor: shift 65, no int8 form)
    t = int8.calibrate(with_layer0(lambda ts: ts[2][1].__setitem__(0, ts[2][1][0] * np.float32(1e-8))), imgs)
    ws = t.dense[2].weight_scales[1]
    assert ws[0] == np.float32(np.float64(ws.max()) * 127.0 * 2.0 ** -16 / 127.0) and not t.dense[2].weights[1][0].any()


def test_int8_close_to_float():
    net = _trunk_net()
    imgs = _images(8)
    trunk = int8.calibrate(net, imgs[:6], 6)
    for img in imgs[6:]:
        q = int8.run_trunk(net, trunk, img)
        f = reference.values(net, img, upto=6)
        for v in range(7):
            deq = int8.dequantise(q[v], float(trunk.scales[v]), int(trunk.zero_points[v]))
            rng = float(trunk.scales[v]) * 255
            assert np.abs(deq - f[v]).max() <= 0.08 * rng, v  # a few steps of 1/255 of the range
        g8, g = int8.run(net, trunk, img), reference.run(net, img)
        assert g8.shape == g.shape and g8.dtype == np.float32
        assert 0.5 * np.abs(np.exp(g8.astype(np.float64)) - np.exp(g.astype(np.float64))).sum() < 0.05


def test_bias_correction_removes_the_mean_error():
    net = _trunk_net()
    imgs = _images(6)
    plain = int8.calibrate(net, imgs, 6, bias_correction=False)
    corrected = int8.calibrate(net, imgs, 6)
    assert any(not np.array_equal(plain.biases[i], corrected.biases[i]) for i in plain.biases)

    def mean_err(trunk, v):
        errs = []
        for img in imgs:
            q = int8.run_trunk(net, trunk, img)[v]
            f = reference.values(net, img, upto=6)[v]
            errs.append((int8.dequantise(q, float(trunk.scales[v]), int(trunk.zero_points[v])) - f).mean(axis=(1, 2)))
        return np.abs(np.mean(errs, axis=0)).mean()

    # the projection without activation (value 4): its per-channel mean error shrinks
    assert mean_err(corrected, 4) < mean_err(plain, 4)


def test_calibration_keeps_conv_factors_below_one_half():
    net = _trunk_net()
    net.ops[1].tensors[0] = ("e.weight", net.ops[1].tensors[0][1] * 400)  # a huge expand: s_w large
    trunk = int8.calibrate(net, _images(2), 6)
    for i, op in enumerate(net.ops[:6]):
        if op.kind != "add":
            assert all(32 <= s <= 62 for _, s in trunk.conv_multipliers(i, op.inputs[0]))


def test_trunk_end():
    assert int8.trunk_end(_trunk_net()) == 7  # through dw2 and the 1x1 after it (no add follows)
    net = weights.Network()
    net.log_softmax(net.conv2d(0, *random_conv(np.random.default_rng(0), 1, 3, 1), activation="none"))
    with pytest.raises(ValueError, match="no depthwise convolution or dense block"):
        int8.trunk_end(net)
    net = _dense_net()
    assert int8.trunk_end(net) == 6  # through the last dense block
    assert [op.kind for op in net.ops[:6]] == ["conv2d", "max_pool", "dense_block", "conv2d", "avg_pool", "dense_block"]
    net.ops[4].iparams[0] = 1  # an average pool of kernel 1 cannot run in int8: the trunk stops before it
    assert int8.trunk_end(net) == 4


# ----------------------------------------------------------------------------------------- bad input


def test_bad_images():
    net = _trunk_net()
    trunk = int8.calibrate(net, _images(1), 6)
    with pytest.raises(TypeError, match="uint8"):
        int8.run_trunk(net, trunk, np.zeros((16, 16, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        int8.run_trunk(net, trunk, np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match="too small"):
        int8.run_trunk(net, trunk, np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ValueError, match="no head map"):
        int8.run(net, trunk, _images(1)[0], head_map=True)
    with pytest.raises(ValueError, match="at least one image"):
        int8.calibrate(net, [], 6)


def test_validate_rejects():
    net = _trunk_net()
    good = int8.calibrate(net, _images(1), 6)

    def broken(fn):
        import copy

        t = copy.deepcopy(good)
        fn(t)
        return t

    cases = [
        (lambda t: setattr(t, "n_ops", len(net.ops)), "the last op stays float"),
        (lambda t: t.scales.__setitem__(2, 0.0), "scales must be finite"),
        (lambda t: t.scales.__setitem__(2, np.nan), "scales must be finite"),
        (lambda t: t.zero_points.__setitem__(1, 200), r"\[-128, 127\]"),
        (lambda t: t.weights.pop(2), "needs int8 weights"),
        (lambda t: t.weights.__setitem__(2, t.weights[2].astype(np.int16)), "needs int8 weights"),
        (lambda t: t.weights[1].__setitem__((0, 0, 0, 0), -128), r"\[-127, 127\]"),
        (lambda t: t.weight_scales.__setitem__(1, np.zeros(13, np.float32)), "weight scales"),
        (lambda t: t.biases.__setitem__(3, np.full(8, np.inf, np.float32)), "finite biases"),
        (lambda t: t.biases.__setitem__(3, np.full(8, 1e9, np.float32)), "accumulator"),
        (lambda t: t.scales.__setitem__(4, 1e-30), "out of range"),
        (lambda t: t.scales.__setitem__(2, t.scales[1] * t.weight_scales[1].max() / 0.6), "out of range"),
        (lambda t: t.scales.__setitem__(5, 1e-9), "out of range"),  # the add's factor over 2^21
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            broken(fn).validate(net)
    net_blur = weights.Network()
    x = net_blur.gaussian_blur(0, 1.0, 3.0, "zeros")
    net_blur.log_softmax(net_blur.conv2d(x, *random_conv(np.random.default_rng(0), 1, 3, 1)))
    t = int8.Int8Trunk(1, np.ones(2, np.float32), np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="cannot run in int8"):
        t.validate(net_blur)
    net_pool = weights.Network()
    net_pool.log_softmax(net_pool.conv2d(net_pool.max_pool(0), *random_conv(np.random.default_rng(0), 1, 3, 1)))
    int8.Int8Trunk(1, np.ones(2, np.float32), np.zeros(2, np.int32)).validate(net_pool)  # a pool: fine
    with pytest.raises(ValueError, match="keep its input's scale"):
        int8.Int8Trunk(1, np.array([1, 2], np.float32), np.zeros(2, np.int32)).validate(net_pool)
    dnet = _dense_net()
    dgood = int8.calibrate(dnet, _images(1, (48, 64)))

    def dbroken(fn):
        import copy

        t = copy.deepcopy(dgood)
        fn(t)
        return t

    dcases = [
        (lambda t: t.dense.pop(2), "dense_block"),
        (lambda t: t.dense[2].weights.pop(), "dense_block"),
        (lambda t: t.dense[2].weights[1].__setitem__((0, 0, 0, 0), -128), r"\[-127, 127\]"),
        (lambda t: setattr(t.dense[2], "mid_scales", np.zeros(2, np.float32)), "bottleneck"),
        (lambda t: setattr(t.dense[2], "mid_zero_points", np.array([0, 300], np.int32)), "bottleneck"),
        (lambda t: t.dense[2].mid_scales.__setitem__(0, 1e-30), "out of range"),
        (lambda t: t.zero_points.__setitem__(3, 5), "keep its input's scale"),
        (lambda t: t.scales.__setitem__(2, t.scales[2] * 2), "keep its input's scale"),
    ]
    for fn, match in dcases:
        with pytest.raises(ValueError, match=match):
            dbroken(fn).validate(dnet)
    net_sp = weights.Network()
    h = net_sp.depthwise_conv2d(0, *random_depthwise(np.random.default_rng(0), 3, 3), activation="none")
    net_sp.ops[-1].iparams[5] = 2  # softplus
    net_sp.log_softmax(net_sp.conv2d(h, *random_conv(np.random.default_rng(0), 1, 3, 1), activation="none"))
    with pytest.raises(ValueError, match="activation 2"):
        int8.Int8Trunk(1, np.ones(2, np.float32), np.zeros(2, np.int32)).validate(net_sp)


# ------------------------------------------------------------------------------------------ a real model


@pytest.mark.skipif(not LITE0.is_file(), reason="the Lite0 candidate model is not in this checkout")
def test_lite0_candidate_calibrates():
    from gazecrop.model import resize_rgb

    net = weights.read_weights(LITE0)
    rng = np.random.default_rng(0)
    photo = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(ROOT / "examples" / "photo.jpg").convert("RGB"))
    h, w = net.input_size(*photo.shape[:2])
    x = resize_rgb(photo, h, w)
    trunk = int8.calibrate(net, [x, rng.integers(0, 256, x.shape, dtype=np.uint8)])
    assert trunk.n_ops == int8.trunk_end(net) == 39
    g8, g = int8.run(net, trunk, x), reference.run(net, x)
    assert 0.5 * np.abs(np.exp(g8.astype(np.float64)) - np.exp(g.astype(np.float64))).sum() < 0.05
