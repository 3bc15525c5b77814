"""Per-op checks of the native core against the NumPy reference, ncnn-style: each op over kernel, stride,
padding, channels (1, 3, 13, 27, 64), sizes (1x1, tile edges 15/16/17, odd) and kernel set; test ids spell the
parameters. The test networks end with a plain 1x1 conv to one channel and no log-softmax, so raw values
(including uniform offsets) are compared. Tolerance grows with the reduction length K = Cin * k * k."""

from __future__ import annotations

import functools
import os
import re

import numpy as np
import pytest

from gazecrop import weights
from gazecrop._testing import random_conv, tol

from _native_helpers import KERNEL_SETS, core, image, load, run_both

SIZES = [(1, 1), (1, 15), (1, 16), (1, 17), (2, 7), (5, 7), (9, 33), (16, 16)]
CHANNELS = [1, 3, 13, 27, 64]


def _ids(p):
    return "x".join(map(str, p)) if isinstance(p, tuple) else str(p)


def _head(net, x, rng):
    """Finish a test network: 1x1 conv to one channel, no activation (so the output is raw)."""
    return net.conv2d(x, *random_conv(rng, 1, net.channels(x), 1), activation="none", name="head")


def _check(net, h, w, isa, k, seed=0):
    img = image(np.random.default_rng(seed), h, w, "float32")
    both = run_both(net, img, isa)
    if both is None:
        return
    out, ref = both
    err = float(np.max(np.abs(out.astype(np.float64) - ref)))
    bound = tol(k, float(np.max(np.abs(ref))))
    assert err <= bound, f"max abs err {err:.3g} > {bound:.3g}"


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("hw", SIZES, ids=_ids)
@pytest.mark.parametrize("cin,cout", [(1, 1), (3, 13), (13, 27), (27, 3), (64, 64), (3, 64), (27, 1)], ids=_ids)
@pytest.mark.parametrize("k,s,p", [(1, 1, 0), (1, 2, 0), (3, 1, 1), (3, 1, 0), (3, 2, 1), (3, 2, 0)], ids=_ids)
def test_conv2d(k, s, p, cin, cout, hw, isa):
    rng = np.random.default_rng(cin * 1000 + cout * 10 + k + s)
    net = weights.Network()
    x = net.conv2d(0, *random_conv(rng, cin, 3, 1), activation="none", name="pre") if cin != 3 else 0
    act = ["none", "relu", "softplus"][(cin + cout + k + s + p) % 3]
    x = net.conv2d(x, *random_conv(rng, cout, cin, k), stride=s, padding=p, activation=act, name="op")
    _head(net, x, rng)
    _check(net, *hw, isa, cin * k * k + cout)


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("act", ["none", "relu", "softplus"])
def test_conv2d_activation(act, isa):
    rng = np.random.default_rng(5)
    net = weights.Network()
    w, b = random_conv(rng, 13, 3, 3)
    x = net.conv2d(0, w * 4, b, activation=act, name="op")  # large values: softplus far into both tails
    _head(net, x, rng)
    _check(net, 11, 13, isa, 27 + 13)


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("hw", [(1, 1), (1, 17), (5, 7), (12, 16), (24, 33)], ids=_ids)
@pytest.mark.parametrize("cin", CHANNELS)
@pytest.mark.parametrize("layers", [((1, 1),), ((13, 27),), ((12, 24),) * 3, ((27, 13), (1, 64), (16, 32))],
                         ids=lambda ls: "-".join(f"g{g}b{b}" for g, b in ls))
def test_dense_block(layers, cin, hw, isa):
    rng = np.random.default_rng(cin + len(layers))
    net = weights.Network()
    x = net.conv2d(0, *random_conv(rng, cin, 3, 1), name="pre")
    c = cin
    block = []
    for g, b in layers:
        block.append((*random_conv(rng, b, c, 1), *random_conv(rng, g, b, 3)))
        c += g
    x = net.dense_block(x, block)
    _head(net, x, rng)
    _check(net, *hw, isa, max(c, 64 * 9) + c)


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("hw", [(1, 1), (2, 2), (5, 7), (16, 17), (33, 9)], ids=_ids)
@pytest.mark.parametrize("c", [1, 13])
@pytest.mark.parametrize("kind,k,s,p", [("avg", 1, 1, 0), ("avg", 2, 2, 0), ("avg", 3, 2, 0), ("avg", 3, 1, 0),
                                        ("avg", 8, 8, 0), ("max", 2, 2, 0), ("max", 3, 2, 1), ("max", 3, 1, 1),
                                        ("max", 8, 8, 4), ("max", 5, 3, 2)], ids=_ids)
def test_pool(kind, k, s, p, c, hw, isa):
    rng = np.random.default_rng(k * 10 + s)
    net = weights.Network()
    x = net.conv2d(0, *random_conv(rng, c, 3, 3), activation="none", name="pre")
    x = net.avg_pool(x, k, s) if kind == "avg" else net.max_pool(x, k, s, p)
    _head(net, x, rng)
    _check(net, *hw, isa, 27 + c)


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("hw", [(1, 1), (5, 7), (16, 17), (24, 32)], ids=_ids)
@pytest.mark.parametrize("c", [1, 3, 27])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_resize_bilinear(direction, c, hw, isa):
    rng = np.random.default_rng(c)
    net = weights.Network()
    full = net.conv2d(0, *random_conv(rng, c, 3, 1), activation="none", name="pre")
    small = net.avg_pool(full, 2, 2) if min(hw) >= 2 else net.avg_pool(full, 1, 1)
    x = net.resize_bilinear(small, full) if direction == "up" else net.resize_bilinear(full, small)
    _head(net, x, rng)
    _check(net, *hw, isa, 3 + c)


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("hw", [(1, 1), (9, 33)], ids=_ids)
@pytest.mark.parametrize("chans", [(1, 1), (3, 13, 27), (64, 1, 13, 3)], ids=_ids)
def test_concat(chans, hw, isa):
    rng = np.random.default_rng(len(chans))
    net = weights.Network()
    parts = [net.conv2d(0, *random_conv(rng, c, 3, 1), activation="none", name=f"p{i}") for i, c in enumerate(chans)]
    x = net.concat(*parts)
    _head(net, x, rng)
    _check(net, *hw, isa, 3 + sum(chans))


