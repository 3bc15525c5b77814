"""The loaded saliency model: a ``.gzw`` network run by the native core (``gazecrop._core``)."""

from __future__ import annotations

import os
import warnings
from importlib import resources
from typing import Optional, Tuple

import numpy as np

from .weights import Network, WeightsFormatError, _parse, read_file

__all__ = ["Model", "load_model", "default_model_path", "resize_rgb", "DEFAULT_MODEL"]

DEFAULT_MODEL = "gazecrop-fast.gzw"


def default_model_path() -> str:
    """Path of the bundled default model (``gazecrop/models/gazecrop-fast.gzw`` in the installed package, or
    ``weights/gazecrop-fast.gzw`` in a source checkout)."""
    packaged = resources.files("gazecrop") / "models" / DEFAULT_MODEL
    if packaged.is_file():
        return str(packaged)
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in (os.path.join(here, "..", "..", "weights", DEFAULT_MODEL),):
        if os.path.isfile(cand):
            return os.path.normpath(cand)
    raise FileNotFoundError(f"bundled model {DEFAULT_MODEL} not found in the package")


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize pixels the way every model input is resized: antialiased bilinear in the native core.

    For 1 and 3 channels (L, RGB), bit for bit Pillow 13's ``Image.resize((width, height), Image.BILINEAR,
    reducing_gap=None)`` (its triangle filter widened by the scale when shrinking, 22-bit fixed-point
    coefficients, the horizontal pass first unless the height shrinks and loses more than twice the pixels
    the width loses; earlier Pillow releases always ran the horizontal pass first, which differs by 1 in a few
    pixels for such sizes), and 4-10x faster on one core (``cpp/src/image_resize.cpp``). 2 and 4 channels are
    filtered channel by channel (Pillow premultiplies alpha for LA / RGBA; this does not).

    Args:
        rgb: uint8 (H, W, C) pixels, C 1 to 4, sides 1 to 65536 (any strides; copied to C order when needed;
            a masked array's mask is ignored).
        height, width: output size in pixels, ints 1 to 65536 (the output is allocated whole: 65536 x 65536
            x 4 bytes is 16 GiB).
    Returns:
        uint8 (height, width, C); a copy when the size does not change.
    Raises:
        TypeError: not a uint8 array, or a size that is not an int (bools and floats included).
        ValueError: another shape, an input side over 65536, or an output side outside 1..65536.
        MemoryError: the output cannot be allocated.
    """
    from . import _core

    if not isinstance(rgb, np.ndarray):
        raise TypeError(f"expected a uint8 (H, W, C) array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise TypeError(f"image dtype must be uint8, got {rgb.dtype}")
    if rgb.ndim != 3:
        raise ValueError(f"image must be uint8 (H, W, C) with C in 1..4, got shape {rgb.shape}")
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
        if not 1 <= int(v) <= 65536:
            raise ValueError(f"output {name} {int(v)} not in 1..65536")
    return _core.resize(np.ascontiguousarray(rgb), int(height), int(width))


_WARNED_ENV = False


def _check_precision_env() -> None:
    """Warn once when ``$GAZECROP_PRECISION`` holds something other than ``fp32`` / ``int8`` (the core ignores it)."""
    global _WARNED_ENV
    value = os.environ.get("GAZECROP_PRECISION")
    if value not in (None, "fp32", "int8") and not _WARNED_ENV:
        _WARNED_ENV = True
        warnings.warn(f"GAZECROP_PRECISION={value!r} is ignored (use 'fp32' or 'int8'): the file's default runs",
                      RuntimeWarning, stacklevel=3)


class Model:
    """A saliency network loaded from a ``.gzw`` file and run by the native core.

    Immutable after load; one instance may be used from many threads at once (the core releases the GIL
    and uses per-call scratch buffers).

    Attributes:
        path: the file it was loaded from.
        network: the parsed :class:`~gazecrop.weights.Network` (validated by the Python reader too).
        precision: None (the file's default precision, ``$GAZECROP_PRECISION`` overriding it), ``"fp32"``, or
            ``"int8"``: the int8 trunk of a calibrated file (weights format version 3, made by ``python -m
            gazecrop.train.calibrate``; :mod:`gazecrop.int8`), on uint8 images.
    """

    def __init__(self, path: "str | os.PathLike[str]", *, threads: int = 1, precision: Optional[str] = None) -> None:
        from . import _core

        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if precision not in (None, "fp32", "int8"):
            raise ValueError(f"precision must be None, 'fp32' or 'int8', got {precision!r}")
        _check_precision_env()
        self.path = os.fspath(path)
        data = read_file(self.path)  # one read: the Python reader and the core parse the same bytes
        self.network: Network = _parse(self.path, data)
        try:
            self._core = _core.Model.from_bytes(data)
        except ValueError as e:  # WeightsFormatError included: name the file
            raise type(e)(f"{self.path}: {e}") from e
        if precision == "int8" and self.network.int8 is None:
            raise ValueError(f"{self.path}: precision 'int8' needs an int8 trunk (python -m gazecrop.train.calibrate)")
        self.threads = int(threads)
        self.precision = precision

    @property
    def model_name(self) -> str:
        """The header's ``model_name`` (format version 2; ``""`` in version-1 files)."""
        return self.network.model_name

    @property
    def model_version(self) -> str:
        """The header's ``model_version`` (format version 2; ``""`` in version-1 files)."""
        return self.network.model_version

    @property
    def has_head_map(self) -> bool:
        """Whether the file has a head map, a second output (weights format version 3): where heads are, for
        the crop layer's head rule (:func:`gazecrop.crop.heads_from_map`)."""
        return bool(self.network.head_output)

    @property
    def precision_in_use(self) -> str:
        """What :meth:`run` takes on uint8 images in this process: ``"int8"`` or ``"fp32"`` (:attr:`precision`, else
        ``$GAZECROP_PRECISION``, else the file's default, whose int8 applies only where the int8 kernels beat
        float32: ``gazecrop._core.int8_kernel_set() == "avx512vnni"``)."""
        return "int8" if self._core.runs_int8(precision=self.precision) else "fp32"

    @property
    def input_long_side(self) -> int:
        """Long side in pixels images are resized to before the run."""
        return self.network.input_long_side

    def input_size(self, height: int, width: int) -> Tuple[int, int]:
        """(h, w) in pixels that a (height, width) image is resized to; see :meth:`Network.input_size`."""
        return self.network.input_size(height, width)

    def run(self, image: np.ndarray, *, threads: Optional[int] = None,
            head_map: bool = False) -> "np.ndarray | Tuple[np.ndarray, np.ndarray]":
        """Raw forward pass at the array's own size.

        Args:
            image: uint8 (H, W, 3) RGB, or float32 (3, H, W), pixel values in 0..255, C-contiguous; or a
                batch of same-size images, uint8 (N, H, W, 3) / float32 (N, 3, H, W), run in one call.
            threads: intra-op threads for this call (default: the model's ``threads``); the native model
                keeps one pool of threads between calls.
            head_map: also return the head map (:attr:`has_head_map`), from the same run.

        Returns:
            float32 (h, w) log-density on the network's output grid (``logsumexp == 0``); (N, h, w) for a
            batch. With ``head_map``: a tuple (log-density, float32 (hh, hw) / (N, hh, hw) head logits).

        Raises:
            TypeError: dtype is not uint8 / float32, or ``head_map`` is not a bool. ValueError: wrong rank or
            shape, image too small, ``head_map`` for a model without one, or a float32 image with
            :attr:`precision` ``"int8"``.
        """
        if not isinstance(image, np.ndarray):
            raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
        if not isinstance(head_map, (bool, np.bool_)):
            raise TypeError(f"head_map must be a bool, got {type(head_map).__name__}")
        if image.dtype not in (np.uint8, np.float32):
            raise TypeError(f"image dtype must be uint8 (H, W, 3) or float32 (3, H, W), got {image.dtype}")
        image = np.ascontiguousarray(image)
        return self._core.run(image, threads=self.threads if threads is None else int(threads),
                              head_map=bool(head_map), precision=self.precision)

    def log_density(self, rgb: np.ndarray, *, threads: Optional[int] = None,
                    head_map: bool = False) -> "np.ndarray | Tuple[np.ndarray, np.ndarray]":
        """Resize a uint8 (H, W, 3) RGB image to :meth:`input_size` (:func:`resize_rgb`: antialiased
        bilinear, Pillow's rule, in the native core) and run the network: float32 (h, w) log-density over the
        output grid, which covers the whole image; with ``head_map``, a tuple (log-density, float32 (hh, hw)
        head logits), as :meth:`run`.
        """
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
            raise ValueError(f"expected a uint8 (H, W, 3) RGB array, got {getattr(rgb, 'dtype', type(rgb))} "
                             f"{getattr(rgb, 'shape', '')}")
        h, w = self.input_size(rgb.shape[0], rgb.shape[1])
        if (h, w) != rgb.shape[:2]:
            rgb = resize_rgb(rgb, h, w)
        return self.run(rgb, threads=threads, head_map=head_map)

    def __repr__(self) -> str:
        p = "" if self.precision is None else f", precision={self.precision!r}"
        return f"Model({self.path!r}, input_long_side={self.input_long_side}, ops={len(self.network.ops)}{p})"


def load_model(path: "str | os.PathLike[str] | None" = None, *, threads: int = 1,
               precision: Optional[str] = None) -> Model:
    """Load a ``.gzw`` saliency model (the bundled ``gazecrop-fast`` model when ``path`` is None); ``precision`` as
    :attr:`Model.precision`.

    Raises:
        FileNotFoundError (and other OSError): the file cannot be opened. NotRegularFileError (a ValueError):
        a FIFO, device or socket, refused before reading. WeightsFormatError (a ValueError): the file is
        invalid; every such message starts with the file's path; ValueError: a bad ``precision``, or ``"int8"``
        for a file without an int8 trunk.
    """
    return Model(default_model_path() if path is None else path, threads=threads, precision=precision)
