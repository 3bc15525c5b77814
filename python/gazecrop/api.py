"""The public Python API: saliency maps and crops of photos.

Every call goes through one :func:`gazecrop._image._prepare` (path, encoded bytes or binary file object, PIL
image or uint8 array -> displayed RGB pixels and size) and one model run (``model.log_density``); the crop
rules are the pure functions of :mod:`gazecrop.crop`. All coordinates are pixels of the image as displayed
(EXIF orientation applied).

``image`` is a path (str / os.PathLike); the encoded file in memory, as ``bytes``, ``bytearray``,
``memoryview``, a binary file object (``open(path, "rb")``, an upload; read once, from its current position) or
a :class:`gazecrop.EncodedImage` (bytes with a name for messages); a ``PIL.Image.Image``; or a uint8
(H, W, 3) RGB array. ``max_pixels`` (every call) is the largest image file accepted, in pixels (default
Pillow's ``Image.MAX_IMAGE_PIXELS``, about 89.5 million); a larger one raises
:class:`gazecrop.ImageTooLargeError` (a possible decompression bomb) before any pixel is decoded.

``model`` is a :class:`gazecrop.Model` (or any object with ``log_density(rgb uint8 (H, W, 3)) -> (h, w)`` and
``input_size(H, W) -> (h, w)``), a path to a ``.gzw`` file, or None for the bundled default model (loaded
once and cached; thread-safe).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Protocol, Tuple, Union

import numpy as np
from PIL import Image

from ._image import ImageInput, _prepare, encoded_input, open_image, pillow_limit
from .crop import (DEFAULT_STRATEGY, AspectLike, CropBox, CropResult, Strategy, ZoomLike, aspect_list,
                   check_options, choose_crops, resample_log_density)
from .model import load_model

__all__ = ["Prediction", "predict", "saliency_map", "crop_box", "crops", "crop", "thumbnail", "default_model",
           "SaliencyModel", "mirror_average"]


class SaliencyModel(Protocol):
    """What the API needs from a model (:class:`gazecrop.Model` has it; tests use small stand-ins)."""

    def input_size(self, height: int, width: int) -> Tuple[int, int]:
        """(h, w) pixels an (height, width) image is resized to before the run."""

    def log_density(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB -> float32 (h, w) log-density over a grid covering the whole image."""


ModelLike = Union[SaliencyModel, str, "os.PathLike[str]", None]
"""A model object, a ``.gzw`` path, or None for the bundled default model."""

_LOCK = threading.Lock()
_MODELS: Dict[Optional[str], SaliencyModel] = {}


def default_model() -> SaliencyModel:
    """The bundled default model (:func:`gazecrop.load_model` with no path), loaded on first use and cached.

    Raises:
        FileNotFoundError: the package has no bundled model. WeightsFormatError: it is invalid.
    """
    return _model(None)


def _model(model: ModelLike) -> SaliencyModel:
    if model is not None and not isinstance(model, (str, os.PathLike)):
        if not (hasattr(model, "log_density") and hasattr(model, "input_size")):
            raise TypeError(f"model must be a gazecrop.Model, a .gzw path or None, got {type(model).__name__}")
        return model
    key = None if model is None else os.path.abspath(os.fspath(model))
    with _LOCK:
        m = _MODELS.get(key)
        if m is None:
            m = load_model(key)
            _MODELS[key] = m
        return m


@dataclass(frozen=True, eq=False)
class Prediction:
    """One model run on one image.

    Attributes:
        log_density: float32 (h, w) log-density over the model's output grid, which covers the whole image
            (``logsumexp == 0``).
        size: ``(width, height)`` of the displayed image in pixels (full resolution).
    """

    log_density: np.ndarray
    size: Tuple[int, int]

    def saliency_map(self) -> np.ndarray:
        """float32 (H, W) log-density over the displayed image's pixels, ``logsumexp == 0``
        (:func:`gazecrop.crop.resample_log_density`)."""
        return resample_log_density(self.log_density, self.size)

    def crops(self, aspects: Iterable[AspectLike], *, strategy: Strategy = DEFAULT_STRATEGY, candidates: int = 1,
              zoom: ZoomLike = None) -> List[CropResult]:
        """One :class:`~gazecrop.crop.CropResult` per aspect ratio (:func:`gazecrop.crop.choose_crops`)."""
        return choose_crops(self.log_density, self.size, aspects, strategy=strategy, candidates=candidates,
                            zoom=zoom)


