"""Knowledge distillation of the teacher ensemble into a student (Hinton et al. 2015, as used for saliency by
Theis et al. 2018, arXiv:1801.05787): the data, teacher targets, augmentation, loss and val metrics that the
from-scratch DenseNet student (:mod:`gazecrop.train.densenet_student`, the shipped default, trained by this module's own
:func:`train` / ``python -m gazecrop.train.distill``) and the EfficientNet-Lite0 student
(:mod:`gazecrop.train.student`) share.

Loss per image: ``0.9 * CE(teacher density, student) + 0.1 * NLL(fixations)``, both in nats (the
cross-entropy over grid cells, the negative log-likelihood averaged over the image's fixations). With no
teacher targets (``--teacher-weight 0``) this is plain maximum-likelihood training on the fixations.

Data: the train split of mit1003, osie and scene500 (:mod:`gazecrop.datasets`), decoded and resized once to
the student input size (long side 256, sides multiples of 32) into a cache. Teacher targets are the
ensemble's densities on each training image, computed once from the teacher's cached backbone features
(:func:`gazecrop.train.teacher.load_features`) and area-resampled to the student grid. Augmentation
(horizontal flip, random crop-and-rescale of 80-100 % of each side, colour jitter) is applied on the fly to
the image, the fixations and the teacher density alike; the teacher density of an augmented image is thus
the geometrically transformed density of the original (an approximation: the teacher is not re-run).

Feature hints (``--hint-weight``, FitNets, Romero et al. 2015): a 1x1 conv adapter (trained alongside, not
exported) maps the student's readout features to the teacher members' last hidden readout maps
(:class:`TeacherHints`, 16 per member, standardised), with a mean squared error added to the loss. These give
the student 112 targets per grid cell instead of one density. With hints, flipped images also get the
teacher's density and hints computed from the mirrored image's backbone features.

Commands: ``python -m gazecrop.train.distill --help``. Every run resumes from ``<out>/checkpoint.pt`` and
skips when ``<out>/final.pt`` exists.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import datasets as gds
from .._atomic import atomic_open, write_text
from ..centre_bias import default_centre_bias
from ..weights import Network
from .densenet_student import Student, StudentConfig

STRIDE = 8
LOG2 = math.log(2.0)


def cache_dir() -> Path:
    return Path(os.environ.get("GAZECROP_CACHE", Path.home() / ".cache" / "gazecrop"))


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        return "unknown"


def student_input_size(width: int, height: int, long_side: int = 256, multiple: int = 32):
    """(width, height) of the student's input for an image: the :meth:`Network.input_size` rule."""
    h, w = Network(input_long_side=long_side, size_multiple=multiple).input_size(height, width)
    return w, h


# ------------------------------------------------------------------------------------------------ data
def build_data(split: str, long_side: int = 256, log=print) -> List[dict]:
    """Decode + resize every image of ``split`` once; cached in ``$GAZECROP_CACHE/student``.

    Returns a list of dicts: ``key``, ``dataset``, ``image`` uint8 (h, w, 3), ``fx``, ``fy`` float32 (n,)
    fixations in input-image pixels.
    """
    path = cache_dir() / "student" / f"data_{split}_L{long_side}.pt"
    if path.is_file():
        return torch.load(path, weights_only=False)
    samples = gds.load_datasets(split=split)
    items = []
    t0 = time.time()
    for i, s in enumerate(samples):
        w, h = student_input_size(s.width, s.height, long_side)
        fx, fy = s.fixations_at(w, h)
        items.append(dict(key=s.key, dataset=s.dataset, image=gds.load_image(s, size=(w, h)),
                          fx=fx.astype(np.float32), fy=fy.astype(np.float32), size=(s.width, s.height)))
        if (i + 1) % 500 == 0:
            log(f"[data {split}] {i + 1}/{len(samples)} {time.time() - t0:.0f}s")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(items, path)
    return items


