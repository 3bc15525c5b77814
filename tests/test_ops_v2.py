"""Per-op checks of the format-version-2 ops against the NumPy reference (the test_ops.py pattern):
depthwise_conv2d over kernel, stride, every padding mode, channels (1, 13, 37, 91: pruned expansion widths),
sizes (1x1, tile edges 7/8/9/15/16/17, odd) and kernel set; conv2d with per-side / same padding and ReLU6;
add with each activation. Tolerance grows with the reduction length K."""

from __future__ import annotations

import numpy as np
import pytest

from gazecrop import weights
from gazecrop._testing import random_conv, random_depthwise

from _native_helpers import KERNEL_SETS
from test_ops import _check, _head, _ids

SIZES = [(1, 1), (2, 7), (5, 8), (7, 9), (9, 16), (16, 17), (23, 33)]
CHANNELS = [1, 13, 37, 91]


def _paddings(k):
    return [k // 2, 0, "same", (0, 1, 1, 0), (k // 2, 0, 0, k // 2)]


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("hw", SIZES, ids=_ids)
@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("pad", range(5), ids=["sym", "zero", "same", "expl-0110", "expl-k00k"])
@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 1), (5, 2)], ids=_ids)
def test_depthwise_conv2d(k, s, pad, c, hw, isa):
    rng = np.random.default_rng(c * 100 + k * 10 + s + pad)
    net = weights.Network()
    x = net.conv2d(0, *random_conv(rng, c, 3, 1), activation="none", name="pre")
    act = ["none", "relu", "relu6"][(c + k + s + pad) % 3]
    w, b = random_depthwise(rng, c, k)
    x = net.depthwise_conv2d(x, 3 * w, b, stride=s, padding=_paddings(k)[pad], activation=act, name="dw")
    _head(net, x, rng)
    _check(net, *hw, isa, 3 + k * k + c)


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("hw", [(1, 1), (6, 9), (16, 17), (24, 31)], ids=_ids)
@pytest.mark.parametrize("cin,cout", [(3, 13), (37, 91), (91, 1)], ids=_ids)
@pytest.mark.parametrize("k,s,pad", [(1, 1, "same"), (1, 2, "same")] + [
    (3, s, p) for s in (1, 2) for p in ("same", (0, 1, 1, 0), (1, 0, 0, 1), (0, 0, 1, 1))], ids=_ids)
def test_conv2d_padding(k, s, pad, cin, cout, hw, isa):
    rng = np.random.default_rng(cin + cout + k + s)
    net = weights.Network()
    x = net.conv2d(0, *random_conv(rng, cin, 3, 1), activation="none", name="pre") if cin != 3 else 0
    x = net.conv2d(x, *random_conv(rng, cout, cin, k), stride=s, padding=pad, activation="relu6", name="op")
    _head(net, x, rng)
    _check(net, *hw, isa, cin * k * k + cout)


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("k", [1, 3])
def test_conv2d_relu6_clamps(k, isa):
    rng = np.random.default_rng(9)
    net = weights.Network()
    w, b = random_conv(rng, 37, 3, k)
    x = net.conv2d(0, 20 * w, b, activation="relu6", name="op")  # many values far above 6 and below 0
    _head(net, x, rng)
    _check(net, 11, 19, isa, 27 + 37)


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("hw", [(1, 1), (5, 7), (16, 17)], ids=_ids)
@pytest.mark.parametrize("c", [1, 13, 91])
@pytest.mark.parametrize("act", ["none", "relu", "softplus", "relu6"])
def test_add(act, c, hw, isa):
    rng = np.random.default_rng(c)
    net = weights.Network()
    w, b = random_conv(rng, c, 3, 3)
    a = net.conv2d(0, 5 * w, b, activation="none", name="a")
    w, b = random_conv(rng, c, 3, 1)
    bb = net.conv2d(0, 5 * w, b, activation="none", name="b")
    x = net.add(a, bb, activation=act)
    _head(net, x, rng)
    _check(net, *hw, isa, 27 + c)
