"""int8 inference of a network's trunk: calibration and the exact integer reference (issue 22,
``docs/int8-plan.md``).

The *trunk* is the network's first ops, through its last inverted residual (the last depthwise convolution,
its 1x1 projection and the skip ``add``): every value it produces is int8, every convolution in it runs on
int8 weights with int32 accumulators. The ops after it (readout, blur, centre bias, log-softmax) run in
float32 / float64 on the dequantised trunk values, as in :mod:`gazecrop.reference`.

Numbers (the single definition; the native kernels must reproduce :func:`run_trunk` byte for byte):

- A value ``x`` is ``q`` in int8 with a per-tensor scale ``s`` (float32 > 0) and zero point ``z`` (int in
  [-128, 127]): ``x = s (q - z)``. Calibrated ranges ``[lo, hi]`` (``lo <= 0 <= hi``) give ``s = f32((hi -
  lo) / 255)`` and ``z = clip(rint(-128 - lo / s))`` (:func:`value_params`); ReLU6 outputs use [0, 6].
  Padding of a quantised value is ``z`` (the real 0).
- The input (value 0): each channel's 256 possible pixels map through ``q = clip(rint(f32(f32(f32(p) - mean)
  / std) / s) + z)`` (float32 arithmetic, as :func:`gazecrop.reference.preprocess`; :func:`input_table`).
- Weights: symmetric per output channel, ``s_w[m] = f32(max_k |w[m, k]| / 127)`` (1 for an all-zero
  channel), ``w_q = clip(rint(w / s_w), -127, 127)`` (:func:`quantise_weights`).
- A convolution's output channel ``m``: ``acc = B[m] + sum_k w_q[m, k] (q_k - z_x)`` in int32, with ``B[m] =
  rint(b[m] / (s_x s_w[m]))`` (double arithmetic), then :func:`requantise` with the multiplier of
  ``M = s_x s_w[m] / s_y`` (double).
- :func:`requantise`: ``y = clip(z_y + ((acc * mult + 2^(shift - 1)) >> shift), lo, hi)`` in int64 with an
  arithmetic shift (round half up), ``(mult, shift)`` from :func:`multiplier` (``mult`` in [2^30, 2^31),
  ``shift`` in [32, 62]: ``M < 0.5``, so the shifted value fits 31 bits and a kernel may take the high half of
  the 64-bit product; :func:`calibrate` widens an output range where needed); ``lo, hi`` = [-128, 127]
  narrowed by the fused activation: ReLU ``lo = max(-128, z_y)``, ReLU6 also ``hi = min(127, z_y + rint(6 /
  s_y))``.
- ``add``: ``y = clip(z_y + (((q_a - z_a) m_a + (q_b - z_b) m_b + 2^(shift - 1)) >> shift), lo, hi)``, one
  shift for both inputs (:func:`add_multipliers`), in [10, 62] (the sum fits 31 bits).
- Dequantisation for the float ops: ``f32(q - z) * s`` in float32.

``rint`` rounds half to even (numpy ``rint``, C ``nearbyint`` in the default rounding mode). Only additions,
products and quotients of two doubles are used, so no fused multiply-add can change a result.

Calibration (:func:`calibrate`): per-tensor min / max ranges over the calibration photos, then the empirical
bias correction of Nagel et al. 2019 ("Data-Free Quantization Through Weight Equalization and Bias
Correction", arXiv:1906.04721, section 4.2): op by op, each convolution's bias minus the mean over the photos
and pixels of the error ``conv(x, s_w w_q) - conv(x, w)`` on the int8 path's own input ``x``. On the Lite0
student, without it 3.3 % of the val crops move by more than 1 % of the image side, with it 2.5 %
(``python benchmarks/int8_quality.py --exact [--no-bias-correction]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from . import reference
from .weights import Network, Op, op_padding

__all__ = ["Int8Trunk", "trunk_end", "value_params", "quantise_weights", "multiplier", "add_multipliers",
           "requantise", "input_table", "calibrate", "run_trunk", "run", "dequantise"]

QMIN, QMAX = -128, 127
RELU6_RANGE = (0.0, 6.0)
TRUNK_OPS = ("conv2d", "depthwise_conv2d", "add")
"""The op kinds an int8 trunk may contain."""
TRUNK_ACTIVATIONS = (0, 1, 3)
"""Activation codes an int8 op may fuse: none, ReLU, ReLU6 (not softplus)."""
CONV_SHIFTS = (32, 62)
"""A convolution's requantisation shift range: factors ``M = s_x s_w[m] / s_y`` in about [2^-32, 0.5)."""
ADD_SHIFTS = (10, 62)
"""An add's shift range: the larger factor ``max(s_a, s_b) / s_y`` below 2^21."""
ACC_LIMIT = 2 ** 31 - 1
"""int32 accumulators: ``|B[m]| + 255 * 127 * K`` must stay below this (checked by :func:`Int8Trunk.validate`)."""


