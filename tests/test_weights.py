"""The .gzw file: writer -> file -> reader round trip, and every corruption class rejected with a ValueError
(WeightsFormatError) naming the problem, by both the Python reader and the native loader."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import gazecrop
from gazecrop import weights
from gazecrop._testing import random_network, student_like

from _native_helpers import core, fix_crc

def _net():
    return random_network(np.random.default_rng(123), max_blocks=2, max_layers=2)


def _valid() -> bytes:
    return weights.to_bytes(_net())


def _counts(buf):
    num_ops, num_tensors = struct.unpack_from("<II", buf, 16)
    return num_ops, num_tensors


def _op(buf, i):
    return 128 + 128 * i


def _tensor(buf, j):
    num_ops, _ = _counts(buf)
    return 128 + 128 * num_ops + 96 * j


def test_round_trip(tmp_path):
    net = student_like(4)
    p = tmp_path / "m.gzw"
    weights.write_weights(p, net)
    back = weights.read_weights(p)
    assert back.mean == pytest.approx(net.mean) and back.std == pytest.approx(net.std)
    assert (back.input_long_side, back.size_multiple) == (net.input_long_side, net.size_multiple)
    assert [o.kind for o in back.ops] == [o.kind for o in net.ops]
    for a, b in zip(back.ops, net.ops):
        assert a.inputs == b.inputs
        assert [n for n, _ in a.tensors] == [n for n, _ in b.tensors]
        for (_, x), (_, y) in zip(a.tensors, b.tensors):
            np.testing.assert_array_equal(x, y)
    assert weights.to_bytes(back) == p.read_bytes()
    m = core.Model(str(p))
    assert m.num_ops == len(net.ops)


def test_file_layout_matches_spec():
    buf = _valid()
    assert buf[:8] == weights.MAGIC and buf[-8:] == weights.END_MAGIC
    num_ops, num_tensors = _counts(buf)
    header_bytes, = struct.unpack_from("<I", buf, 12)
    data_offset, file_size = struct.unpack_from("<QQ", buf, 24)
    assert header_bytes == 128 + 128 * num_ops + 96 * num_tensors
    assert data_offset % 64 == 0 and data_offset >= header_bytes and file_size == len(buf)
    for j in range(num_tensors):
        off, = struct.unpack_from("<Q", buf, _tensor(buf, j) + 72)
        assert off % 64 == 0


def _put(buf, offset, fmt, *values):
    struct.pack_into(fmt, buf, offset, *values)


# Each case: mutation(bytearray) -> bytes, regex the message must match, whether to refresh the CRC (so the
# targeted check, not the checksum, rejects it).
def _cases():
    c = []

    def case(name, fn, match, crc=True):
        c.append(pytest.param(fn, match, crc, id=name))

    case("empty", lambda b: bytearray(), "truncated|smaller", False)
    case("truncated-header", lambda b: b[:100], "truncated|smaller", False)
    case("truncated-half", lambda b: b[: len(b) // 2], "file_size|truncated", False)
    case("truncated-trailer", lambda b: b[:-1], "file_size|truncated", False)
    case("padded", lambda b: b + b"\x00" * 64, "file_size", False)
    case("magic", lambda b: b"X" + b[1:], "magic", False)
    case("version", lambda b: (_put(b, 8, "<I", 4), b)[1], "version 4", True)
    case("checksum", lambda b: (b.__setitem__(len(b) - 40, b[len(b) - 40] ^ 0xFF), b)[1], "checksum", False)
    case("crc-field", lambda b: (_put(b, len(b) - 16, "<I", 0xDEADBEEF), b)[1], "checksum", False)
    case("end-magic", lambda b: b[:-8] + b"GZWENX\0\0", "end_magic", False)
    case("file-size-field", lambda b: (_put(b, 32, "<Q", len(b) + 64), b)[1], "file_size", True)
    case("header-reserved", lambda b: (_put(b, 40, "<I", 1), b)[1], "reserved", True)
    case("header-bytes", lambda b: (_put(b, 12, "<I", 1000), b)[1], "header_bytes", True)
    case("num-ops-zero", lambda b: (_put(b, 16, "<I", 0), b)[1], "num_ops", True)
    case("num-ops-huge", lambda b: (_put(b, 16, "<I", 5000), b)[1], "num_ops|header_bytes", True)
    case("num-tensors-huge", lambda b: (_put(b, 20, "<I", 70000), b)[1], "num_tensors", True)
    case("data-offset", lambda b: (_put(b, 24, "<Q", 2**63), b)[1], "data_offset", True)
    case("model-info-std", lambda b: (_put(b, 76, "<f", 0.0), b)[1], "std", True)
    case("model-info-nan-mean", lambda b: (_put(b, 64, "<f", float("nan")), b)[1], "mean", True)
    case("model-info-long-side", lambda b: (_put(b, 88, "<I", 8), b)[1], "input_long_side", True)
    case("model-info-reserved", lambda b: (_put(b, 100, "<I", 7), b)[1], "reserved", True)
    case("unknown-op", lambda b: (_put(b, _op(b, 0), "<I", 99), b)[1], "unknown op", True)
    case("op-zero-code", lambda b: (_put(b, _op(b, 0), "<I", 0), b)[1], "unknown op", True)
    case("op-output-id", lambda b: (_put(b, _op(b, 0) + 24, "<I", 5), b)[1], "output value id", True)
    case("op-forward-input", lambda b: (_put(b, _op(b, 1) + 8, "<I", 7), b)[1], "input value id", True)
    case("op-num-inputs", lambda b: (_put(b, _op(b, 0) + 4, "<I", 9), b)[1], "num_inputs", True)
    case("op-unused-slot", lambda b: (_put(b, _op(b, 0) + 20, "<I", 1), b)[1], "slot|num_inputs", True)
    case("op-reserved", lambda b: (_put(b, _op(b, 0) + 120, "<I", 1), b)[1], "reserved", True)
    case("op-unused-iparam", lambda b: (_put(b, _op(b, 0) + 28 + 4 * 11, "<i", 3), b)[1], "iparams|params", True)
    case("op-nan-fparam", lambda b: (_put(b, _op(b, 0) + 76, "<f", float("nan")), b)[1], "non-finite", True)
    case("conv-in-channels", lambda b: (_put(b, _op(b, 0) + 28, "<i", 4), b)[1], "in_channels", True)
    case("conv-kernel", lambda b: (_put(b, _op(b, 0) + 36, "<i", 5), b)[1], "kernel", True)
    case("conv-stride", lambda b: (_put(b, _op(b, 0) + 40, "<i", 3), b)[1], "stride", True)
    case("conv-activation", lambda b: (_put(b, _op(b, 0) + 48, "<i", 7), b)[1], "activation", True)
    case("op-tensor-range", lambda b: (_put(b, _op(b, 0) + 108, "<I", 1), b)[1], "tensor range", True)
    case("op-tensor-count", lambda b: (_put(b, _op(b, 0) + 112, "<I", 1), b)[1], "tensor|owns", True)
    case("tensor-name-empty", lambda b: (b.__setitem__(slice(_tensor(b, 0), _tensor(b, 0) + 48), bytes(48)), b)[1],
         "name", True)
    case("tensor-name-chars", lambda b: (b.__setitem__(_tensor(b, 0), ord("/")), b)[1], "name", True)
    case("tensor-dtype", lambda b: (_put(b, _tensor(b, 0) + 48, "<I", 2), b)[1], "dtype", True)
    case("tensor-ndim", lambda b: (_put(b, _tensor(b, 0) + 52, "<I", 5), b)[1], "ndim", True)
    case("tensor-shape-zero", lambda b: (_put(b, _tensor(b, 0) + 56, "<I", 0), b)[1], "shape", True)
    case("tensor-shape-swapped", _swap_conv_dims, "shape", True)
    case("tensor-nbytes", lambda b: (_put(b, _tensor(b, 0) + 80, "<Q", 8), b)[1], "nbytes", True)
    case("tensor-shape-overflow", lambda b: (_put(b, _tensor(b, 0) + 56, "<4I", 2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1), b)[1],
         "shape|nbytes|ndim", True)
    case("tensor-misaligned", lambda b: (_put(b, _tensor(b, 0) + 72, "<Q", _off(b, 0) + 4), b)[1], "multiple of 64", True)
    case("tensor-offset-past-end", lambda b: (_put(b, _tensor(b, 0) + 72, "<Q", (len(b) + 640) // 64 * 64), b)[1], "outside", True)
    case("tensor-offset-huge", lambda b: (_put(b, _tensor(b, 0) + 72, "<Q", 2**64 - 64), b)[1], "outside", True)
    case("tensor-in-header", lambda b: (_put(b, _tensor(b, 0) + 72, "<Q", 0), b)[1], "outside", True)
    case("tensor-overlap", lambda b: (_put(b, _tensor(b, 1) + 72, "<Q", _off(b, 0)), b)[1], "overlap", True)
    case("tensor-reserved", lambda b: (_put(b, _tensor(b, 0) + 88, "<I", 1), b)[1], "reserved", True)
    case("tensor-nan", lambda b: (_put(b, _off(b, 0), "<f", float("nan")), b)[1], "non-finite", True)
    case("tensor-inf", lambda b: (_put(b, _off(b, 0) + 4, "<f", float("inf")), b)[1], "non-finite", True)
    return c


def _off(b, j):
    return struct.unpack_from("<Q", b, _tensor(b, j) + 72)[0]


def _swap_conv_dims(b):
    # The stem weight (cout, 3, k, k) -> (3, cout, k, k): same byte count, wrong for the graph.
    t = _tensor(b, 0)
    s = list(struct.unpack_from("<4I", b, t + 56))
    # a square (3, 3, k, k) weight cannot be caught by a swap: use another shape with the same size
    s = [s[0] * s[1], 1, s[2], s[3]] if s[0] == s[1] else [s[1], s[0], s[2], s[3]]
    struct.pack_into("<4I", b, t + 56, *s)
    return b


@pytest.mark.parametrize("mutate,match,crc", _cases())
def test_corruption_rejected(tmp_path, mutate, match, crc):
    buf = mutate(bytearray(_valid()))
    buf = bytearray(buf)
    if crc and len(buf) >= 144:
        fix_crc(buf)
    data = bytes(buf)
    with pytest.raises(weights.WeightsFormatError, match=match):
        weights.from_bytes(data)
    with pytest.raises(gazecrop.WeightsFormatError, match=match):
        core.Model.from_bytes(data)
    p = tmp_path / "bad.gzw"
    p.write_bytes(data)
    with pytest.raises(ValueError, match=match):
        core.Model(str(p))


def _net_with(build):
    net = weights.Network()
    build(net)
    return net


def _graph_case(build):
    """Bytes of a network the writer refuses (validation bypassed), to test the loaders' graph checks."""
    net = _net_with(build)
    orig = net.validate
    net.validate = lambda: None  # type: ignore[method-assign]
    try:
        return weights.to_bytes(net)
    finally:
        net.validate = orig  # type: ignore[method-assign]


