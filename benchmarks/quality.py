"""Quality beside speed: ``python benchmarks/quality.py [--limit N] [--json PATH]``.

1. Crop quality: on the val split of ``../shared/data/eyetracking`` (all datasets), for aspects 1:1, 16:9, 9:16
   and 2:1, the mean share of human fixations inside the crop box (images count equally), for gazecrop
   (``mass`` and ``point`` on the pruned student) and the peers of the end-to-end suite (libvips attention,
   OpenCV spectral residual, smartcrop.py, centre crop), plus the fitted centre-bias density cropped by
   gazecrop's ``mass`` rule (what a model that ignores the pixels gets) and the oracle (the same-size box
   covering the most fixations: an upper bound). Every method gets the image *file* and returns the largest
   box of the aspect (decode included, one thread), through the same callables the end-to-end suite times
   (``methods.croppers``); the scoring is ``benchmarks/crop_quality.py``'s (``fixation_share``,
   ``oracle_share``). The mean seconds per box over the val images are recorded too.
2. Saliency metrics: ``python -m gazecrop.evaluate`` (run in this process) on the pruned and unpruned
   students next to the teacher (its members and ensemble) and the centre bias; only when the trained
   students exist (random-weight stand-ins have no meaningful metrics).

Measures, asserts nothing. ``benchmarks/report.py`` turns the JSON into RESULTS.md tables and the plot.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

import harness as H  # one-thread environment first
import methods as M
import numpy as np

ASPECTS = ("1:1", "16:9", "9:16", "2:1")
CENTRE_BIAS = "centre-bias density (mass)"
ORACLE = "oracle (upper bound)"
QUALITY_METHODS = (M.GAZECROP, M.GAZECROP_POINT, M.GAZECROP_SHIPPED, M.TEACHER_CROP, M.VIPS, M.SPECTRAL,
                   M.SMARTCROP, M.CENTRE)


def _crop_quality():
    H.import_gazecrop()  # before crop_quality puts the source tree first on sys.path
    import crop_quality

    return crop_quality


def crop_shares(samples, aspects: Sequence[str] = ASPECTS, names: Sequence[str] = QUALITY_METHODS,
                log=print) -> dict:
    """``{"shares": {method: {aspect: mean share}}, "seconds_per_box": {method: s}, "skipped": {...}}``."""
    cq = _crop_quality()
    from gazecrop import metrics

    gz = H.import_gazecrop()
    C = H.crop_module()
    crs, skipped = M.croppers(names, teacher_memo=True)
    cb_model = cq.CentreBiasModel()
    crs[CENTRE_BIAS] = lambda path, aspect: tuple(gz.crop_box(path, aspect, model=cb_model, strategy="mass"))
    shares: Dict[str, Dict[str, List[float]]] = {n: {a: [] for a in aspects} for n in list(crs) + [ORACLE]}
    seconds: Dict[str, float] = {n: 0.0 for n in crs}
    t0 = time.perf_counter()
    for k, s in enumerate(samples):
        size = (s.width, s.height)
        iy, ix = metrics.fixation_pixels(s.x, s.y, (s.height, s.width))
        for a in aspects:
            bw, bh = C.largest_box_size(size, a)
            shares[ORACLE][a].append(cq.oracle_share(iy, ix, size, bw, bh))
            for n, f in crs.items():
                t = time.perf_counter()
                box = f(s.path, a)
                seconds[n] += time.perf_counter() - t
                shares[n][a].append(cq.fixation_share(iy, ix, box))
        if (k + 1) % 25 == 0:
            log(f"[quality] {k + 1}/{len(samples)} images, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    nbox = max(1, len(samples) * len(aspects))
    return {"shares": {n: {a: float(np.mean(v)) for a, v in d.items()} for n, d in shares.items()},
            "seconds_per_box": {n: v / nbox for n, v in seconds.items()}, "skipped": skipped}


def saliency_metrics(limit=None, log=print) -> dict:
    """Student rows next to the teacher's via ``gazecrop.evaluate`` (trained students only)."""
    real = [mf for mf in H.student_paths().values() if not mf.standin]
    if not real:
        return {"skipped": "no trained student (weights/gazecrop-fast.gzw, weights/gazecrop-unpruned.gzw) yet: "
                           "no saliency metrics for random-weight stand-ins"}
    H.import_gazecrop()
    from gazecrop import evaluate as E

    argv = [a for mf in real for a in ("--gzw", os.path.relpath(mf.path))]  # the row names: short paths
    try:
        H.torch1()
        H.require("efficientnet_lite_pytorch", "efficientnet-lite-pytorch")
        if H.vanilla_member_name() is None:
            raise H.Unavailable("no trained teacher (weights/teacher/ensemble.json)")
        argv += ["--weights-dir", os.path.relpath(H.WEIGHTS / "teacher")]
    except H.Unavailable as e:
        log(f"[quality] teacher rows skipped: {e}", file=sys.stderr)
        argv.append("--no-teacher")
    if limit:
        argv += ["--limit", str(limit)]
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "metrics.json"
        E.main(argv + ["--json", str(out)])
        return {"argv": ["python", "-m", "gazecrop.evaluate"] + argv, "metrics": json.loads(out.read_text())}


def format_shares(r: dict, n: int) -> str:
    aspects = list(next(iter(r["shares"].values())))
    lines = [f"Mean share of human fixations inside the crop ({n} val images)", "",
             "| method | " + " | ".join(aspects) + " | mean | s / box |", "|---|" + "---|" * (len(aspects) + 2)]
    order = sorted(r["shares"], key=lambda m: -np.mean(list(r["shares"][m].values())))
    for m in order:
        d = r["shares"][m]
        t = r["seconds_per_box"].get(m)
        lines.append(f"| {m} | " + " | ".join(f"{d[a]:.3f}" for a in aspects) +
                     f" | {np.mean(list(d.values())):.3f} | " + ("-" if t is None else f"{t * 1e3:.1f} ms") + " |")
    for m, why in r["skipped"].items():
        lines.append(f"\nskipped {m}: {why}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/quality.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=int, default=None, help="first N val images per dataset (smoke test)")
    p.add_argument("--split", default="val")
    p.add_argument("--no-metrics", action="store_true", help="skip the saliency metrics (gazecrop.evaluate)")
    p.add_argument("--json", default=None, help="write the results as JSON here")
    a = p.parse_args(argv)
    from gazecrop import datasets as gds

    samples = []
    try:
        for name in gds.DATASETS:
            ss = gds.load_dataset(name, split=a.split)
            samples += ss[: a.limit] if a.limit else ss
    except gds.DatasetError as e:
        print(f"quality.py needs the eye-tracking data ({gds.default_root()}; set $GAZECROP_DATA): {e}",
              file=sys.stderr)
        return 2
    pruned = H.student_paths()["pruned"]
    out = {"machine": H.machine(), "split": a.split, "n_images": len(samples), "aspects": list(ASPECTS),
           "gazecrop_model": pruned.label, "gazecrop_standin": pruned.standin}
    print(f"{len(samples)} {a.split} images; gazecrop model: {pruned.label}", file=sys.stderr, flush=True)
    out["crop"] = crop_shares(samples)
    print(format_shares(out["crop"], len(samples)), flush=True)
    if not a.no_metrics:
        out["saliency"] = saliency_metrics(a.limit)
        if "skipped" in out["saliency"]:
            print(f"\nsaliency metrics skipped: {out['saliency']['skipped']}")
    if a.json:
        H.write_json(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