def mirror_average(log_density: np.ndarray, mirrored_log_density: np.ndarray) -> np.ndarray:
    """Flip-averaged log-density: ``log((exp(a) + exp(mirror(b))) / 2)`` for ``a`` the map of a photo and
    ``b`` the map of its left-right mirror image (both (h, w) grids covering the image, log-densities).
    ``np.logaddexp`` is commutative bit for bit, so the result for the mirrored photo is exactly the mirror
    of this one: placements on it are mirror-equivariant whatever the model does.

    Raises:
        ValueError: the shapes differ.
    """
    a = np.asarray(log_density, dtype=np.float32)
    b = np.asarray(mirrored_log_density, dtype=np.float32)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two (h, w) grids of one shape, got {a.shape} and {b.shape}")
    return (np.logaddexp(a, b[:, ::-1]) - np.float32(np.log(2.0))).astype(np.float32)


def predict(image: ImageInput, *, model: ModelLike = None, symmetric: bool = False,
            max_pixels: Optional[int] = None) -> Prediction:
    """Run the saliency model once on an image (twice with ``symmetric``).

    Args:
        image: a path (str / os.PathLike), encoded bytes (``bytes``, ``bytearray``, ``memoryview``, a binary
            file object, a :class:`gazecrop.EncodedImage`), a ``PIL.Image.Image`` or a uint8 (H, W, 3) RGB
            array.
        model: a Model, a ``.gzw`` path, or None for the bundled default model.
        symmetric: flip-averaged inference: also run the model on the left-right mirror image and average
            the densities (:func:`mirror_average`), so that a mirrored photo gets exactly the mirrored map
            and crop boxes; twice the model's cost. Off by default (``benchmarks/crop_quality.md``).
        max_pixels: the largest image file accepted, in pixels (None: Pillow's ``Image.MAX_IMAGE_PIXELS``).
    Returns:
        :class:`Prediction` (grid log-density + displayed size).
    Raises:
        FileNotFoundError: no such image (or no bundled model). ImageError / ImageTooLargeError: the image
        cannot be used (ImageTooLargeError: over ``max_pixels``). TypeError / ValueError: bad argument types
        or array shapes.
    """
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    m = _model(model)
    prep = _prepare(image, input_size=m.input_size, max_pixels=max_pixels)
    grid = np.asarray(m.log_density(prep.rgb), dtype=np.float32)
    if grid.ndim != 2:
        raise ValueError(f"model returned a {grid.shape} array, expected a (h, w) log-density grid")
    if symmetric:
        grid = mirror_average(grid, m.log_density(np.ascontiguousarray(prep.rgb[:, ::-1])))
    return Prediction(log_density=grid, size=prep.size)


def saliency_map(image: ImageInput, *, model: ModelLike = None, max_pixels: Optional[int] = None) -> np.ndarray:
    """Where people are predicted to look: a log-density over the displayed image's pixels.

    Args:
        image: as :func:`predict` (a path, encoded bytes or a file object, a PIL image, an array).
        model: a Model, a ``.gzw`` path, or None for the bundled default model.
        max_pixels: as :func:`predict`.
    Returns:
        float32 (H, W) natural-log density, ``logsumexp == 0``; H, W are the image as displayed (EXIF
        orientation applied). ``np.exp(map)`` is the probability of each pixel being fixated.
    Raises:
        As :func:`predict`.
    """
    return predict(image, model=model, max_pixels=max_pixels).saliency_map()


