"""The head map: a second output of the saliency network that says where heads are, for the crop layer's head
rule (no box edge through a head that a box of that size can hold; :func:`gazecrop.crop.choose_crops`).

Knowledge distillation from a face detector (Hinton et al. 2015; here the teacher is OpenCV's Haar cascade
``frontalface_default``, Viola and Jones, CVPR 2001, :func:`gazecrop.train.faces.detect_faces`): the detector
runs offline over the training photos of ``../shared/data/eyetracking`` (a training dependency only; nothing is
downloaded or detected at run time), every face box becomes a head box (:func:`gazecrop.crop.head_box`), and a
small readout on the network's own feature maps (1x1 convolution to ``hidden`` channels + ReLU, 1x1 convolution
to one channel) learns the share of each output cell that a head covers, as a logit (binary cross-entropy on the
soft coverage). The backbone is frozen, so the saliency output of the file stays bit for bit what it was.

The readout is written into the ``.gzw`` as two ``conv2d`` ops placed before the last op and named by the
header's ``head_output`` (weights format version 3, ``docs/weights-format.md``). Its cost is
``cells * (C * hidden + hidden)`` multiply-adds (C = the feature map's channels): 2.1 MFLOP for the DenseNet
student at 256 x 192 with 8 hidden channels.

Measure it with a detector the product never saw: ``benchmarks/crop_quality.py --heads`` (MediaPipe's BlazeFace
in its own environment).

``python -m gazecrop.train.face_map --weights weights/gazecrop-fast.gzw --out weights/gazecrop-fast.gzw``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import reference
from ..crop import head_box
from ..weights import Network, Op, read_weights, write_weights

__all__ = ["feature_value", "head_coverage", "HeadData", "collect", "fit", "attach_head_map", "main"]

HIDDEN = 8
"""Hidden channels of the head readout."""


def feature_value(net: Network) -> int:
    """Value id of the feature maps the saliency readout reads: the input of the readout's first 1x1
    convolution, found by walking back from the ``gaussian_blur`` op (readout conv [-> readout conv] -> blur).

    Raises:
        ValueError: the network has no ``gaussian_blur`` op fed by 1x1 convolutions (not a DeepGaze-style head).
    """
    blur = [i for i, op in enumerate(net.ops) if op.kind == "gaussian_blur"]
    if not blur:
        raise ValueError("the network has no gaussian_blur op: cannot find its readout")
    v = net.ops[blur[-1]].inputs[0]
    for _ in range(4):
        op = net.ops[v - 1]
        if op.kind != "conv2d" or op.ip(2) != 1:
            break
        v = op.inputs[0]
    if v == net.ops[blur[-1]].inputs[0]:
        raise ValueError("the blur is not fed by 1x1 convolutions: cannot find the readout's feature maps")
    return v


def head_coverage(size: Tuple[int, int], heads: Sequence[Tuple[int, int, int, int]], grid: Tuple[int, int]
                  ) -> np.ndarray:
    """float32 (gh, gw) share of each output cell that the union of ``heads`` covers (0..1).

    Args:
        size: ``(W, H)`` of the image in pixels. heads: ``(left, top, width, height)`` boxes in those pixels.
        grid: ``(gh, gw)`` of the network's output, which covers the whole image.
    """
    W, H = size
    gh, gw = grid
    mask = np.zeros((H, W), np.float32)
    for l, t, w, h in heads:
        mask[t:t + h, l:l + w] = 1.0
    # exact area average over cells with fractional edges (bilinear reads of the summed-area table)
    ys = np.linspace(0, H, gh + 1)
    xs = np.linspace(0, W, gw + 1)
    sat = np.zeros((H + 1, W + 1), np.float64)
    sat[1:, 1:] = mask.cumsum(0).cumsum(1)

    def at(y: np.ndarray, x: np.ndarray) -> np.ndarray:  # bilinear in the summed-area table = exact area
        y0 = np.clip(np.floor(y).astype(int), 0, H - 1)
        x0 = np.clip(np.floor(x).astype(int), 0, W - 1)
        fy, fx = y - y0, x - x0
        return ((1 - fy) * (1 - fx) * sat[y0, x0] + (1 - fy) * fx * sat[y0, x0 + 1]
                + fy * (1 - fx) * sat[y0 + 1, x0] + fy * fx * sat[y0 + 1, x0 + 1])

    Y, X = np.meshgrid(ys, xs, indexing="ij")
    S = at(Y, X)
    area = S[1:, 1:] - S[:-1, 1:] - S[1:, :-1] + S[:-1, :-1]
    cell = (H / gh) * (W / gw)
    return np.clip(area / cell, 0.0, 1.0).astype(np.float32)


@dataclass
class HeadData:
    """Training cells for the head readout: ``features`` float16 (n, C), ``targets`` float32 (n,) head
    coverage, ``weights`` float32 (n,) (subsampled cells weigh more), ``image`` int32 (n,) photo index."""

    features: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    image: np.ndarray


def _features(net: Network, fv: int, rgb: np.ndarray) -> np.ndarray:
    """float32 (C, gh', gw') feature maps of value ``fv`` for a uint8 (h, w, 3) model-size input (NumPy
    reference, :mod:`gazecrop.reference`)."""
    return reference.values(net, rgb, upto=fv)[fv]


def detect_heads(paths: Sequence[Path], *, log=print) -> Dict[str, List[List[int]]]:
    """Face boxes ``[left, top, width, height]`` per ``str(path)`` from the training detector
    (:func:`gazecrop.train.faces.detect_faces` on the displayed full-resolution photo), largest first."""
    from .._image import _prepare
    from .faces import detect_faces

    out: Dict[str, List[List[int]]] = {}
    t0 = time.time()
    for k, p in enumerate(paths):
        out[str(p)] = [list(b) for b in detect_faces(_prepare(p).rgb)]
        if (k + 1) % 500 == 0:
            log(f"  faces {k + 1}/{len(paths)} ({time.time() - t0:.0f} s)")
    return out


def collect(paths: Sequence[Path], net: Network, faces: Dict[str, List[List[int]]], *, negative_share: float = 0.1,
            seed: int = 0, log=print) -> HeadData:
    """Feature maps and head coverage for every photo: all cells of photos with a face, ``negative_share`` of the
    cells of photos without one (weighted ``1 / negative_share``).

    Args:
        paths: photo files. net: the network whose features are read. faces: detector boxes per ``str(path)``.
    """
    from PIL import Image

    from .._image import _prepare

    fv = feature_value(net)
    rng = np.random.default_rng(seed)
    feats, targs, wts, idx = [], [], [], []
    t0 = time.time()
    for k, p in enumerate(paths):
        prep = _prepare(p)
        h, w = net.input_size(prep.rgb.shape[0], prep.rgb.shape[1])
        rgb = np.asarray(Image.fromarray(prep.rgb).resize((w, h), Image.BILINEAR, reducing_gap=None))
        f = _features(net, fv, rgb)
        heads = [tuple(head_box(b, prep.size)) for b in faces.get(str(p), [])]
        cov = head_coverage(prep.size, heads, f.shape[1:])
        X = f.reshape(f.shape[0], -1).T
        y = cov.reshape(-1)
        if heads:
            keep = np.arange(len(y))
            wt = np.ones(len(y), np.float32)
        else:
            keep = np.flatnonzero(rng.random(len(y)) < negative_share)
            wt = np.full(len(keep), 1.0 / negative_share, np.float32)
        feats.append(X[keep].astype(np.float16))
        targs.append(y[keep])
        wts.append(wt)
        idx.append(np.full(len(keep), k, np.int32))
        if (k + 1) % 200 == 0:
            log(f"  features {k + 1}/{len(paths)} ({time.time() - t0:.0f} s)")
    return HeadData(np.concatenate(feats), np.concatenate(targs), np.concatenate(wts), np.concatenate(idx))


def fit(train: HeadData, *, hidden: int = HIDDEN, epochs: int = 30, batch: int = 4096, lr: float = 3e-3,
        weight_decay: float = 1e-4, seed: int = 0, log=print) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit the head readout (1x1 conv to ``hidden`` + ReLU, 1x1 conv to 1) by weighted binary cross-entropy on
    the head coverage (Adam; PyTorch, CPU). The feature standardisation is folded into the first layer.

    Returns:
        ``(w1 (hidden, C, 1, 1), b1 (hidden,), w2 (1, hidden, 1, 1), b2 (1,))`` float32 conv weights.
    """
    import torch

    torch.manual_seed(seed)
    X = torch.from_numpy(train.features.astype(np.float32))
    mu = X.mean(0)
    sd = X.std(0).clamp_min(1e-3)
    X = (X - mu) / sd
    y = torch.from_numpy(train.targets)
    w = torch.from_numpy(train.weights)
    C = X.shape[1]
    l1 = torch.nn.Linear(C, hidden)
    l2 = torch.nn.Linear(hidden, 1)
    params = list(l1.parameters()) + list(l2.parameters())
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    n = len(y)
    steps = epochs * ((n + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        perm = torch.randperm(n, generator=g)
        tot = 0.0
        for s in range(0, n, batch):
            i = perm[s:s + batch]
            logit = l2(torch.relu(l1(X[i])))[:, 0]
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logit, y[i], reduction="none")
                    * w[i]).sum() / w[i].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss) * len(i)
        if ep % 5 == 4 or ep == epochs - 1:
            log(f"  epoch {ep + 1}/{epochs}: weighted BCE {tot / n:.4f}")
    with torch.no_grad():
        W1 = l1.weight / sd[None, :]
        B1 = l1.bias - (l1.weight * (mu / sd)[None, :]).sum(1)
        return (W1.numpy().astype(np.float32)[:, :, None, None], B1.numpy().astype(np.float32),
                l2.weight.numpy().astype(np.float32)[:, :, None, None], l2.bias.numpy().astype(np.float32))


