"""The head map: a second output of the saliency network that says where heads are, for the crop layer's head
rule (no box edge through a head that a box of that size can hold; :func:`gazecrop.crop.choose_crops`).

Knowledge distillation from a face detector (Hinton et al. 2015; here the teacher is OpenCV's Haar cascade
``frontalface_default``, Viola and Jones, CVPR 2001, :func:`gazecrop.train.faces.detect_faces`): the detector
runs offline over the training photos of ``../shared/data/eyetracking`` (a training dependency only; nothing is
downloaded or detected at run time), every face box becomes a head box (:func:`gazecrop.crop.head_box`), and a
small head on the network's own feature maps (1x1 convolution to ``widths[0]`` channels + ReLU, k x k
convolution to ``widths[1]`` + ReLU for context, 1x1 convolution to one channel) learns the share of each
output cell that a head covers, as a logit (binary cross-entropy on the soft coverage, left-right flips). The
backbone is frozen, so the saliency output of the file stays bit for bit what it was.

The head is written into the ``.gzw`` as ``conv2d`` ops placed before the last op and named by the header's
``head_output`` (weights format version 3, ``docs/weights-format.md``); :func:`head_macs` gives its cost.

Measure it with a detector the product never saw: ``benchmarks/head_cuts.py`` (dlib's HOG face detector).

``python -m gazecrop.train.face_map --weights weights/gazecrop-fast.gzw --out weights/gazecrop-fast.gzw``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _atomic, reference
from ..crop import head_box
from ..weights import Network, Op, read_weights, write_weights

__all__ = ["WIDTHS", "KERNEL", "Layers", "HeadMap", "feature_value", "head_coverage", "detect_heads", "model_input",
           "collect", "head_macs", "fit", "without_head_map", "attach_head_map", "box_agreement", "main"]

WIDTHS = (12, 8)
"""Channels of the head's two hidden layers."""

KERNEL = 3
"""Kernel of the head's middle (context) convolution."""

Layers = List[Tuple[np.ndarray, np.ndarray]]
"""A head: ``[(weight (out, in, k, k), bias (out,)), ...]`` float32 convolutions, ReLU between, the last to one
channel (logits)."""


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
class HeadMap:
    """One photo for the head: ``features`` float16 (C, h, w) feature maps, ``coverage`` float32 (h, w) head
    coverage (:func:`head_coverage`), ``path`` and displayed ``size`` ``(W, H)`` of the photo."""

    features: np.ndarray
    coverage: np.ndarray
    path: str
    size: Tuple[int, int]


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


def model_input(net: Network, path) -> Tuple[np.ndarray, Tuple[int, int]]:
    """uint8 (h, w, 3) model-size input of a photo (as :meth:`gazecrop.Model.log_density` resizes it) and its
    displayed size ``(W, H)``."""
    from .._image import _prepare
    from ..model import resize_rgb

    prep = _prepare(path)
    h, w = net.input_size(prep.rgb.shape[0], prep.rgb.shape[1])
    return resize_rgb(prep.rgb, h, w), prep.size


def collect(paths: Sequence[Path], net: Network, faces: Dict[str, List[List[int]]], *, log=print) -> List[HeadMap]:
    """Feature maps (value :func:`feature_value`, NumPy reference) and head coverage for every photo.

    Args:
        paths: photo files. net: the network whose features are read. faces: detector boxes per ``str(path)``.
    """
    fv = feature_value(net)
    out = []
    t0 = time.time()
    for k, p in enumerate(paths):
        rgb, size = model_input(net, p)
        f = reference.values(net, rgb, upto=fv)[fv]
        heads = [tuple(head_box(b, size)) for b in faces.get(str(p), [])]
        out.append(HeadMap(f.astype(np.float16), head_coverage(size, heads, f.shape[1:]), str(p), size))
        if (k + 1) % 200 == 0:
            log(f"  features {k + 1}/{len(paths)} ({time.time() - t0:.0f} s)")
    return out


def head_macs(channels: int, cells: int, widths: Sequence[int] = WIDTHS, kernel: int = KERNEL) -> int:
    """Multiply-adds of the head on ``cells`` output cells of a ``channels``-channel feature map."""
    return cells * (channels * widths[0] + widths[0] * widths[1] * kernel * kernel + widths[1])


