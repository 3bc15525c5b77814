"""gazecrop inside thumbor: a detector that places thumbor's focal points for its ``smart`` crops, and the
``focal(...)`` filter string for boxes computed in batch.

thumbor (https://github.com/thumbor/thumbor, 7.8) crops a ``/WxH/smart/`` request to the largest box of the
target aspect centred on the weighted centre of mass of the image's focal points (clamped into the image),
and caches a detector's points per image for *every* later size (thumbor issue #1258), reading their weights
back as ints. So the points must not depend on the requested aspect, and their weights must be integers
>= 1 (a zero total weight ends in a ZeroDivisionError inside thumbor).

The detector's points carry gazecrop's own placement into thumbor. One model run
(:func:`gazecrop.predict`), then gazecrop's own crops (:meth:`gazecrop.Prediction.crops`, the default
strategy) for a set of reference aspects, ``GAZECROP_ASPECTS`` (default :data:`DEFAULT_ASPECTS`, the sizes
sites usually request). A box narrower than the image fixes only where thumbor's centre of mass must sit in
x, a wider one only in y (thumbor's box spans the other axis whole), so each reference aspect gives one
point, of weight 1: at the centre of its box on the axis it crops, at the mean of the other axis's box centres
on the other. thumbor's centre of mass of these points is then, on each axis, the mean of the centres of
gazecrop's own boxes that crop that axis, for every size requested. Because
the points come from the public crop API they follow any change of gazecrop's placement rule or model.

Why this rule: one point has to serve every aspect, so agreement cannot be perfect
(``benchmarks/thumbor_agreement.py``, ``benchmarks/RESULTS.md``). Of the single-centre rules measured on the
val photos it gives the highest IoU with gazecrop's own boxes (0.92 mean) and a share of human fixations
inside thumbor's crops within a quarter of a point of gazecrop's own (0.879 against 0.881; on the train
split 0.886 against 0.888). The saliency density's own centre of mass (what mass-weighted cells or blocks of
the map give) scores as well on val (0.882) but worse on train (0.885) and agrees less (IoU 0.87); it is
pulled between subjects: on ``examples/photo.jpg`` it sits between the face and the mission patch and
thumbor's 16:9 crop centred there cuts through the eyes. The salient point alone scores 0.841.
Limitation: a wider reference box that gazecrop moves to take in a second subject pulls the shared centre
along; on the sample photo thumbor's 2:1 crop starts 12 px lower than gazecrop's (top 84, the eyes start at
80). Setting ``GAZECROP_ASPECTS`` to the sizes a site actually requests brings thumbor's crops for those
closer to gazecrop's; a single reference aspect gives gazecrop's own box for it, to a pixel.

thumbor configuration (``thumbor.conf``)::

    DETECTORS = ['gazecrop.thumbor']
    ENGINE_THREADPOOL_SIZE = 4      # run the model off the event loop (0, the default, blocks the server)
    RESPECT_ORIENTATION = True      # apply EXIF orientation first, as gazecrop does
    GAZECROP_MODEL = None           # a .gzw file; None: the bundled model
    GAZECROP_ASPECTS = ['1:1', '4:5', '9:16', '2:3', '3:4', '16:9', '2:1', '3:2', '4:3', '1.91:1']
                                    # reference aspects, one focal point each (the sizes your site requests)
    GAZECROP_THREADS = 1            # threads of one model run

With thumbor's ``--use-environment`` the settings may come from environment variables as strings
(``GAZECROP_ASPECTS="16:9,1:1"``, ``GAZECROP_THREADS=2``).

The model is loaded once per process (per ``(GAZECROP_MODEL, GAZECROP_THREADS)``) and shared by the
threads of thumbor's pool (the native core is thread-safe and releases the GIL). Any failure (an image the
model cannot use, a missing model file, a bad setting) is logged and the request falls through to the next
detector in ``DETECTORS`` (or to thumbor's default centre alignment), never failing the request.

Points and boxes are in pixels of the image as thumbor's engine holds it: after EXIF orientation when
``RESPECT_ORIENTATION = True`` (then they equal gazecrop's own coordinates for the file), the stored pixels
otherwise.

gazecrop's user controls in thumbor's own URL language: ``focal=(x, y)`` is thumbor's
``/WxH/filters:focal(XxY:X+1xY+1)/img`` (a one-pixel focal region; thumbor centres its crop on it and clamps
it into the image, as gazecrop's focal crop does, to within a pixel); ``thumbnail(fit="pad")`` is
``/fit-in/WxH/filters:upscale():fill(blur)/img`` (``fill(black)``, ``fill(202020)`` for a colour; drop
``upscale()`` for ``upscale=False``); ``fit="auto"`` is gazecrop's decision per image (``CropResult.pad``), so
request the padded or the cropped URL after it. ``keep`` and ``boost`` have no thumbor counterpart: compute
the box with gazecrop and serve it with :func:`focal_filter`.

Importing this module does not import thumbor; ``gazecrop.thumbor.Detector`` does (raising ImportError with
the install command when thumbor is missing). :func:`focal_points`, :func:`thumbor_crop` and
:func:`focal_filter` need numpy and Pillow only.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .api import ModelLike, Prediction, predict
from .crop import AspectLike, CropBox, aspect_list, parse_aspect

__all__ = ["ThumborPoint", "focal_points", "points_from_prediction", "thumbor_crop", "focal_filter",
           "DEFAULT_ASPECTS"]  # and Detector (imports thumbor)

DEFAULT_ASPECTS: Tuple[str, ...] = ("1:1", "4:5", "9:16", "2:3", "3:4", "16:9", "2:1", "3:2", "4:3", "1.91:1")
"""Default of the ``GAZECROP_ASPECTS`` setting: the reference aspects, one focal point each."""


class ThumborPoint(NamedTuple):
    """A focal point as thumbor takes it: ``x``, ``y`` int pixels, ``weight`` int >= 1."""

    x: int
    y: int
    weight: int


def _reference(aspects: Iterable[AspectLike]) -> List[float]:
    out: List[float] = []
    for a in aspect_list(aspects):
        v = parse_aspect(a)
        if v not in out:
            out.append(v)
    if not out:
        raise ValueError("aspects must name at least one aspect ratio")
    return out


def points_from_prediction(prediction: Prediction,
                           aspects: Iterable[AspectLike] = DEFAULT_ASPECTS) -> List[ThumborPoint]:
    """Focal points of one model run (module docstring): the centres of gazecrop's own crops for the
    reference ``aspects``, so that thumbor's centre of mass lands at their mean on each axis.

    Args:
        prediction: a :class:`gazecrop.Prediction` (:func:`gazecrop.predict`).
        aspects: reference aspect ratios (numbers or ``"16:9"`` strings): the sizes a site requests.
    Returns:
        One :class:`ThumborPoint` per reference aspect whose crop thumbor would cut, in order (aspects
        within thumbor's two-decimal tolerance of the image's are skipped; when no reference aspect crops
        an axis, one at half / twice the image's aspect stands in; none for a 1 x 1 image): for an aspect
        narrower than the image, ``x`` is the centre of gazecrop's box (``left + width // 2``) and ``y`` the
        mean of the wider aspects' box centres (rounded), and the other way round; ``weight`` 1. Int pixels
        of the image, ``0 <= x < W``, ``0 <= y < H``. thumbor's centre of mass of them is, on each axis, the mean of the
        box centres that crop that axis (to within a pixel).
    Raises:
        TypeError / ValueError: a bad or empty aspect list.
    """
    W, H = prediction.size
    ref = _reference(aspects)
    image_aspect = round(W / H, 2)
    ref = [a for a in ref if round(a, 2) != image_aspect]  # thumbor does not crop those
    if not any(a < W / H for a in ref) and W > 1:
        ref.append(W / H / 2)
    if not any(a > W / H for a in ref) and H > 1:
        ref.append(W / H * 2)
    along_x: List[int] = []  # box centres of the aspects that crop x
    along_y: List[int] = []
    for res in prediction.crops(ref):
        b = res.box
        if b.width < W:
            along_x.append(b.left + b.width // 2)
        elif b.height < H:
            along_y.append(b.top + b.height // 2)

    def mean(centres: List[int], n: int) -> int:
        return int(math.floor(sum(centres) / len(centres) + 0.5)) if centres else n // 2

    cx, cy = mean(along_x, W), mean(along_y, H)
    return [ThumborPoint(x, cy, 1) for x in along_x] + [ThumborPoint(cx, y, 1) for y in along_y]


def focal_points(image, *, model: ModelLike = None,
                 aspects: Iterable[AspectLike] = DEFAULT_ASPECTS) -> List[ThumborPoint]:
    """The focal points the thumbor detector emits for ``image``: one model run, then
    :func:`points_from_prediction`.

    Args:
        image: a path, a ``PIL.Image.Image`` or a uint8 (H, W, 3) RGB array (as :func:`gazecrop.predict`;
            a path's EXIF orientation is applied, so the points are in displayed pixels; a JPEG path is
            decoded in draft mode, so its points can differ slightly from those of the fully decoded pixels
            thumbor's detector sees).
        model: a Model, a ``.gzw`` path, or None for the bundled model.
        aspects: reference aspect ratios (:func:`points_from_prediction`).
    Returns:
        As :func:`points_from_prediction`.
    Raises:
        As :func:`gazecrop.predict` and :func:`points_from_prediction`.
    """
    aspects = _reference(aspects)  # before the model run
    return points_from_prediction(predict(image, model=model), aspects)


def thumbor_crop(points: Iterable[Sequence[float]], size: Sequence[int], target: Sequence[int]) -> CropBox:
    """The crop thumbor 7.8 makes for a ``/WxH/smart/`` request, given the image's focal points: its
    ``Transformer.auto_crop`` and ``get_center_of_mass`` (``thumbor/transformer.py``) rewritten, rounding
    included (checked against a running thumbor by ``tests/test_thumbor_server.py``).

    The box is the largest of the target aspect (thumbor rounds the cropped side with ``ceil`` when it crops
    the width, ``round`` when it crops the height), centred on the weighted centre of mass of the points
    (``floor(sum(x * w) / sum(w))``), clamped into the image; thumbor does not crop when the image's aspect
    and the target's agree to two decimals. It then resizes the box to exactly W x H.

    Args:
        points: ``(x, y, weight)`` triples (:class:`ThumborPoint`); none: thumbor's default, the image centre.
        size: ``(width, height)`` of the image as thumbor's engine holds it.
        target: ``(W, H)`` of the request, both > 0.
    Returns:
        :class:`gazecrop.CropBox` in pixels of the image.
    Raises:
        ValueError: non-positive sizes, a non-positive total weight.
    """
    W, H = (int(v) for v in size)
    tw, th = (float(v) for v in target)
    if W < 1 or H < 1 or tw <= 0 or th <= 0:
        raise ValueError(f"size and target must be positive, got {tuple(size)} and {tuple(target)}")
    pts = [(int(p[0]), int(p[1]), p[2]) for p in points] or [(int(W * 0.5), int(H * 0.5), 1.0)]
    if round(W / H, 2) == round(tw / th, 2):
        return CropBox(0, 0, W, H)
    total = sum(float(p[2]) for p in pts)
    if not total > 0:
        raise ValueError(f"the total weight of the focal points must be positive, got {total}")
    fx = sum(x * wt for x, _, wt in pts) // total
    fy = sum(y * wt for _, y, wt in pts) // total
    if tw / W > th / H:
        cw, ch = W, int(round(W * th / tw, 0))
    else:
        cw, ch = int(round(math.ceil(tw * H / th), 0)), H
    left = int(round(min(max(fx - cw / 2, 0.0), W - cw)))
    top = int(round(min(max(fy - ch / 2, 0.0), H - ch)))
    return CropBox(left, top, min(left + cw, W) - left, min(top + ch, H) - top)


def focal_filter(box: Sequence[int]) -> str:
    """thumbor's ``focal(LxT:RxB)`` filter for a crop box: serve a box computed in batch (by
    :func:`gazecrop.crops` or the CLI's ``--json``, whose records carry it as ``"focal"``) from thumbor with
    ``/unsafe/WxH/filters:focal(LxT:RxB)/<image>`` (signed URLs likewise).

    thumbor centres its crop on the box's centre (``left + width // 2``, ``top + height // 2``); for a request
    of the box's own aspect its crop is the box itself to within a pixel (thumbor's rounding). The box must
    be in the pixels thumbor's engine holds: the displayed image when ``RESPECT_ORIENTATION = True``.

    Args:
        box: ``(left, top, width, height)`` ints (a :class:`gazecrop.CropBox`), ``left, top >= 0``,
            ``width, height >= 1``.
    Returns:
        ``"focal(LxT:RxB)"`` with ``R = left + width``, ``B = top + height``.
    Raises:
        ValueError: not four non-negative ints with a positive width and height.
    """
    try:
        vals = [int(v) for v in box]
        ok = len(vals) == 4 and all(float(v) == i for v, i in zip(box, vals))
    except (TypeError, ValueError):
        ok = False
    if not ok or vals[0] < 0 or vals[1] < 0 or vals[2] < 1 or vals[3] < 1:
        raise ValueError(f"box must be (left, top, width, height) ints, left/top >= 0, width/height >= 1; "
                         f"got {box!r}")
    left, top, width, height = vals
    return f"focal({left}x{top}:{left + width}x{top + height})"


# ------------------------------------------------------------------------------------------ the detector

_LOCK = threading.Lock()  # the model cache
_CLASS_LOCK = threading.Lock()  # building Detector
_MODELS: Dict[Tuple[Optional[str], int], object] = {}
_DETECTOR: Optional[type] = None


def _model(path: Optional[str], threads: int):
    """The model for ``(path, threads)``, loaded once per process."""
    from .model import load_model

    key = (None if path is None else os.path.abspath(os.fspath(path)), threads)
    with _LOCK:
        m = _MODELS.get(key)
        if m is None:
            m = load_model(key[0], threads=threads)
            _MODELS[key] = m
        return m


def _setting_int(config, name: str, default: int, lo: int, hi: int) -> int:
    value = getattr(config, name, default)
    if isinstance(value, str):
        value = value.strip()
        value = int(value) if value.lstrip("-").isdigit() else value
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"thumbor setting {name} must be an int from {lo} to {hi}, got {value!r}")
    return value


def _engine_points(engine, config) -> List[ThumborPoint]:
    """Focal points for the image a thumbor engine holds (runs in thumbor's thread pool)."""
    from PIL import Image

    aspects = getattr(config, "GAZECROP_ASPECTS", DEFAULT_ASPECTS)
    if isinstance(aspects, str):  # a comma-separated list (e.g. from an environment variable)
        aspects = [a for a in (v.strip() for v in aspects.split(",")) if a]
    aspects = _reference(aspects)
    threads = _setting_int(config, "GAZECROP_THREADS", 1, 1, 256)
    path = getattr(config, "GAZECROP_MODEL", None) or None
    model = _model(path, threads)
    mode, data = engine.image_data_as_rgb(update_image=False)
    image = Image.frombytes(mode, tuple(engine.size), data)  # RGBA: composited over white by gazecrop
    return points_from_prediction(predict(image, model=model), aspects)


def _make_detector() -> type:
    try:
        from thumbor.config import Config
        from thumbor.detectors import BaseDetector
        from thumbor.point import FocalPoint
        from thumbor.utils import logger
    except ImportError as e:
        raise ImportError(f"gazecrop.thumbor.Detector needs thumbor ({e}); pip install 'gazecrop[thumbor]'") from e

    Config.define("GAZECROP_MODEL", None, "gazecrop detector: a .gzw model file (None: the bundled model)",
                  "gazecrop")
    Config.define("GAZECROP_ASPECTS", list(DEFAULT_ASPECTS), "gazecrop detector: reference aspect ratios "
                  "(the sizes your site requests), one focal point each", "gazecrop")
    Config.define("GAZECROP_THREADS", 1, "gazecrop detector: threads of one model run", "gazecrop")

    class Detector(BaseDetector):
        """thumbor detector: focal points where people are predicted to look (``gazecrop.thumbor``).

        ``DETECTORS = ['gazecrop.thumbor']``; settings ``GAZECROP_MODEL``, ``GAZECROP_ASPECTS``,
        ``GAZECROP_THREADS`` (module docstring). The model runs in thumbor's thread pool
        (``ENGINE_THREADPOOL_SIZE > 0``, else on the event loop); failures fall through to the next
        detector."""

        async def detect(self):
            ctx = self.context
            try:
                points = await ctx.thread_pool.queue(_engine_points, ctx.modules.engine, ctx.config)
            except Exception:  # any failure: log it and let the next detector (or thumbor's default) decide
                logger.exception("gazecrop detector failed on %s; falling through to the next detector",
                                 getattr(ctx.request, "image_url", "?"))
                await self.next()
                return
            if not points:  # nothing to crop around (a 1 x 1 image)
                await self.next()
                return
            for p in points:
                ctx.request.focal_points.append(FocalPoint(p.x, p.y, weight=p.weight, origin="gazecrop"))

    Detector.__module__ = __name__
    Detector.__qualname__ = "Detector"
    return Detector


def __getattr__(name: str):
    """``Detector`` is built on first access, importing thumbor then (PEP 562)."""
    global _DETECTOR
    if name == "Detector":
        with _CLASS_LOCK:
            if _DETECTOR is None:
                _DETECTOR = _make_detector()
        return _DETECTOR
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
