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
from functools import cached_property
from typing import Dict, Iterable, List, Literal, Optional, Protocol, Tuple, Union

import numpy as np
from PIL import Image

from ._image import ImageInput, _prepare, encoded_input, open_image, pillow_limit
from .crop import (DEFAULT_STRATEGY, AspectLike, CropBox, CropResult, Strategy, ZoomLike, aspect_list,
                   check_options, check_regions, choose_crops, focal_log_density, heads_from_map,
                   resample_log_density)
from .model import load_model

__all__ = ["Prediction", "predict", "saliency_map", "crop_box", "crops", "crop", "thumbnail", "default_model",
           "SaliencyModel", "mirror_average", "mirror_average_heads", "pad_image", "FITS", "Fit", "Keep", "Boost", "Focal"]

Keep = Optional[Iterable[Tuple[int, int, int, int]]]
"""``keep``: boxes ``(left, top, width, height)`` the crop must contain (:func:`gazecrop.crop.choose_crop`)."""

Boost = Optional[Iterable[Tuple[Tuple[int, int, int, int], float]]]
"""``boost``: ``[(box, weight), ...]`` added to the saliency density (:func:`gazecrop.crop.choose_crop`)."""

Focal = Optional[Tuple[float, float]]
"""``focal``: a manual focal point ``(x, y)`` that replaces the model's map (:func:`gazecrop.crop.choose_crop`)."""

Fit = Literal["crop", "pad", "auto"]
"""How :func:`thumbnail` reaches the exact size: crop to its aspect, pad the whole image, or crop unless the
result advises padding (``CropResult.pad``)."""

FITS: Tuple[str, ...] = ("crop", "pad", "auto")


