"""Writer and reader of gazecrop's flat weights file (``.gzw``), numpy only.

The format is specified in ``docs/weights-format.md``; field and op names here are the names used there
and in the C++ loader. :class:`Network` is both the builder a training script fills and what
:func:`read_weights` returns; :meth:`Network.validate` is the single implementation of the structural
checks on the Python side (the C++ loader performs the same checks independently).
"""

from __future__ import annotations

import math
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._atomic import write_bytes
from ._files import open_regular

__all__ = [
    "MAGIC",
    "END_MAGIC",
    "VERSION",
    "VERSIONS",
    "PADDING_MODES",
    "OP_CODES",
    "OP_NAMES",
    "ACTIVATIONS",
    "BORDERS",
    "Op",
    "Network",
    "WeightsFormatError",
    "write_weights",
    "read_weights",
    "to_bytes",
    "from_bytes",
]

MAGIC = b"\x89GZW\r\n\x1a\n"
END_MAGIC = b"GZWEND\x00\x00"
VERSION = 3  # the newest version this module writes; a network is written with the oldest version it fits
VERSIONS = (1, 2, 3)

FILE_HEADER = struct.Struct("<8sIIIIQQI20s")  # 64 bytes; the u32 at byte 40 is head_output (version 3)
INT8_HEADER = struct.Struct("<IIfiI")  # header bytes 44..63 (version 3): int8_ops, precision, input scale / zp, verdict
INT8_OP = struct.Struct("<fiI")  # an op record's last 12 bytes (version 3, int8 trunk ops): output scale / zp
PRECISIONS = {"fp32": 0, "int8": 1}
INT8_VERDICTS = {0: "not evaluated", 1: "met the quality bar", 2: "did not meet the quality bar"}
DTYPES = {1: np.dtype("<f4"), 2: np.dtype("i1")}  # 2 = int8: version 3, int8 trunk weights only
MODEL_INFO = struct.Struct("<3f3fII20s12s")  # 64 bytes
OP_RECORD = struct.Struct("<II4II12i8fII12s")  # 128 bytes
TENSOR_RECORD = struct.Struct("<48sII4IQQ8s")  # 96 bytes
TRAILER = struct.Struct("<II8s")  # 16 bytes
assert FILE_HEADER.size == 64 and MODEL_INFO.size == 64
assert OP_RECORD.size == 128 and TENSOR_RECORD.size == 96 and TRAILER.size == 16

ALIGN = 64
MAX_OPS = 4096
MAX_TENSORS = 65536
MAX_CHANNELS = 65536
MIN_FILE = FILE_HEADER.size + MODEL_INFO.size + TRAILER.size

OP_CODES: Dict[str, int] = {
    "conv2d": 1,
    "dense_block": 2,
    "avg_pool": 3,
    "max_pool": 4,
    "resize_bilinear": 5,
    "concat": 6,
    "gaussian_blur": 7,
    "centre_bias": 8,
    "log_softmax": 9,
    "depthwise_conv2d": 10,  # version 2
    "add": 11,  # version 2
}
OP_NAMES = {v: k for k, v in OP_CODES.items()}
ACTIVATIONS = {"none": 0, "relu": 1, "softplus": 2, "relu6": 3}  # relu6: version 2
PADDING_MODES = {"symmetric": 0, "explicit": 1, "same": 2}  # explicit, same: version 2
BORDERS = {"zeros": 0, "nearest": 1, "reflect": 2}
# number of (iparams, fparams) each op uses per format version; the rest must be zero
_USED_PARAMS = {"conv2d": (6, 0), "dense_block": (3, 0), "avg_pool": (2, 0), "max_pool": (3, 0),
                "resize_bilinear": (0, 0), "concat": (0, 0), "gaussian_blur": (1, 2), "centre_bias": (0, 1),
                "log_softmax": (0, 0), "depthwise_conv2d": (11, 0), "add": (1, 0)}
_USED_PARAMS_V2 = {"conv2d": (11, 0)}
_V2_OPS = {"depthwise_conv2d", "add"}
_NAME_RE = re.compile(r"[A-Za-z0-9_.]{1,48}\Z")  # \Z, not $: "$" also matches before a final newline
_LABEL_RE = re.compile(r"[A-Za-z0-9_.+-]*\Z")  # model_name / model_version


def _used_params(kind: str, version: int) -> Tuple[int, int]:
    if version >= 2 and kind in _USED_PARAMS_V2:
        return _USED_PARAMS_V2[kind]
    return _USED_PARAMS[kind]


def same_padding(n: int, kernel: int, stride: int) -> Tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of an axis of length ``n`` (spec: Padding, mode 2)."""
    out = -(-n // stride)
    total = max((out - 1) * stride + kernel - n, 0)
    return total // 2, total - total // 2


def op_padding(op: "Op", height: int, width: int) -> Tuple[int, int, int, int]:
    """(top, bottom, left, right) zero padding of a ``conv2d`` / ``depthwise_conv2d`` op for an input of
    height x width (spec: Padding)."""
    mode, k, s = op.ip(6), op.ip(2), op.ip(3)
    if mode == 0:
        return (op.ip(4),) * 4
    if mode == 1:
        return op.ip(7), op.ip(8), op.ip(9), op.ip(10)
    return same_padding(height, k, s) + same_padding(width, k, s)


class WeightsFormatError(ValueError):
    """A ``.gzw`` file (or a network about to be written) violates ``docs/weights-format.md``."""


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Op:
    """One op record: ``kind`` (a key of :data:`OP_CODES`), input value ids, integer and float
    attributes as in the spec, and the op's tensors as ``(name, float32 array)`` pairs."""

    kind: str
    inputs: List[int]
    iparams: List[int] = field(default_factory=list)
    fparams: List[float] = field(default_factory=list)
    tensors: List[Tuple[str, np.ndarray]] = field(default_factory=list)

    def ip(self, i: int) -> int:
        return int(self.iparams[i]) if i < len(self.iparams) else 0

    def fp(self, i: int) -> float:
        return float(self.fparams[i]) if i < len(self.fparams) else 0.0