@dataclass
class Int8Trunk:
    """The int8 form of a network's first ``n_ops`` ops (calibrated by :func:`calibrate`).

    Attributes:
        n_ops: ops ``0 .. n_ops - 1`` run in int8 (value ids ``0 .. n_ops`` are int8).
        scales: float32 (n_ops + 1,) per-tensor scale of each trunk value, > 0.
        zero_points: int32 (n_ops + 1,) zero points in [-128, 127].
        weights: op index -> int8 weights, the op's float32 weight shape ((M, C, k, k) or (M, 1, k, k)),
            values in [-127, 127], for every conv / depthwise op of the trunk.
        weight_scales: op index -> float32 (M,) per output channel scales, > 0.
        biases: op index -> float32 (M,) the int8 path's bias (the float bias after bias correction).
    """

    n_ops: int
    scales: np.ndarray
    zero_points: np.ndarray
    weights: Dict[int, np.ndarray] = field(default_factory=dict)
    weight_scales: Dict[int, np.ndarray] = field(default_factory=dict)
    biases: Dict[int, np.ndarray] = field(default_factory=dict)

    def validate(self, net: Network) -> None:
        """Check this trunk against ``net``; raises ValueError naming the op or value and the numbers."""
        if not 1 <= self.n_ops <= len(net.ops) - 1:
            raise ValueError(f"int8 trunk: {self.n_ops} ops, the network has {len(net.ops)} (the last op stays float)")
        if self.scales.shape != (self.n_ops + 1,) or self.zero_points.shape != (self.n_ops + 1,):
            raise ValueError(f"int8 trunk: {self.n_ops + 1} value scales and zero points needed")
        if not (np.all(np.isfinite(self.scales)) and np.all(self.scales > 0)):
            raise ValueError("int8 trunk: value scales must be finite and > 0")
        if np.any(self.zero_points < QMIN) or np.any(self.zero_points > QMAX):
            raise ValueError("int8 trunk: zero points must be in [-128, 127]")
        if net.head_output and net.head_output <= self.n_ops:
            raise ValueError(f"int8 trunk: the head map (value {net.head_output}) must be outside the trunk")
        for i, op in enumerate(net.ops[:self.n_ops]):
            if op.kind not in TRUNK_OPS:
                raise ValueError(f"int8 trunk: op {i} ({op.kind}) cannot run in int8 ({', '.join(TRUNK_OPS)} only)")
            act = op.ip(0) if op.kind == "add" else op.ip(5)
            if act not in TRUNK_ACTIVATIONS:
                raise ValueError(f"int8 trunk: op {i} ({op.kind}) fuses activation {act} (int8: 0, 1 or 3)")
            if op.kind == "add":
                shift = add_multipliers(self._s(op.inputs[0]), self._s(op.inputs[1]), self._s(i + 1))[2]
                if not ADD_SHIFTS[0] <= shift <= ADD_SHIFTS[1]:
                    raise ValueError(f"int8 trunk: op {i} (add): requantisation factor out of range (shift "
                                     f"{shift}, must be {ADD_SHIFTS[0]}..{ADD_SHIFTS[1]})")
                continue
            w = self.weights.get(i)
            shape = op.tensors[0][1].shape
            if w is None or w.dtype != np.int8 or w.shape != shape:
                raise ValueError(f"int8 trunk: op {i} needs int8 weights of shape {shape}")
            if np.any(w == QMIN):
                raise ValueError(f"int8 trunk: op {i}'s weights must be in [-127, 127]")
            ws, b = self.weight_scales.get(i), self.biases.get(i)
            m = shape[0]
            if ws is None or ws.shape != (m,) or not (np.all(np.isfinite(ws)) and np.all(ws > 0)):
                raise ValueError(f"int8 trunk: op {i} needs {m} finite weight scales > 0")
            if b is None or b.shape != (m,) or not np.all(np.isfinite(b)):
                raise ValueError(f"int8 trunk: op {i} needs {m} finite biases")
            sx = np.float64(self.scales[op.inputs[0]])
            bq = np.rint(b.astype(np.float64) / (sx * ws.astype(np.float64)))  # as int_bias, before any cast
            worst = float(np.abs(bq).max()) + 255.0 * 127.0 * float(np.prod(shape[1:]))
            if not worst <= ACC_LIMIT:
                raise ValueError(f"int8 trunk: op {i}'s accumulator can reach {worst:.4g} (> 2^31 - 1)")
            self.conv_multipliers(i, op.inputs[0])  # raises when a factor is out of range

    def _s(self, v: int) -> float:
        return float(self.scales[v])

    def int_bias(self, i: int, v_in: int) -> np.ndarray:
        """int64 (M,) ``B[m] = rint(b[m] / (s_x s_w[m]))`` of conv op ``i`` reading value ``v_in`` (double
        arithmetic)."""
        sx = np.float64(self.scales[v_in])
        return np.rint(self.biases[i].astype(np.float64) / (sx * self.weight_scales[i].astype(np.float64))
                       ).astype(np.int64)

    def conv_multipliers(self, i: int, v_in: int) -> List[Tuple[int, int]]:
        """(mult, shift) per output channel of conv op ``i`` reading value ``v_in``, for ``M = s_x s_w[m] / s_y``
        (:func:`multiplier`)."""
        sx, sy = self._s(v_in), self._s(i + 1)
        out = [multiplier(sx * float(s) / sy) for s in self.weight_scales[i]]
        for m, (_, shift) in enumerate(out):
            if not CONV_SHIFTS[0] <= shift <= CONV_SHIFTS[1]:
                raise ValueError(f"int8 trunk: op {i} channel {m}: requantisation factor "
                                 f"{sx * float(self.weight_scales[i][m]) / sy:.6g} is out of range (shift {shift}, "
                                 f"must be {CONV_SHIFTS[0]}..{CONV_SHIFTS[1]}: the factor below 0.5)")
        return out

    def activation_bounds(self, i: int, act: int) -> Tuple[int, int]:
        """(lo, hi) of op ``i``'s int8 output under activation code ``act``."""
        z, s = int(self.zero_points[i + 1]), float(self.scales[i + 1])
        lo, hi = QMIN, QMAX
        if act in (1, 3):
            lo = max(QMIN, z)
        if act == 3:
            hi = min(QMAX, z + int(np.rint(6.0 / s)))
        return lo, hi


