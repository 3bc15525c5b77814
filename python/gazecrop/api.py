"""The public Python API: saliency maps and crops of photos.

Every call goes through one :func:`gazecrop._image._prepare` (path, PIL image or uint8 array -> displayed RGB
pixels and size) and one model run (``model.log_density``); the crop rules are the pure functions of
:mod:`gazecrop.crop`. All coordinates are pixels of the image as displayed (EXIF orientation applied).

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

from ._image import ImageInput, _prepare, open_image
from .crop import (DEFAULT_STRATEGY, STRATEGIES, AspectLike, CropBox, CropResult, Strategy, aspect_list,
                   choose_crops, resample_log_density)
from .model import load_model

__all__ = ["Prediction", "predict", "saliency_map", "crop_box", "crops", "crop", "default_model",
           "SaliencyModel"]


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

    def crops(self, aspects: Iterable[AspectLike], *, strategy: Strategy = DEFAULT_STRATEGY) -> List[CropResult]:
        """One :class:`~gazecrop.crop.CropResult` per aspect ratio (:func:`gazecrop.crop.choose_crops`)."""
        return choose_crops(self.log_density, self.size, aspects, strategy=strategy)


def predict(image: ImageInput, *, model: ModelLike = None) -> Prediction:
    """Run the saliency model once on an image.

    Args:
        image: a path (str / os.PathLike), a ``PIL.Image.Image`` or a uint8 (H, W, 3) RGB array.
        model: a Model, a ``.gzw`` path, or None for the bundled default model.
    Returns:
        :class:`Prediction` (grid log-density + displayed size).
    Raises:
        FileNotFoundError: no such image (or no bundled model). ImageError / ImageTooLargeError: the image
        cannot be used. TypeError / ValueError: bad argument types or array shapes.
    """
    m = _model(model)
    prep = _prepare(image, input_size=m.input_size)
    grid = np.asarray(m.log_density(prep.rgb), dtype=np.float32)
    if grid.ndim != 2:
        raise ValueError(f"model returned a {grid.shape} array, expected a (h, w) log-density grid")
    return Prediction(log_density=grid, size=prep.size)


def saliency_map(image: ImageInput, *, model: ModelLike = None) -> np.ndarray:
    """Where people are predicted to look: a log-density over the displayed image's pixels.

    Args:
        image: a path (str / os.PathLike), a ``PIL.Image.Image`` or a uint8 (H, W, 3) RGB array.
        model: a Model, a ``.gzw`` path, or None for the bundled default model.
    Returns:
        float32 (H, W) natural-log density, ``logsumexp == 0``; H, W are the image as displayed (EXIF
        orientation applied). ``np.exp(map)`` is the probability of each pixel being fixated.
    Raises:
        As :func:`predict`.
    """
    return predict(image, model=model).saliency_map()


def crops(image: ImageInput, aspects: Iterable[AspectLike], *, model: ModelLike = None,
          strategy: Strategy = DEFAULT_STRATEGY) -> List[CropResult]:
    """Crops for several aspect ratios from one model run.

    Args:
        image: a path, a ``PIL.Image.Image`` or a uint8 (H, W, 3) RGB array.
        aspects: aspect ratios (width / height), numbers or strings such as ``"16:9"``.
        model: a Model, a ``.gzw`` path, or None for the bundled default model.
        strategy: ``"mass"`` (most saliency mass inside the box), ``"point"`` (Twitter 2018: centred on the
            salient point) or ``"centre"``; see :mod:`gazecrop.crop`.
    Returns:
        One :class:`~gazecrop.crop.CropResult` per aspect, in order: ``box`` (largest box of that aspect,
        pixels of the displayed image), ``salient_point`` ``(x, y)``, ``score`` (share of saliency mass inside),
        ``peaks``, ``keep_whole`` advice.
    Raises:
        As :func:`predict`; ValueError for a bad aspect or strategy; TypeError for one aspect given where a
        list is expected (``crops(img, "16:9")``; use ``["16:9"]`` or :func:`crop_box`).
    """
    aspects = aspect_list(aspects)  # fail before the model run
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    return predict(image, model=model).crops(aspects, strategy=strategy)


def crop_box(image: ImageInput, aspect: AspectLike, *, model: ModelLike = None,
             strategy: Strategy = DEFAULT_STRATEGY) -> CropBox:
    """The crop box for one aspect ratio: ``CropBox(left, top, width, height)``, ints, pixels of the displayed
    image; the largest box of ``aspect`` (width / height, e.g. ``16 / 9`` or ``"16:9"``) that fits.

    Raises:
        As :func:`crops`.
    """
    return crops(image, [aspect], model=model, strategy=strategy)[0].box


def crop(image: ImageInput, aspect: AspectLike, *, model: ModelLike = None,
         strategy: Strategy = DEFAULT_STRATEGY) -> Image.Image:
    """The cropped image: the displayed image (EXIF orientation applied, original mode, first frame) cut to
    :func:`crop_box`.

    Returns:
        A new ``PIL.Image.Image`` of the box's size (an array input gives an RGB image).
    Raises:
        As :func:`crops`.
    """
    box = crop_box(image, aspect, model=model, strategy=strategy)
    full = open_image(image)
    return full.crop(box.to_pil())
