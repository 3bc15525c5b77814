"""Face, eye and head boxes found offline with OpenCV's Haar cascades (Viola and Jones, CVPR 2001; the cascade
files ship inside the ``opencv-contrib-python-headless`` wheel): a training and evaluation dependency only, never
used at run time by the product (``pip install ".[train]"`` or ``".[bench]"``).

Used by the fairness diagnosis (``benchmarks/fairness_diagnosis.py``: where the saliency maps peak on faces,
the audit with everything but the face masked) and meant for the composition work (the head around a face is
:func:`gazecrop.crop.head_box`, the placement's own rule, re-exported here).

Boxes are ``(left, top, width, height)`` ints in pixels of the image given (x right, y down).
"""

from __future__ import annotations

from functools import lru_cache
from typing import List, Optional, Tuple

import numpy as np

from ..crop import head_box

__all__ = ["Box", "detect_faces", "detect_eyes", "head_box", "FaceParts", "face_parts"]

Box = Tuple[int, int, int, int]


@lru_cache(maxsize=None)
def _cascade(name: str):
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("face boxes need OpenCV: pip install opencv-contrib-python-headless "
                          "(in the [train] and [bench] extras)") from e
    path = cv2.data.haarcascades + name
    c = cv2.CascadeClassifier(path)
    if c.empty():
        raise FileNotFoundError(f"OpenCV's cascade {path} could not be loaded (an opencv wheel without its data?)")
    return c


def _grey(rgb: np.ndarray) -> np.ndarray:
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
        raise ValueError(f"expected a uint8 (H, W, 3) RGB array, got {getattr(rgb, 'dtype', type(rgb))} "
                         f"{getattr(rgb, 'shape', '')}")
    import cv2

    return cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY))


def detect_faces(rgb: np.ndarray, min_side: float = 0.06) -> List[Box]:
    """Frontal faces in uint8 (H, W, 3) RGB ``rgb``, largest first (Haar cascade ``frontalface_default``, scale
    step 1.1, 5 neighbours, faces at least ``min_side`` of the image's short side).

    Raises:
        ValueError: not a uint8 (H, W, 3) array. ImportError: OpenCV is not installed.
    """
    g = _grey(rgb)
    m = max(16, int(min(g.shape) * min_side))
    found = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(g, 1.1, 5, minSize=(m, m))
    boxes = [tuple(int(v) for v in b) for b in (found if len(found) else [])]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def detect_eyes(rgb: np.ndarray, face: Box) -> List[Box]:
    """Up to two eyes inside the upper 60 % of ``face`` (Haar cascade ``eye``), left to right, in image pixels.

    Raises:
        ValueError: not a uint8 (H, W, 3) array. ImportError: OpenCV is not installed.
    """
    l, t, w, h = face
    sub = rgb[t:t + int(h * 0.6), l:l + w]
    if sub.size == 0:
        return []
    g = _grey(np.ascontiguousarray(sub))
    m = max(8, w // 8)
    found = _cascade("haarcascade_eye.xml").detectMultiScale(g, 1.1, 5, minSize=(m, m))
    boxes = sorted(((int(x) + l, int(y) + t, int(bw), int(bh)) for x, y, bw, bh in (found if len(found) else [])),
                   key=lambda b: -b[2] * b[3])[:2]
    return sorted(boxes)


class FaceParts(tuple):
    """(face, eyes band, mouth band) boxes of the largest face; the eyes band spans the detected eyes (or, when
    the eye cascade finds fewer than two, rows 20-50 % of the face box), the mouth band rows 65-95 %."""

    face: Box
    eyes: Box
    mouth: Box
    eyes_detected: bool

    def __new__(cls, face: Box, eyes: Box, mouth: Box, eyes_detected: bool):
        obj = super().__new__(cls, (face, eyes, mouth))
        obj.face, obj.eyes, obj.mouth, obj.eyes_detected = face, eyes, mouth, eyes_detected
        return obj


def face_parts(rgb: np.ndarray) -> Optional[FaceParts]:
    """:class:`FaceParts` of the largest frontal face in ``rgb``, or None when no face is found."""
    faces = detect_faces(rgb)
    if not faces:
        return None
    l, t, w, h = face = faces[0]
    eyes = detect_eyes(rgb, face)
    if len(eyes) == 2:
        y0 = min(e[1] for e in eyes)
        y1 = max(e[1] + e[3] for e in eyes)
        band = (l, y0, w, max(1, y1 - y0))
    else:
        band = (l, t + int(0.2 * h), w, max(1, int(0.3 * h)))
    mouth = (l, t + int(0.65 * h), w, max(1, int(0.3 * h)))
    return FaceParts(face, band, mouth, len(eyes) == 2)
