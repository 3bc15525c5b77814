"""Heads cut in half: how often crops cut through the largest face's head, measured with a face detector the
product never saw; its section of ``benchmarks/RESULTS.md`` is written by ``benchmarks/report.py --head-cuts``.

The measuring detector is dlib's HOG + linear SVM frontal face detector (King, "Max-Margin Object Detection",
2015; ``dlib.get_frontal_face_detector``, from the ``dlib-bin`` wheel in the ``[bench]`` extra), upsampled once,
faces at least :data:`MIN_SIDE` of the photo's short side. The head model of the product
(:mod:`gazecrop.train.face_map`) was distilled from OpenCV's Haar cascade, a different method, so the two
do not share errors by construction.

For every photo of the chosen splits of ``../shared/data/eyetracking`` with a detected face, and each aspect
ratio (1:1, 16:9, 9:16, 2:1), the head around the largest face (:func:`gazecrop.crop.head_box`) is *cut* when
the crop box overlaps it without holding it whole, counted only where the largest box of that aspect could
hold it. Rows: the default rule without any head information, with the model's head map (the product, when
the model file has one), with the measuring detector's own heads (what the rule does with perfect heads),
Twitter's point rule and the centre crop. Crop gain is the normalised gain of ``benchmarks/crop_quality.py``
(centre crop 0, the box holding the most fixations 1; means over all photos of the split, then over the
aspects), on all photos and on those with a face. The head map's own boxes are compared with the detector's
(matched at IoU >= 0.3).

    python benchmarks/head_cuts.py --model weights/gazecrop-fast.gzw --splits val \
        --json benchmarks/results/head_cuts.json
    python benchmarks/report.py --head-cuts benchmarks/results/head_cuts.json

This script measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from crop_quality import ASPECTS, fixation_share, oracle_share  # noqa: E402
from harness import cpu_model  # noqa: E402

import gazecrop  # noqa: E402
from gazecrop import datasets as gds  # noqa: E402
from gazecrop import metrics  # noqa: E402
from gazecrop._atomic import write_bytes  # noqa: E402
from gazecrop.crop import CropBox, choose_crops, head_box, heads_from_map, largest_box_size  # noqa: E402
from gazecrop.train.face_map import box_agreement  # noqa: E402

MIN_SIDE = 0.06
"""Faces smaller than this share of the photo's short side are ignored (as :func:`gazecrop.train.faces.detect_faces`)."""

NO_HEADS = "default rule, no head information"
MODEL_HEADS = "default rule + the model's head map (product)"
TRUE_HEADS = "default rule + the measuring detector's heads"
POINT = "point (Twitter 2018)"
CENTRE = "centre"


