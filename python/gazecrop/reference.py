"""Independent NumPy forward pass of a ``.gzw`` network, written from ``docs/weights-format.md``.

Used by the tests to check the native core and as the naive baseline in the benchmarks. Convolutions run
in float32 (im2col + matmul); the head (blur, centre bias, log-softmax) in float64.
"""

from __future__ import annotations

import math
from typing import Iterator, List, Optional, Tuple

import numpy as np

from .weights import Network, Op, op_padding

__all__ = ["run", "values", "preprocess", "count_macs", "resize_bilinear", "gaussian_kernel", "out_size"]


def _pad_out(n: int, kernel: int, stride: int, before: int, after: int) -> int:
    m = (n + before + after - kernel) // stride + 1
    if n + before + after < kernel or m < 1:
        raise ValueError(f"input of size {n} too small for kernel {kernel}, stride {stride}, "
                         f"padding ({before}, {after})")
    return m


def _act(y: np.ndarray, act: int) -> np.ndarray:
    """Activation codes of the spec: 0 none, 1 ReLU, 2 softplus, 3 ReLU6."""
    if act == 1:
        return np.maximum(y, 0)
    if act == 2:
        return np.logaddexp(0, y).astype(np.float32)
    if act == 3:
        return np.minimum(np.maximum(y, 0), 6)
    return y


def out_size(n: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a window op along one axis (floor rule); raises ValueError when below 1."""
    m = (n + 2 * padding - kernel) // stride + 1
    if m < 1:
        raise ValueError(f"input of size {n} too small for kernel {kernel}, stride {stride}, padding {padding}")
    return m


def preprocess(net: Network, image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB or float32 (3, H, W) pixel values in 0..255 -> float32 (3, H, W) network input."""
    if image.dtype == np.uint8:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"uint8 image must be (H, W, 3), got {image.shape}")
        x = image.transpose(2, 0, 1).astype(np.float32)
    elif image.dtype == np.float32:
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"float32 image must be (3, H, W), got {image.shape}")
        x = image.astype(np.float32)
    else:
        raise TypeError(f"image dtype must be uint8 or float32, got {image.dtype}")
    mean = np.asarray(net.mean, np.float32)[:, None, None]
    std = np.asarray(net.std, np.float32)[:, None, None]
    return (x - mean) / std