class SaliencyModel(Protocol):
    """What the API needs from a model (:class:`gazecrop.Model` has it; tests use small stand-ins)."""

    def input_size(self, height: int, width: int) -> Tuple[int, int]:
        """(h, w) pixels an (height, width) image is resized to before the run."""

    def log_density(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB -> float32 (h, w) log-density over a grid covering the whole image. A model
        with a truthy ``has_head_map`` attribute must also accept ``head_map=True`` and then return a tuple
        (log-density, float32 (hh, hw) head logits) (:meth:`gazecrop.Model.log_density`)."""


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
            (``logsumexp == 0``); with ``focal``, the narrow map around the point
            (:func:`gazecrop.crop.focal_log_density`, not normalised) and no model run.
        size: ``(width, height)`` of the displayed image in pixels (full resolution).
        focal: the manual focal point ``(x, y)`` the map stands for, or None.
        head_map: float32 (hh, hw) logits that a cell lies in a head, over a grid that covers the whole image
            (a model with a head map, weights format version 3), or None. Clipped to +-1e6; a NaN cell (a
            broken head map) counts as no head.
    """

    log_density: np.ndarray
    size: Tuple[int, int]
    focal: Optional[Tuple[float, float]] = None
    head_map: Optional[np.ndarray] = None

    @cached_property
    def heads(self) -> List[CropBox]:
        """Head boxes (pixels of the displayed image, largest first) from :attr:`head_map`
        (:func:`gazecrop.crop.heads_from_map`, computed once); empty without a head map. The ``"mass"``
        strategy keeps crop edges out of them (the head rule, :func:`gazecrop.crop.choose_crop`)."""
        return [] if self.head_map is None else heads_from_map(self.head_map, self.size)

    def saliency_map(self) -> np.ndarray:
        """float32 (H, W) log-density over the displayed image's pixels, ``logsumexp == 0``
        (:func:`gazecrop.crop.resample_log_density`)."""
        return resample_log_density(self.log_density, self.size)

    def crops(self, aspects: Iterable[AspectLike], *, strategy: Strategy = DEFAULT_STRATEGY, candidates: int = 1,
              zoom: ZoomLike = None, keep: Keep = None, boost: Boost = None) -> List[CropResult]:
        """One :class:`~gazecrop.crop.CropResult` per aspect ratio (:func:`gazecrop.crop.choose_crops`, with
        this prediction's ``focal`` point and :attr:`heads`)."""
        return choose_crops(self.log_density, self.size, aspects, strategy=strategy, candidates=candidates,
                            zoom=zoom, keep=keep, boost=boost, focal=self.focal, heads=self.heads)


HEAD_LOGIT_LIMIT = np.float32(1e6)
"""Head-map logits are clipped to this magnitude (:attr:`Prediction.head_map`)."""


def _grid_pair(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Two float32 (h, w) grids of one shape (a photo's and its mirror image's).

    Raises:
        ValueError: the shapes differ or are not 2-D."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two (h, w) grids of one shape, got {a.shape} and {b.shape}")
    return a, b


def mirror_average(log_density: np.ndarray, mirrored_log_density: np.ndarray) -> np.ndarray:
    """Flip-averaged log-density: ``log((exp(a) + exp(mirror(b))) / 2)`` for ``a`` the map of a photo and
    ``b`` the map of its left-right mirror image (both (h, w) grids covering the image, log-densities).
    ``np.logaddexp`` is commutative bit for bit, so the result for the mirrored photo is exactly the mirror
    of this one: placements on it are mirror-equivariant whatever the model does.

    Raises:
        ValueError: the shapes differ.
    """
    a, b = _grid_pair(log_density, mirrored_log_density)
    return (np.logaddexp(a, b[:, ::-1]) - np.float32(np.log(2.0))).astype(np.float32)


def mirror_average_heads(head_logits: np.ndarray, mirrored_head_logits: np.ndarray) -> np.ndarray:
    """Flip-averaged head map: the mean of the photo's head logits and the mirror of its mirror image's, float32
    (hh, hw) (``+`` is commutative bit for bit, so mirror-equivariant like :func:`mirror_average`).

    Raises:
        ValueError: the shapes differ.
    """
    a, b = _grid_pair(head_logits, mirrored_head_logits)
    return ((a + b[:, ::-1]) * np.float32(0.5)).astype(np.float32)


def predict(image: ImageInput, *, model: ModelLike = None, symmetric: bool = False,
            max_pixels: Optional[int] = None, focal: Focal = None) -> Prediction:
    """Run the saliency model once on an image (twice with ``symmetric``; not at all with ``focal``).

    Args:
        image: a path (str / os.PathLike), encoded bytes (``bytes``, ``bytearray``, ``memoryview``, a binary
            file object, a :class:`gazecrop.EncodedImage`), a ``PIL.Image.Image`` or a uint8 (H, W, 3) RGB
            array.
        model: a Model, a ``.gzw`` path, or None for the bundled default model.
        symmetric: flip-averaged inference: also run the model on the left-right mirror image and average
            the densities (:func:`mirror_average`), so that a mirrored photo gets exactly the mirrored map
            and crop boxes; twice the model's cost. Off by default (``benchmarks/crop_quality.md``).
        max_pixels: the largest image file accepted, in pixels (None: Pillow's ``Image.MAX_IMAGE_PIXELS``).
        focal: a manual focal point ``(x, y)``, pixels of the displayed image: no model is loaded or run;
            the map is the narrow one around the point (:func:`gazecrop.crop.focal_log_density`) and every
            crop of the prediction uses it (:func:`gazecrop.crop.choose_crop`).
    Returns:
        :class:`Prediction` (grid log-density + displayed size).
    Raises:
        FileNotFoundError: no such image (or no bundled model). ImageError / ImageTooLargeError: the image
        cannot be used (ImageTooLargeError: over ``max_pixels``). TypeError / ValueError: bad argument types
        or array shapes, a focal point that is not inside the image.
    """
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    if focal is not None:
        point = check_regions(focal=focal)["focal"]
        size = _prepare(image, input_size=lambda h, w: (1, 1),  # the size only (JPEG: smallest draft)
                        max_pixels=max_pixels).size
        return Prediction(focal_log_density(size, point).astype(np.float32), size, point)
    m = _model(model)
    prep = _prepare(image, input_size=m.input_size, max_pixels=max_pixels)
    with_heads = bool(getattr(m, "has_head_map", False))

    def run(rgb: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        out = m.log_density(rgb, head_map=True) if with_heads else (m.log_density(rgb), None)
        grid = np.asarray(out[0], dtype=np.float32)
        if grid.ndim != 2:
            raise ValueError(f"model returned a {grid.shape} array, expected a (h, w) log-density grid")
        if out[1] is None:
            return grid, None
        heads = np.asarray(out[1], dtype=np.float32)  # NaN: no head; finite, so that averages stay numbers
        return grid, np.clip(np.nan_to_num(heads, nan=-np.inf), -HEAD_LOGIT_LIMIT, HEAD_LOGIT_LIMIT)

    grid, heads = run(prep.rgb)
    if symmetric:
        grid_m, heads_m = run(np.ascontiguousarray(prep.rgb[:, ::-1]))
        grid = mirror_average(grid, grid_m)
        if heads is not None:
            heads = mirror_average_heads(heads, heads_m)
    return Prediction(log_density=grid, size=prep.size, head_map=heads)


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
          symmetric: bool = False, max_pixels: Optional[int] = None, keep: Keep = None, boost: Boost = None,
          focal: Focal = None) -> List[CropResult]:
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
        keep: boxes ``(left, top, width, height)`` (pixels of the displayed image) the crop must contain:
            all of them when a box of the aspect can, else as much of their area as it can
            (``CropResult.kept`` < 1 says so).
        boost: ``[(box, weight), ...]``: saliency added over each box, ``weight`` times the whole map's mass
            spread evenly over it, then renormalised (smartcrop.js' boost).
        focal: a manual focal point ``(x, y)`` replacing the model's map by a narrow one around it (the model
            does not run); ``keep`` and ``boost`` apply on top. Details: :func:`gazecrop.crop.choose_crop`.
    Returns:
        One :class:`~gazecrop.crop.CropResult` per aspect, in order: ``box`` (pixels of the displayed image),
        ``salient_point`` ``(x, y)``, ``score`` (share of saliency mass inside), ``peaks``, ``keep_whole``
        advice, ``close`` (a near-equal alternative exists), ``candidates``, ``clamped`` (a side clamped
        to one pixel), ``cut`` (how much the edges cut through what is salient), ``kept`` (share of the
        keep regions held), ``pad`` (padding the whole image advised).
    Raises:
        As :func:`predict`; ValueError / TypeError for a bad aspect, strategy, candidates, zoom or region
        (checked before the model runs; whether regions lie inside the image, after it);
        TypeError for one aspect given where a list is expected (``crops(img, "16:9")``; use ``["16:9"]``
        or :func:`crop_box`).
    """
    aspects = aspect_list(aspects)  # fail before the model run
    opts = check_options(strategy=strategy, candidates=candidates, zoom=zoom, keep=keep, boost=boost, focal=focal)
    return predict(image, model=model, symmetric=symmetric, max_pixels=max_pixels, focal=opts["focal"]).crops(
        aspects, strategy=opts["strategy"], candidates=opts["candidates"], zoom=opts["zoom"], keep=opts["keep"],
        boost=opts["boost"])


def crop_box(image: ImageInput, aspect: AspectLike, *, model: ModelLike = None,
             strategy: Strategy = DEFAULT_STRATEGY, zoom: ZoomLike = None, symmetric: bool = False,
             max_pixels: Optional[int] = None, keep: Keep = None, boost: Boost = None, focal: Focal = None) -> CropBox:
    """The crop box for one aspect ratio: ``CropBox(left, top, width, height)``, ints, pixels of the displayed
    image; the largest box of ``aspect`` (width / height, e.g. ``16 / 9`` or ``"16:9"``) that fits (a
    tighter one with ``zoom``). ``keep``, ``boost``, ``focal``: as :func:`crops`.

    Raises:
        As :func:`crops`.
    """
    return crops(image, [aspect], model=model, strategy=strategy, zoom=zoom, symmetric=symmetric,
                 max_pixels=max_pixels, keep=keep, boost=boost, focal=focal)[0].box


def crop(image: ImageInput, aspect: AspectLike, *, model: ModelLike = None,
         strategy: Strategy = DEFAULT_STRATEGY, zoom: ZoomLike = None, symmetric: bool = False,
         max_pixels: Optional[int] = None, keep: Keep = None, boost: Boost = None, focal: Focal = None) -> Image.Image:
    """The cropped image: the displayed image (EXIF orientation applied, original mode, first frame) cut to
    :func:`crop_box` (``keep``, ``boost``, ``focal``: as :func:`crops`).

    Returns:
        A new ``PIL.Image.Image`` of the box's size (an array input gives an RGB image).
    Raises:
        As :func:`crops`.
    """
    image = encoded_input(image)  # a file object is read once, for the box and the pixels
    box = crop_box(image, aspect, model=model, strategy=strategy, zoom=zoom, symmetric=symmetric,
                   max_pixels=max_pixels, keep=keep, boost=boost, focal=focal)
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
              upscale: bool = True, resample: int = Image.LANCZOS, max_pixels: Optional[int] = None,
              keep: Keep = None, boost: Boost = None, focal: Focal = None, fit: Fit = "crop",
              background: Background = "blur") -> Image.Image:
    """A thumbnail of exactly ``size``: the image cropped to the aspect ``w / h`` (:func:`crop_box`), then
    resized to ``w x h`` (what libvips ``thumbnail --smartcrop attention``, sharp ``position: attention``
    and thumbor ``/WxH/smart/`` give); or the whole image padded to ``w x h`` (``fit``).

    Args:
        image: as :func:`predict` (a path, encoded bytes or a file object, a PIL image, an array).
        size: ``(width, height)`` in pixels, each 1..65500. Extreme sizes work: the box is at least one
            pixel on each side (``CropResult.clamped``) and is then resized.
        model, strategy, zoom, symmetric, max_pixels, keep, boost, focal: as :func:`crops`.
        upscale: allow enlarging when the box is smaller than ``size`` (default). With False the crop is
            only ever reduced: a box smaller than ``size`` is returned at its own size (keeping the aspect of
            the box), so the result can then be smaller than ``size``; a padded image is never enlarged
            inside its ``size`` canvas.
        resample: a Pillow filter, ``Image.LANCZOS`` by default (high quality; ``reducing_gap`` 3.0 for speed
            on large reductions, as Pillow's own ``Image.thumbnail``).
        fit: ``"crop"`` (default) crops; ``"pad"`` shows the whole image letterboxed to exactly ``size``
            (:func:`pad_image`; the model does not run); ``"auto"`` crops unless the crop advises padding
            (``CropResult.pad``: another subject of near-equal saliency would be cut out (``close``), the
            aspect is within :data:`gazecrop.crop.ASPECT_TOLERANCE` of the image's, or the ``keep`` regions
            do not all fit), in which case it pads (Cloudinary's ``auto_pad``).
        background: what fills the padding: ``"blur"`` (default: the image itself, scaled to cover, blurred
            and darkened) or a colour (a Pillow colour name or ``"#rrggbb"``, or an ``(r, g, b)`` tuple).
    Returns:
        A new ``PIL.Image.Image`` (the displayed image's mode; an array input gives RGB; padded: RGB, RGBA
        or L) of exactly ``size`` (or smaller with ``upscale=False`` when cropped).
    Raises:
        As :func:`crops`; TypeError / ValueError for a bad ``size``, ``fit`` or ``background``.
    """
    w, h = thumbnail_size(size)
    fit = check_fit(fit)
    bg = check_background(background)
    check_options(strategy=strategy, zoom=zoom, keep=keep, boost=boost, focal=focal)  # checked whatever the fit
    image = encoded_input(image)  # a file object is read once, for the box and the pixels
    box = None
    if fit != "pad":
        r = crops(image, [w / h], model=model, strategy=strategy, zoom=zoom, symmetric=symmetric,
                  max_pixels=max_pixels, keep=keep, boost=boost, focal=focal)[0]
        box = None if fit == "auto" and r.pad else r.box
    with pillow_limit(max_pixels):
        full = open_image(image, max_pixels=max_pixels)
        if box is None:
            return pad_image(full, (w, h), upscale=upscale, resample=resample, background=bg)
        return resize_crop(full, box, (w, h), upscale=upscale, resample=resample)


Background = Union[str, Tuple[int, int, int]]
"""Padding fill of :func:`thumbnail`: ``"blur"`` or a colour."""

PAD_BLUR = 0.04
"""``background="blur"``: Gaussian blur radius as a share of the thumbnail's long side ..."""

PAD_DARKEN = 0.6
"""... and the brightness factor of the blurred fill (1: unchanged)."""


def check_fit(fit: str) -> str:
    """``fit`` checked against :data:`FITS`.

    Raises:
        ValueError: another value.
    """
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}; expected one of {FITS}")
    return fit


def check_background(background: Background) -> Background:
    """``background`` checked: ``"blur"`` or a colour, returned as ``"blur"`` or an ``(r, g, b)`` tuple.

    Raises:
        ValueError: an unknown colour name or a bad tuple. TypeError: another type.
    """
    from PIL import ImageColor

    if isinstance(background, str):
        if background == "blur":
            return background
        try:
            return ImageColor.getrgb(background)[:3]
        except ValueError:
            raise ValueError(f"background must be 'blur' or a colour such as 'black' or '#202020', "
                             f"got {background!r}") from None
    if isinstance(background, tuple) and len(background) == 3 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255 for v in background):
        return tuple(int(v) for v in background)
    raise TypeError(f"background must be 'blur', a colour name or an (r, g, b) tuple of 0..255, got {background!r}")


def pad_image(full: Image.Image, size: Tuple[int, int], *, upscale: bool = True, resample: int = Image.LANCZOS,
              background: Background = "blur") -> Image.Image:
    """The whole of ``full`` resized to fit inside ``size`` (keeping its aspect), centred on a canvas of
    exactly ``size`` (letterboxing; :func:`thumbnail` with ``fit="pad"``; also used by the CLI).

    Args:
        full: the displayed image (any mode; modes other than RGB, RGBA and L are converted to RGB, or RGBA
            when they have transparency).
        size: ``(width, height)`` of the result in pixels.
        upscale: with False the image is never enlarged (the canvas is still ``size``).
        resample: Pillow filter for the image.
        background: ``"blur"``: the image scaled to cover the canvas, blurred (radius :data:`PAD_BLUR` of
            the long side) and darkened (:data:`PAD_DARKEN`); or an ``(r, g, b)`` colour
            (:func:`check_background`).
    Returns:
        A new ``PIL.Image.Image`` of exactly ``size``.
    """
    from PIL import ImageEnhance, ImageFilter

    bg = check_background(background)
    w, h = size
    src = full
    if src.mode not in ("RGB", "RGBA", "L"):
        alpha = src.mode in ("LA", "PA", "La", "RGBa") or "transparency" in src.info
        src = src.convert("RGBA" if alpha else "RGB")
    W, H = src.size
    s = min(w / W, h / H)
    if not upscale:
        s = min(s, 1.0)
    iw, ih = min(w, max(1, round(W * s))), min(h, max(1, round(H * s)))
    inner = src.resize((iw, ih), resample, reducing_gap=3.0) if (iw, ih) != (W, H) else src
    if bg == "blur":
        c = max(w / W, h / H)  # cover: the centred source box of the canvas's aspect
        cw, ch = min(W, w / c), min(H, h / c)
        box = ((W - cw) / 2, (H - ch) / 2, (W + cw) / 2, (H + ch) / 2)
        canvas = src.resize((w, h), Image.BILINEAR, box=box, reducing_gap=2.0)
        canvas = canvas.filter(ImageFilter.GaussianBlur(PAD_BLUR * max(w, h)))
        canvas = ImageEnhance.Brightness(canvas).enhance(PAD_DARKEN)
    else:
        canvas = Image.new("RGB", (w, h), bg).convert(src.mode)
    canvas.paste(inner, ((w - iw) // 2, (h - ih) // 2))
    return canvas


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
