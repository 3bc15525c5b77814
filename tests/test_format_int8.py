"""Format version 3's int8 trunk (docs/weights-format.md, "int8 trunk"): round trips, the core reading and
validating it (and still running float32, unchanged), and every corruption class rejected by both readers."""

from __future__ import annotations

import copy
import struct

import numpy as np
import pytest

import gazecrop
from gazecrop import int8, weights
from gazecrop._testing import random_conv, random_depthwise

from _native_helpers import core, fix_crc
from test_int8 import _images, _trunk_net

# _trunk_net with a 6-op trunk: op 0 stem conv (tensors 0-3), op 1 expand (4-7), op 2 depthwise (8-11),
# op 3 project (12-15), op 4 add (none), op 5 depthwise (16-19), op 6 conv (20-21, float), op 7 log_softmax


def _int8net(precision: str = "int8", verdict: int = 1) -> weights.Network:
    net = _trunk_net()
    net.int8 = int8.calibrate(net, _images(3), 6)
    net.precision, net.int8_verdict = precision, verdict
    return net


def _op(i: int) -> int:
    return 128 + 128 * i


def _tensor(i: int) -> int:
    return 128 + 128 * 8 + 96 * i


def _data(buf, j: int, record=None) -> int:
    return struct.unpack_from("<Q", buf, (record or _tensor)(j) + 72)[0]


def _put(buf, offset, fmt, *values):
    struct.pack_into(fmt, buf, offset, *values)
    return buf


def test_round_trip_and_layout():
    net = _int8net()
    data = weights.to_bytes(net)
    assert struct.unpack_from("<I", data, 8)[0] == 3
    n_ops, precision, s_in, z_in, verdict = struct.unpack_from("<IIfiI", data, 44)
    assert (n_ops, precision, verdict) == (6, 1, 1)
    assert (np.float32(s_in), z_in) == (net.int8.scales[0], net.int8.zero_points[0])
    assert struct.unpack_from("<fiI", data, _op(1) + 116) == (float(net.int8.scales[2]), int(net.int8.zero_points[2]), 0)
    assert data[_op(6) + 116:_op(6) + 128] == bytes(12)  # past the trunk: reserved
    assert struct.unpack_from("<I", data, _tensor(6) + 48)[0] == 2  # op 1's int8 weight
    back = weights.from_bytes(data)
    assert weights.to_bytes(back) == data
    assert (back.precision, back.int8_verdict, back.int8.n_ops) == ("int8", 1, 6)
    for i in net.int8.weights:
        np.testing.assert_array_equal(back.int8.weights[i], net.int8.weights[i])
        np.testing.assert_array_equal(back.int8.weight_scales[i], net.int8.weight_scales[i])
        np.testing.assert_array_equal(back.int8.biases[i], net.int8.biases[i])
    assert [len(op.tensors) for op in back.ops] == [len(op.tensors) for op in net.ops]  # the float view


def test_core_reads_the_trunk_and_runs_float32_unchanged():
    net = _int8net("fp32", 2)
    plain = copy.deepcopy(net)
    plain.int8, plain.precision, plain.int8_verdict = None, "fp32", 0
    m8, m = core.Model.from_bytes(weights.to_bytes(net)), core.Model.from_bytes(weights.to_bytes(plain))
    assert (m8.int8_ops, m8.default_precision, m8.format_version) == (6, "fp32", 3)
    assert (m.int8_ops, m.default_precision, m.format_version) == (0, "fp32", 2)
    assert core.Model.from_bytes(weights.to_bytes(_int8net())).default_precision == "int8"
    img = _images(1, (40, 56))[0]
    np.testing.assert_array_equal(m8.run(img), m.run(img))


def test_network_checks():
    net = _int8net()
    for attr, value, match in [("precision", "int4", "precision"), ("int8_verdict", 3, "int8_verdict"),
                               ("int8", "x", "Int8Trunk")]:
        bad = copy.deepcopy(net)
        setattr(bad, attr, value)
        with pytest.raises(weights.WeightsFormatError, match=match):
            weights.to_bytes(bad)
    bad = _trunk_net()
    bad.precision = "int8"
    with pytest.raises(weights.WeightsFormatError, match="precision"):
        bad.validate()
    bad.precision, bad.int8_verdict = "fp32", 1
    with pytest.raises(weights.WeightsFormatError, match="int8_verdict"):
        bad.validate()
    bad = copy.deepcopy(net)
    bad.ops[1].tensors[0] = ("e.weight", net.int8.weights[1])
    with pytest.raises(weights.WeightsFormatError, match="int8"):
        bad.validate()


