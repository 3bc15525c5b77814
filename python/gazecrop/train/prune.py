"""Fisher pruning of the distilled student (Theis, Korshunova, Tejani, Huszar 2018, "Faster gaze prediction
with dense networks and Fisher pruning", arXiv:1801.05787).

For every prunable feature map k the pruning signal is the Fisher estimate of the loss increase caused by
removing it, ``Delta_k = 1/(2N) sum_n (sum_ij a_nkij g_nkij)^2``, with activations ``a`` and gradients ``g``
of the per-image training loss (accumulated over the ``--steps`` fine-tuning batches since the last removal).
The map removed is the one minimising ``Delta_k + beta * Delta_FLOPs_k`` where ``Delta_FLOPs_k < 0`` is the
change of the network's FLOPs when k goes (its own conv and its consumers' input channels), recomputed after
every removal so costs follow as neighbours shrink. ``beta`` is given relative to the initial ratio of the
median signal to the median FLOP saving (``--beta 0`` prunes by the Fisher signal alone). Between removals
the network is fine-tuned with the distillation loss.

The whole path is recorded: ``<out>/curve.csv`` (FLOPs at the reference input size vs val information gain
and AUC-Judd on the student grid) and a snapshot of the masks + weights at each evaluation
(``<out>/snapshots/``). Resumes from ``<out>/checkpoint.pt``; ``<out>/done`` marks completion.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from .distill import (_append_csv, batches, build_data, evaluate_grid, git_commit, load_checkpoint, loss_on_batch,
                      save_atomic, teacher_targets)
from .._atomic import write_text
from .densenet_student import ConvBN, Student

REF_SIZE = (192, 256)  # (H, W): FLOPs are quoted for a 4:3 landscape image at the student's input size


class FisherAccumulator:
    """Accumulates ``sum_n (sum_ij a g)^2`` per feature map via tensor hooks on every prunable ConvBN."""

    def __init__(self, model: Student) -> None:
        self.model = model
        self.sums: Dict[str, torch.Tensor] = {}
        self.count = 0
        self.batch = 1
        for m in model.prunable():
            m.fisher_hook = self._hook

    def _hook(self, m: ConvBN, y: torch.Tensor) -> None:
        a = y.detach()

        def grad_hook(g: torch.Tensor) -> None:
            # the loss is a mean over the batch: scale back to per-image gradients
            s = (a * g).sum((2, 3)) * self.batch
            acc = self.sums.get(m.name)
            self.sums[m.name] = (s * s).sum(0) if acc is None else acc + (s * s).sum(0)

        y.register_hook(grad_hook)

    def reset(self) -> None:
        self.sums.clear()
        self.count = 0

    def signals(self) -> Dict[str, torch.Tensor]:
        """``Delta_k`` (nats per image) per conv name, (C,) each; +inf for already pruned maps."""
        out = {}
        for m in self.model.prunable():
            d = self.sums.get(m.name, torch.zeros_like(m.mask)) / (2 * max(self.count, 1))
            out[m.name] = torch.where(m.mask > 0.5, d, torch.full_like(d, float("inf")))
        return out

    def close(self) -> None:
        for m in self.model.prunable():
            m.fisher_hook = None


def load_prunable(state: dict):
    """The student of a checkpoint dict ``{"cfg", "model"}``: the pretrained EfficientNet-Lite student
    (:class:`gazecrop.train.student.PretrainedStudent`, ``cfg`` names a backbone) or the from-scratch DenseNet
    baseline (:class:`gazecrop.train.densenet_student.Student`). Both expose ``prunable()``, ``convs()``, ``flops()``
    and ``flop_savings()``."""
    if "backbone" in state["cfg"]:
        from .student import student_from_state

        return student_from_state(state)
    model = Student(state["cfg"])
    model.load_state_dict(state["model"])
    return model


def prune(src: Path, out: Path, *, target_flops: float, steps: int = 5, maps_per_step: int = 4,
          beta: float = 1.0, lr: float = 3e-4, batch: int = 8, eval_every: int = 25, teacher_weight: float = 0.9,
          threads: int = 1, seed: int = 0, log=print) -> Path:
    """Prune ``src`` (a distill checkpoint) until its FLOPs at :data:`REF_SIZE` fall below ``target_flops``."""
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    (out / "snapshots").mkdir(exist_ok=True)
    if (out / "done").is_file():
        log(f"{out}/done exists; skipping")
        return out
    ck = out / "checkpoint.pt"
    state = load_checkpoint(ck if ck.is_file() else src, ("cfg", "model"), "student checkpoint")
    model = load_prunable(state)
    side = int(model.cfg.get("input_long_side", 256))
    train_items = build_data("train", side, log=log)
    val_items = build_data("val", side, log=log)
    targets = teacher_targets(train_items, log=log) if teacher_weight > 0 else None
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = random.Random(seed)
    removed, beta_abs = 0, None
    if ck.is_file():
        opt.load_state_dict(state["opt"])
        rng.setstate(state["rng"])
        removed, beta_abs = state["removed"], state["beta_abs"]
        log(f"resumed after {removed} removals")
    else:
        write_text(out / "config.json", json.dumps(dict(src=str(src), target_flops=target_flops, steps=steps,
                                                        maps_per_step=maps_per_step, beta=beta, lr=lr, batch=batch,
                                                        teacher_weight=teacher_weight, seed=seed,
                                                        commit=git_commit()), indent=1))

    def record() -> None:
        ev = evaluate_grid(model, val_items)
        fl = model.flops(*REF_SIZE)
        row = dict(removed=removed, flops=fl, **ev, time=time.strftime("%H:%M:%S"))
        log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        _append_csv(out / "curve.csv", row)
        save_atomic(dict(cfg=dict(model.cfg), model=model.state_dict(), metrics=ev, flops=fl, removed=removed),
                    out / "snapshots" / f"removed{removed:05d}.pt")

    if removed == 0:
        record()
    fisher = FisherAccumulator(model)
    it = iter(())
    model.train()
    while model.flops(*REF_SIZE) > target_flops:
        fisher.reset()
        for _ in range(steps):
            idx = next(it, None)
            if idx is None:
                it = iter(batches(train_items, batch, rng))
                idx = next(it)
            fisher.batch = len(idx)
            loss, _ = loss_on_batch(model, train_items, idx, targets, rng, teacher_weight)
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
            fisher.count += len(idx)
        sig = fisher.signals()
        for _ in range(maps_per_step):
            savings = model.flop_savings(*REF_SIZE)
            if not savings:
                break
            if beta_abs is None:
                all_sig = torch.cat([s[torch.isfinite(s)] for s in sig.values()])
                beta_abs = beta * float(all_sig.median()) / float(np.median(list(savings.values())))
                log(f"beta_abs = {beta_abs:.3e} nats per FLOP")
            best = None
            for name, saved in savings.items():
                s = sig[name]
                k = int(torch.argmin(s))
                score = float(s[k]) - beta_abs * saved
                if best is None or score < best[0]:
                    best = (score, name, k)
            _, name, k = best
            model.convs()[name].mask[k] = 0.0
            sig[name][k] = float("inf")
            removed += 1
            if removed % eval_every == 0:
                record()
        save_atomic(dict(cfg=dict(model.cfg), model=model.state_dict(), opt=opt.state_dict(), rng=rng.getstate(),
                         removed=removed, beta_abs=beta_abs), ck)
    fisher.close()
    record()
    write_text(out / "done", json.dumps(dict(removed=removed, flops=model.flops(*REF_SIZE))))
    return out


def plot_curve(curve_csv: Path, png: Path, vanilla_gflops: Optional[float] = None) -> None:
    """Plot a pruning path (``curve.csv``): val information gain and AUC-Judd (pooled, student grid)
    against GFLOPs at :data:`REF_SIZE`; vertical lines at 1/10, 1/20 and 1/40 of the vanilla model."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(curve_csv) as f:
        rows = list(csv.DictReader(f))
    gf = [float(r["flops"]) / 1e9 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "ig", "information gain (bit/fix)"), (axes[1], "auc", "AUC-Judd")):
        for ds in ("pooled", "mit1003", "osie", "scene500"):
            ax.plot(gf, [float(r[f"{ds}_{key}"]) for r in rows], "-o" if ds == "pooled" else "--",
                    ms=3, lw=2 if ds == "pooled" else 1, label=ds)
        if vanilla_gflops:
            for frac in (10, 20, 40):
                ax.axvline(vanilla_gflops / frac, color="grey", lw=0.8, ls=":")
                ax.text(vanilla_gflops / frac, ax.get_ylim()[0], f" 1/{frac}", color="grey", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("GFLOPs per image at 192x256")
        ax.set_ylabel(f"val {label}, student grid")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Fisher pruning path of the gazecrop student")
    fig.tight_layout()
    tmp = png.with_name(png.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, png)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gazecrop.train.prune", description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="src", type=Path, help="distilled student (final.pt)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--target-gflops", type=float, help="stop below this many GFLOPs at 192x256")
    p.add_argument("--plot", type=Path, help="only plot <out>/curve.csv to this PNG (and copy the CSV beside it)")
    p.add_argument("--vanilla-gflops", type=float, help="with --plot: mark 1/10, 1/20, 1/40 of this")
    p.add_argument("--steps", type=int, default=5, help="fine-tuning batches between removals")
    p.add_argument("--maps-per-step", type=int, default=4, help="maps removed per round (costs recomputed each)")
    p.add_argument("--beta", type=float, default=1.0, help="FLOP penalty relative to the initial median ratio")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--eval-every", type=int, default=25, help="removals between curve points")
    p.add_argument("--teacher-weight", type=float, default=0.9)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.plot:
        plot_curve(a.out / "curve.csv", a.plot, a.vanilla_gflops)
        import shutil

        shutil.copyfile(a.out / "curve.csv", a.plot.with_suffix(".csv"))
        return 0
    if a.src is None or a.target_gflops is None:
        p.error("--from and --target-gflops are required to prune")
    try:  # a bad input file fails here, before any data is loaded
        load_prunable(load_checkpoint(a.src, ("cfg", "model"), "student checkpoint"))
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    prune(a.src, a.out, target_flops=a.target_gflops * 1e9, steps=a.steps, maps_per_step=a.maps_per_step,
          beta=a.beta, lr=a.lr, batch=a.batch, eval_every=a.eval_every, teacher_weight=a.teacher_weight,
          threads=a.threads, seed=a.seed, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