def test_concat_of_different_grids_is_a_run_time_error():
    rng = np.random.default_rng(0)
    net = weights.Network()
    a = net.conv2d(0, *random_conv(rng, 2, 3, 1), name="a")
    b = net.avg_pool(a, 2, 2)
    x = net.concat(a, b)
    _head(net, x, rng)
    with pytest.raises(ValueError, match="grid"):
        load(net).run(image(np.random.default_rng(0), 8, 8))


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("hw", [(1, 1), (3, 4), (9, 33), (24, 32)], ids=_ids)
@pytest.mark.parametrize("border", ["zeros", "nearest", "reflect"])
@pytest.mark.parametrize("sigma,truncate", [(0.3, 1.0), (1.0, 3.0), (2.5, 4.0)], ids=_ids)
def test_gaussian_blur(sigma, truncate, border, hw, isa):
    rng = np.random.default_rng(1)
    net = weights.Network()
    x = net.conv2d(0, *random_conv(rng, 1, 3, 3), activation="none", name="pre")
    x = net.gaussian_blur(x, sigma, truncate, border)
    net.log_softmax(x)
    _check(net, *hw, isa, 27)


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("hw", [(1, 1), (5, 7), (24, 32)], ids=_ids)
@pytest.mark.parametrize("map_hw", [(1, 1), (3, 5), (12, 16), (40, 50)], ids=_ids)
@pytest.mark.parametrize("weight", [0.0, 0.7, -2.0])
def test_centre_bias(weight, map_hw, hw, isa):
    rng = np.random.default_rng(2)
    net = weights.Network()
    x = net.conv2d(0, *random_conv(rng, 1, 3, 3), activation="none", name="pre")
    x = net.centre_bias(x, rng.standard_normal(map_hw).astype(np.float32), weight)
    _check(net, *hw, isa, 27)


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("hw", [(1, 1), (1, 17), (31, 29)], ids=_ids)
def test_log_softmax(hw, isa):
    rng = np.random.default_rng(3)
    net = weights.Network()
    w, b = random_conv(rng, 1, 3, 3)
    x = net.conv2d(0, 20 * w, b, activation="none", name="pre")  # wide range of logits
    net.log_softmax(x)
    _check(net, *hw, isa, 27)


# Kernel level: every kernels.def entry against a naive loop over tile-edge sizes (mr 1..6; nc below, at,
# above and multiples of the 16- and 64-pixel tiles; kc 1..27; every activation; nothing written past nc),
# run in C++.
_KERNELS_DEF = os.path.join(os.path.dirname(__file__), "..", "cpp", "src", "kernels", "kernels.def")


def _kernel_names():
    """(name, kernel set) of every kernels.def entry."""
    if not os.path.exists(_KERNELS_DEF):  # tests run outside the source tree
        tiles = {"avx512": ("conv1x1_6x64", "conv3x3_6x64", "conv1x1_rows_6x64", "conv3x3_rows_6x64", "softplus_x16",
                            "gather_s2_x16", "normalise_rgb_x16", "dwconv3x3_x16", "dwconv5x5_x16", "fma_peak_12x16"),
                 "avx2": ("conv1x1_6x16", "conv3x3_6x16", "softplus_x8", "gather_s2_x8", "normalise_rgb_x8", "dwconv3x3_x8",
                          "dwconv5x5_x8", "fma_peak_12x8"),
                 "neon": ("conv1x1_6x16", "conv3x3_6x16", "softplus_x4", "gather_s2_x8", "dwconv3x3_x4", "dwconv5x5_x4",
                          "fma_peak_12x4"),
                 "scalar": ("conv1x1_6x16", "conv3x3_6x16", "softplus_x8", "gather_s2_x8", "normalise_rgb_x1",
                            "dwconv3x3_x8", "dwconv5x5_x8", "fma_peak_12x4")}
        return [(f"f32_{k}_{isa}", isa) for isa in KERNEL_SETS for k in tiles[isa]]
    with open(_KERNELS_DEF) as f:
        return re.findall(r"^GAZECROP_\w+_KERNEL\((\w+), *(\w+)\)", f.read(), re.M)


KERNEL_NAMES = _kernel_names()


@functools.lru_cache(maxsize=1)
def _kernel_results():
    return dict(core._kernel_self_test())


@pytest.mark.parametrize("name,isa", KERNEL_NAMES, ids=[n for n, _ in KERNEL_NAMES])
def test_kernel(name, isa):
    results = _kernel_results()
    if name not in results and isa not in core.supported_kernel_sets():
        # kernels.def lists it under an #if this build left out (another architecture, a compiler without
        # the ISA's flag): nothing to run, and the dispatcher cannot pick the set either
        pytest.skip(f"{isa} kernels not built here")
    assert name in results, f"{name} is in kernels.def but not in the module's self-test"
    if results[name].startswith("skipped"):
        pytest.skip(results[name])
    assert results[name] == "ok", results[name]