def test_head_map_must_be_outside_the_trunk():
    rng = np.random.default_rng(0)
    net = weights.Network(input_long_side=64, size_multiple=8)
    x = net.conv2d(0, *random_conv(rng, 8, 3, 3), stride=2, activation="relu6")
    net.conv2d(x, *random_conv(rng, 1, 8, 1), activation="none", name="head")  # value 2
    h = net.depthwise_conv2d(x, *random_depthwise(rng, 8, 3))
    h = net.conv2d(h, *random_conv(rng, 1, 8, 1), activation="none", name="out")
    net.log_softmax(h)
    net.head_output = 2
    with pytest.raises(ValueError, match="outside the trunk"):
        int8.calibrate(net, _images(1), 4)
    net.int8 = int8.calibrate(net, _images(1), 1)  # the stem only: fine
    data = bytearray(weights.to_bytes(net))
    assert core.Model.from_bytes(bytes(data)).int8_ops == 1
    _put(data, 44, "<I", 2)  # the trunk now covers the head map's op (and misses its output quantisation)
    for load in (weights.from_bytes, core.Model.from_bytes):
        with pytest.raises(gazecrop.WeightsFormatError):
            load(bytes(fix_crc(data)))


def _cases():
    c = []

    def case(name, fn, match):
        c.append(pytest.param(fn, match, id=name))

    case("int8-ops-all", lambda b: _put(b, 44, "<I", 8), "int8_ops")
    case("int8-ops-past-end", lambda b: _put(b, 44, "<I", 0xFFFFFFFF), "int8_ops")
    case("int8-ops-into-float-op", lambda b: _put(b, 44, "<I", 7), "scale|tensors")
    case("precision", lambda b: _put(b, 48, "<I", 2), "precision")
    case("verdict", lambda b: _put(b, 60, "<I", 3), "int8_verdict")
    case("input-scale-zero", lambda b: _put(b, 52, "<f", 0.0), "scale")
    case("input-scale-nan", lambda b: _put(b, 52, "<f", float("nan")), "scale")
    case("input-zero-point", lambda b: _put(b, 56, "<i", 128), "zero point")
    case("out-scale-inf", lambda b: _put(b, _op(1) + 116, "<f", float("inf")), "scale")
    case("out-scale-negative", lambda b: _put(b, _op(1) + 116, "<f", -0.5), "scale")
    case("out-zero-point", lambda b: _put(b, _op(1) + 120, "<i", -129), "zero point")
    case("op-reserved", lambda b: _put(b, _op(1) + 124, "<I", 1), "reserved")
    case("float-op-reserved", lambda b: _put(b, _op(6) + 116, "<f", 0.5), "reserved")
    case("weight-minus-128", lambda b: _put(b, _data(b, 6), "<b", -128), "-128|127")
    case("int8-weight-as-float", lambda b: _put(b, _tensor(6) + 48, "<I", 1), "nbytes|dtype")
    case("float-weight-as-int8", lambda b: _put(b, _tensor(20) + 48, "<I", 2), "nbytes|dtype")
    case("dtype-3", lambda b: _put(b, _tensor(6) + 48, "<I", 3), "dtype")
    case("scales-shape", lambda b: _put(b, _tensor(7) + 56, "<2I", 13, 2), r"shape|\(2, 13\)")
    case("weight-scale-zero", lambda b: _put(b, _data(b, 7), "<f", 0.0), "scale")
    case("weight-scale-nan", lambda b: _put(b, _data(b, 7), "<f", float("nan")), "finite|non-finite")
    case("bias-overflows-accumulator", lambda b: _put(b, _data(b, 7) + 4 * 13, "<f", 1e9), "accumulator")
    case("factor-out-of-range", lambda b: _put(b, _op(1) + 116, "<f", 1e-30), "out of range")
    case("add-factor-out-of-range", lambda b: _put(b, _op(4) + 116, "<f", 1e-30), "out of range")
    case("trunk-op-with-2-tensors", lambda b: _put(_put(b, _op(5) + 112, "<I", 2), _op(6) + 108, "<I", 18),
         "tensor|owns")
    case("trunk-softplus", lambda b: _put(b, _op(3) + 28 + 4 * 5, "<i", 2), "activation")
    return c


@pytest.mark.parametrize("mutate,match", _cases())
def test_int8_corruption_rejected(mutate, match):
    data = bytes(fix_crc(mutate(bytearray(weights.to_bytes(_int8net())))))
    with pytest.raises(weights.WeightsFormatError, match=match):
        weights.from_bytes(data)
    with pytest.raises(gazecrop.WeightsFormatError, match=match):
        core.Model.from_bytes(data)