def _windows(x: np.ndarray, k: int, stride: int, pads, pad_value=0, dtype=np.float32) -> Tuple[np.ndarray, int, int]:
    """The (top, bottom, left, right)-padded input's k x k strided windows: ``dtype`` (C, k, k, H', W'); the padding
    is ``pad_value`` (0; an int8 value's zero point in :mod:`gazecrop.int8`)."""
    c, h, wd = x.shape
    pt, pb, pl, pr = (pads,) * 4 if isinstance(pads, int) else pads
    ho, wo = _pad_out(h, k, stride, pt, pb), _pad_out(wd, k, stride, pl, pr)
    xp = np.pad(x.astype(dtype, copy=False), ((0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
    cols = np.empty((c, k, k, ho, wo), dtype)
    for u in range(k):
        for v in range(k):
            cols[:, u, v] = xp[:, u:u + stride * (ho - 1) + 1:stride, v:v + stride * (wo - 1) + 1:stride]
    return cols, ho, wo


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pads, act: int) -> np.ndarray:
    co, ci, k, _ = w.shape
    cols, ho, wo = _windows(x, k, stride, pads)
    y = w.reshape(co, -1) @ cols.reshape(ci * k * k, ho * wo) + b[:, None]
    return _act(y.reshape(co, ho, wo), act)


def _depthwise(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pads, act: int) -> np.ndarray:
    c, _, k, _ = w.shape
    cols, ho, wo = _windows(x, k, stride, pads)
    y = np.einsum("cuvij,cuv->cij", cols, w[:, 0], dtype=np.float32) + b[:, None, None]
    return _act(y.astype(np.float32), act)


def dense_layers(op: Op, x: np.ndarray) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """The layers of a ``dense_block`` op (Huang et al. 2017, "Densely Connected Convolutional Networks") on its
    float32 (C, H, W) input: per layer, (the 1x1 bottleneck's output, the 3x3 convolution's new channels), each
    layer reading the concatenation of the input and every earlier layer's new channels; ReLU after both."""
    t = [a for _, a in op.tensors]
    feats = [x]
    for li in range(op.ip(1)):
        mid = _conv(np.concatenate(feats, 0), t[4 * li], t[4 * li + 1], 1, 0, 1)
        feats.append(_conv(mid, t[4 * li + 2], t[4 * li + 3], 1, 1, 1))
        yield mid, feats[-1]


def _pool(x: np.ndarray, k: int, s: int, pad: int, kind: str) -> np.ndarray:
    c, h, w = x.shape
    ho, wo = out_size(h, k, s, pad), out_size(w, k, s, pad)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf) if pad else x
    win = np.stack([xp[:, u:u + s * (ho - 1) + 1:s, v:v + s * (wo - 1) + 1:s] for u in range(k) for v in range(k)])
    return win.max(0) if kind == "max" else win.mean(0, dtype=np.float64).astype(np.float32)


def _resize_axis(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.arange(n_out, dtype=np.float64)
    s = np.maximum((d + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = np.floor(s).astype(np.int64)
    i0 = np.minimum(i0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, s - i0


def resize_bilinear(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (..., H, W) to (..., height, width), half-pixel centres (PyTorch
    ``align_corners=False``); float64 computation, dtype kept."""
    h, w = x.shape[-2:]
    y0, y1, fy = _resize_axis(h, height)
    x0, x1, fx = _resize_axis(w, width)
    xd = x.astype(np.float64)
    rows = xd[..., y0, :] * (1 - fy)[:, None] + xd[..., y1, :] * fy[:, None]
    out = rows[..., x0] * (1 - fx) + rows[..., x1] * fx
    return out.astype(x.dtype)


def gaussian_kernel(sigma: float, truncate: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps, radius ``ceil(truncate * sigma)``, float64."""
    r = int(math.ceil(truncate * sigma))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-t * t / (2.0 * sigma * sigma))
    return k / k.sum()


def _blur(x: np.ndarray, sigma: float, truncate: float, border: int) -> np.ndarray:
    k = gaussian_kernel(sigma, truncate)
    r = len(k) // 2
    c, h, w = x.shape
    if border == 2 and (r >= h or r >= w):
        raise ValueError(f"gaussian_blur: radius {r} must be smaller than the {h}x{w} grid for reflect border")
    mode = {0: "constant", 1: "edge", 2: "reflect"}[border]
    y = x.astype(np.float64)
    yp = np.pad(y, ((0, 0), (0, 0), (r, r)), mode=mode)
    y = sum(k[t] * yp[:, :, t:t + w] for t in range(2 * r + 1))
    yp = np.pad(y, ((0, 0), (r, r), (0, 0)), mode=mode)
    y = sum(k[t] * yp[:, t:t + h, :] for t in range(2 * r + 1))
    return y


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + math.log(float(np.sum(np.exp(x - m))))


def _run_op(op: Op, vals: List[np.ndarray]) -> np.ndarray:
    x = vals[op.inputs[0]]
    t = [a for _, a in op.tensors]
    if op.kind in ("conv2d", "depthwise_conv2d"):
        f = _conv if op.kind == "conv2d" else _depthwise
        return f(x, t[0], t[1], op.ip(3), op_padding(op, x.shape[1], x.shape[2]), op.ip(5))
    if op.kind == "add":
        y = vals[op.inputs[1]]
        if y.shape != x.shape:
            raise ValueError(f"add: inputs have different shapes {x.shape} and {y.shape}")
        return _act(x + y, op.ip(0))
    if op.kind == "dense_block":
        return np.concatenate([x] + [new for _, new in dense_layers(op, x)], 0)
    if op.kind == "avg_pool":
        return _pool(x, op.ip(0), op.ip(1), 0, "avg")
    if op.kind == "max_pool":
        return _pool(x, op.ip(0), op.ip(1), op.ip(2), "max")
    if op.kind == "resize_bilinear":
        like = vals[op.inputs[1]]
        return resize_bilinear(x, like.shape[1], like.shape[2])
    if op.kind == "concat":
        parts = [vals[v] for v in op.inputs]
        if len({p.shape[1:] for p in parts}) != 1:
            raise ValueError(f"concat: inputs have different grids {[p.shape[1:] for p in parts]}")
        return np.concatenate(parts, 0)
    if op.kind == "gaussian_blur":
        return _blur(x, op.fp(0), op.fp(1), op.ip(0))
    if op.kind == "centre_bias":
        m = resize_bilinear(t[0].astype(np.float64), x.shape[1], x.shape[2])
        m = m - _logsumexp(m)
        return x.astype(np.float64) + op.fp(0) * m[None]
    if op.kind == "log_softmax":
        xd = x.astype(np.float64)
        return xd - _logsumexp(xd)
    raise AssertionError(op.kind)  # pragma: no cover


def values(net: Network, image: np.ndarray, upto: Optional[int] = None) -> List[np.ndarray]:
    """Every value of the forward pass: ``[input, op 0's output, ...]``, each float32 (C, h, w); with
    ``upto``, only values ``0 .. upto`` (the ops after are not run). Arguments and errors as :func:`run`."""
    vals = [preprocess(net, image)]
    for op in net.ops[:upto]:
        vals.append(_run_op(op, vals))
    return vals


def run(net: Network, image: np.ndarray, *, head_map: bool = False
        ) -> "np.ndarray | Tuple[np.ndarray, np.ndarray]":
    """Forward pass: image -> float32 (h, w) log-density on the network's output grid.

    Args:
        net: a validated :class:`~gazecrop.weights.Network` (e.g. from :func:`gazecrop.weights.read_weights`).
        image: uint8 (H, W, 3) RGB, or float32 (3, H, W), pixel values in 0..255.
        head_map: also return the head map (format version 3, ``net.head_output``): a tuple (log-density,
            float32 (hh, hw) head logits).

    Raises:
        TypeError: wrong dtype. ValueError: wrong rank/shape, an input too small for the network, or
        ``head_map`` for a network without one.
    """
    if head_map and not net.head_output:
        raise ValueError("this network has no head map (weights format version 3)")
    vals = values(net, image)
    if head_map:
        return vals[-1][0].astype(np.float32), vals[net.head_output][0].astype(np.float32)
    return vals[-1][0].astype(np.float32)


def count_macs(net: Network, height: int, width: int) -> int:
    """Multiply-accumulates of all convolutions for a (3, height, width) input, from shapes alone."""
    shapes = [(3, height, width)]
    macs = 0
    for op in net.ops:
        c, h, w = shapes[op.inputs[0]]
        t = [a for _, a in op.tensors]
        if op.kind in ("conv2d", "depthwise_conv2d"):
            k, s = op.ip(2), op.ip(3)
            pt, pb, pl, pr = op_padding(op, h, w)
            ho, wo = _pad_out(h, k, s, pt, pb), _pad_out(w, k, s, pl, pr)
            macs += t[0].size * ho * wo
            shapes.append((op.ip(1), ho, wo))
        elif op.kind == "dense_block":
            macs += sum(a.size for a in t[0::2]) * h * w
            shapes.append((op.ip(2), h, w))
        elif op.kind in ("avg_pool", "max_pool"):
            k, s = op.ip(0), op.ip(1)
            p = op.ip(2) if op.kind == "max_pool" else 0
            shapes.append((c, out_size(h, k, s, p), out_size(w, k, s, p)))
        elif op.kind == "resize_bilinear":
            shapes.append((c,) + shapes[op.inputs[1]][1:])
        elif op.kind == "concat":
            shapes.append((sum(shapes[v][0] for v in op.inputs), h, w))
        else:
            shapes.append((c, h, w))
    return macs
