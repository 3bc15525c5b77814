"""Agreement of thumbor's ``smart`` crops with the gazecrop detector against gazecrop's own crops.

For every val image of ``../shared/data/eyetracking`` and each aspect (default 1:1, 16:9, 9:16, 2:1): one
model run (:func:`gazecrop.predict` on the stored pixels, as the fixations), gazecrop's own box
(:meth:`gazecrop.Prediction.crops`, the default strategy), and the box thumbor 7.8 cuts for a ``/WxH/smart/``
request from the detector's focal points (:func:`gazecrop.thumbor.points_from_prediction`, default
reference aspects; thumbor's rule as :func:`gazecrop.thumbor.thumbor_crop` rewrites it, which
``tests/test_thumbor_server.py`` checks against a running thumbor). Reported per aspect:

- IoU of thumbor's box with gazecrop's (mean, and the share of images with IoU >= 0.9),
- the mean share of the image's fixations inside each box (as ``benchmarks/crop_quality.py`` scores it,
  with its centre and oracle boxes), and the normalised gain ``(share - centre) / (oracle - centre)``
  computed from the means (centre crop 0, oracle 1),

for the detector's rule and, to show why it was chosen, for other single-centre rules thumbor could be
given: ``salient point`` (the density's argmax, one point) and ``centre of mass`` (the saliency density's
centre of mass, what mass-weighted cells or blocks of the map give). Also, on the bundled sample photo, each
rule's box for the aspects ``tests/test_crop_photo.py`` checks and whether it keeps the eyes and mouth.

    python3 benchmarks/thumbor_agreement.py --model weights/gazecrop-fast.gzw \
        --json benchmarks/results/thumbor.json

This script measures; it asserts nothing. thumbor itself is not needed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
from typing import Dict, List, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
if importlib.util.find_spec("gazecrop") is None:  # a source checkout that is not installed
    sys.path.insert(1, os.path.join(HERE, "..", "python"))

import gazecrop  # noqa: E402
from core_results import cpu_model  # noqa: E402
from gazecrop import datasets as gds  # noqa: E402
from gazecrop import metrics  # noqa: E402
from gazecrop.crop import largest_box_size, parse_aspect, resample_log_density  # noqa: E402
from gazecrop.thumbor import DEFAULT_ASPECTS, points_from_prediction, thumbor_crop  # noqa: E402

from crop_quality import ASPECTS, fixation_share, oracle_share  # noqa: E402

RULES = ("gazecrop detector", "centre of mass", "salient point")


def iou(a, b) -> float:
    """Intersection over union of two ``(left, top, width, height)`` boxes."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def target(aspect: str):
    """A thumbor request size ``(W, H)`` of that aspect (thumbor's box depends only on W / H)."""
    a = parse_aspect(aspect)
    return (1200, max(1, round(1200 / a))) if a >= 1 else (max(1, round(1200 * a)), 1200)


def centre_of_mass(pred: gazecrop.Prediction, side: int = 512):
    """One point at the centre of mass of the saliency density (computed at most ``side`` px long)."""
    W, H = pred.size
    s = min(1.0, side / max(W, H))
    w, h = max(1, round(W * s)), max(1, round(H * s))
    d = np.exp(resample_log_density(pred.log_density, (w, h)).astype(np.float64))
    d /= d.sum()
    cx = float(d.sum(0) @ ((np.arange(w) + 0.5) * W / w - 0.5))
    cy = float(d.sum(1) @ ((np.arange(h) + 0.5) * H / h - 0.5))
    return [(math.floor(cx + 0.5), math.floor(cy + 0.5), 1)]


def rule_points(rule: str, pred: gazecrop.Prediction, reference: Sequence[str]):
    if rule == "gazecrop detector":
        return points_from_prediction(pred, reference)
    if rule == "centre of mass":
        return centre_of_mass(pred)
    if rule == "salient point":
        x, y = pred.crops([1.0])[0].salient_point
        return [(x, y, 1)]
    raise ValueError(rule)