def test_version_2_file_with_int8_fields_rejected():
    data = bytearray(weights.to_bytes(_trunk_net()))
    assert struct.unpack_from("<I", data, 8)[0] == 2
    _put(data, 44, "<I", 3)
    for load in (weights.from_bytes, core.Model.from_bytes):
        with pytest.raises(gazecrop.WeightsFormatError, match="reserved"):
            load(bytes(fix_crc(data)))


# ---------------------------------------------------------------------------------- a DenseNet's int8 trunk


def _dense_int8net() -> weights.Network:
    from test_int8 import _dense_net

    net = _dense_net()
    net.int8 = int8.calibrate(net, _images(2, (48, 64)))
    net.precision = "int8"
    return net


DENSE = _dense_int8net()
# ops 0 conv, 1 max_pool, 2 dense_block (2 layers), 3 conv, 4 avg_pool, 5 dense_block (1 layer): the trunk
_FIRST = np.cumsum([0] + [len(ts) for ts in weights._file_tensors(DENSE)]).tolist()  # each op's first tensor


def _dtensor(j: int) -> int:
    return 128 + 128 * len(DENSE.ops) + 96 * j


def _dense_cases():
    c = []

    def case(name, fn, match):
        c.append(pytest.param(fn, match, id=name))

    t2 = _FIRST[2]  # op 2: 8 float tensors, 4 x (int8 weight, scales and biases), the (2, 2) bottlenecks
    mid = t2 + 16
    case("dense-weight-minus-128", lambda b: _put(b, _data(b, t2 + 8, _dtensor), "<b", -128), "-128|127")
    case("dense-int8-weight-as-float", lambda b: _put(b, _dtensor(t2 + 10) + 48, "<I", 1), "nbytes|dtype")
    case("dense-scales-shape", lambda b: _put(b, _dtensor(t2 + 9) + 56, "<2I", 4, 2), r"shape|\(2, ")
    case("dense-weight-scale-zero", lambda b: _put(b, _data(b, t2 + 9, _dtensor), "<f", 0.0), "scale")
    case("dense-mid-scale-zero", lambda b: _put(b, _data(b, mid, _dtensor), "<f", 0.0), "bottleneck|scale")
    case("dense-mid-scale-tiny", lambda b: _put(b, _data(b, mid, _dtensor), "<f", 1e-30), "out of range")
    case("dense-mid-zero-point-fraction", lambda b: _put(b, _data(b, mid, _dtensor) + 8, "<f", 0.5), "zero point")
    case("dense-mid-zero-point-range", lambda b: _put(b, _data(b, mid, _dtensor) + 8, "<f", 128.0), "zero point")
    case("dense-mid-shape", lambda b: _put(b, _dtensor(mid) + 56, "<2I", 1, 4), "shape|bottleneck")
    case("dense-zero-point-changed", lambda b: _put(b, _op(2) + 120, "<i", -100), "keep its input's scale")
    case("pool-scale-changed", lambda b: _put(b, _op(1) + 116, "<f", 0.5), "keep its input's scale")
    case("avg-pool-kernel-1", lambda b: _put(b, _op(4) + 28, "<i", 1), "kernel")
    case("dense-float-tensors-only", lambda b: _put(_put(b, _op(2) + 112, "<I", 8), _op(3) + 108, "<I", t2 + 8),
         "tensor|owns")
    return c


@pytest.mark.parametrize("mutate,match", _dense_cases())
def test_dense_int8_corruption_rejected(mutate, match):
    data = bytes(fix_crc(mutate(bytearray(weights.to_bytes(DENSE)))))
    with pytest.raises(weights.WeightsFormatError, match=match):
        weights.from_bytes(data)
    with pytest.raises(gazecrop.WeightsFormatError, match=match):
        core.Model.from_bytes(data)


def test_dense_round_trip():
    data = weights.to_bytes(DENSE)
    back = weights.from_bytes(data)
    assert weights.to_bytes(back) == data and back.int8.n_ops == 6
    for i, d in DENSE.int8.dense.items():
        e = back.int8.dense[i]
        for a, b in zip(d.weights + d.weight_scales + d.biases, e.weights + e.weight_scales + e.biases):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(d.mid_scales, e.mid_scales)
        np.testing.assert_array_equal(d.mid_zero_points, e.mid_zero_points)
    assert [len(op.tensors) for op in back.ops] == [len(op.tensors) for op in DENSE.ops]  # the float view
    m = core.Model.from_bytes(data)
    assert (m.int8_ops, m.default_precision) == (6, "int8")