@dataclass
class Network:
    """A saliency network as stored in a ``.gzw`` file.

    Value 0 is the input image, (3, H, W) float32 after ``(pixel - mean) / std`` with pixels in 0..255;
    op ``i`` produces value ``i + 1``. The builder methods append an op and return its value id.

    Attributes:
        mean, std: per-channel (R, G, B) preprocessing constants, pixel units.
        input_long_side: long side in pixels that callers resize images to.
        size_multiple: both input sides are rounded to a multiple of this.
        ops: the op list in execution order.
        model_name, model_version: provenance labels (format version 2; at most 20 / 12 characters of
            ``[A-Za-z0-9_.+-]``; empty for version-1 files).
        head_output: value id of the head map, a second output (format version 3): float32 (1, h, w) logits
            that a cell of its grid, which covers the whole image, lies in a head; no op may read it. 0: none.
        int8: the int8 form of the network's first ops (format version 3; :class:`gazecrop.int8.Int8Trunk`,
            made by ``python -m gazecrop.train.calibrate``), or None.
        precision: the precision the file asks callers to run by default, ``"fp32"`` or ``"int8"`` (int8 only
            with ``int8``).
        int8_verdict: whether the int8 path met the quality bar when calibrated (a key of
            :data:`INT8_VERDICTS`: 0 not evaluated, 1 met, 2 not met); 0 without ``int8``.
    """

    mean: Tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: Tuple[float, float, float] = (128.0, 128.0, 128.0)
    input_long_side: int = 256
    size_multiple: int = 32
    ops: List[Op] = field(default_factory=list)
    model_name: str = ""
    model_version: str = ""
    head_output: int = 0
    int8: "Optional[object]" = None
    precision: str = "fp32"
    int8_verdict: int = 0

    # ------------------------------------------------------------------ builder
    def _add(self, op: Op) -> int:
        self.ops.append(op)
        return len(self.ops)

    def channels(self, value: int) -> int:
        """Number of channels of ``value`` (0 = the 3-channel input)."""
        return self._channel_list()[value]

    def conv2d(self, x: int, weight: np.ndarray, bias: np.ndarray, *, stride: int = 1,
               padding: "int | str | Sequence[int] | None" = None, activation: str = "relu",
               name: str = "conv") -> int:
        """Append a ``conv2d``; ``weight`` is (out, in, k, k) float32, ``bias`` (out,).

        ``padding``: an int (all four sides; default ``k // 2``), a (top, bottom, left, right) tuple
        (version 2 unless all equal), or ``"same"`` (TensorFlow SAME at run time, version 2).
        ``activation``: a key of :data:`ACTIVATIONS` (``relu6`` is version 2).
        """
        weight = np.asarray(weight, np.float32)
        k = weight.shape[-1]
        return self._add(Op("conv2d", [x], [weight.shape[1], weight.shape[0], k, stride]
                            + _padding_params(padding, k, ACTIVATIONS[activation]),
                            [], [(name + ".weight", weight), (name + ".bias", np.asarray(bias, np.float32))]))

    def depthwise_conv2d(self, x: int, weight: np.ndarray, bias: np.ndarray, *, stride: int = 1,
                         padding: "int | str | Sequence[int] | None" = None, activation: str = "relu6",
                         name: str = "dw") -> int:
        """Append a ``depthwise_conv2d`` (version 2); ``weight`` is (C, 1, k, k) float32 with k 3 or 5,
        ``bias`` (C,). ``padding`` as for :meth:`conv2d`; ``activation`` none, relu or relu6."""
        weight = np.asarray(weight, np.float32)
        k = weight.shape[-1]
        return self._add(Op("depthwise_conv2d", [x], [weight.shape[0], weight.shape[0], k, stride]
                            + _padding_params(padding, k, ACTIVATIONS[activation]),
                            [], [(name + ".weight", weight), (name + ".bias", np.asarray(bias, np.float32))]))

    def add(self, a: int, b: int, activation: str = "none") -> int:
        """Append an ``add`` (version 2): ``act(a + b)`` of two values of the same shape; ``activation`` any
        key of :data:`ACTIVATIONS`."""
        return self._add(Op("add", [a, b], [ACTIVATIONS[activation]]))

    def format_version(self) -> int:
        """The file version :func:`to_bytes` writes: 3 with a head map (``head_output``) or an int8 trunk; else 1
        when the network uses only version-1 features and has no name or version, else 2."""
        if self.head_output or self.int8 is not None:
            return 3
        if self.model_name or self.model_version:
            return 2
        for op in self.ops:
            if op.kind in _V2_OPS:
                return 2
            if op.kind == "conv2d" and (op.ip(5) == 3 or any(op.ip(j) for j in range(6, 12))):
                return 2
        return 1

    def dense_block(self, x: int, layers: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                    name: str = "block") -> int:
        """Append a ``dense_block``; each layer is ``(w1 (b, c, 1, 1), b1 (b,), w2 (g, b, 3, 3), b2 (g,))``."""
        cin = self.channels(x)
        tensors = []
        cout = cin
        for li, (w1, b1, w2, b2) in enumerate(layers):
            p = f"{name}.l{li}"
            tensors += [(p + ".conv1.weight", np.asarray(w1, np.float32)), (p + ".conv1.bias", np.asarray(b1, np.float32)),
                        (p + ".conv2.weight", np.asarray(w2, np.float32)), (p + ".conv2.bias", np.asarray(b2, np.float32))]
            cout += np.asarray(w2).shape[0]
        return self._add(Op("dense_block", [x], [cin, len(layers), cout], [], tensors))

    def avg_pool(self, x: int, kernel: int = 2, stride: int = 2) -> int:
        return self._add(Op("avg_pool", [x], [kernel, stride]))

    def max_pool(self, x: int, kernel: int = 2, stride: int = 2, padding: int = 0) -> int:
        return self._add(Op("max_pool", [x], [kernel, stride, padding]))

    def resize_bilinear(self, x: int, like: int) -> int:
        return self._add(Op("resize_bilinear", [x, like]))

    def concat(self, *xs: int) -> int:
        return self._add(Op("concat", list(xs)))

    def gaussian_blur(self, x: int, sigma: float, truncate: float = 3.0, border: str = "nearest") -> int:
        return self._add(Op("gaussian_blur", [x], [BORDERS[border]], [sigma, truncate]))

    def centre_bias(self, x: int, log_map: np.ndarray, weight: float = 1.0, name: str = "centre_bias") -> int:
        return self._add(Op("centre_bias", [x], [], [weight], [(name + ".log_map", np.asarray(log_map, np.float32))]))

    def log_softmax(self, x: int) -> int:
        return self._add(Op("log_softmax", [x]))

    # --------------------------------------------------------------- validation
    def _channel_list(self) -> List[int]:
        chans = [3]
        version = self.format_version()
        for i, op in enumerate(self.ops):
            chans.append(_check_op(i, op, chans, version))
        return chans

    def validate(self) -> None:
        """Check the whole network against the spec; raises :class:`WeightsFormatError` naming the problem."""
        for label, v, n in (("model_name", self.model_name, 20), ("model_version", self.model_version, 12)):
            if not isinstance(v, str) or len(v) > n or not _LABEL_RE.match(v):
                raise WeightsFormatError(f"model info: {label} {v!r} must be at most {n} characters of "
                                         "[A-Za-z0-9_.+-]")
        if not (1 <= len(self.ops) <= MAX_OPS):
            raise WeightsFormatError(f"num_ops {len(self.ops)} not in 1..{MAX_OPS}")
        for name, vals in (("mean", self.mean), ("std", self.std)):
            if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
                raise WeightsFormatError(f"model info: {name} must be 3 finite floats, got {vals!r}")
        if not all(v > 0 for v in self.std):
            raise WeightsFormatError(f"model info: std must be > 0, got {self.std!r}")
        if not (16 <= self.input_long_side <= 4096):
            raise WeightsFormatError(f"model info: input_long_side {self.input_long_side} not in 16..4096")
        if not (1 <= self.size_multiple <= 256):
            raise WeightsFormatError(f"model info: size_multiple {self.size_multiple} not in 1..256")
        ntens = sum(len(op.tensors) for op in self.ops)
        if ntens > MAX_TENSORS:
            raise WeightsFormatError(f"num_tensors {ntens} > {MAX_TENSORS}")
        chans = self._channel_list()
        if chans[-1] != 1:
            raise WeightsFormatError(f"the last op's output has {chans[-1]} channels, expected 1")
        h = self.head_output
        if not isinstance(h, int) or isinstance(h, bool) or h < 0:
            raise WeightsFormatError(f"head_output must be a value id (int >= 0), got {h!r}")
        if h:
            if h >= len(self.ops):
                raise WeightsFormatError(f"head_output {h} not in 1..{len(self.ops) - 1} (a value other than the "
                                         "log-density)")
            if chans[h] != 1:
                raise WeightsFormatError(f"head_output value {h} has {chans[h]} channels, expected 1")
            readers = [i for i, op in enumerate(self.ops) if h in op.inputs]
            if readers:
                raise WeightsFormatError(f"head_output value {h} is read by op {readers[0]}")
        if self.precision not in PRECISIONS or (self.precision == "int8" and self.int8 is None):
            raise WeightsFormatError(f"precision {self.precision!r} must be 'fp32' or, with an int8 trunk, 'int8'")
        if self.int8_verdict not in INT8_VERDICTS or (self.int8_verdict and self.int8 is None):
            raise WeightsFormatError(f"int8_verdict {self.int8_verdict!r} must be 0, or 1 / 2 with an int8 trunk")
        if self.int8 is not None:
            from .int8 import Int8Trunk  # gazecrop.int8 reads this module

            if not isinstance(self.int8, Int8Trunk):
                raise WeightsFormatError(f"int8 must be a gazecrop.int8.Int8Trunk, got {type(self.int8).__name__}")
            try:
                self.int8.validate(self)
            except ValueError as e:
                raise WeightsFormatError(str(e)) from None

    def num_macs(self, height: int, width: int) -> int:
        """Multiply-accumulates of the convolutions for a (height, width) input (FLOPs = 2 x MACs)."""
        from . import reference  # shapes follow the reference's rules

        return reference.count_macs(self, height, width)

    def input_size(self, height: int, width: int) -> Tuple[int, int]:
        """(h, w) in pixels a (height, width) image is resized to before the run: the long side becomes
        ``input_long_side``, the aspect ratio is kept, both sides rounded to a multiple of
        ``size_multiple`` (at least one multiple)."""
        if height < 1 or width < 1:
            raise ValueError(f"image size must be positive, got height {height}, width {width}")
        scale = self.input_long_side / max(height, width)
        m = self.size_multiple
        h = max(m, int(round(height * scale / m)) * m)
        w = max(m, int(round(width * scale / m)) * m)
        return h, w