def fit(train: Sequence[HeadMap], *, widths: Sequence[int] = WIDTHS, kernel: int = KERNEL, epochs: int = 30,
        batch: int = 32, lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0, log=print) -> Layers:
    """Fit the head (1x1 conv to ``widths[0]`` + ReLU, ``kernel`` x ``kernel`` conv to ``widths[1]`` + ReLU,
    1x1 conv to 1) by binary cross-entropy on the head coverage; photos of one grid shape are batched, with
    random left-right flips (Adam, one-cycle schedule; PyTorch, CPU). The feature standardisation is folded into
    the first layer.

    Returns:
        :data:`Layers` (three convolutions).
    """
    import torch

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    C = train[0].features.shape[0]
    sample = np.concatenate([m.features.reshape(C, -1) for m in train[::5]], 1).astype(np.float32)
    mu = torch.from_numpy(sample.mean(1))
    sd = torch.from_numpy(sample.std(1)).clamp_min(1e-3)
    groups: Dict[Tuple[int, int], List[HeadMap]] = {}
    for m in train:
        groups.setdefault(m.features.shape[1:], []).append(m)
    data = [(torch.from_numpy(np.stack([m.features for m in ms]).astype(np.float32)),
             torch.from_numpy(np.stack([m.coverage for m in ms]))) for ms in groups.values()]
    batches = [(i, s) for i, (X, _) in enumerate(data) for s in range(0, len(X), batch)]
    net = torch.nn.Sequential(torch.nn.Conv2d(C, widths[0], 1), torch.nn.ReLU(),
                              torch.nn.Conv2d(widths[0], widths[1], kernel, padding=kernel // 2), torch.nn.ReLU(),
                              torch.nn.Conv2d(widths[1], 1, 1))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(batches))
    for ep in range(epochs):
        total = 0.0
        for b in torch.randperm(len(batches), generator=g).tolist():
            i, s = batches[b]
            x = (data[i][0][s:s + batch] - mu[None, :, None, None]) / sd[None, :, None, None]
            y = data[i][1][s:s + batch]
            if torch.rand(1, generator=g).item() < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x)[:, 0], y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        if ep % 5 == 4 or ep == epochs - 1:
            log(f"  epoch {ep + 1}/{epochs}: BCE {total / len(batches):.4f}")
    with torch.no_grad():
        w1 = net[0].weight / sd[None, :, None, None]
        b1 = net[0].bias - (net[0].weight[:, :, 0, 0] * (mu / sd)[None, :]).sum(1)
        return [(w1.numpy().astype(np.float32), b1.numpy().astype(np.float32))] + [
            (net[k].weight.numpy().astype(np.float32), net[k].bias.numpy().astype(np.float32)) for k in (2, 4)]


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


