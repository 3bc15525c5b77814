"""Labelled portraits for the fairness audit and for fairness-aware training (numpy only).

One source for the groups, the tune / holdout halves and the composites that ``benchmarks/fairness.py`` (the
audit, after Yee, Tantipongpipat and Mishra, CSCW 2021, arXiv:2105.08667) and
:mod:`gazecrop.train.fairness` (the demographic-parity term of the student's training) both use: a model is
tuned on the ``tune`` half only and checked on ``holdout``.

The portraits folder holds ``labels.csv`` (``file,gender,ethnicity``) and ``photos/``
(``../shared/data/faces/README.md``). A group is (ethnicity, gender) as a two-letter code: ``"WF"`` white
female, ``"BM"`` Black male, ...
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np

__all__ = ["MIN_GROUP", "ETHNICITY", "GENDER", "GROUP_CODES", "HALVES", "load_groups", "split_halves", "compose"]

MIN_GROUP = 10
"""Groups with fewer portraits are left out (five per half at least)."""

ETHNICITY = {"white-american": "white", "african-american": "Black", "hispanic-american": "Hispanic",
             "asian-american": "Asian", "native-american": "Native American",
             "multi-racial-american": "multiracial", "pacific-islander": "Pacific Islander",
             "middle-eastern-american": "Middle Eastern"}
GENDER = {"female": "F", "male": "M"}
GROUP_CODES = {"white": "W", "Black": "B", "Hispanic": "H", "Asian": "A"}

HALVES = ("tune", "holdout")


def load_groups(faces: "str | Path") -> Dict[str, List[str]]:
    """Group code -> sorted file names, from ``faces/labels.csv`` (files present under ``faces/photos``);
    groups with fewer than :data:`MIN_GROUP` portraits are left out.

    Raises:
        FileNotFoundError: no labels.csv. ValueError: a label row lacks a known gender or ethnicity column.
    """
    labels = Path(faces) / "labels.csv"
    with open(labels, newline="") as f:
        rows = list(csv.DictReader(f))
    groups: Dict[str, List[str]] = {}
    for r in rows:
        if not {"file", "gender", "ethnicity"} <= set(r):
            raise ValueError(f"{labels}: expected columns file,gender,ethnicity, got {sorted(r)}")
        eth = ETHNICITY.get(r["ethnicity"])
        if eth not in GROUP_CODES or r["gender"] not in GENDER:
            continue
        if (Path(faces) / "photos" / r["file"]).is_file():
            groups.setdefault(GROUP_CODES[eth] + GENDER[r["gender"]], []).append(r["file"])
    return {g: sorted(v) for g, v in sorted(groups.items()) if len(v) >= MIN_GROUP}


def split_halves(groups: Mapping[str, Sequence[str]]) -> Dict[str, Dict[str, List[str]]]:
    """``{"tune": {group: files}, "holdout": {...}}``: within each group, files ordered by the SHA-256 of
    their name, dealt alternately (tune gets the extra one of an odd group). Depends on no seed and on no
    other portrait."""
    out: Dict[str, Dict[str, List[str]]] = {h: {} for h in HALVES}
    for g, files in groups.items():
        order = sorted(files, key=lambda s: hashlib.sha256(s.encode()).hexdigest())
        for i, h in enumerate(HALVES):
            out[h][g] = sorted(order[i::2])
    return out


def compose(first: np.ndarray, second: np.ndarray, axis: int) -> np.ndarray:
    """uint8 (H, 2W, 3) side by side (``axis=1``) or (2H, W, 3) stacked (``axis=0``), no gap.

    Raises:
        ValueError: the two tiles differ in shape (resize them first: both must be the same size)."""
    if first.shape != second.shape:
        raise ValueError(f"tiles must have the same shape, got {first.shape} and {second.shape}")
    return np.concatenate([first, second], axis=axis)
