"""Calibrate a network's int8 trunk and record whether it meets the quality bar (issue 22; docs/int8-plan.md).

``python -m gazecrop.train.calibrate WEIGHTS.gzw --out OUT.gzw [--images 64] [--val N] [--no-bias-correction]
[--precision auto|fp32|int8] [--json REPORT.json]``

1. Calibration (:func:`gazecrop.int8.calibrate`): per-tensor ranges of the trunk's values over ``--images``
   training photos of the eye-tracking data (every k-th photo of the train split, at the model's input size),
   int8 weights per output channel, then the empirical bias correction (Nagel et al. 2019, arXiv:1906.04721).
2. The verdict (:func:`compare`): the float32 network and the exact int8 trunk (:func:`gazecrop.int8.run`) on the
   val photos: pooled information gain over the centre bias (bit per fixation) and AUC-Judd
   (:func:`gazecrop.evaluate.evaluate`), and how many default crops (1:1, 16:9, 9:16, 2:1) stay within 1 % of
   the image side. The bar (:data:`QUALITY_BAR`): IG within 0.01 bit of float32, AUC within 0.002, >= 97 % of
   the crops within 1 %.
3. The file: ``OUT.gzw`` = the input network plus its int8 trunk (weights format version 3), the verdict (met /
   not met; not evaluated with ``--val 0``), and the default precision: ``auto`` (int8 when the bar was met),
   or as given. Written atomically, with ``--json`` both or neither; the input is never overwritten (``--out``
   and ``--json`` must differ from it and from each other; their folders are checked before the slow work).

Exit status 0 when the file was written (whatever the verdict), 2 on bad arguments or data.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from .. import datasets as gds
from .. import int8, reference, weights
from .._atomic import write_bytes
from ..model import resize_rgb

crop = importlib.import_module("gazecrop.crop")  # the module (gazecrop.crop is the function)

ASPECTS = ("1:1", "16:9", "9:16", "2:1")
"""The aspect ratios of the crop-stability part of the bar."""
QUALITY_BAR = {"ig": 0.01, "auc": 0.002, "crops": 0.97}
"""int8 against float32 on val: IG drop <= 0.01 bit/fixation, AUC-Judd drop <= 0.002, >= 97 % of crops within 1 %
of the image side (issue 22)."""


def model_input(net: weights.Network, img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) photo -> uint8 (h, w, 3) at the network's input size (as :class:`gazecrop.Model`)."""
    h, w = net.input_size(img.shape[0], img.shape[1])
    return resize_rgb(img, h, w)


def calibration_samples(n: int, root: Optional[str] = None) -> list:
    """Every k-th photo of the eye-tracking train split, ``n`` of them (deterministic)."""
    train = gds.load_datasets(split="train", root=root)
    if not train:
        raise ValueError("no training photos found (is the eye-tracking data there?)")
    step = max(1, len(train) // max(n, 1))
    return train[::step][:n]


def crop_moves(grid_a: np.ndarray, grid_b: np.ndarray, size: Tuple[int, int]) -> list:
    """Per aspect of :data:`ASPECTS`: whether the default crop moves by more than 1 % of the image side between
    two log-density grids of a ``size`` = (width, height) image."""
    out = []
    for ra, rb in zip(crop.choose_crops(grid_a, size, ASPECTS), crop.choose_crops(grid_b, size, ASPECTS)):
        dx, dy = abs(ra.box.left - rb.box.left), abs(ra.box.top - rb.box.top)
        out.append(dx > 0.01 * size[0] or dy > 0.01 * size[1])
    return out


def compare(net: weights.Network, other: Callable[[np.ndarray], np.ndarray], val: Sequence[gds.Sample],
            label: str = "int8", log=print, centre_bias=None) -> dict:
    """The float32 network against ``other`` (uint8 (H, W, 3) photo -> float32 log-density grid) on ``val``;
    ``centre_bias`` as :func:`gazecrop.evaluate.evaluate`.

    Returns:
        ``{"fp32": pooled metrics, "int8": pooled metrics (``label``), "ig_drop", "auc_drop" (float32 minus
        other; bit/fixation and AUC), "crops_within_1pct" (fraction of ``len(val) * 4`` crops), "crops",
        "passes"}`` against :data:`QUALITY_BAR`, and "grids": sample key -> (float32 grid, other's).
    """
    from ..evaluate import evaluate

    grids: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}

    def fp32(s, img):
        g = reference.run(net, model_input(net, img))
        grids[s.key] = (g, other(img))
        return crop.resample_log_density(g, (s.width, s.height)).astype(np.float64)

    def theirs(s, img):
        return crop.resample_log_density(grids[s.key][1], (s.width, s.height)).astype(np.float64)

    res = evaluate([("fp32", fp32), (label, theirs)], val, log=log, centre_bias=centre_bias)
    moved = [m for s in val for m in crop_moves(*grids[s.key], (s.width, s.height))]
    a, b = res["fp32"]["pooled"], res[label]["pooled"]
    out = {"fp32": a, "int8": b, "ig_drop": a["ig"] - b["ig"], "auc_drop": a["auc"] - b["auc"],
           "crops_within_1pct": 1.0 - float(np.mean(moved)), "crops": len(moved)}
    out["passes"] = bool(out["ig_drop"] <= QUALITY_BAR["ig"] and out["auc_drop"] <= QUALITY_BAR["auc"]
                         and out["crops_within_1pct"] >= QUALITY_BAR["crops"])
    out["grids"] = grids
    return out


