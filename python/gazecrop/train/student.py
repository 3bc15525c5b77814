"""The EfficientNet-Lite0 student: an ImageNet EfficientNet-Lite0 backbone cut after stage 5 with the DeepGaze II
readout and finalizer of the teacher members, distilled from the teacher ensemble, Fisher-pruned, optionally
fine-tuned with fairness terms (:mod:`gazecrop.train.fairness`) and run by the native core
(``docs/weights-format.md``: depthwise convolutions, TensorFlow "same" padding, ReLU6 and residual additions are
core ops). Its files: ``weights/candidate-lite0`` and ``weights/candidate-fair`` (their ``MODEL_CARD.md``).

:class:`PretrainedStudent` is the model (its prunable feature maps behind :class:`MapMask` entries, analytic
FLOPs, :meth:`PretrainedStudent.compact`); :func:`train` fine-tunes it end to end by the distillation loss of
:func:`gazecrop.train.distill.loss_on_batch` (0.9 x cross-entropy to the teacher ensemble's density + 0.1 x
fixation NLL) with the student's data and augmentation; :mod:`gazecrop.train.prune` Fisher-prunes it and
:func:`gazecrop.train.convert_backbone.convert_student` exports it.

Workflow (``weights/candidate-lite0/MODEL_CARD.md`` and ``weights/candidate-fair/MODEL_CARD.md`` have the exact
commands of those files)::

    # 1. frozen probe: readout + finalizer on cached backbone features, trained like a teacher member
    GAZECROP_TEACHER_WEIGHTS=runs/probe_teacher python -m gazecrop.train.teacher train \\
        --member lite0_256_f3_flip --backbone lite0 --long-side 256 --lr 1e-3 --dropout 0.3 --flip --features 3
    # 2. fine-tune backbone, readout and finalizer end to end, starting from the frozen probe
    python -m gazecrop.train.student train --out runs/lite_ft --init runs/probe_teacher/lite0_256_f3_flip.pt \\
        --epochs 10 --lr 1e-4
    # 3. Fisher pruning (curve + snapshots), then fine-tune a snapshot: --init runs/lite_prune/snapshots/...
    python -m gazecrop.train.prune --from runs/lite_ft/final.pt --out runs/lite_prune --target-gflops 0.11
    # 4. val metrics at full image resolution (the table of ``python -m gazecrop.evaluate``)
    python -m gazecrop.train.student evaluate --from runs/lite_ft/final.pt
    # 5. fairness fine-tuning from an exported file (its checkpoint rebuilt exactly from the .gzw)
    python -m gazecrop.train.student import --from weights/candidate-lite0/gazecrop-fast.gzw --out runs/candidate.pt
    python -m gazecrop.train.student train --out runs/fair --init runs/candidate.pt --epochs 3 --lr 2e-5 \\
        --self-targets --colour-robust 0.5 --parity-weight 1 --shape-weight 2 --face-weight 8
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .._atomic import write_text
from . import distill
from .teacher import CB_MAP_SIZE, Backbone, Finalizer, Readout, _upsample_log_density, preprocess

__all__ = ["MapMask", "PretrainedStudent", "train", "load_student", "main"]


class MapMask(nn.Module):
    """0/1 pruning mask over the feature maps of one prunable layer, with the Fisher-pruning hook.

    ``forward(y)``: float (N, C, h, w) -> ``y * mask`` (same shape); with :attr:`fisher_hook` set and ``y``
    requiring gradients, the hook is called as ``hook(self, masked_y)`` (:class:`gazecrop.train.prune.
    FisherAccumulator` registers a gradient hook there). Masking here is exactly removing the maps: the
    masked activation feeds nothing else.
    """

    def __init__(self, name: str, channels: int) -> None:
        super().__init__()
        self.name = name
        self.register_buffer("mask", torch.ones(channels))
        self.fisher_hook = None

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = y * self.mask[None, :, None, None]
        if self.fisher_hook is not None and y.requires_grad:
            self.fisher_hook(self, y)
        return y

    def alive(self) -> int:
        return int(self.mask.sum().item())

    def keep(self) -> torch.Tensor:
        """int64 indices of the maps still alive."""
        return torch.nonzero(self.mask > 0.5)[:, 0]


def _shrink_conv(conv: nn.Conv2d, out_idx: Optional[torch.Tensor] = None, in_idx: Optional[torch.Tensor] = None,
                 depthwise: bool = False) -> None:
    """Drop output maps (``out_idx`` kept) and/or input maps (``in_idx`` kept) of ``conv`` in place."""
    with torch.no_grad():
        w = conv.weight
        if out_idx is not None:
            w = w[out_idx]
            if conv.bias is not None:
                conv.bias = nn.Parameter(conv.bias[out_idx].clone())
            conv.out_channels = len(out_idx)
        if in_idx is not None and not depthwise:
            w = w[:, in_idx]
        if depthwise:
            conv.in_channels = conv.groups = len(out_idx)
        elif in_idx is not None:
            conv.in_channels = len(in_idx)
        conv.weight = nn.Parameter(w.clone())


def _shrink_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> None:
    with torch.no_grad():
        bn.weight = nn.Parameter(bn.weight[idx].clone())
        bn.bias = nn.Parameter(bn.bias[idx].clone())
        bn.running_mean = bn.running_mean[idx].clone()
        bn.running_var = bn.running_var[idx].clone()
        bn.num_features = len(idx)


class PretrainedStudent(nn.Module):
    """The EfficientNet-Lite0 student: an ImageNet EfficientNet-Lite backbone (Tan and Le 2019) cut after a stage, with
    the DeepGaze II readout and finalizer of the teacher members (Kümmerer et al. 2017: 1x1 convolutions with
    softplus over several backbone depths, Gaussian blur, learned centre bias, log-softmax), distilled from
    the teacher ensemble and Fisher-pruned (Theis et al. 2018, arXiv:1801.05787).

    ``forward(x)``: float (N, 3, H, W) RGB 0..255, H and W multiples of 32 -> float (N, H/8, W/8)
    log-densities (natural log, ``logsumexp`` 0 per map). :meth:`features` / :meth:`head` split it the way
    :func:`gazecrop.train.distill.loss_on_batch` expects. The backbone's batch norm stays in eval mode (its
    ImageNet statistics, folded into the convolutions at export) while its weights train.

    Prunable feature maps (:meth:`prunable`, one :class:`MapMask` each): ``b<i>``, the expansion maps of
    inverted-residual block ``i`` (the output of its depthwise convolution; each map is one channel of the
    expand 1x1, the depthwise and the project 1x1 convolutions) and for block 0, which has no expansion, the
    stem's maps; ``r0``/``r1``, the readout's hidden maps. Block outputs are not pruned: inside a stage they
    are tied by the residual additions across all its blocks and the readout taps them.

    Args:
        backbone: ``"lite0"``, ``"lite1"`` or ``"lite2"``.
        features: 1..6, the backbone features used, in :class:`gazecrop.train.teacher.Backbone` order (3 = ends of
            stages 3, 4 and 5: the backbone cut after stage 5).
        centre_bias_map: float (32, 32) log centre-bias map for the finalizer (or loaded from a member file).
        hidden: readout widths.
        widths: alive maps per prunable layer (a compacted, pruned student; :meth:`compact`), default all.
    Raises:
        ValueError: ``features`` out of range, or ``widths`` naming an unknown layer or too many maps.
    """

    def __init__(self, backbone: str = "lite0", features: int = 3, centre_bias_map: Optional[np.ndarray] = None,
                 hidden: Sequence[int] = (16, 16), widths: Optional[Dict[str, int]] = None) -> None:
        super().__init__()
        bb = Backbone(backbone, 384)
        if not 1 <= features <= len(bb.channels) - 1:
            raise ValueError(f"features must be 1..{len(bb.channels) - 1}, got {features}")
        for p in bb.parameters():
            p.requires_grad_(True)
        self.backbone = bb
        self.num_features = features
        self.num_blocks = bb.taps[features - 1] + 1
        self.readout = Readout(bb.channels[:features], hidden)
        self.finalizer = Finalizer(centre_bias_map)
        blocks = bb.net._blocks
        self.masks = nn.ModuleDict()
        for i in range(self.num_blocks):
            self.masks[f"b{i}"] = MapMask(f"b{i}", blocks[i]._depthwise_conv.out_channels)
        for j, h in enumerate(hidden):
            self.masks[f"r{j}"] = MapMask(f"r{j}", h)
        self.cfg = {"backbone": backbone, "features": features, "hidden": list(hidden)}
        if widths:
            unknown = set(widths) - set(self.masks)
            if unknown:
                raise ValueError(f"widths name unknown layers {sorted(unknown)}")
            for name, n in widths.items():
                m = self.masks[name]
                if not 1 <= int(n) <= len(m.mask):
                    raise ValueError(f"widths[{name!r}] = {n}: must be 1..{len(m.mask)}")
                m.mask[int(n):] = 0.0
            self.compact()

    # -------------------------------------------------------------------------------------------- forward
    def _block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Inverted-residual block ``i`` (MBConv without squeeze-excitation, ReLU6) with its map mask."""
        blk = self.backbone.net._blocks[i]
        act = self.backbone.net._swish
        h = x
        if blk._block_args.expand_ratio != 1:
            h = act(blk._bn0(blk._expand_conv(h)))
        h = self.masks[f"b{i}"](act(blk._bn1(blk._depthwise_conv(h))))
        h = blk._bn2(blk._project_conv(h))
        a = blk._block_args
        if blk.id_skip and a.stride == 1 and a.input_filters == a.output_filters:
            h = h + x
        return h

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """(N, 3, H, W) 0..255 -> the first :attr:`num_features` backbone features (strides 8, 16, 16, 32...)."""
        net = self.backbone.net
        x = net._swish(net._bn0(net._conv_stem((x - 127.0) / 128.0)))
        out: List[torch.Tensor] = []
        for i in range(self.num_blocks):
            x = self._block(i, x)
            if i in self.backbone.taps:
                out.append(x)
        return out

    def head(self, feats: List[torch.Tensor]) -> torch.Tensor:
        """Readout, blur, centre bias and log-softmax on the stride-8 grid of ``feats[0]``: -> (N, h, w)."""
        ro = self.readout
        grid = tuple(feats[0].shape[-2:])
        acc = None
        for i, (f, conv) in enumerate(zip(feats, ro.first)):
            m = getattr(ro, f"mean{i}").view(1, -1, 1, 1)
            s = getattr(ro, f"std{i}").view(1, -1, 1, 1)
            y = conv((f - m) / s)
            if tuple(y.shape[-2:]) != grid:
                y = F.interpolate(y, size=grid, mode="bilinear", align_corners=False)
            acc = y if acc is None else acc + y
        convs = [m for m in ro.rest if isinstance(m, nn.Conv2d)]
        y = acc
        for j, conv in enumerate(convs):
            y = conv(self.masks[f"r{j}"](F.softplus(y)))
        return self.finalizer(y[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    # -------------------------------------------------------------------------------------------- pruning
    def prunable(self) -> List[MapMask]:
        """The prunable layers' masks, in execution order (:class:`gazecrop.train.prune.FisherAccumulator`)."""
        return list(self.masks.values())

    def convs(self) -> Dict[str, MapMask]:
        """Masks by layer name (the interface :func:`gazecrop.train.prune.prune` uses)."""
        return dict(self.masks.items())

    def widths(self) -> Dict[str, int]:
        """Alive maps per prunable layer."""
        return {n: m.alive() for n, m in self.masks.items()}

    def flops(self, height: int, width: int, alive: Optional[Dict[str, int]] = None) -> int:
        """FLOPs (2 x multiply-accumulates) of every convolution (stem, expand 1x1, depthwise, project 1x1,
        readout 1x1; TensorFlow "same" sizes, ``ceil(in / stride)``) for a (height, width) input, counting
        only alive maps (``alive`` overrides the masks' counts per layer name). The blur (one map) and the
        bilinear resizes are not convolutions of the network and are left out (under 0.1 MFLOP)."""
        w_ = {**self.widths(), **(alive or {})}
        net = self.backbone.net
        h, w = math.ceil(height / 2), math.ceil(width / 2)  # the stem is 3x3 / 2
        total = 3 * 9 * w_["b0"] * h * w
        grids = []
        for i in range(self.num_blocks):
            blk = net._blocks[i]
            a = blk._block_args
            e = w_[f"b{i}"]
            s = a.stride if isinstance(a.stride, int) else a.stride[0]
            k = blk._depthwise_conv.kernel_size[0]
            if a.expand_ratio != 1:
                total += blk._expand_conv.in_channels * e * h * w
            h, w = math.ceil(h / s), math.ceil(w / s)
            total += e * k * k * h * w + e * blk._project_conv.out_channels * h * w
            if i in self.backbone.taps:
                grids.append((blk._project_conv.out_channels, h, w))
        hidden = [w_[f"r{j}"] for j in range(len(self.cfg["hidden"]))] + [1]
        total += sum(c * hidden[0] * gh * gw for c, gh, gw in grids[:self.num_features])
        _, gh, gw = grids[0]
        total += sum(a * b * gh * gw for a, b in zip(hidden[:-1], hidden[1:]))
        return 2 * total

    def flop_savings(self, height: int, width: int) -> Dict[str, int]:
        """FLOPs saved by removing one more map of each prunable layer given the current masks (recomputed each
        call, so costs follow as neighbours shrink); layers down to one map are left out."""
        base = self.flops(height, width)
        return {n: base - self.flops(height, width, {n: a - 1}) for n, a in self.widths().items() if a > 1}

    def gflops(self, height: int = 192, width: int = 256) -> float:
        """:meth:`flops` in GFLOP (default: a 4:3 photo at long side 256)."""
        return self.flops(height, width) / 1e9

    def compact(self) -> "PretrainedStudent":
        """Drop the masked maps from the weights in place (the same function, fewer FLOPs in PyTorch too);
        records the widths in :attr:`cfg`. Returns ``self``."""
        net = self.backbone.net
        for i in range(self.num_blocks):
            m = self.masks[f"b{i}"]
            keep = m.keep()
            if len(keep) == len(m.mask):
                continue
            blk = net._blocks[i]
            if blk._block_args.expand_ratio != 1:
                _shrink_conv(blk._expand_conv, out_idx=keep)
                _shrink_bn(blk._bn0, keep)
            else:  # block 0: its depthwise maps are the stem's
                _shrink_conv(net._conv_stem, out_idx=keep)
                _shrink_bn(net._bn0, keep)
            _shrink_conv(blk._depthwise_conv, out_idx=keep, depthwise=True)
            _shrink_bn(blk._bn1, keep)
            _shrink_conv(blk._project_conv, in_idx=keep)
            m.mask = torch.ones(len(keep))
        ro = self.readout
        convs = [c for c in ro.rest if isinstance(c, nn.Conv2d)]
        for j in range(len(self.cfg["hidden"])):
            m = self.masks[f"r{j}"]
            keep = m.keep()
            if len(keep) == len(m.mask):
                continue
            for c in (ro.first if j == 0 else [convs[j - 1]]):
                _shrink_conv(c, out_idx=keep)
            _shrink_conv(convs[j], in_idx=keep)
            m.mask = torch.ones(len(keep))
        full = self.full_widths()
        self.cfg["widths"] = {n: a for n, a in self.widths().items() if a != full[n]}
        return self

    def used_state_dict(self) -> Dict[str, torch.Tensor]:
        """:meth:`state_dict` without the backbone's layers past the cut (blocks after :attr:`num_blocks`, the
        classifier head): what a checkpoint needs (a pruned Lite0 student: about 2 MB instead of 17 MB);
        :func:`student_from_state` takes either."""
        return {k: v for k, v in self.state_dict().items() if k not in self.unused_keys()}

    def unused_keys(self) -> set:
        """State keys of backbone layers the forward pass never reaches."""
        used = {f"backbone.net._blocks.{i}." for i in range(self.num_blocks)} | {"backbone.net._conv_stem.",
                                                                                 "backbone.net._bn0."}
        return {k for k in self.state_dict() if k.startswith("backbone.") and not any(k.startswith(u) for u in used)}

    def full_widths(self) -> Dict[str, int]:
        """The unpruned widths of the prunable layers (from the backbone's block arguments)."""
        out = {}
        for i in range(self.num_blocks):
            a = self.backbone.net._blocks[i]._block_args
            out[f"b{i}"] = a.input_filters * a.expand_ratio
        out.update({f"r{j}": h for j, h in enumerate(self.cfg["hidden"])})
        return out


def _from_member(path: Path) -> PretrainedStudent:
    blob = distill.load_checkpoint(path, ("spec", "head"), "teacher member file")
    spec = blob["spec"]
    model = PretrainedStudent(spec["backbone"], int(spec.get("features", 6)),
                              np.zeros((CB_MAP_SIZE, CB_MAP_SIZE), np.float32), spec["hidden"])
    missing, unexpected = model.load_state_dict(blob["head"], strict=False)
    bad = [k for k in missing if not k.startswith(("backbone.", "masks."))] + list(unexpected)
    if bad:
        raise ValueError(f"{path}: state mismatch {bad}")
    return model


def load_student(path: Path) -> PretrainedStudent:
    """A ``train`` checkpoint (``{"cfg", "model", ...}``) as a :class:`PretrainedStudent` in eval mode.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a student checkpoint.
    """
    blob = distill.load_checkpoint(path, ("cfg", "model"), "student checkpoint")
    if not isinstance(blob["cfg"], dict) or "backbone" not in blob["cfg"]:
        raise ValueError(f"{path}: not a student checkpoint (its 'cfg' names no backbone)")
    return student_from_state(blob).eval()


def student_from_state(blob: dict) -> PretrainedStudent:
    """The :class:`PretrainedStudent` of a checkpoint dict ``{"cfg", "model"}`` (its widths from ``cfg``,
    masks and weights from ``model``)."""
    c = blob["cfg"]
    model = PretrainedStudent(c["backbone"], c["features"], np.zeros((CB_MAP_SIZE, CB_MAP_SIZE), np.float32),
                              c["hidden"], c.get("widths"))
    missing, unexpected = model.load_state_dict(blob["model"], strict=False)
    bad = sorted(set(missing) - model.unused_keys()) + list(unexpected)
    if bad:
        raise ValueError(f"the checkpoint's state does not fit its student: {bad[:5]}")
    return model


def student_from_gzw(path: Path, backbone: str = "lite0", features: int = 3) -> PretrainedStudent:
    """The :class:`PretrainedStudent` whose export (:func:`gazecrop.train.convert_backbone.convert_student`) is the
    ``.gzw`` file ``path``: the inverse of the export, exact up to float32 rounding. Batch norm was folded into
    the convolutions, so each batch norm becomes the identity (mean 0, variance 1 - eps, scale 1) with the
    folded bias; the readout's standardisation (folded into its first convolutions) becomes mean 0, std 1, and
    the first convolutions' folded biases are summed into the first one (a constant survives the bilinear
    resize unchanged). Widths (pruned maps) come from the file's tensor shapes. In train mode.

    This is how a shipped student whose training checkpoint was not kept becomes a starting point for
    fine-tuning (``python -m gazecrop.train.student import --from F.gzw --out ckpt.pt``).

    Raises:
        FileNotFoundError: no such file. gazecrop.weights.WeightsFormatError: not a valid ``.gzw`` file.
        ValueError: a valid file that is not a student export of this backbone (names, shapes or op kinds
            differ from what :func:`gazecrop.train.convert_backbone.to_network` writes).
    """
    from ..weights import read_weights

    net = read_weights(path)
    tensors = {n: t for op in net.ops for n, t in op.tensors}
    fp = {op.kind: op.fparams for op in net.ops if op.kind in ("gaussian_blur", "centre_bias")}
    model = PretrainedStudent(backbone, features, np.zeros((CB_MAP_SIZE, CB_MAP_SIZE), np.float32))
    widths = {}
    for i in range(model.num_blocks):
        key = f"b{i}.dw.weight"
        if key not in tensors:
            raise ValueError(f"{path}: no tensor {key!r}: not a {backbone} student export")
        widths[f"b{i}"] = int(tensors[key].shape[0])
    for j in range(len(model.cfg["hidden"])):
        key = "readout.first0.weight" if j == 0 else f"readout.hidden{j - 1}.weight"
        if key not in tensors:
            raise ValueError(f"{path}: no tensor {key!r}: not a student export")
        widths[f"r{j}"] = int(tensors[key].shape[0])
    if set(fp) != {"gaussian_blur", "centre_bias"} or "centre_bias.log_map" not in tensors:
        raise ValueError(f"{path}: no blur / centre-bias op: not a student export")
    for name, n in widths.items():  # the file's widths: drop the maps it does not have (as the constructor does)
        m = model.masks[name]
        if not 1 <= n <= len(m.mask):
            raise ValueError(f"{path}: {name} has {n} maps, the student 1..{len(m.mask)}")
        m.mask[n:] = 0.0
    model.compact()

    def put(param: torch.Tensor, value: np.ndarray, what: str) -> None:
        if tuple(param.shape) != tuple(value.shape):
            raise ValueError(f"{path}: {what} has shape {tuple(value.shape)}, the student {tuple(param.shape)}")
        param.copy_(torch.from_numpy(np.ascontiguousarray(value, np.float32)))

    def conv_bn(conv: nn.Conv2d, bn: Optional[nn.BatchNorm2d], name: str) -> None:
        try:
            w, b = tensors[name + ".weight"], tensors[name + ".bias"]
        except KeyError as e:
            raise ValueError(f"{path}: no tensor {e}: not a student export") from None
        put(conv.weight, w, name + ".weight")
        if bn is None:
            put(conv.bias, b, name + ".bias")
            return
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        bn.weight.fill_(1.0)
        put(bn.bias, b, name + ".bias")

    bbn = model.backbone.net
    ro, fin = model.readout, model.finalizer
    with torch.no_grad():
        conv_bn(bbn._conv_stem, bbn._bn0, "stem")
        for i in range(model.num_blocks):
            blk = bbn._blocks[i]
            if blk._block_args.expand_ratio != 1:
                conv_bn(blk._expand_conv, blk._bn0, f"b{i}.expand")
            conv_bn(blk._depthwise_conv, blk._bn1, f"b{i}.dw")
            conv_bn(blk._project_conv, blk._bn2, f"b{i}.project")
        bias = np.zeros(widths["r0"], np.float64)
        for j, conv in enumerate(ro.first):
            put(conv.weight, tensors[f"readout.first{j}.weight"], f"readout.first{j}.weight")
            bias += tensors[f"readout.first{j}.bias"].astype(np.float64)
            getattr(ro, f"mean{j}").zero_()
            getattr(ro, f"std{j}").fill_(1.0)
        put(ro.first[0].bias, bias.astype(np.float32), "readout.first biases")
        convs = [c for c in ro.rest if isinstance(c, nn.Conv2d)]
        for j, conv in enumerate(convs):
            conv_bn(conv, None, f"readout.hidden{j}" if j < len(convs) - 1 else "readout.out")
        sigma = float(fp["gaussian_blur"][0])
        if not sigma > 0:
            raise ValueError(f"{path}: blur sigma {sigma} is not positive")
        fin.log_sigma.fill_(math.log(sigma / (net.input_long_side // 8)))
        fin.cb_weight.fill_(float(fp["centre_bias"][0]))
        put(fin.centre_bias, tensors["centre_bias.log_map"], "centre_bias.log_map")
    return model.train()


def load_init(path: Path) -> PretrainedStudent:
    """A student to start training from: a teacher member file of a frozen probe (``{"spec", "head"}``, the
    backbone's ImageNet weights + the member's readout) or a student checkpoint (:func:`load_student`; masked
    maps of a pruning snapshot are dropped, :meth:`PretrainedStudent.compact`). In train mode.

    Raises:
        FileNotFoundError: no such file.
        ValueError: neither kind of file.
    """
    blob = distill.load_checkpoint(path, (), "student checkpoint or teacher member file")
    if "spec" in blob and "head" in blob:
        return _from_member(path).train()
    return load_student(path).compact().train()


def train(out: Path, init: Path, *, epochs: int = 8, batch: int = 8, lr: float = 1e-4,
          teacher_weight: float = 0.9, threads: int = 1, seed: int = 0, mirrored_teacher: bool = False,
          members: Optional[Sequence[str]] = None, self_targets: bool = False, colour_robust: float = 0.0,
          parity_weight: float = 0.0, faces: Optional[Path] = None, parity_pairs: int = 1,
          parity_decay: float = 0.9, shape_weight: float = 0.0, face_weight: float = 0.0,
          face_fixation_weight: float = 0.0, log=print) -> Path:
    """Train the student end to end by distillation at long side 256, starting from ``init`` (a frozen-probe
    member file or a student checkpoint such as a pruning snapshot, :func:`load_init`; resumes from
    ``<out>/checkpoint.pt``; skips when ``<out>/final.pt`` exists). ``final.pt`` = the best val epoch (pooled
    grid information gain, :func:`gazecrop.train.distill.evaluate_grid`). With ``mirrored_teacher``, flipped
    training views take the teacher's density of the mirrored image instead of the mirrored density
    (:func:`gazecrop.train.distill.teacher_targets`). ``members``: the teacher members whose ensemble gives the
    targets (default: the whole ensemble); ``self_targets``: the targets are the ``init`` student's own densities
    instead (self-distillation: fine-tuning then moves the student away from where it started only as far as
    the other terms ask).

    Fairness (:mod:`gazecrop.train.fairness`): ``colour_robust`` is the probability of a greyscale / hue-rotated /
    (de)saturated view of a training photo (the target stays the original's density); ``parity_weight`` > 0 adds
    that multiple of the demographic-parity term on composite pairs of the **tune half** of the portraits in
    ``faces`` (:class:`gazecrop.train.fairness.ParityTerm`: ``parity_pairs`` composites per comparison and step,
    running means with weight ``parity_decay`` on the past) to every step's loss. ``shape_weight`` > 0 adds
    within-tile distillation to the start model on the same composites
    (:func:`gazecrop.train.fairness.tile_shape_kl`: tiles balance without density leaving the faces);
    ``face_weight`` > 0 adds :class:`gazecrop.train.fairness.FaceShareTerm` on training photos with a detected
    face (heads keep at least the start model's share; needs OpenCV), ``face_fixation_weight`` its within-head
    fixation term (density inside faces moves to where people look: the eyes). Every epoch logs, beside the val metrics,
    :func:`face_diagnostics` on val photos with a face. Returns its path."""
    final = out / "final.pt"
    rng = distill.start_run(out, threads, seed, log)
    if rng is None:
        return final
    model = load_init(init)
    train_items = distill.build_data("train", 256, log=log)
    val_items = distill.build_data("val", 256, log=log)
    if self_targets:
        targets = own_targets(model, train_items)
    else:
        targets = distill.teacher_targets(train_items, members, log=log)
    flip_targets = distill.teacher_targets(train_items, members, log=log, mirrored=True) if mirrored_teacher else None
    parity = face_term = reference = None
    if shape_weight > 0 or face_weight > 0 or face_fixation_weight > 0:
        reference = load_init(init).eval()
        for p_ in reference.parameters():
            p_.requires_grad_(False)
    if shape_weight > 0 and parity_weight <= 0:
        raise ValueError("shape_weight acts on the parity term's composites: it needs parity_weight > 0")
    if parity_weight > 0:
        from .fairness import DEFAULT_FACES, ParityTerm, PortraitPairs

        parity = ParityTerm(PortraitPairs(faces or DEFAULT_FACES, "tune"), decay=parity_decay,
                            per_comparison=parity_pairs, reference=reference, shape_weight=shape_weight)
        log(f"parity term on {len(parity.pairs.comparisons)} comparisons of the tune half, weight {parity_weight}, "
            f"within-tile distillation weight {shape_weight}")
    val_masks = _val_face_masks(val_items, log)
    if face_weight > 0 or face_fixation_weight > 0:
        from .fairness import FaceShareTerm, face_masks

        ref_logd = targets if self_targets else own_targets(reference, train_items)
        face_term = FaceShareTerm(train_items, face_masks(train_items, distill.STRIDE), ref_logd,
                                  share_weight=face_weight, fixation_weight=face_fixation_weight,
                                  stride=distill.STRIDE)
        log(f"face-share term on {len(face_term.items)} training photos with a face, weight {face_weight}, "
            f"within-head fixations weight {face_fixation_weight}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * len(distill.batches(train_items, batch, random.Random(0)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    ck = out / "checkpoint.pt"
    epoch0, best = 0, -1e9
    if ck.is_file():
        st = torch.load(ck, weights_only=False)
        missing, unexpected = model.load_state_dict(st["model"], strict=False)
        if set(missing) - model.unused_keys() or unexpected:
            raise ValueError(f"{ck}: the checkpoint does not fit the student being trained")
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        epoch0, best = st["epoch"], st["best"]
        rng.setstate(st["rng"])
        if parity is not None and st.get("parity"):
            parity.load_state_dict(st["parity"])
        log(f"resumed at epoch {epoch0}")
    else:
        ev = distill.evaluate_grid(model, val_items)
        ev.update(face_diagnostics(model, val_items, val_masks))
        log("start: " + " ".join(f"{k}={v:.4f}" for k, v in ev.items()))
    write_text(out / "config.json", json.dumps(dict(init=str(init), epochs=epochs, batch=batch, lr=lr,
                                                    teacher_weight=teacher_weight, seed=seed, cfg=model.cfg,
                                                    mirrored_teacher=mirrored_teacher, members=members,
                                                    self_targets=self_targets, colour_robust=colour_robust,
                                                    parity_weight=parity_weight,
                                                    faces=str(faces) if faces else None,
                                                    parity_pairs=parity_pairs, parity_decay=parity_decay,
                                                    shape_weight=shape_weight, face_weight=face_weight,
                                                    face_fixation_weight=face_fixation_weight,
                                                    gflops_192x256=model.gflops(), commit=distill.git_commit()),
                                               indent=1))
    for epoch in range(epoch0, epochs):
        model.train()
        t0 = time.time()

        def batch_loss(idx):
            loss = distill.loss_on_batch(model, train_items, idx, targets, rng, teacher_weight,
                                         flip_targets=flip_targets, colour_robust=colour_robust)[0]
            if parity is not None:
                loss = loss + parity_weight * parity.loss(model, rng)
            if face_term is not None:
                loss = loss + face_term.loss(model, rng)
            return loss

        train_loss = distill.run_epoch(train_items, batch, rng, opt, sched, batch_loss)
        ev = distill.evaluate_grid(model, val_items)
        ev.update(face_diagnostics(model, val_items, val_masks))
        if parity is not None:
            ev.update(portrait_parity(model, parity.pairs))
            log(f"parity running means (mass/peak, nats): {parity.summary()}")
        row = dict(epoch=epoch + 1, train_loss=train_loss, seconds=time.time() - t0, **ev)
        log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        distill._append_csv(out / "log.csv", row)
        snap = dict(cfg=model.cfg, model=model.used_state_dict(), metrics={k: float(v) for k, v in ev.items()},
                    epoch=epoch + 1)
        if ev["pooled_ig"] > best or parity is not None:  # with the parity term: the last epoch (IG alone
            best = max(best, ev["pooled_ig"])                # would choose against the fairness objective)
            distill.save_atomic(snap, out / "best.pt")
        distill.save_atomic(dict(snap, opt=opt.state_dict(), sched=sched.state_dict(), best=best,
                                 rng=rng.getstate(), parity=None if parity is None else parity.state_dict()), ck)
    (out / "best.pt").replace(final)
    return final


def own_targets(model: PretrainedStudent, items: List[dict], batch: int = 16) -> Dict[str, np.ndarray]:
    """The student's own log-densities on ``items`` (float32 (h/8, w/8) per key): self-distillation targets."""
    model.eval()
    out: Dict[str, np.ndarray] = {}
    with torch.no_grad():
        for idx in distill.batches(items, batch, random.Random(0)):
            x = torch.stack([torch.from_numpy(items[i]["image"]).permute(2, 0, 1).float() for i in idx])
            for i, logd in zip(idx, model(x)):
                out[items[i]["key"]] = logd.numpy().astype(np.float32)
    model.train()
    return out


def _val_face_masks(val_items: List[dict], log=print) -> Dict[str, np.ndarray]:
    try:
        from .fairness import face_masks

        return face_masks(val_items, distill.STRIDE)
    except ImportError as e:  # OpenCV is in the [train] extra; without it the face diagnostics are skipped
        log(f"face diagnostics skipped: {e}")
        return {}


def face_diagnostics(model: PretrainedStudent, items: List[dict], masks: Dict[str, np.ndarray],
                     batch: int = 16) -> Dict[str, float]:
    """On the photos of ``items`` with a head mask (:func:`gazecrop.train.fairness.face_masks`, bool grid per
    key): ``face_peak``, the share whose grid maximum lies in a head, and ``face_mass``, the mean share of the
    density inside the heads (both 0..1; empty dict without masks). A fairness fix that takes density off
    faces shows here on photos training never saw."""
    sel = [it for it in items if it["key"] in masks]
    if not sel:
        return {}
    model.eval()
    peaks, mass = [], []
    with torch.no_grad():
        for idx in distill.batches(sel, batch, random.Random(0)):
            x = torch.stack([torch.from_numpy(sel[i]["image"]).permute(2, 0, 1).float() for i in idx])
            for i, logd in zip(idx, model(x)):
                m = torch.from_numpy(masks[sel[i]["key"]])
                peaks.append(float(m.flatten()[int(logd.flatten().argmax())]))
                mass.append(float(logd[m].exp().sum()))
    model.train()
    return {"face_peak": float(np.mean(peaks)), "face_mass": float(np.mean(mass))}


def portrait_parity(model: PretrainedStudent, pairs, n: int = 24, side: int = 128, seed: int = 0) -> Dict[str, float]:
    """Tune-half parity diagnostics for a training log, on fixed draws (``n`` composites per comparison of
    ``pairs``, ``side`` px tiles): for each layout (``side``, ``stacked``) and family (``gender``: female vs
    male of one race; ``race``: white vs Black of one gender), the share of composites whose first group's
    tile holds more saliency mass, minus 0.5 (``parity_<layout>_<family>``; 0 is parity, > 0 favours women /
    white people)."""
    from .fairness import tile_log_scores

    fam = {"gender": [i for i, (a, b) in enumerate(pairs.comparisons) if a[0] == b[0]],
           "race": [i for i, (a, b) in enumerate(pairs.comparisons) if a[1] == b[1]]}
    model.eval()
    out = {}
    with torch.no_grad():
        for name, axis in (("side", 1), ("stacked", 0)):
            rng = random.Random(seed)
            wins: Dict[int, List[float]] = {}
            for _ in range(n):
                x, a_first, comp = pairs.draw(rng, axis, side)
                mass, _ = tile_log_scores(model(x), axis)
                for c, v in zip(comp, (mass * (a_first.float() * 2 - 1)).tolist()):
                    wins.setdefault(c, []).append(float(v > 0))
            for f, idx in fam.items():
                vals = [v for c in idx for v in wins.get(c, [])]
                if vals:
                    out[f"parity_{name}_{f}"] = float(np.mean(vals)) - 0.5
    model.train()
    return out


def _predictor(model: PretrainedStudent):
    """uint8 (H, W, 3) image -> float64 (H, W) log-density at full resolution, the way a teacher member does it
    (:func:`gazecrop.train.teacher.preprocess` at long side 256, the student's input size rule; the grid map
    upsampled in log space and renormalised)."""

    def predict(sample, img: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logd = model(preprocess(img, 256))
        return _upsample_log_density(logd[0], *img.shape[:2]).astype(np.float64)

    return predict


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gazecrop.train.student", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="workflow:\n" + __doc__.split("Workflow")[1].split("::", 1)[1])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="fine-tune a frozen probe member end to end (resumable)")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--init", type=Path, required=True,
                   help="teacher member file of the frozen probe, or a student checkpoint (e.g. a pruning snapshot)")
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--teacher-weight", type=float, default=0.9)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--mirrored-teacher", action="store_true",
                   help="flipped views take the teacher's density of the mirrored image (needs the _flip caches)")
    t.add_argument("--members", default=None,
                   help="comma-separated teacher members for the targets (default: the whole ensemble)")
    t.add_argument("--self-targets", action="store_true",
                   help="targets: the --init student's own densities (self-distillation) instead of the teacher's")
    t.add_argument("--colour-robust", type=float, default=0.0, metavar="P",
                   help="probability of a greyscale / hue-rotated / (de)saturated view (target: the original's)")
    t.add_argument("--parity-weight", type=float, default=0.0,
                   help="weight of the demographic-parity term on tune-half portrait pairs (0: off)")
    t.add_argument("--parity-pairs", type=int, default=1, help="composites per comparison and step (default 1)")
    t.add_argument("--parity-decay", type=float, default=0.9,
                   help="weight of the past in the parity term's running means (default 0.9)")
    t.add_argument("--shape-weight", type=float, default=0.0,
                   help="weight of within-tile distillation to the start model on the parity composites (0: off)")
    t.add_argument("--face-weight", type=float, default=0.0,
                   help="weight of the face-share term on training photos with a face (0: off; needs OpenCV)")
    t.add_argument("--face-fixation-weight", type=float, default=0.0,
                   help="weight of the within-head fixation term on training photos with a face (0: off)")
    t.add_argument("--faces", type=Path, default=None, help="labelled portraits (default ../shared/data/faces/congress)")
    im = sub.add_parser("import", help="rebuild a student checkpoint from its exported .gzw (train's --init)")
    im.add_argument("--from", dest="src", type=Path, required=True)
    im.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("recalibrate", help="recompute the batch-norm statistics on the training images (after "
                       "pruning): val grid metrics before and after; --out keeps the recalibrated checkpoint")
    r.add_argument("--from", dest="src", type=Path, required=True)
    r.add_argument("--out", type=Path, default=None)
    r.add_argument("--threads", type=int, default=1)
    e = sub.add_parser("evaluate", help="val metrics at full resolution (gazecrop.evaluate's table)")
    e.add_argument("--from", dest="src", type=Path, required=True)
    e.add_argument("--json", type=Path, default=None)
    e.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if getattr(a, "threads", 1) < 1:
        p.error(f"--threads must be >= 1, got {a.threads}")
    log = lambda s: print(s, flush=True)  # noqa: E731
    if a.cmd == "train" and not 0.0 <= a.colour_robust <= 1.0:
        p.error(f"--colour-robust must be a probability in [0, 1], got {a.colour_robust}")
    if a.cmd == "train" and min(a.parity_weight, a.shape_weight, a.face_weight, a.face_fixation_weight) < 0:
        p.error("--parity-weight, --shape-weight, --face-weight and --face-fixation-weight must be >= 0")
    if a.cmd == "train" and (a.parity_pairs < 1 or not 0.0 <= a.parity_decay < 1.0):
        p.error(f"--parity-pairs must be >= 1 and --parity-decay in [0, 1), got {a.parity_pairs}, {a.parity_decay}")
    try:  # a bad input file fails here, before any data is loaded
        if a.cmd == "import":
            model = student_from_gzw(a.src)
        else:
            model = load_init(a.init) if a.cmd == "train" else load_student(a.src)
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    if a.cmd == "import":
        distill.save_atomic(dict(cfg=model.cfg, model=model.used_state_dict(), source=str(a.src)), a.out)
        log(f"{a.out}: student rebuilt from {a.src} ({model.gflops():.3f} GFLOP at 192x256)")
        return 0
    if a.cmd == "train":
        members = [m for m in a.members.split(",") if m] if a.members else None
        train(a.out, a.init, epochs=a.epochs, batch=a.batch, lr=a.lr, teacher_weight=a.teacher_weight,
              threads=a.threads, seed=a.seed, mirrored_teacher=a.mirrored_teacher, members=members,
              self_targets=a.self_targets, colour_robust=a.colour_robust, parity_weight=a.parity_weight,
              faces=a.faces, parity_pairs=a.parity_pairs, parity_decay=a.parity_decay,
              shape_weight=a.shape_weight, face_weight=a.face_weight,
              face_fixation_weight=a.face_fixation_weight, log=log)
        return 0
    torch.set_num_threads(a.threads)
    if a.cmd == "recalibrate":
        from .average import recalibrate_batch_norm

        model = model.compact()
        val_items = distill.build_data("val", 256, log=log)
        before = distill.evaluate_grid(model, val_items)
        recalibrate_batch_norm(model, distill.build_data("train", 256, log=log))
        after = distill.evaluate_grid(model, val_items)
        for label, m in (("ImageNet statistics", before), ("recalibrated", after)):
            log(f"{label}: " + " ".join(f"{k}={v:.4f}" for k, v in sorted(m.items())))
        if a.out is not None:
            distill.save_atomic(dict(cfg=model.cfg, model=model.used_state_dict(), metrics=after, recalibrated=True),
                                a.out)
        return 0
    from .. import datasets as gds
    from .. import evaluate as ev

    samples = gds.load_datasets(split="val")
    name = f"student {a.src} ({model.gflops():.2f} GFLOP at 192x256)"
    res = ev.evaluate([("centre bias (KDE)", ev.centre_bias_predictor()), (name, _predictor(model))], samples,
                      log=lambda m: print(m, file=sys.stderr, flush=True))
    print(ev.format_table(res))
    if a.json:
        write_text(a.json, json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