def _long_side(items: List[dict]) -> int:
    return max(max(it["image"].shape[:2]) for it in items)


def _teacher_on_grid(ens, s: "gds.Sample", h: int, w: int, suffix: str = "", hidden: bool = False):
    """The teacher ensemble ``ens`` on one image from its cached backbone features (``suffix`` "_flip": the
    mirrored image's), area-pooled to the (h, w) student grid: (log-density float32 (h, w), and with
    ``hidden`` the members' last hidden readout maps float16 (16 x members, h, w), else None). Each backbone's
    features are loaded once, however many members share them."""
    from . import teacher as T

    feats: Dict[str, list] = {}
    maps, dens = [], []
    with torch.no_grad():
        for m in ens:
            key = m.spec.cache_key + suffix
            if key not in feats:
                feats[key] = [f.float()[None] for f in T.load_features(key, s)]
            hid = m.readout.hidden(feats[key], T._grid_of(s, m.spec.long_side))
            if hidden:
                maps.append(F.adaptive_avg_pool2d(hid, (h, w))[0])
            logd = m.finalizer(m.readout.rest[-1](hid)[:, 0])
            dens.append(F.adaptive_avg_pool2d(logd.exp()[None], (h, w))[0, 0])
    d = torch.stack(dens).mean(0).double()
    return (d / d.sum()).log().float().numpy(), (torch.cat(maps).half().numpy() if hidden else None)


def teacher_targets(items: List[dict], members: Optional[Sequence[str]] = None, log=print,
                    mirrored: bool = False) -> Dict[str, np.ndarray]:
    """The teacher ensemble's log-density for each item on the student grid (float32 (h/8, w/8)), from the
    teacher's cached backbone features; cached in ``$GAZECROP_CACHE/student/teacher_L<side>_<members>.pt``
    (side: the items' input long side). With ``mirrored``, the density of each image mirrored left-right,
    computed from the mirrored image's backbone features (the teacher re-run on the flipped view; the
    ``<backbone>_L<side>_flip`` caches), in the mirrored image's coordinates (cache suffix ``_flip``)."""
    from . import teacher as T

    names = list(members) if members else T.ensemble_members()
    suffix = "_flip" if mirrored else ""
    path = cache_dir() / "student" / f"teacher_L{_long_side(items)}_{'+'.join(names)}{suffix}.pt"
    if path.is_file():
        return torch.load(path, weights_only=False)
    ens = [T.load_member(n) for n in names]
    by_key = {s.key: s for s in gds.load_datasets()}
    out = {}
    t0 = time.time()
    for i, it in enumerate(items):
        h, w = it["image"].shape[0] // STRIDE, it["image"].shape[1] // STRIDE
        out[it["key"]] = _teacher_on_grid(ens, by_key[it["key"]], h, w, suffix)[0]
        if (i + 1) % 500 == 0:
            log(f"[teacher] {i + 1}/{len(items)} {time.time() - t0:.0f}s")
    save_atomic(out, path)
    return out