def _output_problem(src: Path, out: Path, report: Optional[Path]) -> Optional[str]:
    """Why the outputs cannot be written, checked before the slow work (None: they can): each must differ from
    the input and from each other (inputs are never overwritten), not be a folder, and go into a writable
    folder."""
    try:
        outs = [("--out", out)] + ([("--json", report)] if report is not None else [])
        for name, f in outs:
            if f.resolve() == src.resolve():
                return f"{name} must not be the input file (inputs are never overwritten)"
            if f.is_dir():
                return f"{name} {f} is a folder"
            parent = f.resolve().parent
            if not parent.is_dir():
                return f"{name}: the folder {parent} does not exist"
            if not os.access(parent, os.W_OK):
                return f"{name}: the folder {parent} is not writable"
        if report is not None and report.resolve() == out.resolve():
            return "--json must differ from --out"
    except OSError as e:
        return str(e)
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gazecrop.train.calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("weights", type=Path, help="the float .gzw (with at least one depthwise convolution)")
    p.add_argument("--out", type=Path, required=True, help="the .gzw to write (not the input)")
    p.add_argument("--images", type=int, default=64, help="training photos for the ranges (default 64)")
    p.add_argument("--val", type=int, default=None, help="val photos for the verdict (default all; 0: none)")
    p.add_argument("--data", default=None, help="eye-tracking data root (default: gazecrop.datasets' default)")
    p.add_argument("--no-bias-correction", action="store_true")
    p.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                   help="the file's default precision: auto = int8 when the bar was met")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument("--centre-bias", type=Path, default=None,
                   help="the information gain's baseline (default: $GAZECROP_CENTRE_BIAS or the checkout's "
                        "weights/teacher/centre_bias.npz)")
    a = p.parse_args(argv)
    if a.images < 1:
        p.error("--images must be >= 1")
    if a.val is not None and a.val < 0:
        p.error("--val must be >= 0")
    problem = _output_problem(a.weights, a.out, a.json)
    if problem:
        p.error(problem)
    t0 = time.time()
    try:
        from ..centre_bias import default_centre_bias

        cb = default_centre_bias(a.centre_bias) if a.val != 0 else None
        net = weights.read_weights(a.weights)
        n_ops = int8.trunk_end(net)
        samples = calibration_samples(a.images, a.data)
        trunk = int8.calibrate(net, [model_input(net, gds.load_image(s)) for s in samples], n_ops,
                               bias_correction=not a.no_bias_correction)
    except (OSError, ValueError) as e:
        print(f"calibrate: {e}", file=sys.stderr)
        return 2
    report = {"weights": str(a.weights), "out": str(a.out), "trunk_ops": n_ops, "calibration_images": len(samples),
              "bias_correction": not a.no_bias_correction, "bar": QUALITY_BAR,
              "date": time.strftime("%Y-%m-%d")}
    verdict = 0
    if a.val != 0:
        val = gds.load_datasets(split="val", root=a.data)[:a.val]
        if not val:
            print("calibrate: no val photos found", file=sys.stderr)
            return 2
        cmp = compare(net, lambda img: int8.run(net, trunk, model_input(net, img)), val,
                      log=lambda m: print(m, file=sys.stderr), centre_bias=cb)
        cmp.pop("grids")
        report.update(cmp, val_images=len(val))
        verdict = 1 if cmp["passes"] else 2
        print(f"calibrate: IG fp32 {cmp['fp32']['ig']:.4f} int8 {cmp['int8']['ig']:.4f} bit/fix, AUC "
              f"{cmp['fp32']['auc']:.4f} / {cmp['int8']['auc']:.4f}, crops within 1 % "
              f"{cmp['crops_within_1pct']:.1%} of {cmp['crops']}: bar {'met' if verdict == 1 else 'NOT met'}")
    net.int8, net.int8_verdict = trunk, verdict
    net.precision = a.precision if a.precision != "auto" else ("int8" if verdict == 1 else "fp32")
    report.update(verdict=weights.INT8_VERDICTS[verdict], precision=net.precision, seconds=time.time() - t0)
    written = []
    try:  # both outputs or neither
        weights.write_weights(a.out, net)
        written.append(a.out)
        if a.json:
            write_bytes(a.json, (json.dumps(report, indent=1) + "\n").encode())
    except OSError as e:
        for f in written:
            f.unlink(missing_ok=True)
        print(f"calibrate: cannot write the outputs: {e} (nothing written)", file=sys.stderr)
        return 2
    print(f"calibrate: wrote {a.out} (int8 trunk ops 0-{n_ops - 1}, default precision {net.precision})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
