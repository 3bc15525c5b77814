"""Weight averaging of student snapshots (stochastic weight averaging, Izmailov et al. 2018, "Averaging
weights leads to wider optima and better generalization", arXiv:1803.05407).

``python -m gazecrop.train.average --out runs/swa.pt runs/ft_a/epochs/epoch*.pt runs/ft_b/epochs/epoch*.pt``
averages the parameters of snapshots that share one architecture and one set of pruned feature maps (the
late, low-learning-rate epochs of fine-tuning runs from a common start), then recomputes every batch norm's
statistics on the training images (the averaged weights' activations differ from any snapshot's), evaluates
on val (:func:`gazecrop.train.distill.evaluate_grid`) and writes a checkpoint that ``export`` and
``distill --init`` read like any other.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from ..centre_bias import default_centre_bias
from . import distill
from .export import load_student
from .densenet_student import Student

__all__ = ["average_students", "recalibrate_batch_norm", "main"]


def average_students(paths: Sequence[Path]) -> Student:
    """Mean of the snapshots' floating-point parameters and buffers (batch norm statistics included; they are
    recomputed by :func:`recalibrate_batch_norm`).

    Args:
        paths: two or more student checkpoints (``distill`` / ``prune`` snapshots: ``{"cfg", "model", ...}``).
    Returns:
        :class:`Student` in eval mode.
    Raises:
        ValueError: fewer than two snapshots, or snapshots with different configurations or different pruned
            feature maps (averaging those would mix unrelated weights and make fractional masks).
    """
    if len(paths) < 2:
        raise ValueError(f"need at least two snapshots to average, got {len(paths)}")
    models = [load_student(Path(p)) for p in paths]
    ref = models[0]
    for p, m in zip(paths[1:], models[1:]):
        if m.cfg != ref.cfg:
            raise ValueError(f"{p}: configuration {m.cfg} differs from {paths[0]}'s {ref.cfg}")
        for (name, a), b in zip(ref.named_buffers(), m.buffers()):
            if name.endswith("mask") and not torch.equal(a, b):
                raise ValueError(f"{p}: pruned feature maps differ from {paths[0]}'s ({name})")
    states = [m.state_dict() for m in models]
    avg = {k: (sum(s[k] for s in states) / len(states) if v.dtype.is_floating_point else v)
           for k, v in states[0].items()}
    ref.load_state_dict(avg)
    return ref.eval()


def recalibrate_batch_norm(model: torch.nn.Module, items: List[dict], batch: int = 16) -> torch.nn.Module:
    """Recompute every batch norm's running mean and variance from one pass over ``items`` (the cached training
    images of :func:`gazecrop.train.distill.build_data`, dicts with a uint8 (H, W, 3) ``"image"``; not
    augmented), no gradients: the equal-weight average of the per-batch statistics (PyTorch's cumulative
    average, ``momentum=None``), i.e. the exact mean over ``items`` when every batch is full. Returns
    ``model`` in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    model.train()
    for m in bns:  # also those a module keeps in eval mode (the pretrained student's backbone)
        m.train()
    with torch.no_grad():
        for idx in distill.batches(items, batch, random.Random(0)):
            model(torch.stack([torch.from_numpy(items[i]["image"]).permute(2, 0, 1).float() for i in idx]))
    for m, mom in zip(bns, saved):
        m.momentum = mom
        m.eval()
    return model.eval()


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gazecrop.train.average", description=__doc__.split("\n\n")[0])
    p.add_argument("snapshots", type=Path, nargs="+", help="student checkpoints of one architecture and pruning")
    p.add_argument("--out", type=Path, required=True, help="averaged checkpoint (written atomically)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    resolved = [s.resolve() for s in a.snapshots]
    if len(set(resolved)) != len(resolved):
        p.error("a snapshot is given twice (it would count double in the average)")
    if a.out.resolve() in resolved:
        p.error(f"--out {a.out} is one of the snapshots; inputs are never overwritten")
    if a.threads < 1:
        p.error(f"--threads must be >= 1, got {a.threads}")
    torch.set_num_threads(a.threads)
    log = lambda s: print(s, flush=True)  # noqa: E731
    try:
        default_centre_bias()  # needed by the evaluation: fail before the work
        model = average_students(a.snapshots)
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    side = int(model.cfg["input_long_side"])
    recalibrate_batch_norm(model, distill.build_data("train", side, log=log))
    ev = distill.evaluate_grid(model, distill.build_data("val", side, log=log))
    ev = {k: float(v) for k, v in ev.items()}
    log(" ".join(f"{k}={v:.4f}" for k, v in ev.items()))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    distill.save_atomic(dict(cfg=dict(model.cfg), model=model.state_dict(), metrics=ev,
                             averaged=[str(s) for s in a.snapshots], commit=distill.git_commit()), a.out)
    log(json.dumps({"out": str(a.out), "snapshots": len(a.snapshots), "pooled_ig": ev["pooled_ig"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
