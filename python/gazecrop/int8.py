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
- Weights: symmetric per output channel, ``s_w[m] = f32(max_k |w[m, k]| / 127)`` (at least 2^-16 of the
  largest channel's; an all-zero channel: the largest channel's, 1 if none), ``w_q = clip(rint(w / s_w), -127,
  127)`` (:func:`quantise_weights`).
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
- ``max_pool``: the window maximum of the stored ``q`` (padding never wins), output quantisation = input's.
- ``avg_pool`` (kernel >= 2, no padding): ``y = clip(z + requantise(sum (q - z)))`` with the multiplier of
  ``1 / k^2``, output quantisation = input's.
- ``dense_block`` (DenseNet, Huang et al. 2017): one quantisation for the block's whole state, equal to its
  input's (the concatenation of the block input and every layer's output stays one int8 tensor); per layer a
  1x1 convolution of the state so far to the bottleneck ("mid", its own scale and zero point, ReLU) and a 3x3
  convolution (padding 1, the mid's zero point) back to the state's quantisation (ReLU), each by the
  convolution rule above. Calibration gives a block, its input and any pools and the convolution before them
  one range (the union), so that pools and the block's first channels are copies.
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

__all__ = ["Int8Trunk", "DenseInt8", "trunk_end", "value_params", "quantise_weights", "multiplier", "add_multipliers",
           "requantise", "input_table", "calibrate", "run_trunk", "run", "dequantise"]

QMIN, QMAX = -128, 127
RELU6_RANGE = (0.0, 6.0)
TRUNK_OPS = ("conv2d", "depthwise_conv2d", "add", "max_pool", "avg_pool", "dense_block")
"""The op kinds an int8 trunk may contain."""
SHARED_OPS = ("max_pool", "avg_pool", "dense_block")
"""Ops whose output has their (first) input's scale and zero point."""
TRUNK_ACTIVATIONS = (0, 1, 3)
"""Activation codes an int8 op may fuse: none, ReLU, ReLU6 (not softplus)."""
CONV_SHIFTS = (32, 62)
"""A convolution's requantisation shift range: factors ``M = s_x s_w[m] / s_y`` in about [2^-32, 0.5)."""
ADD_SHIFTS = (10, 62)
"""An add's shift range: the larger factor ``max(s_a, s_b) / s_y`` below 2^21."""
ACC_LIMIT = 2 ** 31 - 1
"""int32 accumulators: ``|B[m]| + 255 * 127 * K`` must stay below this (checked by :func:`Int8Trunk.validate`)."""


@dataclass
class DenseInt8:
    """The int8 form of one ``dense_block`` op of ``L`` layers (its output's scale and zero point are the
    state's, :attr:`Int8Trunk.scales`).

    Attributes:
        weights: 2L int8 arrays, per layer the 1x1 convolution's (B, C_l, 1, 1) then the 3x3's (G, B, 3, 3),
            values in [-127, 127].
        weight_scales: 2L float32 (M,) per output channel scales, > 0.
        biases: 2L float32 (M,) the int8 path's biases.
        mid_scales: float32 (L,) the bottlenecks' scales, > 0. mid_zero_points: int32 (L,) in [-128, 127].
    """

    weights: List[np.ndarray]
    weight_scales: List[np.ndarray]
    biases: List[np.ndarray]
    mid_scales: np.ndarray
    mid_zero_points: np.ndarray


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
        dense: op index -> :class:`DenseInt8` for every dense_block op of the trunk.
    """

    n_ops: int
    scales: np.ndarray
    zero_points: np.ndarray
    weights: Dict[int, np.ndarray] = field(default_factory=dict)
    weight_scales: Dict[int, np.ndarray] = field(default_factory=dict)
    biases: Dict[int, np.ndarray] = field(default_factory=dict)
    dense: Dict[int, DenseInt8] = field(default_factory=dict)

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
            if op.kind in SHARED_OPS:
                v = op.inputs[0]
                if self._s(v) != self._s(i + 1) or int(self.zero_points[v]) != int(self.zero_points[i + 1]):
                    raise ValueError(f"int8 trunk: op {i} ({op.kind}) must keep its input's scale and zero point "
                                     f"({self._s(v)!r}, {int(self.zero_points[v])}), has ({self._s(i + 1)!r}, "
                                     f"{int(self.zero_points[i + 1])})")
            if op.kind == "avg_pool" and op.ip(0) < 2:
                raise ValueError(f"int8 trunk: op {i} (avg_pool): kernel {op.ip(0)} (int8: 2 or more)")
            if op.kind == "dense_block":
                self._validate_dense(i, op)
                continue
            if op.kind in ("conv2d", "depthwise_conv2d"):
                _check_conv(f"op {i}", self.weights.get(i), self.weight_scales.get(i), self.biases.get(i),
                            op.tensors[0][1].shape, self._s(op.inputs[0]), self._s(i + 1))

    def _validate_dense(self, i: int, op: Op) -> None:
        d = self.dense.get(i)
        nl = op.ip(1)
        if d is None or not (len(d.weights) == len(d.weight_scales) == len(d.biases) == 2 * nl):
            raise ValueError(f"int8 trunk: op {i} (dense_block) needs int8 weights, scales and biases for its "
                             f"{2 * nl} convolutions")
        ms, mz = np.asarray(d.mid_scales), np.asarray(d.mid_zero_points)
        if ms.shape != (nl,) or mz.shape != (nl,):
            raise ValueError(f"int8 trunk: op {i} (dense_block) needs {nl} bottleneck scales and zero points")
        if not (np.all(np.isfinite(ms)) and np.all(ms > 0)) or np.any(mz < QMIN) or np.any(mz > QMAX):
            raise ValueError(f"int8 trunk: op {i} (dense_block): bottleneck scales must be finite and > 0, zero "
                             "points in [-128, 127]")
        sb = self._s(i + 1)
        for j in range(2 * nl):
            li, second = divmod(j, 2)
            s_in, s_out = (float(ms[li]), sb) if second else (sb, float(ms[li]))
            _check_conv(f"op {i} layer {li} conv{second + 1}", d.weights[j], d.weight_scales[j], d.biases[j],
                        op.tensors[2 * j][1].shape, s_in, s_out)

    def _s(self, v: int) -> float:
        return float(self.scales[v])

    def int_bias(self, i: int, v_in: int) -> np.ndarray:
        """int64 (M,) ``B[m] = rint(b[m] / (s_x s_w[m]))`` of conv op ``i`` reading value ``v_in`` (double
        arithmetic)."""
        return _int_bias(self.biases[i], self.weight_scales[i], self._s(v_in))

    def conv_multipliers(self, i: int, v_in: int) -> List[Tuple[int, int]]:
        """(mult, shift) per output channel of conv op ``i`` reading value ``v_in``, for ``M = s_x s_w[m] / s_y``
        (:func:`multiplier`)."""
        return _conv_multipliers(f"op {i}", self.weight_scales[i], self._s(v_in), self._s(i + 1))

    def activation_bounds(self, i: int, act: int) -> Tuple[int, int]:
        """(lo, hi) of op ``i``'s int8 output under activation code ``act``."""
        z, s = int(self.zero_points[i + 1]), float(self.scales[i + 1])
        lo, hi = QMIN, QMAX
        if act in (1, 3):
            lo = max(QMIN, z)
        if act == 3:
            hi = min(QMAX, z + int(np.rint(6.0 / s)))
        return lo, hi


def _check_conv(where: str, w, ws, b, shape, s_x: float, s_y: float) -> None:
    """The int8 form of one convolution (weights ``w``, scales ``ws``, biases ``b``; float weight ``shape``) read
    at scale ``s_x`` and written at ``s_y``: raises ValueError naming ``where``."""
    if w is None or w.dtype != np.int8 or w.shape != shape:
        raise ValueError(f"int8 trunk: {where} needs int8 weights of shape {shape}")
    if np.any(w == QMIN):
        raise ValueError(f"int8 trunk: {where}'s weights must be in [-127, 127]")
    m = shape[0]
    if ws is None or ws.shape != (m,) or not (np.all(np.isfinite(ws)) and np.all(ws > 0)):
        raise ValueError(f"int8 trunk: {where} needs {m} finite weight scales > 0")
    if b is None or b.shape != (m,) or not np.all(np.isfinite(b)):
        raise ValueError(f"int8 trunk: {where} needs {m} finite biases")
    bq = np.rint(b.astype(np.float64) / (np.float64(s_x) * ws.astype(np.float64)))  # as _int_bias, before a cast
    worst = float(np.abs(bq).max()) + 255.0 * 127.0 * float(np.prod(shape[1:]))
    if not worst <= ACC_LIMIT:
        raise ValueError(f"int8 trunk: {where}'s accumulator can reach {worst:.4g} (> 2^31 - 1)")
    _conv_multipliers(where, ws, s_x, s_y)  # raises when a factor is out of range


def _int_bias(b: np.ndarray, ws: np.ndarray, s_x: float) -> np.ndarray:
    """int64 (M,) ``B[m] = rint(b[m] / (s_x s_w[m]))`` (double arithmetic)."""
    return np.rint(b.astype(np.float64) / (np.float64(s_x) * ws.astype(np.float64))).astype(np.int64)


def _conv_multipliers(where: str, ws: np.ndarray, s_x: float, s_y: float) -> List[Tuple[int, int]]:
    """(mult, shift) per output channel for ``M = s_x s_w[m] / s_y`` (:func:`multiplier`); ValueError when a
    shift is outside :data:`CONV_SHIFTS`."""
    try:
        out = [multiplier(s_x * float(s) / s_y) for s in ws]
    except ValueError as e:  # a factor no shift can express: name the convolution
        raise ValueError(f"int8 trunk: {where}: {e}") from None
    for m, (_, shift) in enumerate(out):
        if not CONV_SHIFTS[0] <= shift <= CONV_SHIFTS[1]:
            raise ValueError(f"int8 trunk: {where} channel {m}: requantisation factor {s_x * float(ws[m]) / s_y:.6g} "
                             f"is out of range (shift {shift}, must be {CONV_SHIFTS[0]}..{CONV_SHIFTS[1]}: the "
                             "factor below 0.5)")
    return out


def trunk_end(net: Network) -> int:
    """Number of ops of the int8 trunk: through the last depthwise convolution's projection (and its skip add) of
    an inverted-residual network, through the last dense block of a DenseNet, or up to the first op before that
    which cannot run in int8 (a kind other than :data:`TRUNK_OPS`, a softplus, an average pool of kernel 1).

    Raises:
        ValueError: the network has neither a depthwise convolution nor a dense block, or its first op cannot
            run in int8.
    """
    last_dw = max((i for i, op in enumerate(net.ops) if op.kind == "depthwise_conv2d"), default=None)
    last_db = max((i for i, op in enumerate(net.ops) if op.kind == "dense_block"), default=None)
    if last_dw is None and last_db is None:
        raise ValueError("the network has no depthwise convolution or dense block (no trunk to run in int8)")
    if last_dw is not None:
        end = min(last_dw + 2, len(net.ops) - 1)  # the depthwise op and its 1x1 projection (the last op stays float)
        if end < len(net.ops) - 1 and net.ops[end].kind == "add" and end in net.ops[end].inputs:
            end += 1  # the skip add reading the projection
    else:
        end = min(last_db + 1, len(net.ops) - 1)
    for i, op in enumerate(net.ops[:end]):
        if not _int8_op(op):
            end = i
            break
    if end < 1:
        raise ValueError(f"op 0 ({net.ops[0].kind}) cannot run in int8: no trunk")
    return end


def _int8_op(op: Op) -> bool:
    if op.kind not in TRUNK_OPS:
        return False
    if op.kind == "avg_pool":
        return op.ip(0) >= 2
    return op.kind in SHARED_OPS or (op.ip(0) if op.kind == "add" else op.ip(5)) in TRUNK_ACTIVATIONS


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
    channel, ``s_w[m] = f32(max(max |w[m]|, 2^-16 max |w|) / 127)``: a channel whose weights are all below 2^-16
    of the tensor's largest (a nearly dead channel of a trained network) is floored there, so that its
    requantisation factor stays in range (its int8 weights round to about 0); an all-zero channel takes the
    largest channel's scale (1 when every channel is zero)."""
    flat = w.reshape(w.shape[0], -1)
    top = np.abs(flat).max(axis=1).astype(np.float64)
    big = top.max()
    s = np.where(top > 0, np.maximum(top, big * 2.0 ** -16) / 127.0, big / 127.0 if big > 0 else 1.0)
    s = s.astype(np.float32)
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


def _conv_int8(x: np.ndarray, z_x: int, w: np.ndarray, bias: np.ndarray, ms, stride: int, pads, z_y: int,
               lo: int, hi: int, depthwise: bool = False) -> np.ndarray:
    """One int8 convolution: ``requantise(B + sum w_q (q - z_x))`` of int8 (C, H, W) ``x`` (padding ``z_x``)
    with int8 weights ``w``, int64 (M,) biases ``B`` and (M, 2) (mult, shift)."""
    w = w.astype(np.int64)
    k = w.shape[2]
    cols, ho, wo = reference._windows(x, k, stride, pads, z_x, np.int32)
    cols = cols.astype(np.int64) - z_x
    if depthwise:
        acc = np.einsum("cuvij,cuv->cij", cols, w[:, 0]).reshape(w.shape[0], ho * wo)
    else:
        acc = w.reshape(w.shape[0], -1) @ cols.reshape(-1, ho * wo)
    acc = (acc + bias[:, None]).reshape(w.shape[0], ho, wo)
    ms = np.asarray(ms, np.int64)
    return requantise(acc, ms[:, 0, None, None], ms[:, 1, None, None], z_y, lo, hi)


def _dense_conv(trunk: Int8Trunk, i: int, li: int, second: bool, x: np.ndarray) -> np.ndarray:
    """One convolution of layer ``li`` of int8 dense block op ``i``: the 1x1 from the state ``x`` to the
    bottleneck, or (``second``) the 3x3 from the bottleneck ``x`` to the layer's new channels (ReLU after both)."""
    d = trunk.dense[i]
    sb, zb = trunk._s(i + 1), int(trunk.zero_points[i + 1])
    sm, zm = float(d.mid_scales[li]), int(d.mid_zero_points[li])
    (s_x, z_x), (s_y, z_y) = ((sm, zm), (sb, zb)) if second else ((sb, zb), (sm, zm))
    j = 2 * li + int(second)
    return _conv_int8(x, z_x, d.weights[j], _int_bias(d.biases[j], d.weight_scales[j], s_x),
                      _conv_multipliers(f"op {i} layer {li} conv{j % 2 + 1}", d.weight_scales[j], s_x, s_y), 1,
                      int(second), z_y, max(QMIN, z_y), QMAX)


def _run_int8_op(trunk: Int8Trunk, i: int, op: Op, vals: List[np.ndarray]) -> np.ndarray:
    z = int(trunk.zero_points[i + 1])
    x = vals[op.inputs[0]]
    if op.kind == "add":
        a, b = x, vals[op.inputs[1]]
        if a.shape != b.shape:
            raise ValueError(f"add: inputs have different shapes {a.shape} and {b.shape}")
        va, vb = op.inputs
        ma, mb, shift = add_multipliers(float(trunk.scales[va]), float(trunk.scales[vb]), float(trunk.scales[i + 1]))
        acc = ((a.astype(np.int64) - int(trunk.zero_points[va])) * ma
               + (b.astype(np.int64) - int(trunk.zero_points[vb])) * mb)
        return requantise(acc, 1, shift, z, *trunk.activation_bounds(i, op.ip(0)))
    if op.kind == "max_pool":  # exact in float32; the -inf padding never wins
        return reference._pool(x.astype(np.float32), op.ip(0), op.ip(1), op.ip(2), "max").astype(np.int8)
    if op.kind == "avg_pool":
        k, s = op.ip(0), op.ip(1)
        ho, wo = reference.out_size(x.shape[1], k, s, 0), reference.out_size(x.shape[2], k, s, 0)
        xz = x.astype(np.int64) - z
        acc = sum(xz[:, u:u + s * (ho - 1) + 1:s, v:v + s * (wo - 1) + 1:s] for u in range(k) for v in range(k))
        mult, shift = multiplier(1.0 / (k * k))
        return requantise(acc, mult, shift, z, QMIN, QMAX)
    if op.kind == "dense_block":
        feats = [x]
        for li in range(op.ip(1)):
            feats.append(_dense_conv(trunk, i, li, True, _dense_conv(trunk, i, li, False, np.concatenate(feats, 0))))
        return np.concatenate(feats, 0)
    return _conv_int8(x, int(trunk.zero_points[op.inputs[0]]), trunk.weights[i], trunk.int_bias(i, op.inputs[0]),
                      trunk.conv_multipliers(i, op.inputs[0]), op.ip(3), op_padding(op, x.shape[1], x.shape[2]), z,
                      *trunk.activation_bounds(i, op.ip(5)), depthwise=op.kind == "depthwise_conv2d")


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

    Ranges: per value (and per dense-block bottleneck), min / max over the images of the float reference's
    values (ReLU6 outputs: [0, 6]); the values that must share a quantisation (a pool's or dense block's input
    and output, :data:`SHARED_OPS`) get the union of their ranges. Every range is widened where needed so that
    each convolution's factor ``s_x s_w / s_y`` stays below 0.5. Then, with ``bias_correction``, each
    convolution's bias is corrected op by op (layer by layer in a dense block) for its mean error on the int8
    path (Nagel et al. 2019, arXiv:1906.04721, section 4.2; module docstring).

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
    ops = net.ops[:n]
    # Ranges, keyed by value id (int) or (op, layer) for a dense block's bottleneck.
    lo: Dict[object, float] = {}
    hi: Dict[object, float] = {}

    def seen(key, x: np.ndarray) -> None:
        lo[key] = min(lo.get(key, np.inf), float(x.min()))
        hi[key] = max(hi.get(key, -np.inf), float(x.max()))

    for img in imgs:
        vals = reference.values(net, img, upto=n)
        for v, x in enumerate(vals):
            seen(v, x)
        for i, op in enumerate(ops):
            if op.kind == "dense_block":
                for li, (mid, _) in enumerate(reference.dense_layers(op, vals[op.inputs[0]])):
                    seen((i, li), mid)
    for v in range(1, n + 1):
        if _relu6(ops[v - 1]):
            lo[v], hi[v] = RELU6_RANGE
    group = {k: k for k in lo}  # union-find: the values that share one quantisation

    def root(k):
        while group[k] != k:
            k = group[k]
        return k

    for i, op in enumerate(ops):
        if op.kind in SHARED_OPS:
            group[root(i + 1)] = root(op.inputs[0])
    for k in lo:
        r = root(k)
        lo[r], hi[r] = min(lo[r], lo[k]), max(hi[r], hi[k])
    trunk = Int8Trunk(n, np.zeros(n + 1, np.float32), np.zeros(n + 1, np.int32))
    convs = []  # (input key, output key, largest weight scale)
    for i, op in enumerate(ops):
        if op.kind in ("conv2d", "depthwise_conv2d"):
            trunk.weights[i], trunk.weight_scales[i] = quantise_weights(op.tensors[0][1])
            trunk.biases[i] = op.tensors[1][1].astype(np.float32).copy()
            convs.append((op.inputs[0], i + 1, float(trunk.weight_scales[i].max())))
        elif op.kind == "dense_block":
            q = [quantise_weights(op.tensors[2 * j][1]) for j in range(2 * op.ip(1))]
            trunk.dense[i] = DenseInt8([w for w, _ in q], [s for _, s in q],
                                       [op.tensors[2 * j + 1][1].astype(np.float32).copy() for j in range(len(q))],
                                       np.zeros(op.ip(1), np.float32), np.zeros(op.ip(1), np.int32))
            for li in range(op.ip(1)):
                convs.append((i + 1, (i, li), float(q[2 * li][1].max())))
                convs.append(((i, li), i + 1, float(q[2 * li + 1][1].max())))

    def params(k) -> Tuple[np.float32, int]:
        r = root(k)
        return value_params(lo[r], hi[r])

    # Keep every factor s_x s_w[m] / s_y below 0.5 (CONV_SHIFTS): widen an output's range (its group's) to a
    # factor of 0.499 where needed; a second pass settles what a dense block's cycle of convolutions undid.
    for rnd in range(64):
        changed = False
        for k_in, k_out, w_max in convs:
            need = float(params(k_in)[0]) * w_max / 0.499
            s_out = float(params(k_out)[0])
            if s_out < need if rnd == 0 else float(params(k_in)[0]) * w_max / s_out >= 0.5:
                r, ratio = root(k_out), need / s_out
                lo[r], hi[r] = min(lo[r], 0.0) * ratio, max(hi[r], 0.0) * ratio
                changed = True
                if not (hi[r] - lo[r]) < 1e30:  # a dense layer's pair of convolutions whose weights are too large
                    what = f"op {k_out[0]} layer {k_out[1]}'s bottleneck" if isinstance(k_out, tuple) \
                        else f"value {k_out}"
                    raise ValueError(f"int8 calibration: no scales keep every factor s_x s_w / s_y below 0.5 around "
                                     f"{what} (its range grew past 1e30: weights too large for int8)")
        if not changed:
            break
    else:
        raise ValueError("int8 calibration: the ranges did not settle so that every factor s_x s_w / s_y < 0.5")
    for v in range(n + 1):
        trunk.scales[v], trunk.zero_points[v] = params(v)
    for i, d in trunk.dense.items():
        for li in range(len(d.mid_scales)):
            d.mid_scales[li], d.mid_zero_points[li] = params((i, li))
    if bias_correction:
        _correct_biases(net, trunk, imgs)
    trunk.validate(net)
    return trunk


def _relu6(op: Op) -> bool:
    return op.kind in ("conv2d", "depthwise_conv2d", "add") and (op.ip(0) if op.kind == "add" else op.ip(5)) == 3


def _bias_error(xs: List[np.ndarray], s_x: float, z_x: int, w: np.ndarray, wq: np.ndarray, ws: np.ndarray,
                stride: int, pads, depthwise: bool = False) -> np.ndarray:
    """float64 (M,): the mean over the int8 inputs ``xs`` and pixels of ``conv(x, s_w w_q) - conv(x, w)``."""
    f = reference._depthwise if depthwise else reference._conv
    dw = (wq.astype(np.float32) * ws[:, None, None, None]) - w
    zero = np.zeros(w.shape[0], np.float32)
    err = np.zeros(w.shape[0], np.float64)
    for q in xs:
        x = dequantise(q, s_x, z_x)
        e = f(x, dw, zero, stride, pads(x) if callable(pads) else pads, 0)
        err += e.mean(axis=(1, 2), dtype=np.float64) / len(xs)
    return err


def _correct_biases(net: Network, trunk: Int8Trunk, imgs: List[np.ndarray]) -> None:
    """Empirical bias correction in place, op by op (layer by layer in a dense block) on the int8 path's own
    values (exact integer forward)."""
    table = input_table(net, float(trunk.scales[0]), int(trunk.zero_points[0]))
    vals = [[np.stack([table[c][img[:, :, c]] for c in range(3)])] for img in imgs]
    for i, op in enumerate(net.ops[:trunk.n_ops]):
        v_in = op.inputs[0]
        if op.kind in ("conv2d", "depthwise_conv2d"):
            err = _bias_error([v[v_in] for v in vals], trunk._s(v_in), int(trunk.zero_points[v_in]),
                              op.tensors[0][1], trunk.weights[i], trunk.weight_scales[i], op.ip(3),
                              lambda x: op_padding(op, x.shape[1], x.shape[2]), op.kind == "depthwise_conv2d")
            trunk.biases[i] = (trunk.biases[i].astype(np.float64) - err).astype(np.float32)
        if op.kind == "dense_block":
            d = trunk.dense[i]
            sb, zb = trunk._s(i + 1), int(trunk.zero_points[i + 1])
            states = [v[v_in] for v in vals]
            for li in range(op.ip(1)):
                j = 2 * li
                err = _bias_error(states, sb, zb, op.tensors[2 * j][1], d.weights[j], d.weight_scales[j], 1, 0)
                d.biases[j] = (d.biases[j].astype(np.float64) - err).astype(np.float32)
                mids = [_dense_conv(trunk, i, li, False, st) for st in states]
                err = _bias_error(mids, float(d.mid_scales[li]), int(d.mid_zero_points[li]), op.tensors[2 * j + 2][1],
                                  d.weights[j + 1], d.weight_scales[j + 1], 1, 1)
                d.biases[j + 1] = (d.biases[j + 1].astype(np.float64) - err).astype(np.float32)
                states = [np.concatenate([st, _dense_conv(trunk, i, li, True, m)], 0) for st, m in zip(states, mids)]
            for v, st in zip(vals, states):
                v.append(st)
            continue
        for v in vals:
            v.append(_run_int8_op(trunk, i, op, v))