def attach_head_map(net: Network, layers: Layers, value: Optional[int] = None) -> Network:
    """A copy of ``net`` (any head map it had removed) with the head ``layers`` (:data:`Layers`: convolutions
    with ``k // 2`` padding, ReLU between, the last to one channel) reading ``value`` (default
    :func:`feature_value`), inserted before the last op and named by ``head_output`` (weights format version
    3). The log-density's ops and weights are unchanged, so its output is bit for bit the same.

    Raises:
        ValueError: as :func:`feature_value`, no layers, or a layer that is not a 4-D weight and a 1-D bias.
        TypeError: ``value`` is not an int. WeightsFormatError: the layers do not chain or do not end in one
        channel, or ``value`` is not a value of ``net``.
    """
    if not layers:
        raise ValueError("a head map needs at least one layer")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
        raise TypeError(f"value must be a value id (int), got {type(value).__name__}")
    for k, (w, b) in enumerate(layers):
        if np.ndim(w) != 4 or np.ndim(b) != 1:
            raise ValueError(f"head layer {k}: expected a (out, in, k, k) weight and an (out,) bias, got shapes "
                             f"{np.shape(w)} and {np.shape(b)}")
    base = without_head_map(net)
    fv = feature_value(base) if value is None else int(value)
    pos = len(base.ops) - 1  # the new ops write values pos + 1, ...; the last op reads only ids <= pos
    head, x = [], fv
    for k, (w, b) in enumerate(layers):
        w, b = np.asarray(w, np.float32), np.asarray(b, np.float32)
        act = 1 if k < len(layers) - 1 else 0
        head.append(Op("conv2d", [x], [w.shape[1], w.shape[0], w.shape[-1], 1, w.shape[-1] // 2, act], [],
                       [(f"head.l{k}.weight", w), (f"head.l{k}.bias", b)]))
        x = pos + 1 + k
    out = Network(mean=base.mean, std=base.std, input_long_side=base.input_long_side,
                  size_multiple=base.size_multiple, ops=base.ops[:pos] + head + base.ops[pos:],
                  model_name=base.model_name, model_version=base.model_version, head_output=x)
    out.validate()
    return out


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
    from ..metrics import roc_auc
    from .teacher import cache_dir

    p = argparse.ArgumentParser(prog="python -m gazecrop.train.face_map", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="the .gzw network to give a head map (any it has is replaced)")
    p.add_argument("--out", required=True, help="the .gzw to write (format version 3; may equal --weights)")
    p.add_argument("--root", default=None, help="eye-tracking data root (default: datasets.default_root())")
    p.add_argument("--widths", type=int, nargs=2, default=list(WIDTHS))
    p.add_argument("--kernel", type=int, default=KERNEL)
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
        _atomic.write_text(faces_file, json.dumps(faces))
    net = without_head_map(read_weights(a.weights))
    fv = feature_value(net)
    data = {}
    for s in ("train", "val"):
        print(f"{s}: feature maps of value {fv} ({net.channels(fv)} channels) for {len(paths[s])} photos", flush=True)
        data[s] = collect(paths[s], net, faces, log=lambda m: print(m, flush=True))
    print(f"fitting the head (widths {a.widths}, kernel {a.kernel}) on {len(data['train'])} photos", flush=True)
    layers = fit(data["train"], widths=a.widths, kernel=a.kernel, epochs=a.epochs, seed=a.seed,
                 log=lambda m: print(m, flush=True))
    out = attach_head_map(net, layers)

    # val: cells (AUC of the logit for cells at least half covered) and head boxes against the detector's
    logits, labels = [], []
    matched = npred = ntrue = with_face = 0
    for m in data["val"]:
        rgb, size = model_input(net, m.path)
        _, hm = reference.run(out, rgb, head_map=True)
        logits.append(hm.ravel())
        labels.append(m.coverage.ravel() >= 0.5)
        truth = [tuple(head_box(b, size)) for b in faces.get(m.path, [])]
        with_face += bool(truth)
        k, n_p, n_t = box_agreement([tuple(b) for b in heads_from_map(hm, size)], truth)
        matched, npred, ntrue = matched + k, npred + n_p, ntrue + n_t
    lg, lab = np.concatenate(logits), np.concatenate(labels)
    cells = 24 * 32  # a 256 x 192 input at stride 8
    report = {"weights": a.weights, "feature_value": fv, "channels": net.channels(fv), "widths": list(a.widths),
              "kernel": a.kernel, "epochs": a.epochs, "seed": a.seed, "train_photos": len(paths["train"]),
              "val_photos": len(paths["val"]), "val_photos_with_a_face": with_face,
              "val_cell_auc": roc_auc(lg[lab], lg[~lab]) if lab.any() and not lab.all() else None,
              "val_heads_found": matched, "val_heads_predicted": npred, "val_heads_true": ntrue,
              "val_head_recall": matched / ntrue if ntrue else None,
              "val_head_precision": matched / npred if npred else None,
              "head_mflop_at_24x32_cells": 2 * head_macs(net.channels(fv), cells, a.widths, a.kernel) / 1e6,
              "date": time.strftime("%Y-%m-%d", time.gmtime())}
    print(json.dumps(report, indent=1))
    write_weights(a.out, out)
    if a.json:
        _atomic.write_text(a.json, json.dumps(report, indent=1) + "\n")
    print(f"wrote {a.out} (format version {out.format_version()}, head_output {out.head_output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
