"""Fairness as a training objective: a demographic-parity term on composite portrait pairs, and colour-robust
views for distillation.

The audit (``benchmarks/fairness.py``, after Yee, Tantipongpipat and Mishra, "Image cropping on Twitter:
fairness metrics, their limitations, and the importance of representation, design, and agency", CSCW 2021,
arXiv:2105.08667) puts two labelled portraits side by side (or one above the other) and asks which one the crop
keeps. A crop keeps the tile that holds more of the predicted saliency mass and the salient point, so the
**parity term** trains exactly that quantity to be independent of the portraits' group: for a pair (A, B) of
groups (women vs men of one race, white vs Black people of one gender), ``d = log M_A - log M_B``, where ``M``
is a tile's share of the density (and, for the salient point, its soft maximum of the log-density), and the
loss is the square of the mean of ``d`` over the pairs drawn for each comparison. The square of the *mean*
asks for demographic parity (on average neither group is preferred), not that every pair be a tie: a more
salient portrait may still win its pair. The mean is a running (exponential) average over the steps, so the
few pairs of one step give a low-variance gradient of it.

Only the **tune half** of the portraits (:func:`gazecrop.portraits.split_halves`) is ever used here; the
holdout half is for the release check. Portraits are augmented (random crop of 85-100 % of the side, flip,
brightness / contrast, tile sizes 96-160 px) so the term does not memorise the 267 faces.

:func:`colour_view` is the colour-robust augmentation: the student sees greyscale, hue-rotated or
(de)saturated views of a training photo while the teacher's target stays the density of the original.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..portraits import load_groups, split_halves

__all__ = ["PARITY_COMPARISONS", "PortraitPairs", "tile_log_scores", "tile_shape_kl", "ParityTerm", "FaceShareTerm",
           "face_masks", "colour_view"]

DEFAULT_FACES = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "faces" / "congress"

PARITY_COMPARISONS: Tuple[Tuple[str, str], ...] = (
    ("WF", "WM"), ("BF", "BM"), ("HF", "HM"),  # gender, same race (female first)
    ("WF", "BF"), ("WM", "BM"),                # race, same gender (white first)
    ("WF", "BM"), ("WM", "BF"))                # both (the audit's cross comparisons)
"""Comparisons (first group, second group) the parity term balances; those whose groups are missing from the
tune half are skipped."""


class PortraitPairs:
    """The tune half's portraits, ready to be drawn as composite pairs.

    Args:
        faces: folder with ``labels.csv`` and ``photos/`` (``../shared/data/faces/congress``).
        half: ``"tune"`` (the only half training may use; ``"holdout"`` exists for tests of this class).
        keep_side: portraits are held in memory as uint8 RGB at this side (pixels), decoded once.
    Raises:
        FileNotFoundError: no ``labels.csv`` under ``faces``. ValueError: no comparison of
            :data:`PARITY_COMPARISONS` has both its groups.
    """

    def __init__(self, faces: "str | Path" = DEFAULT_FACES, half: str = "tune", keep_side: int = 256) -> None:
        from PIL import Image

        from .._image import open_image, to_rgb

        groups = split_halves(load_groups(faces))[half]
        self.comparisons = [(a, b) for a, b in PARITY_COMPARISONS if a in groups and b in groups]
        if not self.comparisons:
            raise ValueError(f"{faces}: the {half} half has no pair of groups of {PARITY_COMPARISONS}")
        used = sorted({g for c in self.comparisons for g in c})
        self.images: Dict[str, List[np.ndarray]] = {}
        for g in used:
            arrs = []
            for name in groups[g]:
                im = open_image(Path(faces) / "photos" / name)
                im = im.resize((keep_side, keep_side), Image.BILINEAR, reducing_gap=None) if im.size != (
                    keep_side, keep_side) else im
                arrs.append(to_rgb(im, (255, 255, 255)))
            self.images[g] = arrs
        self.half = half

    def tile(self, group: str, rng: random.Random, side: int) -> np.ndarray:
        """One augmented portrait of ``group``: uint8 (side, side, 3) from a random square crop of 85-100 % of
        the portrait's side, flipped with probability 1/2, resized with Pillow's antialiased bilinear filter
        (the same filter as :meth:`gazecrop.Model.log_density`)."""
        from PIL import Image

        a = self.images[group][rng.randrange(len(self.images[group]))]
        n = a.shape[0]
        c = int(round(n * rng.uniform(0.85, 1.0)))
        y0, x0 = rng.randrange(0, n - c + 1), rng.randrange(0, n - c + 1)
        im = Image.fromarray(a[y0:y0 + c, x0:x0 + c]).resize((side, side), Image.BILINEAR, reducing_gap=None)
        t = np.asarray(im)
        return np.ascontiguousarray(t[:, ::-1]) if rng.random() < 0.5 else t

    def draw(self, rng: random.Random, axis: int, side: int, per_comparison: int = 1
             ) -> Tuple[torch.Tensor, torch.Tensor, List[int]]:
        """A batch of composites: float32 (N, 3, H, W) in 0..255 (side by side: H = side, W = 2 side; stacked:
        the other way round), bool (N,) ``a_first`` (the comparison's first group in the first tile: left / top,
        drawn at random), and the comparison index of each composite (into :attr:`comparisons`). Brightness and
        contrast are jittered per tile (0.85-1.15)."""
        xs, firsts, comp = [], [], []
        for ci, (a, b) in enumerate(self.comparisons):
            for _ in range(per_comparison):
                ta, tb = (self.tile(g, rng, side).astype(np.float32) for g in (a, b))
                ta, tb = (np.clip((t - t.mean()) * rng.uniform(0.85, 1.15) + t.mean() * rng.uniform(0.85, 1.15),
                                  0, 255) for t in (ta, tb))
                af = rng.random() < 0.5
                xs.append(np.concatenate([ta, tb] if af else [tb, ta], axis=axis))
                firsts.append(af)
                comp.append(ci)
        x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
        return x, torch.tensor(firsts), comp


def _tiles(logd: torch.Tensor, axis: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two tiles of composites' maps, float (N, h, w) -> two float (N, tile pixels)."""
    n, h, w = logd.shape
    if axis == 1:
        return logd[:, :, : w // 2].reshape(n, -1), logd[:, :, w - w // 2:].reshape(n, -1)
    return logd[:, : h // 2].reshape(n, -1), logd[:, h - h // 2:].reshape(n, -1)


def tile_log_scores(logd: torch.Tensor, axis: int, peak_temperature: float = 4.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per composite, first tile minus second tile: (log saliency mass, soft maximum of the log-density).

    ``logd``: float (N, h, w) log-densities of composites (two equal tiles along ``axis``: 1 = left | right,
    0 = top / bottom). The soft maximum is ``logsumexp(t * logd) / t`` over the tile (``t`` =
    ``peak_temperature``; large t approaches the salient point's value). Returns two float (N,) tensors.
    """
    f, s = _tiles(logd, axis)
    mass = torch.logsumexp(f, 1) - torch.logsumexp(s, 1)
    t = peak_temperature
    peak = (torch.logsumexp(t * f, 1) - torch.logsumexp(t * s, 1)) / t
    return mass, peak


def tile_shape_kl(logd: torch.Tensor, reference: torch.Tensor, axis: int) -> torch.Tensor:
    """Within-tile distillation: per composite, the mean over its two tiles of KL(reference || model) between
    the maps **normalised over each tile** (nats). ``logd``, ``reference``: float (N, h, w) log-densities of
    the same composites (two equal tiles along ``axis``). Returns float (N,). Zero when the model keeps the
    reference's map inside each tile, whatever mass it gives each tile: the parity term may move the tiles'
    levels, this term keeps where the density sits inside a portrait (the face stays the face)."""
    out = logd.new_zeros(logd.shape[0])
    for s, r in zip(_tiles(logd, axis), _tiles(reference, axis)):
        s = torch.log_softmax(s, 1)
        r = torch.log_softmax(r, 1)
        out = out + (r.exp() * (r - s)).sum(1)
    return out / 2


class ParityTerm:
    """The demographic-parity loss on composite pairs (module docstring), with its running means.

    ``loss(model, rng)`` draws ``per_comparison`` composites per comparison (layout alternating between side by side and
    stacked, tile side 96 / 128 / 160 px at random), runs ``model`` (float (N, 3, H, W) 0..255 -> (N, h, w)
    log-densities) and returns a scalar tensor whose gradient is that of
    ``sum over comparisons of (running mean of d_mass)^2 + (running mean of d_peak)^2``, d in nats, the
    comparison's first group minus its second; :attr:`means` holds the running means (comparison ->
    (mass, peak)). ``decay``: weight of the past in the running mean (0 = this step's pairs only).

    With a frozen ``reference`` model (the student training started from) and ``shape_weight`` > 0, the loss
    adds ``shape_weight`` times the mean within-tile distillation (:func:`tile_shape_kl`) on the same
    composites, so the tiles' levels balance without density moving off the faces inside them.
    """

    def __init__(self, pairs: PortraitPairs, decay: float = 0.9, sides: Sequence[int] = (96, 128, 160),
                 per_comparison: int = 1, reference=None, shape_weight: float = 0.0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if per_comparison < 1:
            raise ValueError(f"per_comparison must be >= 1, got {per_comparison}")
        if shape_weight < 0 or (shape_weight > 0 and reference is None):
            raise ValueError(f"shape_weight must be >= 0 and needs a reference model, got {shape_weight}")
        self.reference, self.shape_weight = reference, shape_weight
        self.per_comparison = per_comparison
        self.pairs = pairs
        self.decay = decay
        self.sides = tuple(sides)
        self.means: Dict[str, List[float]] = {}
        self.step = 0

    def loss(self, model, rng: random.Random) -> torch.Tensor:
        axis = 1 if self.step % 2 == 0 else 0
        self.step += 1
        side = rng.choice(self.sides)
        x, a_first, comp = self.pairs.draw(rng, axis, side, self.per_comparison)
        logd = model(x)
        mass, peak = tile_log_scores(logd, axis)
        sign = a_first.float() * 2 - 1  # first-minus-second -> A-minus-B
        total = x.new_zeros(())
        for ci, (a, b) in enumerate(self.pairs.comparisons):
            sel = [j for j, c in enumerate(comp) if c == ci]
            key = f"{a} vs {b}"
            prev = self.means.get(key)
            cur = []
            for k, d in enumerate((mass, peak)):
                m = (d[sel] * sign[sel]).mean()
                est = float(m.detach()) if prev is None else self.decay * prev[k] + (1 - self.decay) * float(m.detach())
                cur.append(est)
                total = total + 2.0 * est * m  # d(est^2)/dm direction, low-variance (running) estimate
            self.means[key] = cur
        total = total / len(self.pairs.comparisons)
        if self.shape_weight > 0:
            with torch.no_grad():
                ref = self.reference(x)
            kl = tile_shape_kl(logd, ref, axis).mean()
            self.last_shape_kl = float(kl.detach())
            total = total + self.shape_weight * kl
        return total

    def state_dict(self) -> dict:
        return {"means": {k: list(v) for k, v in self.means.items()}, "step": self.step}

    def load_state_dict(self, st: dict) -> None:
        self.means = {k: list(v) for k, v in st["means"].items()}
        self.step = int(st["step"])

    def summary(self) -> str:
        """One line: the running mean d_mass / d_peak of each comparison (nats)."""
        return " ".join(f"{k.replace(' vs ', '-')}={v[0]:+.3f}/{v[1]:+.3f}" for k, v in self.means.items())


def face_masks(items: Sequence[dict], stride: int, min_side: float = 0.06) -> Dict[str, np.ndarray]:
    """Head regions of the photos in ``items`` (dicts with ``key`` and ``image``, uint8 (h, w, 3)) on the
    model's output grid (``stride`` input pixels per cell): bool (h // stride, w // stride) per key whose photo
    has a frontal face (:func:`gazecrop.train.faces.detect_faces`, head = :func:`gazecrop.crop.head_box`);
    photos without a face are left out. Needs OpenCV."""
    from .face_map import head_coverage
    from .faces import detect_faces, head_box

    out: Dict[str, np.ndarray] = {}
    for it in items:
        img = it["image"]
        faces = detect_faces(img, min_side)
        if not faces:
            continue
        h, w = img.shape[0] // stride, img.shape[1] // stride
        heads = [tuple(head_box(f, (img.shape[1], img.shape[0]))) for f in faces]
        out[it["key"]] = head_coverage((w * stride, h * stride), heads, (h, w)) > 0  # cells a head touches
    return out


class FaceShareTerm:
    """Faces keep their weight: on training photos with a detected face, a one-sided penalty when the model's
    share of the density inside the heads falls below the reference's (the map training started from):
    ``share_weight * mean over photos of relu(log M_ref - log M_model)^2``, M the density mass in the head cells
    (nats).

    Human fixations go to faces first (Cerf et al., NIPS 2007; Judd et al., ICCV 2009); the parity term alone
    may balance portraits by taking density off women's faces, which then lose to clothing or background in
    ordinary photos. This term lets the parity term raise the other group instead.

    With ``fixation_weight`` > 0 it adds that multiple (per photo, averaged) of the within-head fixation term: the negative
    log-likelihood (nats per fixation) of the photo's human fixations that fall inside its heads under the
    model's density **conditioned on the heads** (normalised over the head cells). Fixations on faces land
    mostly on the eyes (Yarbus 1967; Judd et al. 2009) while the teacher's density peaks on the mouth; this
    moves density inside faces toward where people look, and leaves the head's total share to the first term.

    Args:
        items: training photos (``key``, ``image`` uint8 (h, w, 3) at the model's input size, ``fx``, ``fy``
            float32 fixations in input pixels).
        masks: :func:`face_masks` of ``items`` (bool grid per key).
        reference: log-density targets of the reference, float32 (h, w) per key (e.g. :func:`own_targets`).
        per_step: photos drawn per step. stride: input pixels per grid cell.
    Raises:
        ValueError: no photo of ``items`` has a mask, ``per_step`` < 1 or a negative weight.
    """

    def __init__(self, items: Sequence[dict], masks: Dict[str, np.ndarray], reference: Dict[str, np.ndarray],
                 per_step: int = 4, share_weight: float = 1.0, fixation_weight: float = 0.0, stride: int = 8) -> None:
        self.items = [it for it in items if it["key"] in masks and it["key"] in reference]
        if not self.items:
            raise ValueError("no training photo has a detected face")
        if per_step < 1:
            raise ValueError(f"per_step must be >= 1, got {per_step}")
        if fixation_weight < 0 or share_weight < 0:
            raise ValueError(f"weights must be >= 0, got {share_weight}, {fixation_weight}")
        self.masks, self.per_step = masks, per_step
        self.share_weight, self.fixation_weight = share_weight, fixation_weight
        self.head_fixations: Dict[str, np.ndarray] = {}
        for it in self.items:  # (row, column) cells of the fixations inside a head
            m = masks[it["key"]]
            fx = np.clip((np.asarray(it.get("fx", ())) // stride).astype(int), 0, m.shape[1] - 1)
            fy = np.clip((np.asarray(it.get("fy", ())) // stride).astype(int), 0, m.shape[0] - 1)
            inside = m[fy, fx] if len(fx) else np.zeros(0, bool)
            self.head_fixations[it["key"]] = np.stack([fy[inside], fx[inside]], 1) if inside.any() else \
                np.zeros((0, 2), int)
        self.ref_log_mass = {it["key"]: float(torch.logsumexp(torch.from_numpy(reference[it["key"]])[
            torch.from_numpy(masks[it["key"]])], 0)) for it in self.items}

    def loss(self, model, rng: random.Random) -> torch.Tensor:
        """Scalar tensor: the weighted terms (nats) averaged over ``per_step`` photos drawn with ``rng`` (same
        shape per call: photos of the first draw's size)."""
        first = self.items[rng.randrange(len(self.items))]
        shape = first["image"].shape
        same = [it for it in self.items if it["image"].shape == shape]
        picks = [first] + [same[rng.randrange(len(same))] for _ in range(self.per_step - 1)]
        flips = [rng.random() < 0.5 for _ in picks]
        x = torch.stack([torch.from_numpy(np.ascontiguousarray(it["image"][:, ::-1] if f else it["image"]))
                         .permute(2, 0, 1).float() for it, f in zip(picks, flips)])
        logd = model(x)
        out = logd.new_zeros(())
        for j, (it, f) in enumerate(zip(picks, flips)):
            m = torch.from_numpy(np.ascontiguousarray(self.masks[it["key"]][:, ::-1] if f else self.masks[it["key"]]))
            head_log_mass = torch.logsumexp(logd[j][m], 0)
            short = self.ref_log_mass[it["key"]] - head_log_mass
            out = out + self.share_weight * torch.relu(short) ** 2
            cells = self.head_fixations[it["key"]]
            if self.fixation_weight > 0 and len(cells):
                cols = m.shape[1] - 1 - cells[:, 1] if f else cells[:, 1]
                nll = head_log_mass - logd[j][torch.from_numpy(cells[:, 0]), torch.from_numpy(cols)].mean()
                out = out + self.fixation_weight * nll
        return out / len(picks)


_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float32)


def colour_view(img: torch.Tensor, rng: random.Random, grey_p: float = 0.25, hue: float = 0.5,
                saturation: Tuple[float, float] = (0.4, 1.6)) -> torch.Tensor:
    """A colour-robust view of float (3, h, w) RGB 0..255: greyscale (ITU-R 601 luma in all channels) with
    probability ``grey_p``, else the chroma rotated by a random hue angle in [-hue, hue] radians and scaled by
    a random saturation factor, in YIQ space; clamped to 0..255. The target density stays the original's."""
    if rng.random() < grey_p:
        y = (_YIQ[0].view(3, 1, 1) * img).sum(0, keepdim=True)
        return y.expand(3, -1, -1).clamp(0, 255).contiguous()
    a = rng.uniform(-hue, hue)
    s = rng.uniform(*saturation)
    rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, s * math.cos(a), -s * math.sin(a)],
                        [0.0, s * math.sin(a), s * math.cos(a)]])
    m = torch.linalg.inv(_YIQ) @ rot @ _YIQ
    return torch.einsum("ij,jhw->ihw", m, img).clamp(0, 255)
