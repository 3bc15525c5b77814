"""Export the DenseNet student (:mod:`gazecrop.train.densenet_student`) to the flat weights file, with golden arrays for
the tests (the EfficientNet-Lite0 student exports through ``python -m gazecrop.train.convert_backbone --from``).

``python -m gazecrop.train.export --from SNAPSHOT.pt --out weights/gazecrop-fast.gzw --golden
tests/data/golden_fast.npz`` folds batch norm, drops pruned feature maps (:func:`export_student`), writes
the ``.gzw`` atomically, runs the NumPy reference on it and checks it reproduces the PyTorch student's
log-density on a few synthetic test images (max abs error 1e-3), and stores those images and the PyTorch
outputs so the tests can check the file and the native core without PyTorch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .. import reference
from .._atomic import atomic_open
from ..weights import write_weights
from .distill import load_checkpoint
from .densenet_student import Student, export_student

GOLDEN_SIZES = ((192, 256), (256, 192), (256, 256), (96, 160))


def golden_images(seed: int = 0) -> list:
    """Synthetic uint8 (H, W, 3) RGB test images: smooth blobs on noise, one per :data:`GOLDEN_SIZES`."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in GOLDEN_SIZES:
        yy, xx = np.mgrid[0:h, 0:w]
        img = rng.normal(110, 25, (h, w, 3))
        for _ in range(3):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(8, 40)
            img += rng.uniform(-100, 120, 3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def load_student(path: Path) -> Student:
    """A student checkpoint (``distill`` / ``prune`` / ``average`` output) as a :class:`Student` in eval mode.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a student checkpoint (no ``cfg`` and ``model`` entries).
    """
    state = load_checkpoint(path, ("cfg", "model"), "student checkpoint")
    model = Student(state["cfg"])
    model.load_state_dict(state["model"])
    return model.eval()


def export(src: Path, out: Path, golden: Optional[Path] = None, tol: float = 1e-3) -> dict:
    """Write ``src``'s student to ``out``; check it against PyTorch; optionally save golden arrays.

    Raises:
        AssertionError: the reference forward pass of the file differs from PyTorch by more than ``tol``.
    """
    model = load_student(src)
    net = export_student(model)
    errs = []
    arrays = {}
    for i, img in enumerate(golden_images()):
        with torch.no_grad():
            expect = model(torch.from_numpy(img).permute(2, 0, 1).float()[None])[0].numpy()
        got = reference.run(net, img)
        errs.append(float(np.abs(got - expect).max()))
        arrays[f"image{i}"] = img
        arrays[f"log_density{i}"] = expect.astype(np.float32)
    if max(errs) > tol:  # checked before anything is written: a bad export never replaces a good file
        raise AssertionError(f"exported network differs from the PyTorch student: max abs errors {errs}")
    write_weights(out, net)
    if golden is not None:
        with atomic_open(golden) as f:
            np.savez_compressed(f, **arrays)
    h, w = net.input_size(768, 1024)  # a 4:3 photo at the model's input size (192 x 256 for long side 256)
    info = dict(file=str(out), bytes=out.stat().st_size, input_hw=[h, w], gflops=2 * net.num_macs(h, w) / 1e9,
                parameters=int(sum(t.size for op in net.ops for _, t in op.tensors)), ops=len(net.ops),
                max_abs_error_vs_torch=max(errs))
    return info


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gazecrop.train.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="src", type=Path, required=True, help="student checkpoint (.pt)")
    p.add_argument("--out", type=Path, required=True, help="output .gzw")
    p.add_argument("--golden", type=Path, help="write golden test arrays (.npz) here")
    a = p.parse_args(argv)
    print(json.dumps(export(a.src, a.out, a.golden), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