def crops(image: ImageInput, aspects: Iterable[AspectLike], *, model: ModelLike = None,
          strategy: Strategy = DEFAULT_STRATEGY, candidates: int = 1, zoom: ZoomLike = None,
          symmetric: bool = False, max_pixels: Optional[int] = None) -> List[CropResult]:
    """Crops for several aspect ratios from one model run.

    Args:
        image: as :func:`predict` (a path, encoded bytes or a file object, a PIL image, an array).
        aspects: aspect ratios (width / height), numbers or strings such as ``"16:9"``.
        model: a Model, a ``.gzw`` path, or None for the bundled default model.
        strategy: ``"mass"`` (most saliency mass inside the box without cutting through the most salient
            object), ``"point"`` (Twitter 2018: centred on the salient point) or ``"centre"``; see
            :mod:`gazecrop.crop`.
        candidates: up to this many distinct boxes per aspect in ``CropResult.candidates`` (ranked, with
            scores; distinct: IoU below :data:`gazecrop.crop.DISTINCT_IOU`, mostly other content, moved by
            a tenth of the image side; :mod:`gazecrop.crop`), for services that let people pick.
        zoom: None (the largest box), True or ``(min_scale, mass)``: the smallest box down to ``min_scale``
            of the largest box's side that still keeps ``mass`` of the saliency mass
            (:class:`gazecrop.crop.Zoom`).
        symmetric: flip-averaged inference (:func:`predict`).
        max_pixels: the largest image file accepted, in pixels (:func:`predict`).
    Returns:
        One :class:`~gazecrop.crop.CropResult` per aspect, in order: ``box`` (pixels of the displayed image),
        ``salient_point`` ``(x, y)``, ``score`` (share of saliency mass inside), ``peaks``, ``keep_whole``
        advice, ``close`` (a near-equal alternative exists), ``candidates``, ``clamped`` (a side clamped
        to one pixel), ``cut`` (how much the edges cut through what is salient).
    Raises:
        As :func:`predict`; ValueError / TypeError for a bad aspect, strategy, candidates or zoom (checked
        before the model runs); TypeError for one aspect given where a list is expected
        (``crops(img, "16:9")``; use ``["16:9"]`` or :func:`crop_box`).
    """
    aspects = aspect_list(aspects)  # fail before the model run
    opts = check_options(strategy=strategy, candidates=candidates, zoom=zoom)
    return predict(image, model=model, symmetric=symmetric, max_pixels=max_pixels).crops(
        aspects, strategy=opts["strategy"], candidates=opts["candidates"], zoom=opts["zoom"])


def crop_box(image: ImageInput, aspect: AspectLike, *, model: ModelLike = None,
             strategy: Strategy = DEFAULT_STRATEGY, zoom: ZoomLike = None, symmetric: bool = False,
             max_pixels: Optional[int] = None) -> CropBox:
    """The crop box for one aspect ratio: ``CropBox(left, top, width, height)``, ints, pixels of the displayed
    image; the largest box of ``aspect`` (width / height, e.g. ``16 / 9`` or ``"16:9"``) that fits (a
    tighter one with ``zoom``).

    Raises:
        As :func:`crops`.
    """
    return crops(image, [aspect], model=model, strategy=strategy, zoom=zoom, symmetric=symmetric,
                 max_pixels=max_pixels)[0].box


def crop(image: ImageInput, aspect: AspectLike, *, model: ModelLike = None,
         strategy: Strategy = DEFAULT_STRATEGY, zoom: ZoomLike = None, symmetric: bool = False,
         max_pixels: Optional[int] = None) -> Image.Image:
    """The cropped image: the displayed image (EXIF orientation applied, original mode, first frame) cut to
    :func:`crop_box`.

    Returns:
        A new ``PIL.Image.Image`` of the box's size (an array input gives an RGB image).
    Raises:
        As :func:`crops`.
    """
    image = encoded_input(image)  # a file object is read once, for the box and the pixels
    box = crop_box(image, aspect, model=model, strategy=strategy, zoom=zoom, symmetric=symmetric,
                   max_pixels=max_pixels)
    with pillow_limit(max_pixels):
        return open_image(image, max_pixels=max_pixels).crop(box.to_pil())