def trunk_end(net: Network) -> int:
    """Number of ops of the int8 trunk: through the last depthwise convolution's projection (and its skip add),
    or up to the first op before that which cannot run in int8 (a kind other than :data:`TRUNK_OPS`, a softplus).

    Raises:
        ValueError: the network has no depthwise convolution (no inverted-residual trunk), or its first op cannot
            run in int8.
    """
    last = max((i for i, op in enumerate(net.ops) if op.kind == "depthwise_conv2d"), default=None)
    if last is None:
        raise ValueError("the network has no depthwise convolution (no inverted-residual trunk to run in int8)")
    end = min(last + 2, len(net.ops) - 1)  # the depthwise op and its 1x1 projection (the last op stays float)
    if end < len(net.ops) - 1 and net.ops[end].kind == "add" and end in net.ops[end].inputs:
        end += 1  # the skip add reading the projection
    for i, op in enumerate(net.ops[:end]):
        if op.kind not in TRUNK_OPS or (op.ip(0) if op.kind == "add" else op.ip(5)) not in TRUNK_ACTIVATIONS:
            end = i
            break
    if end < 1:
        raise ValueError(f"op 0 ({net.ops[0].kind}) cannot run in int8: no trunk")
    return end


def value_params(lo: float, hi: float) -> Tuple[np.float32, int]:
    """(scale, zero point) of a value calibrated to ``[lo, hi]`` (the range is first widened to include 0)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    s = np.float32((hi - lo) / 255.0)
    if not s > 0:
        s = np.float32(1.0)  # a value that is always 0
    z = int(np.clip(np.rint(-128.0 - lo / float(s)), QMIN, QMAX))
    return s, z


def quantise_weights(w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """float32 (M, ...) weights -> (int8 (M, ...) in [-127, 127], float32 (M,) scales): symmetric per output
    channel, ``s_w[m] = f32(max |w[m]| / 127)``, 1 for an all-zero channel."""
    flat = w.reshape(w.shape[0], -1)
    top = np.abs(flat).max(axis=1).astype(np.float64)
    s = np.where(top > 0, top / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(flat / s[:, None]), -127, 127).astype(np.int8)
    return q.reshape(w.shape), s


def multiplier(real: float) -> Tuple[int, int]:
    """Fixed-point form of a positive real factor: ``(mult, shift)`` with ``real ~ mult / 2^shift``, ``mult`` in
    [2^30, 2^31) (31 significant bits, rounded half to even), ``shift`` in [1, 62].

    Raises:
        ValueError: ``real`` not finite and > 0, or outside what ``shift`` in [1, 62] can express (about
            [2^-32, 2^30)).
    """
    if not (math.isfinite(real) and real > 0):
        raise ValueError(f"requantisation factor {real!r} must be finite and > 0")
    f, e = math.frexp(real)  # real = f 2^e, f in [0.5, 1)
    mult = int(np.rint(f * 2.0 ** 31))
    if mult == 2 ** 31:
        mult, e = 2 ** 30, e + 1
    shift = 31 - e
    if not 1 <= shift <= 62:
        raise ValueError(f"requantisation factor {real!r} is out of range (shift {shift}, must be 1..62)")
    return mult, shift


def add_multipliers(s_a: float, s_b: float, s_y: float) -> Tuple[int, int, int]:
    """(m_a, m_b, shift) of an int8 ``add``: ``m_a / 2^shift ~ s_a / s_y``, ``m_b / 2^shift ~ s_b / s_y``, the
    larger factor with 31 significant bits (``< 2^31``). Raises ValueError as :func:`multiplier`."""
    ra, rb = s_a / s_y, s_b / s_y
    _, shift = multiplier(max(ra, rb))
    ma, mb = int(np.rint(math.ldexp(ra, shift))), int(np.rint(math.ldexp(rb, shift)))
    if max(ma, mb) >= 2 ** 31:  # pragma: no cover - multiplier() already normalised the larger one
        raise ValueError("add: multiplier overflow")
    return ma, mb, shift


def requantise(acc: np.ndarray, mult, shift, z: int, lo: int, hi: int) -> np.ndarray:
    """int32 / int64 accumulators -> int8: ``clip(z + ((acc * mult + 2^(shift - 1)) >> shift), lo, hi)`` in
    int64. ``mult`` and ``shift`` are ints or int64 arrays broadcasting against ``acc`` (per channel)."""
    a = acc.astype(np.int64)
    mult = np.asarray(mult, np.int64)
    shift = np.asarray(shift, np.int64)
    y = (a * mult + (np.int64(1) << (shift - 1))) >> shift
    return np.clip(y + z, lo, hi).astype(np.int8)


def input_table(net: Network, scale: float, zero_point: int) -> np.ndarray:
    """int8 (3, 256): the quantised network input of each channel's 256 pixel values."""
    p = np.arange(256, dtype=np.float32)
    mean = np.asarray(net.mean, np.float32)[:, None]
    std = np.asarray(net.std, np.float32)[:, None]
    x = (p[None, :] - mean) / std  # float32, as reference.preprocess
    q = np.rint(x / np.float32(scale)) + zero_point
    return np.clip(q, QMIN, QMAX).astype(np.int8)