def _padding_params(padding, k: int, act: int) -> List[int]:
    """iparams 4 .. 10 of conv2d / depthwise_conv2d: padding, activation, padding_mode, pt, pb, pl, pr."""
    if padding is None:
        padding = k // 2
    if isinstance(padding, str):
        if padding != "same":
            raise ValueError(f"padding must be an int, a 4-tuple or 'same', got {padding!r}")
        return [0, act, PADDING_MODES["same"], 0, 0, 0, 0]
    if isinstance(padding, (int, np.integer)):
        return [int(padding), act, 0, 0, 0, 0, 0]
    pads = [int(p) for p in padding]
    if len(pads) != 4:
        raise ValueError(f"padding tuple must be (top, bottom, left, right), got {padding!r}")
    if len(set(pads)) == 1:
        return [pads[0], act, 0, 0, 0, 0, 0]
    return [0, act, PADDING_MODES["explicit"]] + pads


def _shape(a: np.ndarray) -> Tuple[int, ...]:
    return tuple(int(s) for s in a.shape)


def _check_op(i: int, op: Op, chans: List[int], version: int = VERSION) -> int:
    """Validate op ``i`` of a file of format ``version`` given the channel counts of the values before it;
    return its output channels."""
    where = f"op {i} ({op.kind})"
    if op.kind not in OP_CODES or (version < 2 and op.kind in _V2_OPS):
        raise WeightsFormatError(f"op {i}: unknown op code {OP_CODES.get(op.kind, op.kind)!r} in a version-{version} file")
    n_in = {"resize_bilinear": (2, 2), "concat": (2, 4), "add": (2, 2)}.get(op.kind, (1, 1))
    if not (n_in[0] <= len(op.inputs) <= n_in[1]):
        raise WeightsFormatError(f"{where}: num_inputs {len(op.inputs)} not in {n_in[0]}..{n_in[1]}")
    for v in op.inputs:
        if not (0 <= v <= i):
            raise WeightsFormatError(f"{where}: input value id {v} not in 0..{i}")
    if len(op.iparams) > 12 or len(op.fparams) > 8:
        raise WeightsFormatError(f"{where}: too many params")
    for f in op.fparams:
        if not math.isfinite(f):
            raise WeightsFormatError(f"{where}: non-finite float param {f}")
    n_ip, n_fp = _used_params(op.kind, version)
    if any(op.iparams[n_ip:]) or any(op.fparams[n_fp:]):
        raise WeightsFormatError(f"{where}: params past the {n_ip} int / {n_fp} float ones the op uses are not zero")
    for name, t in op.tensors:
        if not _NAME_RE.match(name):
            raise WeightsFormatError(f"{where}: bad tensor name {name!r}")
        if not (1 <= t.ndim <= 4) or min(t.shape) < 1:
            raise WeightsFormatError(f"{where}: tensor {name} has bad shape {t.shape}")
        if t.dtype == np.int8:
            raise WeightsFormatError(f"{where}: tensor {name} is int8 (only an int8 trunk's convolutions have int8 "
                                     "weights, as the third of their four tensors)")
        if not np.all(np.isfinite(t)):
            raise WeightsFormatError(f"{where}: tensor {name} has non-finite values")
    c = chans[op.inputs[0]]
    shapes = [_shape(t) for _, t in op.tensors]

    def expect_tensors(expected: List[Tuple[int, ...]]) -> None:
        if shapes != expected:
            raise WeightsFormatError(f"{where}: tensor shapes {shapes} != expected {expected}")

    def expect_range(label: str, v: int, lo: int, hi: int) -> None:
        if not (lo <= v <= hi):
            raise WeightsFormatError(f"{where}: {label} {v} not in {lo}..{hi}")

    def check_padding(k: int) -> None:
        mode = op.ip(6)
        expect_range("padding_mode", mode, 0, 2)
        expect_range("padding", op.ip(4), 0, k // 2 if mode == 0 else 0)
        for j, label in zip(range(7, 11), ("pad_top", "pad_bottom", "pad_left", "pad_right")):
            expect_range(label, op.ip(j), 0, k // 2 if mode == 1 else 0)

    if op.kind in ("conv2d", "depthwise_conv2d"):
        cin, cout, k, s, act = op.ip(0), op.ip(1), op.ip(2), op.ip(3), op.ip(5)
        if cin != c:
            raise WeightsFormatError(f"{where}: in_channels {cin} != {c} channels of input value {op.inputs[0]}")
        expect_range("out_channels", cout, 1, MAX_CHANNELS)
        dw = op.kind == "depthwise_conv2d"
        kernels = (3, 5) if dw else (1, 3)
        if k not in kernels:
            raise WeightsFormatError(f"{where}: kernel {k} not {kernels[0]} or {kernels[1]}")
        if s not in (1, 2):
            raise WeightsFormatError(f"{where}: stride {s} not 1 or 2")
        check_padding(k)
        if dw:
            if cout != cin:
                raise WeightsFormatError(f"{where}: out_channels {cout} != in_channels {cin}")
            if act not in (0, 1, 3):
                raise WeightsFormatError(f"{where}: activation {act} not 0, 1 or 3")
            expect_tensors([(cin, 1, k, k), (cin,)])
        else:
            expect_range("activation", act, 0, 3 if version >= 2 else 2)
            expect_tensors([(cout, cin, k, k), (cout,)])
        return cout
    if op.kind == "add":
        expect_range("activation", op.ip(0), 0, 3)
        if chans[op.inputs[1]] != c:
            raise WeightsFormatError(f"{where}: inputs have {c} and {chans[op.inputs[1]]} channels")
        expect_tensors([])
        return c
    if op.kind == "dense_block":
        cin, nl, cout = op.ip(0), op.ip(1), op.ip(2)
        if cin != c:
            raise WeightsFormatError(f"{where}: in_channels {cin} != {c} channels of input value {op.inputs[0]}")
        expect_range("num_layers", nl, 1, 256)
        if len(shapes) != 4 * nl:
            raise WeightsFormatError(f"{where}: {len(shapes)} tensors, expected 4 per layer = {4 * nl}")
        cl = cin
        for li in range(nl):
            w1, b1, w2, b2 = shapes[4 * li: 4 * li + 4]
            b = w1[0] if len(w1) == 4 else -1
            g = w2[0] if len(w2) == 4 else -1
            if b < 1 or g < 1 or [w1, b1, w2, b2] != [(b, cl, 1, 1), (b,), (g, b, 3, 3), (g,)]:
                raise WeightsFormatError(f"{where}: layer {li} tensor shapes {[w1, b1, w2, b2]} do not chain "
                                         f"from {cl} input channels")
            cl += g
            expect_range("channels", cl, 1, MAX_CHANNELS)
        if cl != cout:
            raise WeightsFormatError(f"{where}: out_channels {cout} != {cl} (in_channels + growth)")
        return cout
    if op.kind in ("avg_pool", "max_pool"):
        k, s = op.ip(0), op.ip(1)
        expect_range("kernel", k, 1, 8)
        expect_range("stride", s, 1, 8)
        if op.kind == "max_pool":
            expect_range("padding", op.ip(2), 0, k // 2)
        expect_tensors([])
        return c
    if op.kind == "resize_bilinear":
        expect_tensors([])
        return c
    if op.kind == "concat":
        expect_tensors([])
        total = sum(chans[v] for v in op.inputs)
        expect_range("channels", total, 1, MAX_CHANNELS)
        return total
    if op.kind == "gaussian_blur":
        sigma, trunc = op.fp(0), op.fp(1)
        if not (0 < sigma <= 1000) or not (0 < trunc <= 10):
            raise WeightsFormatError(f"{where}: sigma {sigma} or truncate {trunc} out of range")
        expect_range("border", op.ip(0), 0, 2)
        expect_tensors([])
        return c
    if op.kind == "centre_bias":
        if c != 1:
            raise WeightsFormatError(f"{where}: input has {c} channels, expected 1")
        if len(shapes) != 1 or len(shapes[0]) != 2:
            raise WeightsFormatError(f"{where}: expected one (h, w) log_map tensor, got {shapes}")
        return 1
    if op.kind == "log_softmax":
        if c != 1:
            raise WeightsFormatError(f"{where}: input has {c} channels, expected 1")
        expect_tensors([])
        return 1
    raise AssertionError(op.kind)  # pragma: no cover


# ---------------------------------------------------------------------- writer
def _file_tensors(net: Network) -> List[List[Tuple[str, np.ndarray]]]:
    """Each op's tensors as stored: an int8 trunk's conv / depthwise ops add ``<weight>_q`` (int8, the weight's
    shape) and ``<weight>_int8`` (float32 (2, M): weight scales, then the int8 path's bias); its dense blocks
    the same pair for each of their 2L convolutions in order, then ``<first weight>_mid_int8`` (float32 (2, L):
    the bottlenecks' scales, then their zero points)."""
    out = []
    for i, op in enumerate(net.ops):
        ts = list(op.tensors)
        t8 = net.int8
        if t8 is not None and i < t8.n_ops and op.kind in ("conv2d", "depthwise_conv2d"):
            base = op.tensors[0][0][:40]
            ts += [(base + "_q", t8.weights[i]), (base + "_int8", np.stack([t8.weight_scales[i], t8.biases[i]]))]
        if t8 is not None and i < t8.n_ops and op.kind == "dense_block":
            d = t8.dense[i]
            for j in range(2 * op.ip(1)):
                base = op.tensors[2 * j][0][:40]
                ts += [(base + "_q", d.weights[j]), (base + "_int8", np.stack([d.weight_scales[j], d.biases[j]]))]
            mid = np.stack([d.mid_scales, d.mid_zero_points]).astype(np.float32)
            ts.append((op.tensors[0][0][:38] + "_mid_int8", mid))
        out.append(ts)
    return out


def to_bytes(net: Network) -> bytes:
    """Serialise ``net`` (validated first) to the bytes of a ``.gzw`` file."""
    net.validate()
    per_op = _file_tensors(net)
    tensors = [t for ts in per_op for t in ts]
    header_bytes = 128 + 128 * len(net.ops) + 96 * len(tensors)
    data_offset = _align(header_bytes)
    offsets = []
    pos = data_offset
    for _, t in tensors:
        offsets.append(pos)
        pos = _align(pos + t.nbytes)
    file_size = pos + TRAILER.size
    buf = bytearray(file_size)
    t8 = net.int8
    int8_fields = b""
    if t8 is not None:
        int8_fields = INT8_HEADER.pack(t8.n_ops, PRECISIONS[net.precision], float(t8.scales[0]),
                                       int(t8.zero_points[0]), net.int8_verdict)
    FILE_HEADER.pack_into(buf, 0, MAGIC, net.format_version(), header_bytes, len(net.ops), len(tensors), data_offset,
                          file_size, net.head_output, int8_fields)
    MODEL_INFO.pack_into(buf, 64, *map(float, net.mean), *map(float, net.std), net.input_long_side,
                         net.size_multiple, net.model_name.encode("ascii"), net.model_version.encode("ascii"))
    first = 0
    for i, (op, ts) in enumerate(zip(net.ops, per_op)):
        ins = list(op.inputs) + [0] * (4 - len(op.inputs))
        ip = [int(v) for v in op.iparams] + [0] * (12 - len(op.iparams))
        fp = [float(v) for v in op.fparams] + [0.0] * (8 - len(op.fparams))
        tail = INT8_OP.pack(float(t8.scales[i + 1]), int(t8.zero_points[i + 1]), 0) if t8 and i < t8.n_ops else b""
        OP_RECORD.pack_into(buf, 128 + 128 * i, OP_CODES[op.kind], len(op.inputs), *ins, i + 1, *ip, *fp,
                            first, len(ts), tail)
        first += len(ts)
    tbase = 128 + 128 * len(net.ops)
    for j, ((name, t), off) in enumerate(zip(tensors, offsets)):
        shape = list(t.shape) + [0] * (4 - t.ndim)
        dtype = 2 if t.dtype == np.int8 else 1
        data = np.ascontiguousarray(t, dtype=DTYPES[dtype]).tobytes()
        TENSOR_RECORD.pack_into(buf, tbase + 96 * j, name.encode("ascii"), dtype, t.ndim, *shape, off, len(data), b"")
        buf[off:off + len(data)] = data
    crc = zlib.crc32(memoryview(buf)[: file_size - TRAILER.size]) & 0xFFFFFFFF
    TRAILER.pack_into(buf, file_size - TRAILER.size, crc, 0, END_MAGIC)
    return bytes(buf)


def write_weights(path: "os.PathLike[str] | str", net: Network) -> None:
    """Validate ``net`` and write it to ``path`` atomically (:func:`gazecrop._atomic.write_bytes`: temporary
    file in the same folder, every byte checked, fsync, rename, folder fsync).

    Raises:
        WeightsFormatError: the network violates the spec (nothing is written).
    """
    write_bytes(path, to_bytes(net))


# ---------------------------------------------------------------------- reader
def from_bytes(data: bytes) -> Network:
    """Parse and fully validate the bytes of a ``.gzw`` file.

    Raises:
        WeightsFormatError: naming the field, op or tensor at fault.
    """
    data = memoryview(bytes(data))
    n = len(data)
    if n < MIN_FILE:
        raise WeightsFormatError(f"file is {n} bytes, smaller than the minimum {MIN_FILE} (truncated?)")
    magic, version, header_bytes, num_ops, num_tensors, data_offset, file_size, head_output, res = \
        FILE_HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise WeightsFormatError(f"bad magic {bytes(magic)!r}: not a gazecrop weights file")
    if version not in VERSIONS:
        raise WeightsFormatError(f"unsupported version {version} (this reader knows 1, 2 and 3)")
    if file_size != n:
        raise WeightsFormatError(f"file_size field {file_size} != actual size {n} (truncated or padded?)")
    int8_ops = INT8_HEADER.unpack_from(res, 0)[0] if version >= 3 else 0
    if (not int8_ops and any(res)) or (version < 3 and head_output):
        raise WeightsFormatError("file header: reserved bytes are not zero")
    if int8_ops and not 1 <= int8_ops < num_ops:
        raise WeightsFormatError(f"int8_ops {int8_ops} not in 1..{num_ops - 1} (the last op stays float)")
    crc, res2, end_magic = TRAILER.unpack_from(data, n - TRAILER.size)
    if end_magic != END_MAGIC or res2 != 0:
        raise WeightsFormatError("bad trailer end_magic (truncated file?)")
    if not (1 <= num_ops <= MAX_OPS):
        raise WeightsFormatError(f"num_ops {num_ops} not in 1..{MAX_OPS}")
    if num_tensors > MAX_TENSORS:
        raise WeightsFormatError(f"num_tensors {num_tensors} > {MAX_TENSORS}")
    expect_hb = 128 + 128 * num_ops + 96 * num_tensors
    if header_bytes != expect_hb:
        raise WeightsFormatError(f"header_bytes {header_bytes} != {expect_hb} for {num_ops} ops, {num_tensors} tensors")
    if data_offset != _align(header_bytes):
        raise WeightsFormatError(f"data_offset {data_offset} != {_align(header_bytes)}")
    if data_offset + TRAILER.size > n:
        raise WeightsFormatError(f"data_offset {data_offset} past the end of the {n}-byte file")
    actual_crc = zlib.crc32(data[: n - TRAILER.size]) & 0xFFFFFFFF
    if actual_crc != crc:
        raise WeightsFormatError(f"checksum mismatch: stored crc32 {crc:#010x}, computed {actual_crc:#010x}")
    mi = MODEL_INFO.unpack_from(data, 64)
    labels = []
    for label, raw in (("model_name", mi[8]), ("model_version", mi[9])):
        if version < 2:
            if any(raw):
                raise WeightsFormatError("model info: reserved bytes are not zero")
            labels.append("")
            continue
        text = raw.rstrip(b"\x00")
        if b"\x00" in text or not _LABEL_RE.match(text.decode("latin-1")):
            raise WeightsFormatError(f"model info: bad {label} {bytes(raw)!r} (ASCII [A-Za-z0-9_.+-], NUL-padded)")
        labels.append(text.decode("ascii"))
    net = Network(mean=tuple(mi[0:3]), std=tuple(mi[3:6]), input_long_side=mi[6], size_multiple=mi[7],
                  model_name=labels[0], model_version=labels[1], head_output=head_output)
    tbase = 128 + 128 * num_ops
    end_data = n - TRAILER.size
    regions = []
    tensors = []
    for j in range(num_tensors):
        name, dtype, ndim, s0, s1, s2, s3, off, nbytes, tres = TENSOR_RECORD.unpack_from(data, tbase + 96 * j)
        where = f"tensor {j}"
        raw = name.rstrip(b"\x00")
        if b"\x00" in raw or not _NAME_RE.match(raw.decode("latin-1")):
            raise WeightsFormatError(f"{where}: bad name {bytes(name)!r}")
        sname = raw.decode("ascii")
        where = f"tensor {j} ({sname})"
        if any(tres):
            raise WeightsFormatError(f"{where}: reserved bytes are not zero")
        if dtype not in DTYPES or (dtype == 2 and not int8_ops):
            raise WeightsFormatError(f"{where}: unknown dtype {dtype}" + (" (int8 needs an int8 trunk)" if dtype == 2
                                                                          else ""))
        if not (1 <= ndim <= 4):
            raise WeightsFormatError(f"{where}: ndim {ndim} not in 1..4")
        shape = (s0, s1, s2, s3)[:ndim]
        if any(s < 1 for s in shape) or any((s0, s1, s2, s3)[ndim:]):
            raise WeightsFormatError(f"{where}: bad shape {(s0, s1, s2, s3)} for ndim {ndim}")
        count = math.prod(shape)
        size = DTYPES[dtype].itemsize
        if nbytes != size * count:
            raise WeightsFormatError(f"{where}: nbytes {nbytes} != {size} * prod{shape} = {size * count}")
        if off % ALIGN:
            raise WeightsFormatError(f"{where}: offset {off} not a multiple of {ALIGN}")
        if off < data_offset or off + nbytes > end_data:
            raise WeightsFormatError(f"{where}: data [{off}, {off + nbytes}) outside the data region "
                                     f"[{data_offset}, {end_data})")
        regions.append((off, off + nbytes, sname))
        arr = np.frombuffer(data, dtype=DTYPES[dtype], count=count, offset=off).reshape(shape)
        arr = arr.astype(np.int8 if dtype == 2 else np.float32)
        tensors.append((sname, arr))
    regions.sort()
    for a, b in zip(regions, regions[1:]):
        if b[0] < a[1]:
            raise WeightsFormatError(f"tensors {a[2]} and {b[2]} overlap")
    nxt = 0
    value_q = []
    for i in range(num_ops):
        rec = OP_RECORD.unpack_from(data, 128 + 128 * i)
        code, nin, ins, out, ip, fp, first, ntens, ores = rec[0], rec[1], rec[2:6], rec[6], rec[7:19], rec[19:27], rec[27], rec[28], rec[29]
        if code not in OP_NAMES:
            raise WeightsFormatError(f"op {i}: unknown op code {code}")
        if i < int8_ops:
            out_q = INT8_OP.unpack(ores)
            if out_q[2]:
                raise WeightsFormatError(f"op {i}: reserved bytes are not zero")
            value_q.append(out_q[:2])
        elif any(ores):
            raise WeightsFormatError(f"op {i}: reserved bytes are not zero")
        if not (1 <= nin <= 4) or any(ins[nin:]):
            raise WeightsFormatError(f"op {i}: num_inputs {nin} invalid or unused input slots not zero")
        if out != i + 1:
            raise WeightsFormatError(f"op {i}: output value id {out} != {i + 1}")
        if first != nxt or ntens > num_tensors - first:
            raise WeightsFormatError(f"op {i}: tensor range [{first}, {first + ntens}) does not continue at {nxt} "
                                     f"within {num_tensors} tensors")
        nxt = first + ntens
        net.ops.append(Op(OP_NAMES[code], list(ins[:nin]), list(ip), list(fp), tensors[first:nxt]))
    if nxt != num_tensors:
        raise WeightsFormatError(f"ops own {nxt} tensors but the table has {num_tensors}")
    if int8_ops:
        _read_int8(net, int8_ops, INT8_HEADER.unpack_from(res, 0), value_q)
    net.validate()
    if net.format_version() > version:
        raise WeightsFormatError(f"version-{version} file uses version-{net.format_version()} features")
    return net


def _read_int8(net: Network, n: int, header: tuple, value_q: list) -> None:
    """Move a version-3 file's int8 trunk (header fields, op records' output quantisation, the trunk convolutions'
    third and fourth tensors) into ``net.int8`` / ``precision`` / ``int8_verdict``; checked by
    :meth:`Network.validate`."""
    from .int8 import Int8Trunk  # gazecrop.int8 reads this module

    _, precision, in_scale, in_zp, verdict = header
    codes = {v: k for k, v in PRECISIONS.items()}
    if precision not in codes:
        raise WeightsFormatError(f"file header: precision {precision} not 0 (fp32) or 1 (int8)")
    if verdict not in INT8_VERDICTS:
        raise WeightsFormatError(f"file header: int8_verdict {verdict} not 0, 1 or 2")
    scales = np.array([in_scale] + [q[0] for q in value_q], np.float32)
    zps = np.array([in_zp] + [q[1] for q in value_q], np.int32)
    trunk = Int8Trunk(n, scales, zps)
    for i, op in enumerate(net.ops[:n]):
        if op.kind == "dense_block":
            _read_dense_int8(trunk, i, op)
            continue
        if op.kind not in ("conv2d", "depthwise_conv2d"):
            continue
        if len(op.tensors) != 4:
            raise WeightsFormatError(f"op {i} ({op.kind}): an int8 trunk convolution owns 4 tensors (weight, bias, "
                                     f"int8 weight, scales and int8 bias), not {len(op.tensors)}")
        (qn, wq), (pn, par) = op.tensors[2:]
        m = op.tensors[0][1].shape[0]
        if wq.dtype != np.int8 or par.dtype != np.float32 or par.shape != (2, m):
            raise WeightsFormatError(f"op {i} ({op.kind}): tensors {qn}, {pn} must be int8 weights and float32 "
                                     f"(2, {m}) scales and biases")
        trunk.weights[i], trunk.weight_scales[i], trunk.biases[i] = wq, par[0].copy(), par[1].copy()
        op.tensors = op.tensors[:2]
    net.int8, net.precision, net.int8_verdict = trunk, codes[precision], verdict


def _read_dense_int8(trunk, i: int, op: Op) -> None:
    """A dense block's int8 tensors (:func:`_file_tensors`) into ``trunk.dense[i]``; the op keeps its 4L float
    ones."""
    from .int8 import DenseInt8

    nl = op.ip(1)
    where = f"op {i} (dense_block)"
    if not 1 <= nl <= 256 or len(op.tensors) != 8 * nl + 1:
        raise WeightsFormatError(f"{where}: an int8 trunk dense block of {nl} layers owns 8 tensors per layer + 1, "
                                 f"not {len(op.tensors)}")
    ws, wq, par = [], [], []
    for j in range(2 * nl):
        (qn, q), (pn, p) = op.tensors[4 * nl + 2 * j: 4 * nl + 2 * j + 2]
        m = op.tensors[2 * j][1].shape[0]
        if q.dtype != np.int8 or p.dtype != np.float32 or p.shape != (2, m):
            raise WeightsFormatError(f"{where}: tensors {qn}, {pn} must be int8 weights and float32 (2, {m}) scales "
                                     "and biases")
        wq.append(q)
        ws.append(p[0].copy())
        par.append(p[1].copy())
    mn, mid = op.tensors[-1]
    if mid.dtype != np.float32 or mid.shape != (2, nl) or not np.all(np.isfinite(mid)) \
            or not np.all(mid[1] == np.rint(mid[1])) or np.any(np.abs(mid[1]) > 128):
        raise WeightsFormatError(f"{where}: tensor {mn} must be float32 (2, {nl}): bottleneck scales, then integer "
                                 "zero points")
    trunk.dense[i] = DenseInt8(wq, ws, par, mid[0].copy(), mid[1].astype(np.int32))
    op.tensors = op.tensors[:4 * nl]


def read_weights(path: "os.PathLike[str] | str") -> Network:
    """Read and fully validate a ``.gzw`` file.

    Raises:
        OSError: the file cannot be read. NotRegularFileError (a ValueError): ``path`` is a FIFO, device or
        socket (refused before reading). WeightsFormatError: the file violates ``docs/weights-format.md``;
        the message starts with ``path``.
    """
    return _parse(path, read_file(path))


def read_file(path: "os.PathLike[str] | str") -> bytes:
    """The bytes of a ``.gzw`` file, read only when it is a regular file that starts with the magic (a large
    file of another kind, given by mistake, is refused after 8 bytes instead of being read into memory).

    Raises:
        OSError / NotRegularFileError as :func:`gazecrop._files.open_regular`; WeightsFormatError (naming
        ``path``) for another kind of file.
    """
    with open_regular(path) as f:
        try:
            head = f.read(len(MAGIC))
            if head != MAGIC:
                raise WeightsFormatError(f"{os.fspath(path)}: bad magic {head!r}: not a gazecrop weights file")
            return head + f.read()
        except OSError as e:  # a read error (EIO on a bad disk) carries no file name: name it
            if e.filename is not None:
                raise
            raise OSError(e.errno, e.strerror or str(e), os.fspath(path)) from e


def _parse(path: "os.PathLike[str] | str", data: bytes) -> Network:
    """:func:`from_bytes` of a file's content, naming the file in any WeightsFormatError."""
    try:
        return from_bytes(data)
    except WeightsFormatError as e:
        raise WeightsFormatError(f"{os.fspath(path)}: {e}") from e
