"""Evaluate saliency models on the val split: ``python -m gazecrop.evaluate ...`` prints the metric table.

Rows: the centre-bias baseline, each teacher member, the teacher ensemble, and optionally ``.gzw`` models
(``--gzw PATH``, run through ``gazecrop.load_model`` / ``gazecrop.saliency_map``) or any Python callable
(``--model module:function``, taking a uint8 (H, W, 3) RGB image and returning a float (H, W) log-density).
Columns (per dataset and pooled): information gain over the centre bias and log-likelihood over uniform in
bits per fixation (averaged per fixation), AUC-Judd, shuffled AUC, NSS, CC, KLD, SIM (averaged per image),
all from :mod:`gazecrop.metrics` at full image resolution (the map a model predicts is upsampled to the image
and renormalised; fixations stay in image pixels). Shuffled-AUC negatives: the val fixations of the other images
of the same dataset, moved through normalised coordinates.

Teacher rows use cached backbone features when present (``$GAZECROP_CACHE``), else run the backbone.
torch is imported only for teacher rows.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Callable, Sequence

import numpy as np

from gazecrop import datasets as gds
from gazecrop import metrics
from gazecrop._atomic import write_text
from gazecrop.centre_bias import default_centre_bias

COLUMNS = ("ig", "ll", "auc", "sauc", "nss", "cc", "kld", "sim")
HEADERS = {"ig": "IG (bit/fix)", "ll": "LL (bit/fix)", "auc": "AUC-Judd", "sauc": "sAUC", "nss": "NSS",
           "cc": "CC", "kld": "KLD", "sim": "SIM"}

Predictor = Callable[[gds.Sample, np.ndarray], np.ndarray]
"""(sample, uint8 (H, W, 3) image) -> float (H, W) log-density at image resolution."""


def centre_bias_predictor() -> Predictor:
    cb = default_centre_bias()
    return lambda s, img: cb.log_density(s.height, s.width)


def teacher_predictors(members: Sequence[str] | None, with_members: bool = True, with_ensemble: bool = True,
                       use_cache: bool = True, weights_dir: str | None = None) -> list[tuple[str, Predictor]]:
    """Predictors for each teacher member and the ensemble (sharing per-image member maps)."""
    import torch

    from gazecrop.train import teacher as T

    names = list(members) if members else T.ensemble_members(weights_dir)
    models = {n: T.load_member(n, weights_dir) for n in names}
    memo: dict = {}

    def member_map(n: str, s: gds.Sample, img: np.ndarray) -> np.ndarray:
        key = (n, s.key)
        if key not in memo:
            m = models[n]
            fdir = T.feature_dir(m.spec)
            with torch.no_grad():
                if use_cache and (fdir / s.dataset / (s.image + ".npz")).is_file():
                    feats = [f.float()[None] for f in T.load_features(m.spec.cache_key, s)]
                    logd = m.forward_features(feats, T._grid_of(s, m.spec.long_side))[0]
                else:
                    logd = m(T.preprocess(img, m.spec.long_side))[0]
            memo[key] = T._upsample_log_density(logd, s.height, s.width)
        return memo[key]

    def ensemble(s, img):
        st = np.stack([member_map(n, s, img) for n in names])
        mx = st.max(0)
        out = mx + np.log(np.exp(st - mx).mean(0))
        for n in names:
            memo.pop((n, s.key), None)
        return out

    out: list[tuple[str, Predictor]] = []
    if with_members:
        for n in names:
            out.append((f"teacher {n}", (lambda n: lambda s, img: member_map(n, s, img))(n)))
    if with_ensemble:
        out.append((f"teacher ensemble ({len(names)})", ensemble))
    return out


def gzw_predictor(path: str) -> Predictor:
    """A ``.gzw`` model through the public API (``gazecrop.load_model`` + ``gazecrop.saliency_map``)."""
    import gazecrop

    model = gazecrop.load_model(path)
    sal = getattr(gazecrop, "saliency_map", None)
    if sal is not None:
        return lambda s, img: np.asarray(sal(img, model=model), dtype=np.float64)
    return lambda s, img: np.asarray(model.saliency_map(img), dtype=np.float64)


def callable_predictor(spec: str) -> Predictor:
    """``module:function``; the function maps uint8 (H, W, 3) -> float (H, W) log-density."""
    mod, _, fn = spec.partition(":")
    f = getattr(importlib.import_module(mod), fn)
    return lambda s, img: np.asarray(f(img), dtype=np.float64)


def evaluate(predictors: Sequence[tuple[str, Predictor]], samples: Sequence[gds.Sample], log=print,
             centre_bias=None) -> dict:
    """Run every predictor on every sample; ``centre_bias`` (a :class:`gazecrop.centre_bias.CentreBias`) is the
    information gain's baseline, default :func:`gazecrop.centre_bias.default_centre_bias`.

    Returns:
        ``{model: {dataset or "pooled": {metric: value, "images": k, "fixations": n}}}``.
    """
    cb = centre_bias if centre_bias is not None else default_centre_bias()
    by_ds: dict = {}
    for s in samples:
        by_ds.setdefault(s.dataset, []).append(s)
    norm = {s.key: gds.normalised_fixations(s.x, s.y, (s.width, s.height)) for s in samples}
    acc: dict = {name: {} for name, _ in predictors}
    t0 = time.time()
    for i, s in enumerate(samples):
        img = gds.load_image(s)
        base = cb.log_density(s.height, s.width)
        ou = np.concatenate([norm[o.key][0] for o in by_ds[s.dataset] if o.key != s.key])
        ov = np.concatenate([norm[o.key][1] for o in by_ds[s.dataset] if o.key != s.key])
        ox, oy = ou * s.width - 0.5, ov * s.height - 0.5
        for name, pred in predictors:
            logd = pred(s, img)
            if logd.shape != (s.height, s.width):
                raise ValueError(f"{name}: map shape {logd.shape} != image {(s.height, s.width)} for {s.key}")
            r = metrics.all_metrics(logd, s.x, s.y, baseline_log_density=base, other_x=ox, other_y=oy)
            acc[name].setdefault(s.dataset, []).append(r)
        if (i + 1) % 25 == 0:
            log(f"[evaluate] {i + 1}/{len(samples)} images, {time.time() - t0:.0f}s")
    out: dict = {}
    for name, per in acc.items():
        out[name] = {}
        groups = {**per, "pooled": [r for rs in per.values() for r in rs]}
        for g, rs in groups.items():
            n = sum(r["n"] for r in rs)
            row = {"images": len(rs), "fixations": n, "ig": sum(r["ig_sum"] for r in rs) / n,
                   "ll": sum(r["ll_sum"] for r in rs) / n}
            for k in ("auc", "sauc", "nss", "cc", "kld", "sim"):
                row[k] = float(np.mean([r[k] for r in rs]))
            out[name][g] = row
    return out


def format_table(result: dict) -> str:
    """Markdown table: one block of rows per dataset group (datasets in order, then pooled)."""
    groups = []
    for per in result.values():
        for g in per:
            if g not in groups:
                groups.append(g)
    groups = [g for g in gds.DATASETS if g in groups] + ["pooled"]
    lines = ["| data (val) | model | " + " | ".join(HEADERS[c] for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for g in groups:
        for name, per in result.items():
            if g in per:
                r = per[g]
                label = f"{g} ({r['images']} img, {r['fixations']} fix)"
                lines.append(f"| {label} | {name} | " + " | ".join(f"{r[c]:.4f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gazecrop.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="eye-tracking data root (default $GAZECROP_DATA or ../shared/...)")
    p.add_argument("--split", default="val", choices=gds.SPLITS)
    p.add_argument("--datasets", default=",".join(gds.DATASETS), help="comma-separated dataset names")
    p.add_argument("--members", default=None, help="teacher members (default weights/teacher/ensemble.json)")
    p.add_argument("--weights-dir", default=None, help="teacher member files (default weights/teacher)")
    p.add_argument("--no-teacher", action="store_true", help="skip teacher members and ensemble")
    p.add_argument("--no-members", action="store_true", help="teacher ensemble only, not each member")
    p.add_argument("--no-feature-cache", action="store_true", help="run the backbone even when features are cached")
    p.add_argument("--gzw", action="append", default=[], help="a .gzw model file (repeatable)")
    p.add_argument("--model", action="append", default=[], help="module:function predictor (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="first N images per dataset (quick checks)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for teacher rows")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    a = p.parse_args(argv)
    samples = []
    for name in a.datasets.split(","):
        ss = gds.load_dataset(name, split=a.split, root=a.data)
        samples += ss[: a.limit] if a.limit else ss
    preds: list[tuple[str, Predictor]] = [("centre bias (KDE)", centre_bias_predictor())]
    if not a.no_teacher:
        import torch

        torch.set_num_threads(a.threads)
        preds += teacher_predictors(a.members.split(",") if a.members else None, with_members=not a.no_members,
                                    use_cache=not a.no_feature_cache, weights_dir=a.weights_dir)
    preds += [(f"gzw {g}", gzw_predictor(g)) for g in a.gzw]
    preds += [(m, callable_predictor(m)) for m in a.model]
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    res = evaluate(preds, samples, log=log)
    print(format_table(res))
    if a.json:
        write_text(a.json, json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