def dequantise(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """int8 -> float32 ``f32(q - z) * s``."""
    return (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def _conv_acc(trunk: Int8Trunk, i: int, op: Op, x: np.ndarray) -> np.ndarray:
    """int64 (M, H', W') accumulators ``B[m] + sum w_q (q - z_x)`` of conv / depthwise op ``i``."""
    v = op.inputs[0]
    zx = int(trunk.zero_points[v])
    w = trunk.weights[i].astype(np.int64)
    k, stride = w.shape[2], op.ip(3)
    cols, ho, wo = reference._windows(x, k, stride, op_padding(op, x.shape[1], x.shape[2]), zx, np.int32)
    cols = cols.astype(np.int64) - zx
    if op.kind == "conv2d":
        acc = w.reshape(w.shape[0], -1) @ cols.reshape(-1, ho * wo)
    else:
        acc = np.einsum("cuvij,cuv->cij", cols, w[:, 0]).reshape(w.shape[0], ho * wo)
    return (acc + trunk.int_bias(i, v)[:, None]).reshape(w.shape[0], ho, wo)


def _run_int8_op(trunk: Int8Trunk, i: int, op: Op, vals: List[np.ndarray]) -> np.ndarray:
    z = int(trunk.zero_points[i + 1])
    if op.kind == "add":
        a, b = vals[op.inputs[0]], vals[op.inputs[1]]
        if a.shape != b.shape:
            raise ValueError(f"add: inputs have different shapes {a.shape} and {b.shape}")
        va, vb = op.inputs
        ma, mb, shift = add_multipliers(float(trunk.scales[va]), float(trunk.scales[vb]), float(trunk.scales[i + 1]))
        acc = ((a.astype(np.int64) - int(trunk.zero_points[va])) * ma
               + (b.astype(np.int64) - int(trunk.zero_points[vb])) * mb)
        return requantise(acc, 1, shift, z, *trunk.activation_bounds(i, op.ip(0)))
    acc = _conv_acc(trunk, i, op, vals[op.inputs[0]])
    ms = np.array(trunk.conv_multipliers(i, op.inputs[0]), np.int64)
    return requantise(acc, ms[:, 0, None, None], ms[:, 1, None, None], z, *trunk.activation_bounds(i, op.ip(5)))


def run_trunk(net: Network, trunk: Int8Trunk, image: np.ndarray) -> List[np.ndarray]:
    """The int8 values ``0 .. n_ops`` (each int8 (C, h, w)) of a uint8 (H, W, 3) RGB model input.

    Raises:
        TypeError: ``image`` is not uint8. ValueError: not (H, W, 3), or too small for the network.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError(f"the int8 path takes a uint8 (H, W, 3) image, got {getattr(image, 'dtype', type(image))}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"uint8 image must be (H, W, 3), got {image.shape}")
    table = input_table(net, float(trunk.scales[0]), int(trunk.zero_points[0]))
    vals = [np.stack([table[c][image[:, :, c]] for c in range(3)])]
    for i, op in enumerate(net.ops[:trunk.n_ops]):
        vals.append(_run_int8_op(trunk, i, op, vals))
    return vals


def run(net: Network, trunk: Int8Trunk, image: np.ndarray, *, head_map: bool = False
        ) -> "np.ndarray | Tuple[np.ndarray, np.ndarray]":
    """Forward pass with the int8 trunk: uint8 (H, W, 3) image -> float32 (h, w) log-density (and the head map
    with ``head_map``, as :func:`gazecrop.reference.run`). The ops after the trunk run as in the float
    reference on the dequantised trunk values they read. Raises as :func:`run_trunk`."""
    if head_map and not net.head_output:
        raise ValueError("this network has no head map (weights format version 3)")
    full = [dequantise(q, float(trunk.scales[v]), int(trunk.zero_points[v]))
            for v, q in enumerate(run_trunk(net, trunk, image))]
    for op in net.ops[trunk.n_ops:]:
        full.append(reference._run_op(op, full))
    if head_map:
        return full[-1][0].astype(np.float32), full[net.head_output][0].astype(np.float32)
    return full[-1][0].astype(np.float32)


def calibrate(net: Network, images: Iterable[np.ndarray], n_ops: Optional[int] = None, *,
              bias_correction: bool = True) -> Int8Trunk:
    """Calibrate the int8 trunk of ``net`` on model inputs (uint8 (H, W, 3), already at the model's input size).

    Ranges: per value, min / max over the images of the float reference's values (ReLU6 outputs: [0, 6]).
    Then, with ``bias_correction``, each convolution's bias is corrected op by op for its mean error on the
    int8 path (Nagel et al. 2019, arXiv:1906.04721, section 4.2; module docstring).

    Args:
        net: the float network. images: the calibration inputs (a few dozen training photos).
        n_ops: trunk length (default :func:`trunk_end`).

    Returns:
        a validated :class:`Int8Trunk`.

    Raises:
        ValueError: no images, a trunk op that cannot run in int8, or a requantisation factor out of range.
    """
    imgs = list(images)
    if not imgs:
        raise ValueError("calibration needs at least one image")
    n = trunk_end(net) if n_ops is None else int(n_ops)
    lo = np.full(n + 1, np.inf)
    hi = np.full(n + 1, -np.inf)
    for img in imgs:
        for v, x in enumerate(reference.values(net, img, upto=n)):
            lo[v], hi[v] = min(lo[v], float(x.min())), max(hi[v], float(x.max()))
    scales = np.zeros(n + 1, np.float32)
    zps = np.zeros(n + 1, np.int32)
    for v in range(n + 1):
        relu6 = v > 0 and _relu6(net.ops[v - 1])
        if relu6:
            lo[v], hi[v] = RELU6_RANGE
        scales[v], zps[v] = value_params(lo[v], hi[v])
    trunk = Int8Trunk(n, scales, zps)
    for i, op in enumerate(net.ops[:n]):
        if op.kind in ("conv2d", "depthwise_conv2d"):
            trunk.weights[i], trunk.weight_scales[i] = quantise_weights(op.tensors[0][1])
            trunk.biases[i] = op.tensors[1][1].astype(np.float32).copy()
            # keep every factor s_x s_w[m] / s_y below 0.5 (CONV_SHIFTS): widen the output's range if needed
            need = float(scales[op.inputs[0]]) * float(trunk.weight_scales[i].max()) / 0.499
            if float(scales[i + 1]) < need:
                ratio = need / float(scales[i + 1])
                scales[i + 1], zps[i + 1] = value_params(min(lo[i + 1], 0.0) * ratio, max(hi[i + 1], 0.0) * ratio)
    if bias_correction:
        _correct_biases(net, trunk, imgs)
    trunk.validate(net)
    return trunk


def _relu6(op: Op) -> bool:
    return (op.ip(0) if op.kind == "add" else op.ip(5)) == 3


def _correct_biases(net: Network, trunk: Int8Trunk, imgs: List[np.ndarray]) -> None:
    """Empirical bias correction in place, op by op on the int8 path's own values (exact integer forward)."""
    table = input_table(net, float(trunk.scales[0]), int(trunk.zero_points[0]))
    vals = [[np.stack([table[c][img[:, :, c]] for c in range(3)])] for img in imgs]
    for i, op in enumerate(net.ops[:trunk.n_ops]):
        if op.kind in ("conv2d", "depthwise_conv2d"):
            f = reference._conv if op.kind == "conv2d" else reference._depthwise
            w = op.tensors[0][1]
            dw = (trunk.weights[i].astype(np.float32) * trunk.weight_scales[i][:, None, None, None]) - w
            zero = np.zeros(w.shape[0], np.float32)
            v_in = op.inputs[0]
            err = np.zeros(w.shape[0], np.float64)
            for v in vals:
                x = dequantise(v[v_in], float(trunk.scales[v_in]), int(trunk.zero_points[v_in]))
                e = f(x, dw, zero, op.ip(3), op_padding(op, x.shape[1], x.shape[2]), 0)
                err += e.mean(axis=(1, 2), dtype=np.float64) / len(vals)
            trunk.biases[i] = (trunk.biases[i].astype(np.float64) - err).astype(np.float32)
        for v in vals:
            v.append(_run_int8_op(trunk, i, op, v))