def evaluate(model, samples: Sequence[gds.Sample], aspects: Sequence[str], reference: Sequence[str],
             log=print) -> dict:
    share: Dict[str, Dict[str, List[float]]] = {k: {a: [] for a in aspects}
                                                for k in ("gazecrop",) + RULES + ("centre", "oracle")}
    ious: Dict[str, Dict[str, List[float]]] = {k: {a: [] for a in aspects} for k in RULES}
    seconds: List[float] = []
    t0 = time.perf_counter()
    for k, s in enumerate(samples):
        size = (s.width, s.height)
        rgb = gds.load_image(s)  # stored orientation, as the fixations
        iy, ix = metrics.fixation_pixels(s.x, s.y, (s.height, s.width))
        pred = gazecrop.predict(rgb, model=model)
        own = pred.crops(aspects)
        t = time.perf_counter()
        pts = {RULES[0]: rule_points(RULES[0], pred, reference)}
        seconds.append(time.perf_counter() - t)  # the detector's own work after the model run
        pts.update({r: rule_points(r, pred, reference) for r in RULES[1:]})
        for i, a in enumerate(aspects):
            box = tuple(own[i].box)
            share["gazecrop"][a].append(fixation_share(iy, ix, box))
            bw, bh = largest_box_size(size, a)
            share["centre"][a].append(fixation_share(iy, ix, ((s.width - bw) // 2, (s.height - bh) // 2, bw, bh)))
            share["oracle"][a].append(oracle_share(iy, ix, size, bw, bh))
            for r in RULES:
                tb = tuple(thumbor_crop(pts[r], size, target(a)))
                share[r][a].append(fixation_share(iy, ix, tb))
                ious[r][a].append(iou(tb, box))
        if (k + 1) % 50 == 0:
            log(f"  {k + 1}/{len(samples)} images, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    mean = {k: {a: float(np.mean(v)) for a, v in d.items()} for k, d in share.items()}
    gain = {k: {a: (mean[k][a] - mean["centre"][a]) / (mean["oracle"][a] - mean["centre"][a]) for a in aspects}
            for k in ("gazecrop",) + RULES}
    return {"share": mean, "gain": gain,
            "iou": {r: {a: float(np.mean(v)) for a, v in d.items()} for r, d in ious.items()},
            "iou_ge_0.9": {r: {a: float(np.mean(np.asarray(v) >= 0.9)) for a, v in d.items()}
                           for r, d in ious.items()},
            "points_ms_median": float(np.median(seconds) * 1e3)}


PHOTO = os.path.join(HERE, "..", "examples", "photo.jpg")
EYES_MOUTH = (190, 80, 270, 150)  # left, top, right, bottom on examples/photo.jpg (tests/test_crop_photo.py)
PHOTO_ASPECTS = ("16:9", "2:1", "9:16", "4:5")


def photo_check(model, reference: Sequence[str]) -> dict:
    """On the bundled sample photo: each rule's thumbor box (and gazecrop's own) for the aspects
    ``tests/test_crop_photo.py`` checks, and whether it keeps the eyes and mouth."""
    from PIL import Image, ImageOps

    with Image.open(PHOTO) as im:
        rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    pred = gazecrop.predict(rgb, model=model)
    l, t, r, b = EYES_MOUTH
    out: dict = {}
    for rule in ("gazecrop",) + RULES:
        pts = None if rule == "gazecrop" else rule_points(rule, pred, reference)
        out[rule] = {}
        for a in PHOTO_ASPECTS:
            box = pred.crops([a])[0].box if pts is None else thumbor_crop(pts, pred.size, target(a))
            keeps = box.left <= l and box.right >= r and box.top <= t and box.bottom >= b
            out[rule][a] = {"box": list(box), "keeps_eyes_and_mouth": bool(keeps)}
    return out


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def format_table(r: dict) -> str:
    aspects = list(r["aspects"])
    lines = ["| rule | " + " | ".join(aspects) + " | mean |", "|---|" + "---|" * (len(aspects) + 1)]
    for k in ("gazecrop",) + RULES:
        cells = [f"{r['share'][k][a]:.3f} / {r['gain'][k][a]:+.2f}"
                 + (f" / {r['iou'][k][a]:.2f}" if k in r["iou"] else "") for a in aspects]
        mean = (f"{np.mean([r['share'][k][a] for a in aspects]):.4f} / "
                f"{np.mean([r['gain'][k][a] for a in aspects]):+.3f}"
                + (f" / {np.mean([r['iou'][k][a] for a in aspects]):.3f}" if k in r["iou"] else ""))
        lines.append(f"| {k} | " + " | ".join(cells) + f" | {mean} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=os.path.join(HERE, "..", "weights", "gazecrop-fast.gzw"),
                   help=".gzw model (default weights/gazecrop-fast.gzw), run by the native core on one thread")
    p.add_argument("--root", help="eye-tracking data root (default: gazecrop.datasets.default_root())")
    p.add_argument("--split", default="val")
    p.add_argument("--aspects", nargs="+", default=list(ASPECTS))
    p.add_argument("--reference", nargs="+", default=list(DEFAULT_ASPECTS),
                   help="the detector's reference aspects (GAZECROP_ASPECTS; default gazecrop.thumbor's)")
    p.add_argument("--limit", type=int, help="first N images only (smoke test)")
    p.add_argument("--json", metavar="PATH", help="write the numbers as JSON")
    args = p.parse_args(argv)
    for a in list(args.aspects) + list(args.reference):
        parse_aspect(a)
    model = gazecrop.load_model(args.model, threads=1)
    samples = gds.load_datasets(gds.DATASETS, split=args.split, root=args.root)
    if args.limit:
        samples = samples[: args.limit]
    print(f"{len(samples)} {args.split} images", file=sys.stderr)
    r = evaluate(model, samples, args.aspects, args.reference)
    r["photo"] = photo_check(model, args.reference)
    r.update(aspects=list(args.aspects), reference=list(args.reference), n_images=len(samples), split=args.split,
             model=os.path.basename(args.model), commit=_commit(), date=datetime.date.today().isoformat(),
             machine=f"{cpu_model()}, {os.cpu_count()} CPUs, "
                     f"Python {platform.python_version()}",
             command="python benchmarks/thumbor_agreement.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(format_table(r))
    if args.json:
        from gazecrop._atomic import atomic_open

        with atomic_open(args.json) as f:
            f.write(json.dumps(r, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