class TeacherHints:
    """Feature hints (FitNets, Romero et al. 2015) and flipped-image targets from the teacher ensemble.

    For each training image and both orientations (as is, mirrored left-right) the last hidden readout layer
    of every member (:meth:`gazecrop.train.teacher.Readout.hidden`, 16 softplus maps each, the maps the
    member's output conv combines into its saliency map), area-resampled to the student grid: ``hint[key]``
    float16 (2, C, h/8, w/8), C = 16 x members, orientation 0 as is, 1 mirrored (computed from the backbone
    features of the mirrored image, so the teacher is really re-run under flips); ``logd_flip[key]`` float32
    (h/8, w/8) the ensemble log-density of the mirrored image. ``mean``/``std`` float32 (C,) standardise the
    hints over the training set. Built by :func:`teacher_hints`.
    """

    def __init__(self, hint: Dict[str, np.ndarray], logd_flip: Dict[str, np.ndarray], members: Sequence[str]):
        self.hint, self.logd_flip, self.members = hint, logd_flip, list(members)
        c = next(iter(hint.values())).shape[1]
        s1, s2, n = np.zeros(c), np.zeros(c), 0
        for v in hint.values():
            x = v.astype(np.float64)
            s1 += x.sum((0, 2, 3))
            s2 += (x * x).sum((0, 2, 3))
            n += x.shape[0] * x.shape[2] * x.shape[3]
        self.mean = (s1 / n).astype(np.float32)
        self.std = np.sqrt(np.maximum(s2 / n - (s1 / n) ** 2, 1e-12)).astype(np.float32)

    @property
    def channels(self) -> int:
        return len(self.mean)

    def standardised(self, key: str, flipped: bool) -> torch.Tensor:
        """float32 (C, h/8, w/8) standardised hints of one image (mirrored if ``flipped``)."""
        x = torch.from_numpy(self.hint[key][int(flipped)].astype(np.float32))
        return (x - torch.from_numpy(self.mean)[:, None, None]) / torch.from_numpy(self.std)[:, None, None]


def teacher_hints(items: List[dict], members: Optional[Sequence[str]] = None, log=print) -> TeacherHints:
    """:class:`TeacherHints` for ``items`` from the teacher's cached backbone features of the images and of
    their mirror images (``<backbone>_L<side>_flip`` caches); cached in
    ``$GAZECROP_CACHE/student/hints_L<side>_<members>.pt`` (side: the items' input long side)."""
    from . import teacher as T

    names = list(members) if members else T.ensemble_members()
    path = cache_dir() / "student" / f"hints_L{_long_side(items)}_{'+'.join(names)}.pt"
    if path.is_file():
        d = torch.load(path, weights_only=False)
        return TeacherHints(d["hint"], d["logd_flip"], names)
    ens = [T.load_member(n) for n in names]
    by_key = {s.key: s for s in gds.load_datasets()}
    hint, logd_flip = {}, {}
    t0 = time.time()
    for i, it in enumerate(items):
        s = by_key[it["key"]]
        h, w = it["image"].shape[0] // STRIDE, it["image"].shape[1] // STRIDE
        _, as_is = _teacher_on_grid(ens, s, h, w, hidden=True)
        logd_flip[it["key"]], mirrored = _teacher_on_grid(ens, s, h, w, "_flip", hidden=True)
        hint[it["key"]] = np.stack([as_is, mirrored])
        if (i + 1) % 250 == 0:
            log(f"[hints] {i + 1}/{len(items)} {time.time() - t0:.0f}s")
    save_atomic(dict(hint=hint, logd_flip=logd_flip, members=names), path)
    return TeacherHints(hint, logd_flip, names)


def _cells(fx: np.ndarray, fy: np.ndarray, h: int, w: int) -> torch.Tensor:
    ix = np.clip(np.floor((fx + 0.5) / STRIDE), 0, w - 1).astype(np.int64)
    iy = np.clip(np.floor((fy + 0.5) / STRIDE), 0, h - 1).astype(np.int64)
    return torch.from_numpy(iy * w + ix)


