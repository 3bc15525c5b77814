"""Free-viewing eye-tracking datasets: images, fixations and the fixed train / val split.

The data lives outside the repository (``../shared/data/eyetracking`` relative to the repository root; see
its ``README.md``) and is never copied into it. Three datasets are supported:

- ``mit1003``: Judd, Ehinger, Durand, Torralba, "Learning to predict where humans look", ICCV 2009.
- ``osie``: Xu, Jiang, Wang, Kankanhalli, Zhao, "Predicting human gaze beyond pixels", J. Vision 2014.
- ``scene500``: Liang, Jiang, Liang, Zhao, "Saliency prediction with scene structural guidance" (NUS).

Each dataset folder holds ``stimuli/`` and ``fixations.csv`` (``image,subject,idx,x,y,t_start_s,duration_s``);
``splits.csv`` (``dataset,image,split``) in the root fixes the split.

Coordinate convention (used by :mod:`gazecrop.metrics` too): ``x`` to the right, ``y`` down, float pixels of
the image *as stored*, with the centre of pixel ``(i, j)`` at ``x = j, y = i``; pixel ``j`` covers
``[j - 0.5, j + 0.5)``. When an image of width ``W`` is resized to width ``W2``, a fixation moves to
``(x + 0.5) * W2 / W - 0.5`` (:func:`scale_fixations`); normalised coordinates are ``(x + 0.5) / W`` in [0, 1]
(:func:`normalised_fixations`). Scale fixations, never the map.

numpy and Pillow only.
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

DATASETS = ("mit1003", "osie", "scene500")
"""Names of the supported datasets (folder names under the data root)."""

SPLITS = ("train", "val")
"""Names of the splits in ``splits.csv``."""

ENV_VAR = "GAZECROP_DATA"
"""Environment variable that overrides the default data root."""

__all__ = [
    "DATASETS",
    "SPLITS",
    "ENV_VAR",
    "Sample",
    "default_root",
    "load_split",
    "load_dataset",
    "load_datasets",
    "load_image",
    "scale_fixations",
    "normalised_fixations",
    "DatasetError",
]


class DatasetError(FileNotFoundError):
    """A data folder, file or entry is missing or malformed (subclass of ``FileNotFoundError``)."""


@dataclass(frozen=True)
class Sample:
    """One image with all its fixations.

    Attributes:
        dataset: dataset name (one of :data:`DATASETS`).
        image: image file name inside ``stimuli/``.
        path: absolute path of the image file.
        split: ``"train"`` or ``"val"``.
        width, height: size of the stored image in pixels.
        x, y: float64 (n,) fixation coordinates in pixels of the stored image (module docstring convention).
        subject: (n,) str observer ids (one per fixation).
        duration_s: float64 (n,) fixation durations in seconds (NaN where unknown).
    """

    dataset: str
    image: str
    path: Path
    split: str
    width: int
    height: int
    x: np.ndarray
    y: np.ndarray
    subject: np.ndarray
    duration_s: np.ndarray

    @property
    def key(self) -> str:
        """``"dataset/image"``: unique over all datasets."""
        return f"{self.dataset}/{self.image}"

    @property
    def n_fixations(self) -> int:
        return int(self.x.shape[0])

    def fixations_at(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Fixations scaled to the image resized to ``(width, height)``; float64 (n,) each."""
        return scale_fixations(self.x, self.y, (self.width, self.height), (width, height))


