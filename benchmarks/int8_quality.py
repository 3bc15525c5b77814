"""Would an int8 trunk keep the model's quality? The exact int8 trunk, and a simulation of other schemes (issue 22,
item 2).

``python benchmarks/int8_quality.py [--model weights/candidate-lite0/gazecrop-fast.gzw] [--calibration 64]
[--exact [--no-bias-correction]] [--quantise both|weights|activations] [--weight-scale max|mse]
[--activations per-tensor|per-channel|depthwise-per-channel] [--relu6 fixed|calibrated] [--percentile P]
[--fp32-ops I,J] [--reference-noise] [--images N] [--json OUT]``, or ``--sensitivity [--images 60]`` (one op's
weights int8 at a time: which layers move the map).

``--exact`` evaluates the scheme that ships: :mod:`gazecrop.int8`'s integer trunk with bias correction, through
the same comparison as ``python -m gazecrop.train.calibrate`` (:func:`gazecrop.train.calibrate.compare`).
Without it, the rest of this docstring: a simulation to compare schemes.

Runs the NumPy reference (:mod:`gazecrop.reference`) twice per val image of the eye-tracking data: in float32,
and with the quantisation of ``docs/int8-plan.md`` simulated ("fake quantisation": every quantised number is
rounded to its int8 grid and used as float): weights symmetric int8 per output channel (``s_w[m] = max|w[m]| /
127``), activations int8 with a zero point, their ranges calibrated on ``--calibration`` train images (min /
max of each value; ReLU6 outputs use [0, 6]), per tensor (the plan) or per channel (for comparison). The
trunk is every op up to the last inverted residual (the last depthwise convolution, its projection and skip
add): its input, outputs and weights are quantised; the readout, blur, centre bias and log-softmax stay
float32 on the dequantised trunk values, as the plan keeps them.

Reports, pooled over the val images (``gazecrop.evaluate``): information gain over the centre bias (bit per
fixation) and AUC-Judd for both, and how often the default crop (``gazecrop.crop.choose_crop``, 1:1, 16:9, 9:16,
2:1) moves by more than 1 % of the image side; against the issue's quality bar (IG within 0.01 bit, AUC within
0.002, >= 97 % of crops within 1 %). A simulation rounds like the planned kernels but accumulates in float32,
so it bounds the quantisation error, not the kernels' exact bits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# the centre bias of the information gain: the checkout's (an installed package does not carry it)
os.environ.setdefault("GAZECROP_CENTRE_BIAS", str(ROOT / "weights" / "teacher" / "centre_bias.npz"))

from gazecrop import datasets as gds  # noqa: E402
from gazecrop import int8, reference, weights  # noqa: E402
from gazecrop.train.calibrate import calibration_samples, compare, crop_moves, model_input  # noqa: E402


def weight_scales(w: np.ndarray, rule: str) -> np.ndarray:
    """Per output channel scales (M,) of symmetric int8 weights: ``max |w| / 127`` (``max``), or the clipped
    scale ``a max |w| / 127``, a in [0.5, 1] by steps of 0.01, with the least squared rounding error (``mse``)."""
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    top = np.abs(flat).max(axis=1)
    top = np.where(top > 0, top, 127.0)
    if rule == "max":
        return top / 127.0
    best, err = top / 127.0, np.full(len(top), np.inf)
    for a in np.arange(0.5, 1.0001, 0.01):
        s = a * top / 127.0
        e = ((np.clip(np.round(flat / s[:, None]), -127, 127) * s[:, None] - flat) ** 2).sum(axis=1)
        better = e < err
        best, err = np.where(better, s, best), np.where(better, e, err)
    return best


def quantise_weights(net: weights.Network, n_ops: int, rule: str = "max", keep=()) -> weights.Network:
    """A copy whose first ``n_ops`` conv / depthwise weights are rounded to int8 per output channel
    (:func:`weight_scales`), except the ops in ``keep`` (their weights stay float32)."""
    import copy

    q = copy.deepcopy(net)
    for i, op in enumerate(q.ops[:n_ops]):
        if op.kind in ("conv2d", "depthwise_conv2d") and i not in keep:
            name, w = op.tensors[0]
            s = weight_scales(w, rule)[:, None, None, None]
            op.tensors[0] = (name, (np.clip(np.round(w / s), -127, 127) * s).astype(np.float32))
    return q


def fp32_values(net: weights.Network, img: np.ndarray, n_ops: int) -> List[np.ndarray]:
    return reference.values(net, model_input(net, img), upto=n_ops)


def per_channel_values(net: weights.Network, n_ops: int, activations: str) -> set:
    """Value ids whose activation scale is per channel: all (``per-channel``), those read by a depthwise
    convolution (``depthwise-per-channel``: the depthwise kernels run channel by channel, so there a per-channel
    input scale costs nothing), or none (``per-tensor``)."""
    if activations == "per-channel":
        return set(range(n_ops + 1))
    if activations == "depthwise-per-channel":
        return {op.inputs[0] for op in net.ops[:n_ops] if op.kind == "depthwise_conv2d"}
    return set()


def calibrate(net: weights.Network, samples, n_ops: int, per_channel: set, percentile: float = 100.0,
              relu6_fixed: bool = True) -> Dict[int, Tuple[np.ndarray, ...]]:
    """Value id -> (low, high) over the calibration images (arrays (C, 1, 1) for the values in ``per_channel``):
    the min / max over all images, or with ``percentile`` < 100 the mean over the images of each image's
    (100 - p, p) percentiles (long tails clipped). ReLU6 outputs get [0, 6] unless ``relu6_fixed`` is False."""
    lo: Dict[int, np.ndarray] = {}
    hi: Dict[int, np.ndarray] = {}
    for s in samples:
        for v, x in enumerate(fp32_values(net, gds.load_image(s), n_ops)):
            axes = (1, 2) if v in per_channel else (0, 1, 2)
            if percentile < 100:
                a = np.percentile(x, 100 - percentile, axis=axes, keepdims=True) / len(samples)
                b = np.percentile(x, percentile, axis=axes, keepdims=True) / len(samples)
                lo[v], hi[v] = (a, b) if v not in lo else (lo[v] + a, hi[v] + b)
                continue
            a, b = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
            lo[v] = a if v not in lo else np.minimum(lo[v], a)
            hi[v] = b if v not in hi else np.maximum(hi[v], b)
    out = {}
    for v in lo:
        relu6 = v > 0 and net.ops[v - 1].kind in ("conv2d", "depthwise_conv2d") and net.ops[v - 1].ip(5) == 3
        if relu6 and relu6_fixed:
            out[v] = (np.zeros_like(lo[v]), np.full_like(hi[v], 6.0))  # ReLU6: the fixed range
        else:
            out[v] = (np.minimum(lo[v], 0.0), np.maximum(hi[v], 0.0))  # 0 exactly representable (padding)
    return out


def fake_quant(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """int8 with a zero point over [lo, hi]: ``q = clip(round(x / s) + z, -128, 127)``, back to ``(q - z) s``;
    an infinite range leaves ``x`` as it is (``--quantise weights``)."""
    if not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)):
        return x
    s = np.maximum((hi - lo) / 255.0, 1e-12)
    z = np.round(-128.0 - lo / s)
    q = np.clip(np.round(x / s) + z, -128, 127)
    return ((q - z) * s).astype(np.float32)


def int8_log_density(net_q: weights.Network, img: np.ndarray, n_ops: int, ranges) -> np.ndarray:
    vals = [fake_quant(reference.preprocess(net_q, model_input(net_q, img)), *ranges[0])]
    for i, op in enumerate(net_q.ops):
        y = reference._run_op(op, vals)
        if i + 1 <= n_ops:
            y = fake_quant(y, *ranges[i + 1])
        vals.append(y)
    return vals[-1][0].astype(np.float32)


def jpeg95(img: np.ndarray) -> np.ndarray:
    """The photo saved as a quality-95 JPEG and decoded again (a change nobody sees)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def sensitivity(net: weights.Network, n_ops: int, val, rule: str) -> List[dict]:
    """Per conv / depthwise op of the trunk: only that op's weights int8 (everything else float32), over the
    ``val`` samples: the crops moved by more than 1 % of the side and the mean total variation distance
    ``0.5 sum |p - q|`` between the two saliency maps (densities on the output grid)."""
    base = {}
    for s in val:
        img = gds.load_image(s)
        base[s.key] = (img, reference.run(net, model_input(net, img)))
    rows = []
    for i, op in enumerate(net.ops[:n_ops]):
        if op.kind not in ("conv2d", "depthwise_conv2d"):
            continue
        q = quantise_weights(net, n_ops, rule, keep=set(range(n_ops)) - {i})
        moved, tv = [], []
        for s in val:
            img, g = base[s.key]
            gq = reference.run(q, model_input(q, img))
            moved += crop_moves(g, gq, (s.width, s.height))
            tv.append(0.5 * float(np.abs(np.exp(g.astype(np.float64)) - np.exp(gq.astype(np.float64))).sum()))
        w = op.tensors[0][1]
        rows.append({"op": i, "kind": op.kind, "shape": list(w.shape), "crops_moved": float(np.mean(moved)),
                     "tv": float(np.mean(tv))})
        print(f"  op {i:2d} {op.kind:16s} {'x'.join(map(str, w.shape)):14s} crops moved "
              f"{rows[-1]['crops_moved']:6.1%}  mean TV {rows[-1]['tv']:.5f}", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "weights" / "candidate-lite0" / "gazecrop-fast.gzw"))
    p.add_argument("--calibration", type=int, default=64, help="train images for the activation ranges")
    p.add_argument("--activations", choices=("per-tensor", "per-channel", "depthwise-per-channel"),
                   default="per-tensor")
    p.add_argument("--relu6", choices=("fixed", "calibrated"), default="fixed",
                   help="ReLU6 outputs: the fixed range [0, 6] (the plan) or calibrated like the rest")
    p.add_argument("--quantise", choices=("both", "weights", "activations"), default="both",
                   help="what is rounded to int8 (the others stay float32): to see where the error comes from")
    p.add_argument("--weight-scale", choices=("max", "mse"), default="max",
                   help="per-channel weight scale: max |w| / 127 (the plan) or clipped for the least rounding error")
    p.add_argument("--reference-noise", action="store_true",
                   help="also: how often the float32 crop itself moves when the photo is saved again as a "
                        "quality-95 JPEG (how strict the crop bar is)")
    p.add_argument("--percentile", type=float, default=100.0,
                   help="activation ranges from this percentile per image, averaged (default 100: min / max)")
    p.add_argument("--fp32-ops", default="",
                   help="comma-separated op indices whose weights stay float32 (mixed precision)")
    p.add_argument("--exact", action="store_true",
                   help="instead of the simulation: the exact integer trunk of gazecrop.int8 (per-tensor "
                        "activations, max |w| / 127 weight scales, bias correction unless --no-bias-correction)")
    p.add_argument("--no-bias-correction", action="store_true", help="with --exact: calibrate without it")
    p.add_argument("--sensitivity", action="store_true",
                   help="instead: per trunk op, only its weights int8 (:func:`sensitivity`) over --images val "
                        "images (default 60)")
    p.add_argument("--images", type=int, default=None, help="val images (default: all)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    net = weights.read_weights(args.model)
    try:
        n_ops = int8.trunk_end(net)
    except ValueError as e:
        raise SystemExit(f"int8_quality: {e}")
    if args.sensitivity:
        val = gds.load_datasets(split="val")[:args.images or 60]
        print(f"{Path(args.model).name}: one op's weights int8 at a time, {len(val)} val images")
        rows = sensitivity(net, n_ops, val, args.weight_scale)
        if args.json:
            Path(args.json).write_text(json.dumps({"model": str(args.model), "val_images": len(val),
                                                   "ops": rows}, indent=1) + "\n")
        return 0
    keep = {int(k) for k in args.fp32_ops.split(",") if k.strip()}
    if args.exact and (keep or args.activations != "per-tensor" or args.percentile < 100 or args.relu6 != "fixed"
                       or args.quantise != "both" or args.weight_scale != "max"):
        p.error("--exact runs gazecrop.int8's one scheme: no simulation options (--no-bias-correction only)")
    if args.no_bias_correction and not args.exact:
        p.error("--no-bias-correction goes with --exact (the simulation has no bias correction)")
    calib = calibration_samples(args.calibration)
    t0 = time.time()
    if args.exact:
        trunk = int8.calibrate(net, [model_input(net, gds.load_image(s)) for s in calib], n_ops,
                               bias_correction=not args.no_bias_correction)
    else:
        ranges = calibrate(net, calib, n_ops, per_channel_values(net, n_ops, args.activations), args.percentile,
                           args.relu6 == "fixed")
    if not args.exact:
        net_q = quantise_weights(net, n_ops, args.weight_scale, keep) if args.quantise != "activations" else net
        if args.quantise == "weights":
            ranges = {v: (np.float32(-np.inf), np.float32(np.inf)) for v in ranges}  # fake_quant leaves these
    val = gds.load_datasets(split="val")[:args.images]
    if args.exact:
        def other(img):
            return int8.run(net, trunk, model_input(net, img))
    else:
        def other(img):
            return int8_log_density(net_q, img, n_ops, ranges)
    cmp = compare(net, other, val, "int8 (exact)" if args.exact else "int8 (simulated)",
                  log=lambda m: print(m, file=sys.stderr))
    grids = cmp.pop("grids")
    noise = None
    if args.reference_noise:
        noise = [m for s in val for m in crop_moves(grids[s.key][0], reference.run(net, model_input(
            net, jpeg95(gds.load_image(s)))), (s.width, s.height))]
    a, b = cmp["fp32"], cmp["int8"]
    out = {"model": str(args.model), "trunk_ops": n_ops, "activations": args.activations,
           "exact": args.exact, "percentile": args.percentile, "relu6": args.relu6, "quantise": args.quantise,
           "weight_scale": args.weight_scale,
           "bias_correction": args.exact and not args.no_bias_correction,
           "fp32_ops": sorted(keep), "calibration_images": len(calib), "val_images": len(val), **cmp,
           "seconds": time.time() - t0}
    if noise is not None:
        out["fp32_jpeg95_crops_within_1pct"] = 1.0 - float(np.mean(noise))
    if args.exact:
        print(f"{Path(args.model).name}: trunk = ops 0-{n_ops - 1}, exact int8 (gazecrop.int8), bias correction "
              f"{'off' if args.no_bias_correction else 'on'}, {len(calib)} calibration images, {len(val)} val images")
    else:
        print(f"{Path(args.model).name}: trunk = ops 0-{n_ops - 1}, int8 {args.quantise}, weight scale "
              f"{args.weight_scale}"
              f"{', fp32 weights in ops ' + args.fp32_ops if keep else ''}, activations "
              f"{args.activations}, ReLU6 "
              f"{args.relu6}, ranges "
              f"{'min / max' if args.percentile >= 100 else f'{args.percentile:g} percentile'}, {len(calib)} "
              f"calibration images, {len(val)} val images")
    print(f"  IG  fp32 {a['ig']:.4f}  int8 {b['ig']:.4f}  drop {out['ig_drop']:+.4f} bit/fix (bar 0.01)")
    print(f"  AUC fp32 {a['auc']:.4f}  int8 {b['auc']:.4f}  drop {out['auc_drop']:+.4f} (bar 0.002)")
    print(f"  crops within 1 % of the side: {out['crops_within_1pct']:.1%} of {out['crops']} (bar 97 %)")
    if noise is not None:
        print(f"  float32 itself, photo saved again as a quality-95 JPEG: crops within 1 %: "
              f"{out['fp32_jpeg95_crops_within_1pct']:.1%} of {len(noise)}")
    print(f"  quality bar: {'met' if out['passes'] else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
