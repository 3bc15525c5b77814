"""Would an int8 trunk keep the model's quality? A simulation before the int8 kernels (issue 22, item 2).

``python benchmarks/int8_quality.py [--model weights/candidate-lite0/gazecrop-fast.gzw] [--calibration 64]
[--quantise both|weights|activations] [--weight-scale max|mse]
[--activations per-tensor|per-channel|depthwise-per-channel] [--relu6 fixed|calibrated] [--percentile P]
[--reference-noise] [--images N] [--json OUT]``

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
import importlib
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
from gazecrop import reference, weights  # noqa: E402
from gazecrop.evaluate import evaluate  # noqa: E402
from gazecrop.model import resize_rgb  # noqa: E402

crop = importlib.import_module("gazecrop.crop")  # the module (gazecrop.crop is the function)
ASPECTS = ("1:1", "16:9", "9:16", "2:1")
QUALITY_BAR = {"ig": 0.01, "auc": 0.002, "crops": 0.97}


def trunk_end(net: weights.Network) -> int:
    """Number of ops of the int8 trunk: through the last depthwise convolution's projection (and its skip add)."""
    last = max((i for i, op in enumerate(net.ops) if op.kind == "depthwise_conv2d"), default=None)
    if last is None:
        raise SystemExit("int8_quality: the network has no depthwise convolution (no inverted-residual trunk)")
    end = last + 2  # the depthwise op and its 1x1 projection
    if end < len(net.ops) and net.ops[end].kind == "add":
        end += 1
    return end


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


def quantise_weights(net: weights.Network, n_ops: int, rule: str = "max") -> weights.Network:
    """A copy whose first ``n_ops`` conv / depthwise weights are rounded to int8 per output channel
    (:func:`weight_scales`)."""
    import copy

    q = copy.deepcopy(net)
    for op in q.ops[:n_ops]:
        if op.kind in ("conv2d", "depthwise_conv2d"):
            name, w = op.tensors[0]
            s = weight_scales(w, rule)[:, None, None, None]
            op.tensors[0] = (name, (np.clip(np.round(w / s), -127, 127) * s).astype(np.float32))
    return q


def model_input(net: weights.Network, img: np.ndarray) -> np.ndarray:
    h, w = net.input_size(img.shape[0], img.shape[1])
    return resize_rgb(img, h, w)


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


def crop_moves(grid_a: np.ndarray, grid_b: np.ndarray, size: Tuple[int, int]) -> List[bool]:
    """Per aspect: whether the default crop moves by more than 1 % of the image side between the two maps."""
    out = []
    for ra, rb in zip(crop.choose_crops(grid_a, size, ASPECTS), crop.choose_crops(grid_b, size, ASPECTS)):
        dx, dy = abs(ra.box.left - rb.box.left), abs(ra.box.top - rb.box.top)
        out.append(dx > 0.01 * size[0] or dy > 0.01 * size[1])
    return out


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
    p.add_argument("--images", type=int, default=None, help="val images (default: all)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    net = weights.read_weights(args.model)
    n_ops = trunk_end(net)
    train = gds.load_datasets(split="train")
    step = max(1, len(train) // args.calibration)
    calib = train[::step][:args.calibration]
    t0 = time.time()
    ranges = calibrate(net, calib, n_ops, per_channel_values(net, n_ops, args.activations), args.percentile,
                       args.relu6 == "fixed")
    net_q = quantise_weights(net, n_ops, args.weight_scale) if args.quantise != "activations" else net
    if args.quantise == "weights":
        ranges = {v: (np.float32(-np.inf), np.float32(np.inf)) for v in ranges}  # fake_quant leaves these alone
    val = gds.load_datasets(split="val")[:args.images]
    grids: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}

    def fp32(s, img):
        g = reference.run(net, model_input(net, img))
        gq = int8_log_density(net_q, img, n_ops, ranges)
        grids[s.key] = (g, gq)
        return crop.resample_log_density(g, (s.width, s.height)).astype(np.float64)

    def int8(s, img):
        return crop.resample_log_density(grids[s.key][1], (s.width, s.height)).astype(np.float64)

    res = evaluate([("fp32", fp32), ("int8 (simulated)", int8)], val, log=lambda m: print(m, file=sys.stderr))
    moved = [m for s in val for m in crop_moves(*grids[s.key], (s.width, s.height))]
    noise = None
    if args.reference_noise:
        noise = [m for s in val for m in crop_moves(grids[s.key][0], reference.run(net, model_input(
            net, jpeg95(gds.load_image(s)))), (s.width, s.height))]
    a, b = res["fp32"]["pooled"], res["int8 (simulated)"]["pooled"]
    out = {"model": str(args.model), "trunk_ops": n_ops, "activations": args.activations,
           "percentile": args.percentile, "relu6": args.relu6, "quantise": args.quantise,
           "weight_scale": args.weight_scale,
           "calibration_images": len(calib), "val_images": len(val), "fp32": a, "int8": b,
           "ig_drop": a["ig"] - b["ig"], "auc_drop": a["auc"] - b["auc"],
           "crops_within_1pct": 1.0 - float(np.mean(moved)), "seconds": time.time() - t0}
    if noise is not None:
        out["fp32_jpeg95_crops_within_1pct"] = 1.0 - float(np.mean(noise))
    out["passes"] = bool(out["ig_drop"] <= QUALITY_BAR["ig"] and out["auc_drop"] <= QUALITY_BAR["auc"]
                         and out["crops_within_1pct"] >= QUALITY_BAR["crops"])
    print(f"{Path(args.model).name}: trunk = ops 0-{n_ops - 1}, int8 {args.quantise}, weight scale "
          f"{args.weight_scale}, activations "
          f"{args.activations}, ReLU6 "
          f"{args.relu6}, ranges "
          f"{'min / max' if args.percentile >= 100 else f'{args.percentile:g} percentile'}, {len(calib)} "
          f"calibration images, {len(val)} val images")
    print(f"  IG  fp32 {a['ig']:.4f}  int8 {b['ig']:.4f}  drop {out['ig_drop']:+.4f} bit/fix (bar 0.01)")
    print(f"  AUC fp32 {a['auc']:.4f}  int8 {b['auc']:.4f}  drop {out['auc_drop']:+.4f} (bar 0.002)")
    print(f"  crops within 1 % of the side: {out['crops_within_1pct']:.1%} of {len(moved)} (bar 97 %)")
    if noise is not None:
        print(f"  float32 itself, photo saved again as a quality-95 JPEG: crops within 1 %: "
              f"{out['fp32_jpeg95_crops_within_1pct']:.1%} of {len(noise)}")
    print(f"  quality bar: {'met' if out['passes'] else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