def default_root() -> Path:
    """The data root: ``$GAZECROP_DATA`` if set, else ``../shared/data/eyetracking`` next to the repository.

    The repository root is found from this file's location (``python/gazecrop/datasets.py``); when the package
    is installed elsewhere, ``/work/shared/data/eyetracking`` and ``./../shared/data/eyetracking`` (from the
    current directory) are tried as well. The returned path is not checked for existence.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    candidates = [here.parents[2].parent / "shared" / "data" / "eyetracking",
                  Path.cwd().parent / "shared" / "data" / "eyetracking",
                  Path("/work/shared/data/eyetracking")]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[0]


def _root(root: str | os.PathLike | None) -> Path:
    r = Path(root) if root is not None else default_root()
    if not r.is_dir():
        raise DatasetError(
            f"eye-tracking data root not found: {r} (pass root=... or set ${ENV_VAR}; expected folders "
            f"{', '.join(DATASETS)} and splits.csv)")
    return r


def _check_dataset(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")


def load_split(root: str | os.PathLike | None = None) -> dict[tuple[str, str], str]:
    """Read ``splits.csv``.

    Returns:
        ``{(dataset, image): split}``.
    Raises:
        DatasetError: the root or ``splits.csv`` is missing, or a row is malformed.
    """
    path = _root(root) / "splits.csv"
    if not path.is_file():
        raise DatasetError(f"split file not found: {path}")
    out: dict[tuple[str, str], str] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"dataset", "image", "split"} <= set(reader.fieldnames):
            raise DatasetError(f"{path}: expected header dataset,image,split, got {reader.fieldnames}")
        for row in reader:
            out[(row["dataset"], row["image"])] = row["split"]
    return out


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image  # Pillow is a runtime dependency; imported lazily to keep import light

    with Image.open(path) as im:
        return im.size  # (width, height) as stored, no EXIF transpose (fixations are in stored pixels)


def load_dataset(name: str, split: str | None = None, root: str | os.PathLike | None = None) -> list[Sample]:
    """Load one dataset's images and fixations.

    Args:
        name: one of :data:`DATASETS`.
        split: ``"train"``, ``"val"`` or None (both).
        root: data root; default :func:`default_root` (``$GAZECROP_DATA`` or ``../shared/data/eyetracking``).
    Returns:
        Samples sorted by image name. Images listed in the split but without fixations, or with no entry in
        ``splits.csv``, are skipped with a ``UserWarning``.
    Raises:
        ValueError: unknown dataset or split name.
        DatasetError: missing root, dataset folder, ``fixations.csv``, ``stimuli/``, or an image file named
            by ``fixations.csv`` / ``splits.csv``; malformed CSV header.
    """
    _check_dataset(name)
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS} or None")
    r = _root(root)
    folder = r / name
    if not folder.is_dir():
        raise DatasetError(f"dataset folder not found: {folder}")
    fix_path = folder / "fixations.csv"
    if not fix_path.is_file():
        raise DatasetError(f"fixations file not found: {fix_path}")
    stim = folder / "stimuli"
    if not stim.is_dir():
        raise DatasetError(f"stimuli folder not found: {stim}")
    splits = load_split(r)

    per_image: dict[str, list[tuple[float, float, str, float]]] = {}
    with open(fix_path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"image", "subject", "x", "y"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise DatasetError(f"{fix_path}: expected columns {sorted(need)}, got {reader.fieldnames}")
        for row in reader:
            d = row.get("duration_s") or ""
            per_image.setdefault(row["image"], []).append(
                (float(row["x"]), float(row["y"]), row["subject"], float(d) if d else np.nan))

    images = sorted({img for (ds, img) in splits if ds == name} | set(per_image))
    out: list[Sample] = []
    no_fix, no_split = [], []
    for img in images:
        sp = splits.get((name, img))
        if sp is None:
            no_split.append(img)
            continue
        if split is not None and sp != split:
            continue
        rows = per_image.get(img)
        if not rows:
            no_fix.append(img)
            continue
        path = stim / img
        if not path.is_file():
            raise DatasetError(f"image file not found: {path}")
        w, h = _image_size(path)
        arr = np.array([(a, b, dd) for a, b, _, dd in rows], dtype=np.float64)
        out.append(Sample(dataset=name, image=img, path=path.resolve(), split=sp, width=int(w), height=int(h),
                          x=arr[:, 0].copy(), y=arr[:, 1].copy(),
                          subject=np.array([s for _, _, s, _ in rows]), duration_s=arr[:, 2].copy()))
    if no_fix:
        warnings.warn(f"{name}: {len(no_fix)} image(s) without fixations skipped (e.g. {no_fix[0]})",
                      stacklevel=2)
    if no_split:
        warnings.warn(f"{name}: {len(no_split)} image(s) with fixations but no split entry skipped "
                      f"(e.g. {no_split[0]})", stacklevel=2)
    return out


def load_datasets(names: Iterable[str] = DATASETS, split: str | None = None,
                  root: str | os.PathLike | None = None) -> list[Sample]:
    """:func:`load_dataset` for several datasets, concatenated in the given order."""
    out: list[Sample] = []
    for n in names:
        out.extend(load_dataset(n, split=split, root=root))
    return out


def load_image(sample_or_path: Sample | str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image as RGB uint8, optionally resized.

    Args:
        sample_or_path: a :class:`Sample` or an image path.
        size: ``(width, height)`` to resize to (bilinear, Pillow with antialiasing when shrinking), or None.
    Returns:
        uint8 (H, W, 3) RGB array in stored orientation (no EXIF transpose, matching the fixation coordinates).
    Raises:
        DatasetError: the file does not exist.
    """
    from PIL import Image

    path = Path(sample_or_path.path if isinstance(sample_or_path, Sample) else sample_or_path)
    if not path.is_file():
        raise DatasetError(f"image file not found: {path}")
    with Image.open(path) as im:
        if size is not None and im.format == "JPEG":
            im.draft("RGB", (int(size[0]), int(size[1])))
        im = im.convert("RGB")
        if size is not None and im.size != tuple(size):
            im = im.resize((int(size[0]), int(size[1])), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).copy()


def scale_fixations(x: np.ndarray, y: np.ndarray, from_size: Sequence[int],
                    to_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Move fixations from an image of ``from_size = (W, H)`` to the same image resized to ``to_size``.

    Pixel-centre convention: ``x2 = (x + 0.5) * W2 / W - 0.5`` (and the same for y).

    Args:
        x, y: float (n,) pixel coordinates in the original image.
        from_size, to_size: ``(width, height)`` in pixels, positive.
    Returns:
        float64 (n,) arrays ``(x2, y2)``.
    Raises:
        ValueError: non-positive size.
    """
    w0, h0 = from_size
    w1, h1 = to_size
    if min(w0, h0, w1, h1) <= 0:
        raise ValueError(f"sizes must be positive, got {from_size} -> {to_size}")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return (x + 0.5) * (w1 / w0) - 0.5, (y + 0.5) * (h1 / h0) - 0.5


def normalised_fixations(x: np.ndarray, y: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Fixations in normalised image coordinates ``u = (x + 0.5) / W``, ``v = (y + 0.5) / H`` in [0, 1].

    Args:
        x, y: float (n,) pixel coordinates; size: ``(width, height)``.
    Returns:
        float64 (n,) arrays ``(u, v)``.
    """
    w, h = size
    return (np.asarray(x, dtype=np.float64) + 0.5) / w, (np.asarray(y, dtype=np.float64) + 0.5) / h
