"""Random ``.gzw`` networks for tests and benchmarks (numpy only; not part of the public API).

:func:`student_like` builds the student's architecture (stem, dense blocks, transitions, multi-scale
readout, blur, centre bias, log-softmax) with random weights and arbitrary (pruned-looking) channel counts.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from .weights import Network

__all__ = ["random_conv", "random_depthwise", "random_padding", "student_like", "random_network",
           "inverted_residual_net", "readers_agree", "tol"]


def tol(k: int, scale: float) -> float:
    """Absolute tolerance for float32 sums of length k with values of magnitude ``scale`` (the per-op tests'
    bound, tests/test_ops.py, and tools/aarch64_fixtures.py's)."""
    return 4e-6 * math.sqrt(max(k, 1)) * max(scale, 1.0)


def random_conv(rng: np.random.Generator, cout: int, cin: int, k: int):
    """He-initialised float32 conv weight (cout, cin, k, k) and a small bias (cout,)."""
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32) * np.float32(np.sqrt(2.0 / (cin * k * k)))
    b = (0.1 * rng.standard_normal(cout)).astype(np.float32)
    return w, b


def random_depthwise(rng: np.random.Generator, channels: int, k: int):
    """He-initialised float32 depthwise weight (channels, 1, k, k) and a small bias (channels,)."""
    w = rng.standard_normal((channels, 1, k, k)).astype(np.float32) * np.float32(np.sqrt(2.0 / (k * k)))
    b = (0.1 * rng.standard_normal(channels)).astype(np.float32)
    return w, b