def head_logits(features: np.ndarray, layers: Sequence[np.ndarray]) -> np.ndarray:
    """float32 (n,) head logits of (n, C) feature rows through the readout ``layers`` (as :func:`fit` returns)."""
    w1, b1, w2, b2 = layers
    h = np.maximum(features.astype(np.float32) @ w1[:, :, 0, 0].T + b1, 0.0)
    return (h @ w2[:, :, 0, 0].T + b2)[:, 0]


def without_head_map(net: Network) -> Network:
    """A copy of ``net`` keeping only the ops the log-density needs (a head map and its readout removed)."""
    need = {len(net.ops)}
    for i in range(len(net.ops) - 1, -1, -1):
        if i + 1 in need:
            need.update(net.ops[i].inputs)
    keep = [i for i in range(len(net.ops)) if i + 1 in need]
    new_id = {0: 0, **{i + 1: k + 1 for k, i in enumerate(keep)}}
    ops = [Op(net.ops[i].kind, [new_id[v] for v in net.ops[i].inputs], list(net.ops[i].iparams),
              list(net.ops[i].fparams), list(net.ops[i].tensors)) for i in keep]
    return Network(mean=net.mean, std=net.std, input_long_side=net.input_long_side, size_multiple=net.size_multiple,
                   ops=ops, model_name=net.model_name, model_version=net.model_version)