def thumbnail_size(size: Tuple[int, int]) -> Tuple[int, int]:
    """``size`` checked: two ints >= 1 (width, height) in pixels.

    Raises:
        TypeError: not a pair of ints. ValueError: a side below 1 or above 65500 (Pillow's limit for
        JPEG, WebP and most formats).
    """
    try:
        w, h = size
    except (TypeError, ValueError):
        raise TypeError(f"size must be (width, height), got {size!r}") from None
    for v in (w, h):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"size must be two ints (width, height), got {size!r}")
    if not (1 <= w <= 65500 and 1 <= h <= 65500):
        raise ValueError(f"thumbnail size must be 1..65500 pixels per side, got {w}x{h}")
    return int(w), int(h)


def thumbnail(image: ImageInput, size: Tuple[int, int], *, model: ModelLike = None,
              strategy: Strategy = DEFAULT_STRATEGY, zoom: ZoomLike = None, symmetric: bool = False,
              upscale: bool = True, resample: int = Image.LANCZOS, max_pixels: Optional[int] = None) -> Image.Image:
    """A thumbnail of exactly ``size``: the image cropped to the aspect ``w / h`` (:func:`crop_box`), then
    resized to ``w x h`` (what libvips ``thumbnail --smartcrop attention``, sharp ``position: attention``
    and thumbor ``/WxH/smart/`` give).

    Args:
        image: as :func:`predict` (a path, encoded bytes or a file object, a PIL image, an array).
        size: ``(width, height)`` in pixels, each 1..65500. Extreme sizes work: the box is at least one
            pixel on each side (``CropResult.clamped``) and is then resized.
        model, strategy, zoom, symmetric, max_pixels: as :func:`crops`.
        upscale: allow enlarging when the box is smaller than ``size`` (default). With False the crop is
            only ever reduced: a box smaller than ``size`` is returned at its own size (keeping the aspect of
            the box), so the result can then be smaller than ``size``.
        resample: a Pillow filter, ``Image.LANCZOS`` by default (high quality; ``reducing_gap`` 3.0 for speed
            on large reductions, as Pillow's own ``Image.thumbnail``).
    Returns:
        A new ``PIL.Image.Image`` (the displayed image's mode; an array input gives RGB) of exactly ``size``
        (or smaller with ``upscale=False``).
    Raises:
        As :func:`crops`; TypeError / ValueError for a bad ``size``.
    """
    w, h = thumbnail_size(size)
    image = encoded_input(image)  # a file object is read once, for the box and the pixels
    box = crop_box(image, w / h, model=model, strategy=strategy, zoom=zoom, symmetric=symmetric,
                   max_pixels=max_pixels)
    with pillow_limit(max_pixels):
        full = open_image(image, max_pixels=max_pixels)
        return resize_crop(full, box, (w, h), upscale=upscale, resample=resample)


def resize_crop(full: Image.Image, box: CropBox, size: Tuple[int, int], *, upscale: bool = True,
                resample: int = Image.LANCZOS) -> Image.Image:
    """``full`` cut to ``box`` and resized to ``size`` (the last step of :func:`thumbnail`; also used by the
    CLI). With ``upscale=False`` a box smaller than ``size`` is only cut, never enlarged.

    Palette and other modes that Pillow cannot filter are resized in RGB(A) (P with transparency -> RGBA).
    """
    w, h = size
    if not upscale and (box.width < w or box.height < h):
        s = min(box.width / w, box.height / h)
        w, h = max(1, min(box.width, round(w * s))), max(1, min(box.height, round(h * s)))
    if (w, h) == (box.width, box.height):
        return full.crop(box.to_pil())
    src = full
    if src.mode in ("P", "PA"):  # Pillow resizes palette images with NEAREST only
        src = src.convert("RGBA" if src.mode == "PA" or "transparency" in src.info else "RGB")
    elif src.mode == "1":
        src = src.convert("L")
    return src.resize((w, h), resample, box=box.to_pil(), reducing_gap=3.0)