def _w(co, ci, k):
    rng = np.random.default_rng(co * 100 + ci)
    return rng.standard_normal((co, ci, k, k)).astype(np.float32), np.zeros(co, np.float32)


@pytest.mark.parametrize("build,match", [
    pytest.param(lambda n: n.conv2d(0, *_w(4, 3, 1)), "1 channel|channels, expected 1", id="last-op-channels"),
    pytest.param(lambda n: (n.conv2d(0, *_w(4, 3, 3)), n.log_softmax(1)), "expected 1", id="softmax-on-4ch"),
    pytest.param(lambda n: (n.conv2d(0, *_w(1, 3, 3)), n.concat(1), n.log_softmax(2)), "num_inputs", id="concat-one"),
    pytest.param(lambda n: (n.conv2d(0, *_w(1, 3, 3)), n.gaussian_blur(1, 0.0), n.log_softmax(2)), "sigma",
                 id="blur-sigma-zero"),
    pytest.param(lambda n: (n.conv2d(0, *_w(1, 3, 3)), n.gaussian_blur(1, 1.0, border="reflect"),
                            setattr(n.ops[-1], "iparams", [3]), n.log_softmax(2)), "border", id="blur-border"),
    pytest.param(lambda n: (n.conv2d(0, *_w(2, 3, 1)), n.max_pool(1, 2, 2, 2), n.conv2d(2, *_w(1, 2, 1))),
                 "padding", id="pool-padding"),
    pytest.param(lambda n: (n.conv2d(0, *_w(2, 3, 1)), n.avg_pool(1, 9, 1), n.conv2d(2, *_w(1, 2, 1))),
                 "kernel", id="pool-kernel"),
    pytest.param(lambda n: (n.conv2d(0, *_w(2, 3, 1)),
                            n.dense_block(1, [(*_w(3, 2, 1), *_w(2, 3, 3))]),
                            setattr(n.ops[-1], "iparams", [2, 1, 5]), n.conv2d(2, *_w(1, 4, 1))),
                 "out_channels", id="dense-out-channels"),
    pytest.param(lambda n: (n.conv2d(0, *_w(2, 3, 1)),
                            n.dense_block(1, [(*_w(3, 2, 1), *_w(2, 4, 3))]), n.conv2d(2, *_w(1, 4, 1))),
                 "chain|shape", id="dense-bottleneck-mismatch"),
    pytest.param(lambda n: (n.conv2d(0, *_w(1, 3, 1)), n.centre_bias(1, np.zeros((2, 2, 2), np.float32))),
                 "log_map|2-D|expected one", id="centre-bias-3d"),
])
def test_graph_errors_rejected(build, match):
    data = _graph_case(build)
    with pytest.raises(weights.WeightsFormatError, match=match):
        weights.from_bytes(data)
    with pytest.raises(gazecrop.WeightsFormatError, match=match):
        core.Model.from_bytes(data)


def test_error_message_names_op_and_numbers():
    buf = bytearray(_valid())
    _put(buf, _op(buf, 0) + 28, "<i", 4)
    fix_crc(buf)
    with pytest.raises(gazecrop.WeightsFormatError) as e:
        core.Model.from_bytes(bytes(buf))
    msg = str(e.value)
    assert "op 0 (conv2d)" in msg and "in_channels 4" in msg and "3" in msg
