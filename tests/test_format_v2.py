"""Format version 2 (docs/weights-format.md): depthwise_conv2d, add, ReLU6, per-side / "same" padding, model
name and version. Round trips, the writer's version choice, version-1 files (the committed fixture and the
shipped model) loading unchanged, and every new corruption class rejected by both readers."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import gazecrop
from gazecrop import reference, weights
from gazecrop._testing import random_conv, random_depthwise, random_network

from _native_helpers import core, fix_crc, rel_err

ROOT = Path(__file__).resolve().parents[1]
V1_FIXTURE = ROOT / "tests" / "data" / "v1_fixture.gzw"
SHIPPED = ROOT / "weights" / "gazecrop-fast.gzw"


def _v2net(named: bool = True) -> weights.Network:
    """Fixed version-2 network; op indices and tensor order are used by the corruption cases below."""
    rng = np.random.default_rng(5)
    net = weights.Network(input_long_side=64, size_multiple=8)
    if named:
        net.model_name, net.model_version = "t", "1"
    x = net.conv2d(0, *random_conv(rng, 8, 3, 3), stride=2, padding="same", activation="relu6", name="stem")  # op 0
    h = net.conv2d(x, *random_conv(rng, 13, 8, 1), activation="relu6", name="e")  # op 1
    h = net.depthwise_conv2d(h, *random_depthwise(rng, 13, 5), stride=1, padding=2, name="dw")  # op 2 (tensor 4)
    h = net.conv2d(h, *random_conv(rng, 8, 13, 1), activation="none", name="p")  # op 3
    h = net.add(x, h, activation="relu")  # op 4
    h = net.depthwise_conv2d(h, *random_depthwise(rng, 8, 3), stride=2, padding=(0, 1, 1, 0), name="dw2")  # op 5
    h = net.conv2d(h, *random_conv(rng, 1, 8, 1), activation="none", name="out")  # op 6
    net.log_softmax(h)  # op 7
    return net


def _op(i: int) -> int:
    return 128 + 128 * i


def _ip(i: int, k: int) -> int:
    return _op(i) + 28 + 4 * k


def _tensor(buf, j: int) -> int:
    num_ops, = struct.unpack_from("<I", buf, 16)
    return 128 + 128 * num_ops + 96 * j


def test_writer_picks_the_version():
    assert struct.unpack_from("<I", weights.to_bytes(random_network(np.random.default_rng(0))), 8)[0] == 1
    assert struct.unpack_from("<I", weights.to_bytes(_v2net()), 8)[0] == 2
    assert struct.unpack_from("<I", weights.to_bytes(_v2net(named=False)), 8)[0] == 2
    v1 = random_network(np.random.default_rng(0))
    v1.model_name = "named"  # a name alone needs version 2
    assert struct.unpack_from("<I", weights.to_bytes(v1), 8)[0] == 2
    sym = weights.Network()
    sym.conv2d(0, *random_conv(np.random.default_rng(1), 1, 3, 3), padding=(1, 1, 1, 1), activation="none")
    assert sym.ops[0].iparams[4:7] == [1, 0, 0] and sym.format_version() == 1  # equal sides = version-1 padding


def test_round_trip_v2(tmp_path):
    net = _v2net()
    p = tmp_path / "v2.gzw"
    weights.write_weights(p, net)
    back = weights.read_weights(p)
    assert (back.model_name, back.model_version) == ("t", "1")
    assert [o.kind for o in back.ops] == [o.kind for o in net.ops]
    for a, b in zip(back.ops, net.ops):
        assert a.inputs == b.inputs and a.ip(0) == b.ip(0)
        assert [int(v) for v in a.iparams][: len(b.iparams)] == [int(v) for v in b.iparams]
    assert weights.to_bytes(back) == p.read_bytes()
    m = core.Model(str(p))
    assert (m.name, m.model_version, m.format_version, m.num_ops) == ("t", "1", 2, len(net.ops))
    img = np.random.default_rng(2).integers(0, 256, (21, 30, 3), dtype=np.uint8)
    assert rel_err(m.run(img), reference.run(back, img)) <= 1e-4


def test_same_padding_rule():
    # spec: stride 2 gives (0, 1) for k 3 and (1, 2) for k 5 on even sides, symmetric on odd ones
    assert weights.same_padding(16, 3, 2) == (0, 1) and weights.same_padding(16, 5, 2) == (1, 2)
    assert weights.same_padding(15, 3, 2) == (1, 1) and weights.same_padding(15, 5, 2) == (2, 2)
    assert weights.same_padding(10, 3, 1) == (1, 1) and weights.same_padding(10, 5, 1) == (2, 2)
    net = _v2net()
    m = core.Model.from_bytes(weights.to_bytes(net))
    for h, w in [(16, 16), (17, 23), (32, 40), (31, 31)]:
        ho, wo = m.output_size(h, w)
        s0 = ((h + 1) // 2, (w + 1) // 2)  # stem: same, stride 2
        assert (ho, wo) == ((s0[0] + 1 - 3) // 2 + 1, (s0[1] + 1 - 3) // 2 + 1)  # dw2: pads (0, 1, 1, 0)


def test_v1_fixture_loads_unchanged():
    """A version-1 file (written by the version-1 writer, committed) loads in both readers and runs."""
    data = V1_FIXTURE.read_bytes()
    assert struct.unpack_from("<I", data, 8)[0] == 1
    net = weights.from_bytes(data)
    assert (net.model_name, net.model_version) == ("", "")
    m = core.Model.from_bytes(data)
    assert (m.format_version, m.name) == (1, "")
    img = np.random.default_rng(3).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    assert rel_err(m.run(img), reference.run(net, img)) <= 1e-4
    assert weights.to_bytes(net) == data  # the current writer still emits the identical version-1 bytes


def test_shipped_model_is_read():
    if not SHIPPED.exists():
        pytest.skip("no shipped model in this checkout")
    m = core.Model(str(SHIPPED))
    assert m.format_version in (1, 2, 3)  # 3: the head map (tests/test_head_map.py)
    assert weights.read_weights(SHIPPED).format_version() <= m.format_version


def _put(buf, offset, fmt, *values):
    struct.pack_into(fmt, buf, offset, *values)
    return buf


def _cases():
    c = []

    def case(name, fn, match, named=True):
        c.append(pytest.param(fn, match, named, id=name))

    case("dw-kernel", lambda b: _put(b, _ip(2, 2), "<i", 4), "kernel")
    case("dw-out-channels", lambda b: _put(b, _ip(2, 1), "<i", 12), "out_channels")
    case("dw-softplus", lambda b: _put(b, _ip(2, 5), "<i", 2), "activation")
    case("dw-padding-mode", lambda b: _put(b, _ip(2, 6), "<i", 3), "padding_mode")
    case("dw-padding-too-big", lambda b: _put(b, _ip(2, 4), "<i", 3), "padding")
    case("dw-side-too-big", lambda b: _put(b, _ip(5, 8), "<i", 2), "pad_bottom")
    case("dw-side-in-symmetric-mode", lambda b: _put(b, _ip(2, 9), "<i", 1), "pad_left")
    case("conv-padding-with-same", lambda b: _put(b, _ip(0, 4), "<i", 1), "padding")
    case("conv-activation-4", lambda b: _put(b, _ip(0, 5), "<i", 4), "activation")
    case("dw-iparam-11", lambda b: _put(b, _ip(2, 11), "<i", 1), "iparams|params")
    case("dw-weight-shape", lambda b: _put(b, _tensor(b, 4) + 56, "<4I", 1, 13, 5, 5), "shape")
    case("add-activation", lambda b: _put(b, _ip(4, 0), "<i", 4), "activation")
    case("add-iparam-1", lambda b: _put(b, _ip(4, 1), "<i", 1), "iparams|params")
    case("add-num-inputs", lambda b: _put(_put(b, _op(4) + 4, "<I", 1), _op(4) + 12, "<I", 0), "num_inputs")
    case("add-channels", lambda b: _put(b, _op(4) + 8, "<I", 2), "channels")
    case("name-chars", lambda b: _put(b, 96, "<B", ord("/")), "model_name")
    case("name-nul-gap", lambda b: _put(b, 98, "<B", ord("x")), "model_name")
    case("model-version-chars", lambda b: _put(b, 117, "<B", ord(" ")), "model_version")
    case("v1-with-name", lambda b: _put(b, 8, "<I", 1), "reserved")
    case("v1-with-v2-ops", lambda b: _put(b, 8, "<I", 1), "iparams|version|unknown op", named=False)
    case("tensor-name-newline", lambda b: _put(b, _tensor(b, 0) + len("stem.weight"), "<B", 10), "name")  # fuzz find
    case("unknown-op-12", lambda b: _put(b, _op(4), "<I", 12), "unknown op")
    return c


@pytest.mark.parametrize("mutate,match,named", _cases())
def test_v2_corruption_rejected(mutate, match, named):
    buf = mutate(bytearray(weights.to_bytes(_v2net(named))))
    data = bytes(fix_crc(buf))
    with pytest.raises(weights.WeightsFormatError, match=match):
        weights.from_bytes(data)
    with pytest.raises(gazecrop.WeightsFormatError, match=match):
        core.Model.from_bytes(data)


def test_v1_file_with_relu6_rejected():
    buf = bytearray(V1_FIXTURE.read_bytes())
    _put(buf, _ip(0, 5), "<i", 3)  # op 0 is a conv2d
    data = bytes(fix_crc(buf))
    for load in (weights.from_bytes, core.Model.from_bytes):
        with pytest.raises(gazecrop.WeightsFormatError, match="activation|version"):
            load(data)


def test_add_grid_mismatch_is_a_run_time_error():
    rng = np.random.default_rng(0)
    net = weights.Network()
    a = net.conv2d(0, *random_conv(rng, 1, 3, 3), stride=2, padding=(0, 1, 0, 1), activation="none")
    b = net.conv2d(0, *random_conv(rng, 1, 3, 3), stride=2, padding=0, activation="none")
    net.log_softmax(net.add(a, b))
    m = core.Model.from_bytes(weights.to_bytes(net))
    with pytest.raises(ValueError, match="add"):
        m.output_size(16, 16)  # (8, 8) vs (7, 7)
    with pytest.raises(ValueError, match="add"):
        reference.run(net, np.zeros((16, 16, 3), np.uint8))
    assert m.output_size(15, 15) == (7, 7)  # odd sides: both 7x7