def detector():
    """``rgb -> [(left, top, width, height), ...]`` largest first: dlib's frontal face detector."""
    try:
        import dlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit("benchmarks/head_cuts.py needs dlib: pip install dlib-bin (in the [bench] extra)") from e
    det = dlib.get_frontal_face_detector()

    def faces(rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
        H, W = rgb.shape[:2]
        out = []
        for r in det(np.ascontiguousarray(rgb), 1):
            l, t = max(0, r.left()), max(0, r.top())
            w, h = min(W, r.right() + 1) - l, min(H, r.bottom() + 1) - t
            if min(w, h) >= MIN_SIDE * min(W, H):
                out.append((l, t, w, h))
        return sorted(out, key=lambda b: -b[2] * b[3])

    return faces


def cuts(head: CropBox, box: CropBox) -> bool:
    overlap = box.left < head.right and box.right > head.left and box.top < head.bottom and box.bottom > head.top
    whole = box.left <= head.left and box.right >= head.right and box.top <= head.top and box.bottom >= head.bottom
    return overlap and not whole


def evaluate(model_path: str, samples: Sequence[gds.Sample], faces_of, aspects=ASPECTS, log=print) -> dict:
    model = gazecrop.load_model(model_path)
    rows = [NO_HEADS] + ([MODEL_HEADS] if model.has_head_map else []) + [TRUE_HEADS, POINT, CENTRE]
    n, k = len(samples), len(aspects)
    share = {r: np.zeros((n, k)) for r in rows}
    cut = {r: np.full((n, k), np.nan) for r in rows}
    oracle = np.zeros((n, k))
    has_face = np.zeros(n, bool)
    agree = [0, 0, 0]
    t0 = time.perf_counter()
    for i, s in enumerate(samples):
        size = (s.width, s.height)
        rgb = gds.load_image(s)  # stored orientation, as the fixations
        if model.has_head_map:
            grid, hm = model.log_density(rgb, head_map=True)
            model_heads = heads_from_map(hm, size)
        else:
            grid, model_heads = model.log_density(rgb), []
        found = faces_of(s, rgb)
        true_heads = [head_box(f, size) for f in found]
        has_face[i] = bool(found)
        if found:
            m, p, t = box_agreement([tuple(b) for b in model_heads], [tuple(b) for b in true_heads])
            agree = [agree[0] + m, agree[1] + p, agree[2] + t]
        iy, ix = metrics.fixation_pixels(s.x, s.y, (s.height, s.width))
        boxes = {NO_HEADS: choose_crops(grid, size, aspects, heads=()),
                 TRUE_HEADS: choose_crops(grid, size, aspects, heads=true_heads),
                 POINT: choose_crops(grid, size, aspects, strategy="point"),
                 CENTRE: choose_crops(grid, size, aspects, strategy="centre")}
        if model.has_head_map:
            boxes[MODEL_HEADS] = choose_crops(grid, size, aspects, heads=model_heads)
        for j, a in enumerate(aspects):
            bw, bh = largest_box_size(size, a)
            oracle[i, j] = oracle_share(iy, ix, size, bw, bh)
            for r in rows:
                b = boxes[r][j].box
                share[r][i, j] = fixation_share(iy, ix, b)
                if found and true_heads[0].width <= bw and true_heads[0].height <= bh:
                    cut[r][i, j] = cuts(true_heads[0], b)
        if (i + 1) % 50 == 0:
            log(f"  {i + 1}/{n} photos, {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    def gain(r: str, sel: np.ndarray) -> List[float]:
        c, o, x = share[CENTRE][sel].mean(0), oracle[sel].mean(0), share[r][sel].mean(0)
        return [float(v) for v in (x - c) / np.maximum(o - c, 1e-12)]

    out = {"model": model_path, "model_has_head_map": model.has_head_map, "photos": n,
           "photos_with_a_face": int(has_face.sum()), "aspects": list(aspects), "rows": {}}
    for r in rows:
        fits = ~np.isnan(cut[r])
        out["rows"][r] = {
            "head_cut_rate": float(np.nanmean(cut[r])) if fits.any() else None,
            "head_cut_per_aspect": [float(np.nanmean(cut[r][:, j])) if fits[:, j].any() else None for j in range(k)],
            "cases": int(fits.sum()), "cut_cases": int(np.nansum(cut[r])),
            "gain_per_aspect": gain(r, np.ones(n, bool)), "gain": float(np.mean(gain(r, np.ones(n, bool)))),
            "gain_face_photos": float(np.mean(gain(r, has_face))) if has_face.any() else None}
    if model.has_head_map:
        out["head_map_vs_detector"] = {"matched": agree[0], "predicted": agree[1], "detector": agree[2],
                                       "recall": agree[0] / agree[2] if agree[2] else None,
                                       "precision": agree[0] / agree[1] if agree[1] else None}
    return out


def markdown(results: List[dict], meta: dict) -> str:
    """The RESULTS.md section for ``results`` (one per model) and the run's ``meta``."""
    lines = ["## Heads cut in half (`benchmarks/head_cuts.py`)", "",
             "Written by `benchmarks/report.py` from `benchmarks/results/head_cuts.json`; do not edit by hand.", "",
             f"`{meta['command']}`: {meta['date']}, commit `{meta['commit']}`, {meta['cpu']}. Measuring detector: "
             "dlib's HOG frontal face detector (the product's head map learned from OpenCV's Haar cascade). A crop "
             "*cuts* the largest face's head when it overlaps it without holding it whole; counted where a box of "
             "that aspect could hold it. Crop gain: centre 0, the box with the most fixations 1.", ""]
    for res in results:
        lines += [f"### {res['model']}", "",
                  f"{res['photos']} photos, {res['photos_with_a_face']} with a face the measuring detector finds "
                  f"(the rates below rest on these; {', '.join(res['aspects'])}).", "",
                  "| rule | heads cut | cases | " + " | ".join(f"cut {a}" for a in res["aspects"])
                  + " | crop gain (all photos) | crop gain (photos with a face) |",
                  "|---|---|---|" + "---|" * len(res["aspects"]) + "---|---|"]
        for r, v in res["rows"].items():
            rate = "-" if v["head_cut_rate"] is None else f"{100 * v['head_cut_rate']:.1f} %"
            per = " | ".join("-" if x is None else f"{100 * x:.1f} %" for x in v["head_cut_per_aspect"])
            gf = "-" if v["gain_face_photos"] is None else f"{v['gain_face_photos']:+.3f}"
            lines.append(f"| {r} | {rate} ({v['cut_cases']}) | {v['cases']} | {per} | {v['gain']:+.3f} | {gf} |")
        hv = res.get("head_map_vs_detector")
        if hv:
            rec = "-" if hv["recall"] is None else f"{hv['recall']:.2f}"
            pre = "-" if hv["precision"] is None else f"{hv['precision']:.2f}"
            lines += ["", f"Head map against the measuring detector on photos with a face (IoU >= 0.3): "
                          f"{hv['matched']} of {hv['detector']} detector heads found (recall {rec}), "
                          f"{hv['predicted']} predicted (precision {pre})."]
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", nargs="+", required=True, metavar="PATH", help=".gzw models to measure")
    p.add_argument("--root", help="eye-tracking data root (default: gazecrop.datasets.default_root())")
    p.add_argument("--splits", nargs="+", default=["val"], choices=gds.SPLITS)
    p.add_argument("--limit", type=int, help="first N photos only (smoke test)")
    p.add_argument("--json", metavar="PATH")
    a = p.parse_args(argv)
    samples = [s for sp in a.splits for s in gds.load_datasets(split=sp, root=a.root)][:a.limit]
    det = detector()
    cache: Dict[str, list] = {}

    def faces_of(s, rgb):
        key = str(s.path)
        if key not in cache:
            cache[key] = det(rgb)
        return cache[key]

    results = [evaluate(m, samples, faces_of) for m in a.model]
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip() or "unknown"
    meta = {"command": "python benchmarks/head_cuts.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
            "cpu": f"{cpu_model()}, {os.cpu_count()} CPUs"}
    for res in results:
        print(f"{res['model']}: {res['photos_with_a_face']} of {res['photos']} photos with a face")
        for r, v in res["rows"].items():
            rate = "-" if v["head_cut_rate"] is None else f"{100 * v['head_cut_rate']:.1f} %"
            print(f"  {r:48s} heads cut {rate:>7s} of {v['cases']:4d}   gain {v['gain']:+.3f}")
    if a.json:
        write_bytes(a.json, (json.dumps({"meta": meta, "results": results}, indent=1) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
