"""Crop quality on human eye-tracking data: the mean share of fixations that fall inside the crop.

For every val image of ``../shared/data/eyetracking`` (via :mod:`gazecrop.datasets`) and each aspect ratio
(default 1:1, 16:9, 9:16, 2:1), the largest box of that aspect is placed by

- ``point``: Twitter 2018 (centre on the salient point, shift inside),
- ``mass``: the default rule: most saliency mass inside (summed-area table, ties towards the salient point)
  among the positions that keep the salient point at least :data:`gazecrop.crop.ANCHOR_MARGIN` of the box
  inside it (relaxed only at the image edge),
- ``mass-free``: most saliency mass inside over *all* positions (``margin=None``, the rule before the
  anchor; it can cut through the most salient object),
- ``mass@M`` for each ``--margins M``: the anchored rule with margin M (a sweep to choose the margin),
- ``centre``: the centred box (no model),
- ``oracle``: the same-size box placed to cover the most human fixations (an upper bound),

and scored by the share of that image's fixations inside the box (fixation pixels as
:func:`gazecrop.metrics.fixation_pixels` rounds them). Images count equally. The best of ``point`` / ``mass``
/ ``mass-free`` / the sweep is printed; :data:`gazecrop.crop.DEFAULT_STRATEGY` and ``ANCHOR_MARGIN`` are
chosen from it together with ``tests/test_crop_photo.py`` (a crop must not cut through the face).

A model is needed: ``--model PATH`` (a ``.gzw``, run by the native core on one thread), or a stand-in until
a trained model exists: ``--centre-bias`` (the fitted centre-bias density, ``weights/teacher/centre_bias.npz``;
checks the machinery, but its crops hug the centre, so ``point`` / ``mass`` / ``centre`` come out nearly
equal) or ``--gold-standard`` (held-out observers' fixation density: a peaky, realistic density that
separates the strategies; see :class:`GoldStandard`).

``--time`` also reports the median end-to-end time to crop a 1024x768 JPEG from disk on one thread
(``gazecrop.crop(path, "16:9")`` including decode, model, crop and JPEG encode to memory).

    PYTHONPATH=python python3 benchmarks/crop_quality.py --model weights/gazecrop-fast.gzw --time
    PYTHONPATH=python python3 benchmarks/crop_quality.py --gold-standard --margins 0 0.1 0.2 0.3 0.4
    PYTHONPATH=python python3 benchmarks/crop_quality.py --centre-bias --time

This script measures; it asserts nothing (``tests/`` never time, ``benchmarks/`` never check).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

from gazecrop import datasets as gds  # noqa: E402
from gazecrop import metrics  # noqa: E402
from gazecrop.crop import ANCHOR_MARGIN, choose_crops, largest_box_size, parse_aspect  # noqa: E402

ASPECTS = ("1:1", "16:9", "9:16", "2:1")


def methods(margins: Sequence[float] = ()) -> Dict[str, tuple]:
    """Column name -> ``(strategy, margin)`` for :func:`gazecrop.crop.choose_crops` (``"oracle"`` -> None)."""
    out: Dict[str, tuple] = {"point": ("point", ANCHOR_MARGIN), "mass": ("mass", ANCHOR_MARGIN),
                             "mass-free": ("mass", None)}
    for m in margins:
        out[f"mass@{m:g}"] = ("mass", float(m))
    out["centre"] = ("centre", ANCHOR_MARGIN)
    out["oracle"] = None
    return out


class CentreBiasModel:
    """The ``Model`` interface (``input_size``, ``log_density``) returning the centre-bias log-density on a
    grid of the image's aspect (long side ``cells``); ignores the pixels."""

    def __init__(self, path: str | None = None, cells: int = 32) -> None:
        from gazecrop.centre_bias import default_centre_bias

        self.cb = default_centre_bias(path)
        self.cells = cells

    def input_size(self, height: int, width: int):
        s = 256 / max(height, width)
        return max(1, round(height * s)), max(1, round(width * s))

    def log_density(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        s = self.cells / max(h, w)
        return self.cb.log_density(max(1, round(h * s)), max(1, round(w * s))).astype(np.float32)


class GoldStandard:
    """Inter-observer stand-in: the density of *other* observers' fixations predicts held-out observers.

    Observers of each image are split in two halves (sorted ids, alternating); each half's fixations are
    binned on a grid (long side ``cells``), blurred with a Gaussian (``sigma`` x long side) and mixed with 1 %
    uniform; crops chosen on one half's density are scored on the other half's fixations, both ways. This is
    the usual "gold standard" upper-bound model of saliency benchmarks: a peaky, realistic density that
    separates the strategies before a trained model exists (it is not a model of the image)."""

    def __init__(self, cells: int = 64, sigma: float = 0.04) -> None:
        self.cells, self.sigma = cells, sigma

    def grid(self, x: np.ndarray, y: np.ndarray, size) -> np.ndarray:
        from gazecrop.reference import gaussian_kernel

        W, H = size
        s = self.cells / max(W, H)
        gw, gh = max(1, round(W * s)), max(1, round(H * s))
        gx = np.clip(((x + 0.5) * gw / W).astype(int), 0, gw - 1)
        gy = np.clip(((y + 0.5) * gh / H).astype(int), 0, gh - 1)
        hist = np.zeros((gh, gw))
        np.add.at(hist, (gy, gx), 1.0)
        k = gaussian_kernel(self.sigma * self.cells, 3.0)
        r = len(k) // 2
        for axis in (0, 1):
            pad = [(0, 0), (0, 0)]
            pad[axis] = (r, r)
            hp = np.pad(hist, pad, mode="constant")
            n = hist.shape[axis]
            hist = sum(k[t] * (hp[t:t + n] if axis == 0 else hp[:, t:t + n]) for t in range(2 * r + 1))
        dens = 0.99 * hist / hist.sum() + 0.01 / hist.size
        return np.log(dens)

    def halves(self, sample: gds.Sample):
        subs = sorted(set(sample.subject.tolist()))
        a = np.isin(sample.subject, subs[0::2])
        return [(a, ~a), (~a, a)] if a.any() and (~a).any() else [(a | ~a, a | ~a)]


def fixation_share(iy: np.ndarray, ix: np.ndarray, box) -> float:
    left, top, bw, bh = box
    inside = (ix >= left) & (ix < left + bw) & (iy >= top) & (iy < top + bh)
    return float(inside.mean())


def oracle_share(iy: np.ndarray, ix: np.ndarray, size, bw: int, bh: int) -> float:
    """Best share of fixations any ``bw x bh`` box inside the image can hold (summed-area table)."""
    W, H = size
    counts = np.zeros((H, W), np.int64)
    np.add.at(counts, (iy, ix), 1)
    sat = np.zeros((H + 1, W + 1), np.int64)
    sat[1:, 1:] = counts.cumsum(0).cumsum(1)
    inside = sat[bh:, bw:] - sat[:-bh, bw:] - sat[bh:, :-bw] + sat[:-bh, :-bw]
    return float(inside.max() / iy.size)


def evaluate(model, samples: Sequence[gds.Sample], aspects: Sequence[str], margins: Sequence[float] = (),
             log=print) -> Dict[str, Dict[str, float]]:
    cols = methods(margins)
    shares: Dict[str, Dict[str, List[float]]] = {a: {m: [] for m in cols} for a in aspects}
    t0 = time.perf_counter()
    for k, s in enumerate(samples):
        size = (s.width, s.height)
        if isinstance(model, GoldStandard):
            runs = [(model.grid(s.x[fit], s.y[fit], size), ev) for fit, ev in model.halves(s)]
        else:
            rgb = gds.load_image(s)  # stored orientation, as the fixations
            runs = [(model.log_density(rgb), np.ones(s.n_fixations, bool))]
        acc = {a: {m: [] for m in cols} for a in aspects}
        for grid, ev in runs:
            iy, ix = metrics.fixation_pixels(s.x[ev], s.y[ev], (s.height, s.width))
            per = {name: choose_crops(grid, size, aspects, strategy=st, margin=mg)
                   for name, (st, mg) in ((n, c) for n, c in cols.items() if c is not None)}
            for i, a in enumerate(aspects):
                for name, res in per.items():
                    acc[a][name].append(fixation_share(iy, ix, res[i].box))
                bw, bh = largest_box_size(size, a)
                acc[a]["oracle"].append(oracle_share(iy, ix, size, bw, bh))
        for a in aspects:
            for m in cols:
                shares[a][m].append(float(np.mean(acc[a][m])))
        if (k + 1) % 50 == 0:
            log(f"  {k + 1}/{len(samples)} images, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return {a: {m: float(np.mean(v)) for m, v in d.items()} for a, d in shares.items()}


def format_table(result: Dict[str, Dict[str, float]], n: int, label: str) -> str:
    cols = list(next(iter(result.values())))
    lines = [f"Mean share of human fixations inside the crop ({n} val images, model: {label}; "
             f"mass = anchored, margin {ANCHOR_MARGIN:g}; mass-free = no anchor)", "",
             "| aspect | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for a, d in result.items():
        lines.append(f"| {a} | " + " | ".join(f"{d[m]:.3f}" for m in cols) + " |")
    mean = {m: float(np.mean([d[m] for d in result.values()])) for m in cols}
    lines.append("| mean | " + " | ".join(f"{mean[m]:.3f}" for m in cols) + " |")
    return "\n".join(lines)


def time_crop(model, source: str | None, repeats: int) -> Dict[str, float]:
    """Median / min seconds for ``gazecrop.crop(jpeg_path, "16:9")`` + JPEG encode, 1024x768, one thread."""
    from PIL import Image

    import gazecrop

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "photo1024x768.jpg")
        if source:
            with Image.open(source) as im:
                im = im.convert("RGB")
                # centre-cut to 4:3 then resize to exactly 1024x768
                W, H = im.size
                cw, ch = largest_box_size((W, H), 4 / 3)
                im = im.crop(((W - cw) // 2, (H - ch) // 2, (W - cw) // 2 + cw, (H - ch) // 2 + ch))
                im.resize((1024, 768), Image.LANCZOS).save(path, quality=90)
        else:
            yy, xx = np.mgrid[0:768, 0:1024]
            a = np.stack([xx % 256, yy % 256, (xx // 4 + yy // 3) % 256], -1).astype(np.uint8)
            Image.fromarray(a).save(path, quality=90)
        times = []
        for i in range(repeats + 2):
            t = time.perf_counter()
            out = gazecrop.crop(path, "16:9", model=model)
            out.save(io.BytesIO(), format="JPEG", quality=90)
            if i >= 2:  # warm-up runs
                times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="PATH", help=".gzw model run by the native core (one thread)")
    src.add_argument("--centre-bias", nargs="?", const="", metavar="NPZ",
                     help="stand-in model: the centre-bias density (default weights/teacher/centre_bias.npz)")
    src.add_argument("--gold-standard", action="store_true",
                     help="stand-in model: held-out observers' fixation density (see GoldStandard); no timing")
    p.add_argument("--root", help="eye-tracking data root (default: gazecrop.datasets.default_root())")
    p.add_argument("--datasets", nargs="+", default=list(gds.DATASETS))
    p.add_argument("--split", default="val")
    p.add_argument("--aspects", nargs="+", default=list(ASPECTS))
    p.add_argument("--margins", nargs="*", type=float, default=[],
                   help="also score the anchored 'mass' rule with these margins (0 to 0.5)")
    p.add_argument("--limit", type=int, help="first N images only (smoke test)")
    p.add_argument("--time", action="store_true", help="also time cropping a 1024x768 JPEG from disk")
    p.add_argument("--time-only", action="store_true", help="only the timing")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--time-image", default=os.path.join(HERE, "..", "examples", "photo.jpg"),
                   help="photo resized to 1024x768 for the timing (default examples/photo.jpg)")
    p.add_argument("--json", metavar="PATH", help="write the numbers as JSON")
    args = p.parse_args(argv)
    for a in args.aspects:
        parse_aspect(a)

    if args.model:
        from gazecrop import load_model

        model = load_model(args.model, threads=1)
        label = os.path.basename(args.model)
    elif args.gold_standard:
        model = GoldStandard()
        label = "gold-standard stand-in (other observers)"
        if args.time or args.time_only:
            p.error("--time needs --model or --centre-bias")
    else:
        model = CentreBiasModel(args.centre_bias or None)
        label = "centre-bias stand-in"

    out: dict = {"model": label, "machine": f"{platform.processor() or platform.machine()}, "
                                             f"{os.cpu_count()} CPUs, Python {platform.python_version()}"}
    if not args.time_only:
        samples = gds.load_datasets(args.datasets, split=args.split, root=args.root)
        if args.limit:
            samples = samples[: args.limit]
        print(f"{len(samples)} {args.split} images from {', '.join(args.datasets)}", file=sys.stderr)
        result = evaluate(model, samples, args.aspects, args.margins)
        print(format_table(result, len(samples), label))
        out.update(n_images=len(samples), split=args.split, shares=result, anchor_margin=ANCHOR_MARGIN)
        means = {m: float(np.mean([d[m] for d in result.values()])) for m in next(iter(result.values()))
                 if m not in ("centre", "oracle")}
        best = max(means, key=means.get)
        print(f"\nbest rule: {best} (mean over aspects: "
              + ", ".join(f"{m} {v:.4f}" for m, v in means.items()) + ")")
        out["better"] = best
    if args.time or args.time_only:
        src_img = args.time_image if os.path.isfile(args.time_image) else None
        t = time_crop(model, src_img, args.repeats)
        print(f"\nend-to-end crop of a 1024x768 JPEG from disk, one thread ({label}): median "
              f"{t['median_s'] * 1000:.1f} ms, min {t['min_s'] * 1000:.1f} ms over {t['repeats']} runs")
        out["time_1024x768"] = t
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