def attach_head_map(net: Network, layers: Sequence[np.ndarray], value: Optional[int] = None) -> Network:
    """A copy of ``net`` (any head map it had removed) with the head readout ``layers`` (as :func:`fit`
    returns: 1x1 convolution + ReLU, 1x1 convolution to one channel) reading ``value`` (default
    :func:`feature_value`), inserted before the last op and named by ``head_output`` (weights format version
    3). The log-density's ops and weights are unchanged, so its output is bit for bit the same.

    Raises:
        ValueError: as :func:`feature_value`. WeightsFormatError: the layers do not fit the value's channels.
    """
    base = without_head_map(net)
    fv = feature_value(base) if value is None else int(value)
    pos = len(base.ops) - 1  # the new ops write values pos + 1, pos + 2; the last op reads only ids <= pos
    w1, b1, w2, b2 = (np.asarray(a, np.float32) for a in layers)
    head = [Op("conv2d", [fv], [w1.shape[1], w1.shape[0], 1, 1, 0, 1], [],
               [("head.l0.weight", w1), ("head.l0.bias", b1)]),
            Op("conv2d", [pos + 1], [w2.shape[1], w2.shape[0], 1, 1, 0, 0], [],
               [("head.l1.weight", w2), ("head.l1.bias", b2)])]
    out = Network(mean=base.mean, std=base.std, input_long_side=base.input_long_side,
                  size_multiple=base.size_multiple, ops=base.ops[:pos] + head + base.ops[pos:],
                  model_name=base.model_name, model_version=base.model_version, head_output=pos + 2)
    out.validate()
    return out


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``labels`` (ties count half)."""
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sv = allv[order]
    # average ranks of ties
    edges = np.flatnonzero(np.diff(sv)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(sv)]])
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def box_agreement(pred: Sequence[Sequence[int]], truth: Sequence[Sequence[int]], iou: float = 0.3
                  ) -> Tuple[int, int, int]:
    """(matched, predicted, true) head boxes ``(left, top, width, height)``, matched greedily at IoU >= ``iou``."""
    def io(a, b) -> float:
        x0, y0 = max(a[0], b[0]), max(a[1], b[1])
        x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
        inter = max(0, x1 - x0) * max(0, y1 - y0)
        return inter / float(a[2] * a[3] + b[2] * b[3] - inter)

    free = list(truth)
    m = 0
    for p in pred:
        scores = [io(p, t) for t in free]
        if scores and max(scores) >= iou:
            free.pop(int(np.argmax(scores)))
            m += 1
    return m, len(pred), len(truth)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .. import datasets
    from ..crop import heads_from_map
    from .teacher import cache_dir

    p = argparse.ArgumentParser(prog="python -m gazecrop.train.face_map", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="the .gzw network to give a head map (any it has is replaced)")
    p.add_argument("--out", required=True, help="the .gzw to write (format version 3; may equal --weights)")
    p.add_argument("--root", default=None, help="eye-tracking data root (default: datasets.default_root())")
    p.add_argument("--hidden", type=int, default=HIDDEN)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="first N photos of each split (smoke test)")
    p.add_argument("--json", default=None, help="write the val measurements here")
    a = p.parse_args(argv)

    root = Path(a.root) if a.root else datasets.default_root()
    split = datasets.load_split(root)
    paths = {s: [root / d / "stimuli" / im for (d, im), sp in sorted(split.items()) if sp == s][:a.limit]
             for s in ("train", "val")}
    cache = cache_dir() / "face_map"
    cache.mkdir(parents=True, exist_ok=True)
    faces_file = cache / "faces_haar_frontalface_default.json"
    faces: Dict[str, List[List[int]]] = json.loads(faces_file.read_text()) if faces_file.is_file() else {}
    todo = [q for q in paths["train"] + paths["val"] if str(q) not in faces]
    if todo:
        print(f"detecting faces in {len(todo)} photos (OpenCV Haar frontalface_default)", flush=True)
        faces.update(detect_heads(todo, log=lambda m: print(m, flush=True)))
        tmp = faces_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(faces))
        os.replace(tmp, faces_file)
    net = without_head_map(read_weights(a.weights))
    fv = feature_value(net)
    data = {}
    for s in ("train", "val"):
        print(f"{s}: feature maps of value {fv} ({net.channels(fv)} channels) for {len(paths[s])} photos", flush=True)
        data[s] = collect(paths[s], net, faces, seed=a.seed, log=lambda m: print(m, flush=True))
    print(f"fitting the head readout ({a.hidden} hidden channels) on {len(data['train'].targets)} cells", flush=True)
    layers = fit(data["train"], hidden=a.hidden, epochs=a.epochs, seed=a.seed, log=lambda m: print(m, flush=True))
    out = attach_head_map(net, layers)

    # val: cells (AUC of the logit for cells at least half covered) and head boxes against the detector's
    v = data["val"]
    logit = head_logits(v.features, layers)
    auc = _auc(logit, v.targets >= 0.5)
    from PIL import Image

    from .._image import _prepare

    matched = npred = ntrue = 0
    with_face = 0
    for q in paths["val"]:
        prep = _prepare(q)
        h, w = net.input_size(prep.rgb.shape[0], prep.rgb.shape[1])
        rgb = np.asarray(Image.fromarray(prep.rgb).resize((w, h), Image.BILINEAR, reducing_gap=None))
        _, hm = reference.run(out, rgb, head_map=True)
        pred = [tuple(b) for b in heads_from_map(hm, prep.size)]
        truth = [tuple(head_box(b, prep.size)) for b in faces.get(str(q), [])]
        with_face += bool(truth)
        m, n_p, n_t = box_agreement(pred, truth)
        matched, npred, ntrue = matched + m, npred + n_p, ntrue + n_t
    report = {"weights": a.weights, "feature_value": fv, "channels": net.channels(fv), "hidden": a.hidden,
              "epochs": a.epochs, "seed": a.seed, "train_photos": len(paths["train"]),
              "train_cells": int(len(data["train"].targets)), "val_photos": len(paths["val"]),
              "val_photos_with_a_face": with_face, "val_cell_auc": auc,
              "val_heads_found": matched, "val_heads_predicted": npred, "val_heads_true": ntrue,
              "val_head_recall": matched / ntrue if ntrue else None,
              "val_head_precision": matched / npred if npred else None,
              "head_mflop_at_256x192": 2 * (net.channels(fv) * a.hidden + a.hidden) * 24 * 32 / 1e6,
              "date": time.strftime("%Y-%m-%d", time.gmtime())}
    print(json.dumps(report, indent=1))
    write_weights(a.out, out)
    if a.json:
        from .._atomic import write_bytes

        write_bytes(a.json, (json.dumps(report, indent=1) + "\n").encode())
    print(f"wrote {a.out} (format version {out.format_version()}, head_output {out.head_output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