def _crop_grid(t: torch.Tensor, y0: int, x0: int, ch: int, cw: int, h: int, w: int) -> torch.Tensor:
    """Crop the (N, C, h/8, w/8) grid maps ``t`` to the pixel box (x0, y0, cw, ch) (multiples of 8) and
    resize them bilinearly back to (h/8, w/8)."""
    g = t[:, :, y0 // STRIDE:(y0 + ch) // STRIDE, x0 // STRIDE:(x0 + cw) // STRIDE]
    return F.interpolate(g, size=(h // STRIDE, w // STRIDE), mode="bilinear", align_corners=False)


def augment(it: dict, target: Optional[np.ndarray], rng: random.Random, hints: Optional[TeacherHints] = None,
            flip_targets: Optional[Dict[str, np.ndarray]] = None, colour_robust: float = 0.0):
    """Random flip, crop-and-rescale (80-100 % of each side) and colour jitter, applied to the image,
    fixations and teacher log-density alike.

    With ``hints``, a flipped image takes the teacher's density and hints computed on the mirrored image
    (:class:`TeacherHints`) instead of mirrored ones; with ``flip_targets`` (:func:`teacher_targets` with
    ``mirrored``) it takes that density. With probability ``colour_robust`` the image becomes a greyscale,
    hue-rotated or (de)saturated view (:func:`gazecrop.train.fairness.colour_view`) while the target stays the
    teacher's density of the original colours. Returns (image float32 (3, h, w), cells int64 (n,), target float32
    (h/8, w/8) or None, hint float32 (C, h/8, w/8) or None).
    """
    img = torch.from_numpy(it["image"]).permute(2, 0, 1).float()
    h, w = img.shape[1:]
    fx, fy = it["fx"].copy(), it["fy"].copy()
    flip = rng.random() < 0.5
    if hints is not None:
        flip_targets = hints.logd_flip
    rerun = flip and flip_targets is not None and target is not None
    if rerun:
        target = flip_targets[it["key"]]
    tgt = None if target is None else torch.from_numpy(target).exp()[None, None].double()
    hint = None if hints is None else hints.standardised(it["key"], flip)[None]
    if flip:
        img = img.flip(2)
        fx = w - 1 - fx
        if tgt is not None and not rerun:
            tgt = tgt.flip(3)
    if rng.random() < 0.5:
        ch, cw = int(h * rng.uniform(0.8, 1.0)) // STRIDE * STRIDE, int(w * rng.uniform(0.8, 1.0)) // STRIDE * STRIDE
        y0, x0 = rng.randrange(0, h - ch + 1, STRIDE), rng.randrange(0, w - cw + 1, STRIDE)
        img = F.interpolate(img[None, :, y0:y0 + ch, x0:x0 + cw], size=(h, w), mode="bilinear",
                            align_corners=False, antialias=False)[0]
        keep = (fx >= x0 - 0.5) & (fx < x0 + cw - 0.5) & (fy >= y0 - 0.5) & (fy < y0 + ch - 0.5)
        fx = (fx[keep] - x0 + 0.5) * w / cw - 0.5
        fy = (fy[keep] - y0 + 0.5) * h / ch - 0.5
        if tgt is not None:
            tgt = _crop_grid(tgt / tgt.sum(), y0, x0, ch, cw, h, w)
        if hint is not None:
            hint = _crop_grid(hint, y0, x0, ch, cw, h, w)
    b = rng.uniform(0.8, 1.2)
    c = rng.uniform(0.8, 1.2)
    s = rng.uniform(0.8, 1.2)
    grey = img.mean(0, keepdim=True)
    img = grey + s * (img - grey)
    img = (img - img.mean()) * c + img.mean() * b
    img = img.clamp(0, 255)
    if colour_robust > 0 and rng.random() < colour_robust:
        from .fairness import colour_view

        img = colour_view(img, rng)
    if tgt is not None:
        tgt = (tgt / tgt.sum()).clamp_min(1e-12).log()[0, 0].float()
    return img, _cells(fx, fy, h // STRIDE, w // STRIDE), tgt, None if hint is None else hint[0]


def batches(items: List[dict], batch: int, rng: random.Random) -> List[List[int]]:
    """Index batches of equal image size, shuffled."""
    groups: Dict[tuple, List[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it["image"].shape, []).append(i)
    out = []
    for idx in groups.values():
        rng.shuffle(idx)
        out += [idx[j:j + batch] for j in range(0, len(idx), batch)]
    rng.shuffle(out)
    return out


def loss_on_batch(model: Student, items: List[dict], idx: List[int], targets, rng: Optional[random.Random],
                  teacher_weight: float, hints: Optional[TeacherHints] = None, hint_weight: float = 0.0,
                  adapter: Optional[torch.nn.Module] = None, flip_targets: Optional[Dict[str, np.ndarray]] = None,
                  colour_robust: float = 0.0):
    """Mean per-image loss (nats) of a batch; with ``rng`` the batch is augmented.

    Per image: ``teacher_weight * CE(teacher density, student) + (1 - teacher_weight) * fixation NLL`` plus,
    with ``hints`` and ``adapter`` (a 1x1 conv from :meth:`Student.features` to the hint channels),
    ``hint_weight * MSE(adapter(features), standardised teacher hints)`` (FitNets-style feature hints). With
    ``flip_targets`` flipped views take the teacher's density of the mirrored image, and ``colour_robust`` is the
    probability of a colour-robust view (:func:`augment`). Returns (loss (N,), log-densities (N, h/8 * w/8)).
    """
    use_hints = hints is not None and adapter is not None and hint_weight > 0
    imgs, cells, tgts, hts = [], [], [], []
    for i in idx:
        it = items[i]
        t = None if targets is None else targets[it["key"]]
        if rng is not None:
            img, c, tg, ht = augment(it, t, rng, hints if use_hints else None, flip_targets, colour_robust)
        else:
            img = torch.from_numpy(it["image"]).permute(2, 0, 1).float()
            h, w = img.shape[1:]
            c = _cells(it["fx"], it["fy"], h // STRIDE, w // STRIDE)
            tg = None if t is None else torch.from_numpy(t)
            ht = hints.standardised(it["key"], False) if use_hints else None
        imgs.append(img)
        cells.append(c)
        tgts.append(tg)
        hts.append(ht)
    x = torch.stack(imgs)
    feats = model.features(x)
    logd = model.head(feats).flatten(1)
    nll = torch.stack([-logd[j, c].mean() if len(c) else logd.new_zeros(()) for j, c in enumerate(cells)])
    loss = (1 - teacher_weight) * nll if teacher_weight < 1 else 0 * nll
    if teacher_weight > 0 and targets is not None:
        t = torch.stack(tgts).flatten(1)
        ce = -(t.exp() * logd).sum(1)
        loss = loss + teacher_weight * ce
    if use_hints:
        loss = loss + hint_weight * (adapter(feats) - torch.stack(hts)).pow(2).mean((1, 2, 3))
    return loss, logd


def evaluate_grid(model: Student, items: List[dict], batch: int = 16) -> Dict[str, float]:
    """Val metrics on the student grid: log-likelihood gain over the centre bias (bits per fixation,
    centre bias evaluated on the same grid) and AUC-Judd, per dataset and pooled."""
    from .. import metrics

    cb = default_centre_bias()
    model.eval()
    stats: Dict[str, List[float]] = {}
    with torch.no_grad():
        for idx in batches(items, batch, random.Random(0)):
            imgs = torch.stack([torch.from_numpy(items[i]["image"]).permute(2, 0, 1).float() for i in idx])
            logd = model(imgs).numpy().astype(np.float64)
            for j, i in enumerate(idx):
                it = items[i]
                h, w = logd.shape[1:]
                c = _cells(it["fx"], it["fy"], h, w).numpy()
                if not len(c):
                    continue
                lcb = cb.log_density(h, w).ravel()
                ig = (logd[j].ravel()[c] - lcb[c]).sum() / LOG2
                gx, gy = c % w, c // w
                auc = metrics.auc_judd(logd[j], gx.astype(float), gy.astype(float))
                for k in (it["dataset"], "pooled"):
                    s = stats.setdefault(k, [0.0, 0, 0.0, 0])
                    s[0] += ig
                    s[1] += len(c)
                    s[2] += auc
                    s[3] += 1
    model.train()
    return {f"{k}_{m}": v for k, s in stats.items() for m, v in (("ig", s[0] / s[1]), ("auc", s[2] / s[3]))}


# ------------------------------------------------------------------------------------------------ training
def init_student(cfg: StudentConfig) -> Student:
    cb = default_centre_bias()
    h, w = cfg["centre_bias_shape"]
    return Student(cfg, cb.log_density(h, w).astype(np.float32))


def start_run(out: Path, threads: int, seed: int, log=print) -> Optional[random.Random]:
    """Common start of a resumable training run in ``out``: torch threads, seeds; None (and a log line) when
    ``<out>/final.pt`` exists, else the run's ``random.Random`` (augmentation and batch order)."""
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "final.pt").is_file():
        log(f"{out / 'final.pt'} exists; skipping")
        return None
    torch.manual_seed(seed)
    return random.Random(seed)


def run_epoch(items: List[dict], batch: int, rng: random.Random, opt, sched, batch_loss) -> float:
    """One epoch of optimiser steps over shuffled equal-size batches (:func:`batches`); ``batch_loss(idx)``
    gives the (N,) per-image losses of a batch. Returns the mean per-image loss."""
    tot, n = 0.0, 0
    for idx in batches(items, batch, rng):
        loss = batch_loss(idx)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        sched.step()
        tot += float(loss.detach().sum())
        n += len(idx)
    return tot / n


def load_checkpoint(path: Path, required: Sequence[str], what: str) -> dict:
    """A training checkpoint (a trusted file this project wrote: a full pickle with configs and RNG states).

    Raises:
        FileNotFoundError: no such file.
        ValueError: torch cannot read it, or it is not a dict with the ``required`` entries (``what`` names
            the expected kind in the message, e.g. "student checkpoint").
    """
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as e:  # not a torch file at all (pickle, zip or EOF errors)
        raise ValueError(f"{path}: not a {what} ({type(e).__name__}: {e})") from None
    if not isinstance(blob, dict) or not set(required) <= blob.keys():
        raise ValueError(f"{path}: not a {what} (expected a dict with {', '.join(map(repr, required))})")
    return blob


def save_atomic(obj, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically (:func:`gazecrop._atomic.atomic_open`)."""
    with atomic_open(path) as f:
        torch.save(obj, f)


def train(out: Path, *, epochs: int, batch: int = 8, lr: float = 2e-3, teacher_weight: float = 0.9,
          init: Optional[Path] = None, cfg: Optional[dict] = None, threads: int = 1, seed: int = 0,
          hint_weight: float = 0.0, snapshots: bool = False, log=print) -> Path:
    """Train (or resume) a student in ``out``; keeps the checkpoint with the best pooled val information
    gain as ``best.pt`` and writes ``final.pt`` (= best) when done. Returns the path of ``final.pt``.

    ``hint_weight`` > 0 adds the teacher's feature hints (:class:`TeacherHints`, through a 1x1 conv adapter
    that is trained alongside and not exported) and the teacher's densities of mirrored images. With
    ``snapshots`` every epoch's
    model is also kept as ``<out>/epochs/epochNN.pt``."""
    final = out / "final.pt"
    rng = start_run(out, threads, seed, log)
    if rng is None:
        return final
    ck = out / "checkpoint.pt"
    if ck.is_file():
        state = torch.load(ck, weights_only=False)
        model = Student(state["cfg"])
        model.load_state_dict(state["model"])
    elif init is not None:
        state0 = torch.load(init, weights_only=False)
        model = Student({**state0["cfg"], **(cfg or {})})
        added = model.load_grown(state0["model"])  # an exact copy when the architecture is unchanged
        if added:
            log(f"grown from {init}: {len(added)} new tensors")
        state = None
    else:
        model = init_student(StudentConfig(**(cfg or {})))
        state = None
    side = int(model.cfg["input_long_side"])
    train_items = build_data("train", side, log=log)
    val_items = build_data("val", side, log=log)
    targets = teacher_targets(train_items, log=log) if teacher_weight > 0 else None
    hints = teacher_hints(train_items, log=log) if hint_weight > 0 else None
    adapter = torch.nn.Conv2d(model.feature_channels, hints.channels, 1) if hints is not None else None
    if adapter is not None and state is not None and state.get("adapter") is not None:
        adapter.load_state_dict(state["adapter"])
    params = list(model.parameters()) + (list(adapter.parameters()) if adapter is not None else [])
    opt = torch.optim.Adam(params, lr=lr)
    steps_per_epoch = len(batches(train_items, batch, random.Random(0)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.1)
    epoch0, best = 0, -1e9
    if state is not None:
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        epoch0, best = state["epoch"], state["best"]
        rng.setstate(state["rng"])
        log(f"resumed at epoch {epoch0}")
    config = dict(epochs=epochs, batch=batch, lr=lr, teacher_weight=teacher_weight, hint_weight=hint_weight,
                  hint_members=hints.members if hints is not None else None, seed=seed,
                  init=str(init) if init else None, cfg=dict(model.cfg), commit=git_commit())
    write_text(out / "config.json", json.dumps(config, indent=1, default=list))
    for epoch in range(epoch0, epochs):
        model.train()
        t0 = time.time()
        train_loss = run_epoch(train_items, batch, rng, opt, sched, lambda idx: loss_on_batch(
            model, train_items, idx, targets, rng, teacher_weight, hints, hint_weight, adapter)[0])
        ev = evaluate_grid(model, val_items)
        row = dict(epoch=epoch + 1, train_loss=train_loss, seconds=time.time() - t0, sigma=model.blur.sigma, **ev)
        log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        _append_csv(out / "log.csv", row)
        if snapshots:
            (out / "epochs").mkdir(exist_ok=True)
            save_atomic(dict(cfg=dict(model.cfg), model=model.state_dict(), metrics=ev, epoch=epoch + 1),
                        out / "epochs" / f"epoch{epoch + 1:02d}.pt")
        if ev["pooled_ig"] > best:
            best = ev["pooled_ig"]
            save_atomic(dict(cfg=dict(model.cfg), model=model.state_dict(), metrics=ev, epoch=epoch + 1), out / "best.pt")
        save_atomic(dict(cfg=dict(model.cfg), model=model.state_dict(), opt=opt.state_dict(), sched=sched.state_dict(),
                         epoch=epoch + 1, best=best, rng=rng.getstate(),
                         adapter=adapter.state_dict() if adapter is not None else None), ck)
    os.replace(out / "best.pt", final)
    return final


def _append_csv(path: Path, row: dict) -> None:
    """Add ``row`` to the CSV log at ``path`` (header first for a new file); the file is rewritten atomically
    (:func:`gazecrop._atomic.write_text`), so a crash leaves the previous log, never half a line."""
    new = not path.is_file()
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(row))
    if new:
        w.writeheader()
    w.writerow(row)
    write_text(path, ("" if new else path.read_bytes().decode()) + buf.getvalue())


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gazecrop.train.distill", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="run folder (resumes; skips if final.pt exists)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--teacher-weight", type=float, default=0.9,
                   help="weight of the teacher cross-entropy; 1 - this weights the fixation NLL (paper: 0.9)")
    p.add_argument("--hint-weight", type=float, default=0.0,
                   help="weight of the teacher feature-hint MSE (0: off); also uses the teacher's densities of "
                        "mirrored images")
    p.add_argument("--snapshots", action="store_true", help="keep every epoch's model in <out>/epochs/")
    p.add_argument("--init", type=Path, help="start from this checkpoint (e.g. a fixation-only pre-training)")
    p.add_argument("--config", type=str, default="{}",
                   help="JSON overrides of StudentConfig (with --init: of its config, e.g. input_long_side, or "
                        "more dense blocks with head_blocks: the trained student grows, Student.load_grown)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    train(a.out, epochs=a.epochs, batch=a.batch, lr=a.lr, teacher_weight=a.teacher_weight, init=a.init,
          cfg=json.loads(a.config), threads=a.threads, seed=a.seed, hint_weight=a.hint_weight,
          snapshots=a.snapshots,
          log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