def random_padding(rng: np.random.Generator, k: int):
    """One of the spec's padding modes for a k x k window: symmetric ``k // 2``, TensorFlow ``"same"``, or an
    explicit (top, bottom, left, right) tuple with each side in 0 .. k // 2."""
    r = rng.random()
    if r < 1 / 3:
        return k // 2
    if r < 2 / 3:
        return "same"
    return tuple(int(v) for v in rng.integers(0, k // 2 + 1, size=4))


def inverted_residual_net(rng: np.random.Generator, *, stages: int = 3, max_blocks: int = 2,
                          max_channels: int = 27, max_expand: int = 6, input_long_side: int = 64) -> Network:
    """A random MobileNetV2 / EfficientNet-Lite-style network (format version 2): a 3x3 stem, stacks of
    inverted-residual blocks (1x1 expand + ReLU6, depthwise 3x3 or 5x5 at stride 1 or 2 + ReLU6, 1x1
    project, ``add`` skip when shapes allow), then a readout (1x1 softplus, 1x1 to one channel), blur, centre
    bias and log-softmax. Channel counts are arbitrary (odd, pruned-looking), paddings drawn from every
    mode (:func:`random_padding`), activations from none / ReLU / ReLU6. For correctness tests and benchmarks
    at inputs of >= 16 px."""
    net = Network(input_long_side=input_long_side, size_multiple=8, model_name="ir-random", model_version="0")
    rint = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    acts = ["none", "relu", "relu6"]
    x = net.conv2d(0, *random_conv(rng, rint(1, max_channels), 3, 3), stride=2, padding=random_padding(rng, 3),
                   activation=acts[rint(1, 2)], name="stem")
    for si in range(stages):
        for bi in range(rint(1, max_blocks)):
            name = f"s{si}b{bi}"
            cin = net.channels(x)
            k = 3 if rng.random() < 0.5 else 5
            stride = 2 if bi == 0 and rng.random() < 0.5 else 1
            cout = cin if (stride == 1 and rng.random() < 0.6) else rint(1, max_channels)
            h = x
            if rng.random() < 0.8:
                h = net.conv2d(h, *random_conv(rng, rint(1, max_expand * cin), cin, 1), activation=acts[rint(0, 2)],
                               name=name + ".expand")
            h = net.depthwise_conv2d(h, *random_depthwise(rng, net.channels(h), k), stride=stride,
                                     padding=random_padding(rng, k), activation=acts[rint(0, 2)], name=name + ".dw")
            h = net.conv2d(h, *random_conv(rng, cout, net.channels(h), 1), activation="none", name=name + ".project")
            # the skip only where the shapes agree at every input size: stride 1 and a size-keeping padding
            dw = net.ops[h - 2]
            keeps = dw.ip(3) == 1 and (dw.ip(6) == 2 or (dw.ip(6) == 0 and dw.ip(4) == k // 2))
            if cout == cin and keeps:
                h = net.add(x, h, activation=(acts + ["softplus"])[rint(0, 3)] if rng.random() < 0.3 else "none")
            x = h
    x = net.conv2d(x, *random_conv(rng, rint(1, max_channels), net.channels(x), 1), activation="softplus",
                   name="readout0")
    x = net.conv2d(x, *random_conv(rng, 1, net.channels(x), 1), activation="none", name="readout_out")
    x = net.gaussian_blur(x, float(rng.uniform(0.3, 1.5)), 3.0, "nearest")
    lm = rng.standard_normal((rint(1, 7), rint(1, 7))).astype(np.float32)
    x = net.centre_bias(x, lm, float(rng.uniform(0.2, 1.5)))
    net.log_softmax(x)
    return net


def _dense_layers(rng, cin, growths, bottlenecks):
    layers = []
    c = cin
    for g, b in zip(growths, bottlenecks):
        w1, b1 = random_conv(rng, b, c, 1)
        w2, b2 = random_conv(rng, g, b, 3)
        layers.append((w1, b1, w2, b2))
        c += g
    return layers


def student_like(seed: int = 0, *, stem: int = 24, blocks: Sequence[Sequence[tuple]] = (
        ((12, 24),) * 4, ((16, 32),) * 6, ((20, 40),) * 6), transition: float = 0.5,
        readout: Sequence[int] = (16, 8), sigma: float = 1.5, input_long_side: int = 256) -> Network:
    """A student-sized random network: stem conv 3x3/2, max pool 3/2, dense blocks (each layer a
    (growth, bottleneck) pair) separated by transitions (1x1 conv + 2x2 average pool), features of the last
    two blocks concatenated at the second-to-last block's grid, a softplus readout, blur, centre bias,
    log-softmax."""
    rng = np.random.default_rng(seed)
    net = Network(input_long_side=input_long_side, size_multiple=32)
    x = net.conv2d(0, *random_conv(rng, stem, 3, 3), stride=2, name="stem")
    x = net.max_pool(x, 3, 2, 1)
    feats = []
    for bi, layers in enumerate(blocks):
        if bi > 0:
            c = net.channels(x)
            x = net.conv2d(x, *random_conv(rng, max(1, int(c * transition)), c, 1), name=f"trans{bi}")
            x = net.avg_pool(x, 2, 2)
        x = net.dense_block(x, _dense_layers(rng, net.channels(x), [g for g, _ in layers], [b for _, b in layers]),
                            name=f"block{bi}")
        feats.append(x)
    deep = net.resize_bilinear(feats[-1], feats[-2])
    x = net.concat(feats[-2], deep)
    for i, c in enumerate(readout):
        x = net.conv2d(x, *random_conv(rng, c, net.channels(x), 1), activation="softplus", name=f"readout{i}")
    x = net.conv2d(x, *random_conv(rng, 1, net.channels(x), 1), activation="none", name="readout_out")
    x = net.gaussian_blur(x, sigma, 3.0, "nearest")
    yy, xx = np.mgrid[0:12, 0:16]
    log_map = -(((yy - 5.5) / 4.0) ** 2 + ((xx - 7.5) / 5.0) ** 2) / 2.0
    x = net.centre_bias(x, log_map.astype(np.float32), 1.0)
    net.log_softmax(x)
    return net


def random_network(rng: np.random.Generator, *, max_blocks: int = 2, max_layers: int = 3,
                   max_channels: int = 27, stride2: Optional[bool] = None) -> Network:
    """A small random network exercising every op with odd channel counts, both strides, both kernels,
    every activation, pool and border mode; for correctness tests at small input sizes (>= 16 px)."""
    net = Network(input_long_side=64, size_multiple=8)
    rint = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    s = (2 if rng.random() < 0.5 else 1) if stride2 is None else (2 if stride2 else 1)
    k = rint(0, 1) * 2 + 1
    x = net.conv2d(0, *random_conv(rng, rint(1, max_channels), 3, k), stride=s, padding=rint(0, k // 2),
                   activation=["none", "relu", "softplus"][rint(0, 2)], name="stem")
    if rng.random() < 0.5:
        x = net.max_pool(x, rint(2, 3), rint(1, 2), rint(0, 1))
    feats = [x]
    for bi in range(rint(1, max_blocks)):
        if bi > 0:
            c = net.channels(x)
            x = net.conv2d(x, *random_conv(rng, rint(1, max_channels), c, 1), name=f"trans{bi}")
            x = net.avg_pool(x, 2, 2) if rng.random() < 0.7 else net.avg_pool(x, rint(1, 3), rint(1, 2))
        nl = rint(1, max_layers)
        x = net.dense_block(x, _dense_layers(rng, net.channels(x), [rint(1, max_channels) for _ in range(nl)],
                                             [rint(1, max_channels) for _ in range(nl)]), name=f"block{bi}")
        feats.append(x)
    if len(feats) > 1 and rng.random() < 0.8:
        others = [net.resize_bilinear(f, feats[0]) for f in feats[1:][:3]]
        x = net.concat(feats[0], *others)
    for i in range(rint(0, 2)):
        x = net.conv2d(x, *random_conv(rng, rint(1, max_channels), net.channels(x), 1),
                       activation=["relu", "softplus"][rint(0, 1)], name=f"readout{i}")
    x = net.conv2d(x, *random_conv(rng, 1, net.channels(x), rint(0, 1) * 2 + 1), activation="none", name="out")
    if rng.random() < 0.9:
        x = net.gaussian_blur(x, float(rng.uniform(0.3, 2.0)), float(rng.uniform(1.0, 4.0)), ["zeros", "nearest", "reflect"][rint(0, 2)])
    if rng.random() < 0.9:
        lm = rng.standard_normal((rint(1, 9), rint(1, 9))).astype(np.float32)
        x = net.centre_bias(x, lm, float(rng.uniform(0.2, 1.5)))
    net.log_softmax(x)
    return net


def with_head_map(net, rng: np.random.Generator, hidden: int = 3):
    """A copy of ``net`` with a random head map (weights format version 3; 1x1, 3x3, 1x1 convolutions) reading a
    random value (the input included): :func:`gazecrop.train.face_map.attach_head_map`."""
    from .train.face_map import attach_head_map

    v = int(rng.integers(0, len(net.ops)))
    c = net.channels(v)
    return attach_head_map(net, [random_conv(rng, hidden, c, 1), random_conv(rng, hidden, hidden, 3),
                                 random_conv(rng, 1, hidden, 1)], value=v)


def with_int8_trunk(net, rng: np.random.Generator, images: int = 2):
    """A copy of ``net`` (with an int8 trunk to calibrate: :func:`gazecrop.int8.trunk_end`) with an int8 trunk (weights format version 3)
    calibrated on ``images`` random uint8 images at the network's input size, a random default precision and
    verdict: :func:`gazecrop.int8.calibrate`."""
    import copy

    from . import int8

    q = copy.deepcopy(net)
    h, w = q.input_size(3 * q.input_long_side // 4, q.input_long_side)
    q.int8 = int8.calibrate(q, [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(images)])
    q.precision = ("fp32", "int8")[int(rng.integers(0, 2))]
    q.int8_verdict = int(rng.integers(0, 3))
    q.validate()
    return q


def readers_agree(core, data: bytes) -> bool:
    """The fuzzing oracle: feed one candidate ``.gzw`` to the native core (``core`` = ``gazecrop._core``) and to
    the Python reader. Both must accept it or both reject it with ``WeightsFormatError``; an accepted file
    must run on a 16x16 uint8 image (float32 output of its ``output_size``, the same fused and op by op; with a
    head map, the same log-density with it and the same head map fused and op by op; with an int8 trunk, the
    trunk's bytes equal to :func:`gazecrop.int8.run_trunk`'s) or refuse it with ValueError.

    Returns:
        whether the file was accepted.
    Raises:
        AssertionError: the readers disagree or an accepted file misbehaves (a bug).
    """
    from .weights import WeightsFormatError, from_bytes

    try:
        model = core.Model.from_bytes(data)
        core_ok = True
    except WeightsFormatError:
        core_ok = False
    try:
        net = from_bytes(data)
        py_ok = True
    except WeightsFormatError:
        py_ok = False
    assert core_ok == py_ok, f"readers disagree: core accepts={core_ok}, python accepts={py_ok}"
    if core_ok:
        n8 = net.int8.n_ops if net.int8 is not None else 0
        assert (model.int8_ops, model.default_precision) == (n8, net.precision), "readers disagree on the int8 trunk"
        try:
            oh, ow = model.output_size(16, 16)
            if oh * ow <= 4096:
                img = np.full((16, 16, 3), 128, np.uint8)
                out = model.run(img)
                assert out.dtype == np.float32 and out.shape == (oh, ow), (out.dtype, out.shape)
                plain = model.run(img, fuse=False)  # the loader's fusion changes no bit (NaN where NaN)
                assert np.array_equal(out, plain, equal_nan=True), "fused and op-by-op runs differ"
                if model.has_head_map:  # version 3: the second output, same log-density, fused or not
                    both = model.run(img, head_map=True)
                    plain_both = model.run(img, head_map=True, fuse=False)
                    assert np.array_equal(both[0], out, equal_nan=True), "the head map changed the log-density"
                    assert np.array_equal(both[1], plain_both[1], equal_nan=True), "fused and op-by-op head maps differ"
                    assert both[1].dtype == np.float32 and both[1].ndim == 2, (both[1].dtype, both[1].shape)
                if n8:  # version 3 int8 trunk: the core's bytes are the exact reference's, fused or not
                    from .int8 import run_trunk

                    want = run_trunk(net, net.int8, img)
                    got = model.int8_values(img)
                    assert all(np.array_equal(g, w.reshape(-1)) for g, w in zip(got, want)), "int8 trunk differs"
                    q = model.run(img, precision="int8")
                    assert np.array_equal(q, model.run(img, precision="int8", fuse=False), equal_nan=True), \
                        "fused and op-by-op int8 runs differ"
        except ValueError:
            pass
    return core_ok
