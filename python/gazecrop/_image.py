"""Image input for every public call: one :func:`_prepare` turns a path, an encoded file in memory (``bytes``,
``bytearray``, ``memoryview``, a binary file object or an :class:`EncodedImage`), a ``PIL.Image.Image`` or a
uint8 (H, W, 3) array into EXIF-transposed RGB uint8 pixels plus the size of the image *as displayed*.

Rules (the cropping layer never decodes; it only sees what this module returns):

- EXIF orientation is applied (``PIL.ImageOps.exif_transpose``), so sizes, boxes and points refer to the
  image as a viewer shows it. Arrays carry no EXIF and are taken as displayed.
- Every Pillow mode becomes RGB: ``1``/``L``/``P``/``YCbCr``/``HSV`` by ``convert``; modes with alpha (``LA``,
  ``La``, ``PA``, ``RGBA``, ``RGBa``, ``P`` with a ``transparency`` entry) are composited over
  :data:`BACKGROUND` (white, as image viewers and web pages usually show transparency); ``CMYK`` through its
  embedded ICC profile when LittleCMS is available, else Pillow's formula; 16-bit greyscale (``I;16*``, 16-bit
  PNG) scaled by 255 / 65535; ``I`` (32-bit int) taken as 8-bit when its maximum is <= 255, as 16-bit when
  <= 65535, else min-max scaled; ``F`` scaled by 255 when its maximum is <= 1, else clipped to 0..255.
  Multi-frame files (animated GIF / WebP / PNG, multi-page TIFF) give their first frame
  (:func:`frame_count` tells how many there are; the command line warns about them).
- Encoded bytes (an upload, an object read from storage) and binary file objects (read from their current
  position to the end, once) are decoded exactly like the same file at a path (:func:`encoded_input`).
- JPEG files opened from a path are decoded at reduced size with Pillow's draft mode (DCT scaling by 1/2, 1/4
  or 1/8) when the caller only needs the model's input size; the returned ``size`` stays the full-resolution
  displayed size, so coordinates remain full-resolution pixels.
- Files over a pixel limit (decompression bombs; default Pillow's ``Image.MAX_IMAGE_PIXELS``, about 89.5
  million pixels; ``max_pixels=`` in the API, ``--max-pixels`` on the command lines) are refused with
  :class:`ImageTooLargeError`, whose message names both ways to raise it, before any pixel is decoded;
  unreadable, unknown or truncated files with :class:`ImageError`; so are FIFOs, devices and sockets, refused
  before a byte is read. A missing file raises ``FileNotFoundError``, and other operating-system errors
  (permission, symbolic link loop) their ``OSError``.

Pillow and numpy only.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import threading
from dataclasses import dataclass
from typing import IO, Callable, Iterator, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps
from PIL.JpegImagePlugin import JpegImageFile

from ._files import NotRegularFileError, open_regular

__all__ = ["ImageError", "ImageTooLargeError", "Prepared", "BACKGROUND", "ImageInput", "EncodedImage",
           "encoded_input", "frame_count", "pillow_limit", "open_image", "to_rgb", "_prepare"]

BACKGROUND: Tuple[int, int, int] = (255, 255, 255)
"""RGB colour transparent pixels are composited over before the model sees them."""


@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes held in memory (read by a data engine, from object storage, from a request),
    handled exactly like a file at a path: same decoding, JPEG draft mode, EXIF orientation and pixel limit,
    so the same bytes give the same crops as the file.

    Every public call also takes ``bytes``, ``bytearray``, ``memoryview`` and binary file objects directly
    (:func:`encoded_input` wraps them in an EncodedImage); make one yourself to give the bytes a ``name``.

    Attributes:
        data: the encoded file (JPEG, PNG, ...), as ``bytes`` (a ``bytearray`` or ``memoryview`` is copied).
        name: where it came from (a path or URI), used in error messages and output names.
    """

    data: bytes
    name: str = "<bytes>"

    def __post_init__(self) -> None:
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise TypeError(f"EncodedImage.data must be bytes, got {type(self.data).__name__}")
        if not isinstance(self.data, bytes):  # a caller's buffer may change later: keep our own copy
            object.__setattr__(self, "data", bytes(self.data))

    def __repr__(self) -> str:
        return f"EncodedImage(<{len(self.data)} bytes>, name={self.name!r})"


ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], EncodedImage, Image.Image,
                   np.ndarray]
"""What every public call accepts as ``image``: a path, an encoded file in memory (bytes-like, a binary file
object, an :class:`EncodedImage`), a ``PIL.Image.Image`` or a uint8 (H, W, 3) RGB array."""

_ACCEPTED = ("a path, bytes, a binary file object, an EncodedImage, a PIL.Image.Image or a uint8 (H, W, 3) numpy "
             "array")

_FILE_LIKE = (str, os.PathLike, EncodedImage)  # inputs opened and decoded here (draft mode, pixel limit)

_ORIENTATION = 0x0112  # EXIF tag


class ImageError(ValueError):
    """An image cannot be used: unreadable, unknown format, truncated, or of an unsupported kind."""


class ImageTooLargeError(ImageError):
    """An image file has more pixels than the limit (a possible decompression bomb)."""


@dataclass(frozen=True)
class Prepared:
    """An image ready for the model.

    Attributes:
        rgb: uint8 (h, w, 3) RGB pixels as displayed; full resolution, or smaller when a JPEG was decoded in
            draft mode (same aspect ratio up to rounding).
        size: ``(width, height)`` of the displayed image at full resolution, in pixels; every coordinate the
            public API returns refers to this size.
    """

    rgb: np.ndarray
    size: Tuple[int, int]

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]


def encoded_input(image: object) -> object:
    """``image`` with encoded bytes wrapped: ``bytes`` / ``bytearray`` / ``memoryview`` and binary file objects
    (anything with ``read()`` that is not a PIL image) become an :class:`EncodedImage` (a file object is read
    once, from its current position, and named after its ``name`` when it has a string one); anything else is
    returned unchanged. Public calls that look at an image twice (:func:`gazecrop.crop`) call this first.

    Raises:
        TypeError: a file object opened in text mode.
        OSError: reading the file object failed.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        return EncodedImage(image)
    if hasattr(image, "read") and not isinstance(image, (Image.Image, np.ndarray, EncodedImage)):
        data = image.read()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"image file objects must be opened in binary mode ('rb'); read() gave "
                            f"{type(data).__name__}")
        name = getattr(image, "name", None)
        return EncodedImage(data, name if isinstance(name, str) else "<file>")
    return image


_PILLOW_LOCK = threading.Lock()
_PILLOW_RAISED = {"holders": 0, "saved": None}


def _default_limit() -> Optional[int]:
    """Pillow's own pixel limit (``Image.MAX_IMAGE_PIXELS``), as it was before any :func:`pillow_limit`."""
    with _PILLOW_LOCK:
        return _PILLOW_RAISED["saved"] if _PILLOW_RAISED["holders"] else Image.MAX_IMAGE_PIXELS


@contextlib.contextmanager
def pillow_limit(max_pixels: Optional[int]) -> Iterator[None]:
    """Let Pillow open and crop images of up to ``max_pixels`` pixels while the ``with`` block runs.

    Pillow refuses (and warns about) images over its own ``Image.MAX_IMAGE_PIXELS`` when it opens or crops
    them, whatever limit gazecrop was given; an explicit ``max_pixels`` above it raises that process-wide
    limit to ``max_pixels`` for the block (gazecrop's own check still applies every caller's limit; other
    code in the process sees the raised limit meanwhile). None, or a limit under Pillow's: nothing changes.

    Raises:
        ValueError: ``max_pixels`` below 1.
    """
    limit = _check_limit(max_pixels)
    with _PILLOW_LOCK:
        current = Image.MAX_IMAGE_PIXELS
        raise_it = limit is not None and current is not None and limit > current
        if raise_it:
            if not _PILLOW_RAISED["holders"]:
                _PILLOW_RAISED["saved"] = current
            _PILLOW_RAISED["holders"] += 1
            Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        if raise_it:
            with _PILLOW_LOCK:
                _PILLOW_RAISED["holders"] -= 1
                if not _PILLOW_RAISED["holders"]:
                    Image.MAX_IMAGE_PIXELS = _PILLOW_RAISED["saved"]


def _check_limit(max_pixels: Optional[int]) -> Optional[int]:
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise TypeError(f"max_pixels must be an int or None, got {type(max_pixels).__name__}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    return int(max_pixels)


def _describe(image: object) -> str:
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, EncodedImage):
        return image.name
    return f"<{type(image).__name__}>"


def _limit(max_pixels: Optional[int]) -> Optional[int]:
    limit = _check_limit(max_pixels)
    return _default_limit() if limit is None else limit


_RAISE_HINT = "if you trust the file, raise the limit: --max-pixels {n} (command line), max_pixels={n} (Python)"


def _check_pixels(size: Tuple[int, int], limit: Optional[int], what: str) -> None:
    n = size[0] * size[1]
    if limit is not None and n > limit:
        raise ImageTooLargeError(f"{what}: {size[0]}x{size[1]} = {n} pixels exceeds the limit of {limit} pixels "
                                 f"(possible decompression bomb); {_RAISE_HINT.format(n=n)}")


def _pillow_pixels(e: Exception) -> str:
    """The pixel count in Pillow's ``DecompressionBombError`` message ("Image size (N pixels) exceeds..."),
    or "N"."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    return m.group(1) if m else "N"


def _open_path(path: "str | os.PathLike[str] | EncodedImage", limit: Optional[int]) -> Image.Image:
    """Open (header only) and size-check an image file, or the bytes of an :class:`EncodedImage`; only regular
    files are read (:func:`gazecrop._files.open_regular`). The caller closes it (``close()`` or ``with``)."""
    name = _describe(path)
    try:
        f = io.BytesIO(path.data) if isinstance(path, EncodedImage) else open_regular(name)
    except NotRegularFileError as e:
        raise ImageError(str(e)) from e
    try:
        with pillow_limit(limit):  # an explicit limit above Pillow's own: Pillow must not refuse first
            im = Image.open(f)
        im._exclusive_fp = True  # as if Pillow had opened the path: it closes the file after load()/close()
    except Image.DecompressionBombError as e:
        f.close()
        raise ImageTooLargeError(f"{name}: {e}; {_RAISE_HINT.format(n=_pillow_pixels(e))}") from e
    except Image.UnidentifiedImageError as e:
        f.close()
        raise ImageError(f"{name}: not a readable image file (unknown or unsupported format)") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        f.close()
        raise ImageError(f"{name}: cannot open image: {e}") from e
    except BaseException:
        f.close()
        raise
    try:
        _check_pixels(im.size, limit, name)
    except ImageTooLargeError:
        im.close()
        raise
    return im


def _load(im: Image.Image, what: str) -> None:
    try:
        im.load()
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"{what}: {e}; {_RAISE_HINT.format(n=_pillow_pixels(e))}") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as e:
        raise ImageError(f"{what}: cannot decode image (unreadable or truncated file): {e}") from e


def _transpose(im: Image.Image) -> Tuple[Image.Image, bool]:
    """``(exif_transpose(im), True)``, or ``(im, False)`` when the EXIF data is too malformed to apply
    (an otherwise good image stays usable, shown as stored)."""
    try:
        out = ImageOps.exif_transpose(im)
    except (ValueError, TypeError, KeyError, IndexError, OSError, SyntaxError, struct.error):
        return im, False
    return (im, True) if out is None else (out, True)


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_ORIENTATION, 1) or 1)
    except Exception:
        return 1


def open_image(image: ImageInput, *, max_pixels: Optional[int] = None) -> Image.Image:
    """The full-resolution image as displayed: first frame, EXIF orientation applied, original mode kept.

    Args:
        image: a path (str / os.PathLike), encoded bytes (``bytes``, ``bytearray``, ``memoryview``, a binary
            file object, an :class:`EncodedImage`), a ``PIL.Image.Image`` (not modified) or a uint8 (H, W, 3)
            array.
        max_pixels: pixel limit for files (default Pillow's ``Image.MAX_IMAGE_PIXELS``; None there = no limit).
    Returns:
        A loaded ``PIL.Image.Image`` the caller owns, detached from any file (``info`` keeps
        ``icc_profile`` and ``exif``; ``format`` is not kept).
    Raises:
        FileNotFoundError, ImageError, ImageTooLargeError (see the module docstring); TypeError / ValueError
        for arrays of the wrong dtype / shape.
    """
    limit = _limit(max_pixels)
    image = encoded_input(image)
    if isinstance(image, np.ndarray):
        return Image.fromarray(_check_array(image))
    if isinstance(image, Image.Image):
        what = _describe(image)
        _check_pixels(image.size, limit if getattr(image, "fp", None) is not None else None, what)
        _load(image, what)
        return _transpose(image)[0]
    if isinstance(image, _FILE_LIKE):
        what = _describe(image)
        im = _open_path(image, limit)
        try:
            _load(im, what)
            out = _transpose(im)[0]
            return im.copy() if out is im else out
        finally:
            im.close()  # multi-frame files keep their file open after load()
    raise TypeError(f"image must be {_ACCEPTED}, got {type(image).__name__}")


def frame_count(image: ImageInput) -> int:
    """How many frames (animation frames, pages) an image file holds; 1 for a still image, an array or a
    PIL image without frames, and for an MPO (a JPEG whose extra images, such as the large preview many
    phone cameras add, are not frames of the photo). Reads the header (and, for GIF, the frame headers),
    decodes no pixels.

    Raises:
        As :func:`open_image` (with the default pixel limit lifted: only the count is read).
    """
    image = encoded_input(image)
    if isinstance(image, Image.Image):
        return 1 if image.format == "MPO" else int(getattr(image, "n_frames", 1) or 1)
    if not isinstance(image, _FILE_LIKE):
        return 1
    im = _open_path(image, None)
    try:
        return 1 if im.format == "MPO" else int(getattr(im, "n_frames", 1) or 1)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as e:
        raise ImageError(f"{_describe(image)}: cannot read the frames: {e}") from e
    finally:
        im.close()


def _check_array(a: np.ndarray) -> np.ndarray:
    if a.dtype != np.uint8:
        raise TypeError(f"image array must be uint8 (H, W, 3) RGB, got dtype {a.dtype}")
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"image array must be uint8 (H, W, 3) RGB, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _gray16_to_8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a.astype(np.float64) * (255.0 / 65535.0)), 0, 255).astype(np.uint8)


def _composite(rgba: Image.Image, background: Tuple[int, int, int]) -> Image.Image:
    bg = Image.new("RGBA", rgba.size, tuple(background) + (255,))
    return Image.alpha_composite(bg, rgba).convert("RGB")


def to_rgb(im: Image.Image, background: Tuple[int, int, int] = BACKGROUND) -> np.ndarray:
    """Convert a loaded image of any Pillow mode to uint8 (H, W, 3) RGB (rules in the module docstring).

    Raises:
        ImageError: a mode Pillow cannot convert to RGB.
    """
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode in ("La", "RGBa"):  # premultiplied alpha: out = colour + background * (1 - alpha)
        a = np.asarray(im).astype(np.float64)
        colour = np.repeat(a[..., :1], 3, axis=2) if mode == "La" else a[..., :3]
        bg = np.asarray(background, np.float64) * (1.0 - a[..., -1:] / 255.0)
        return np.clip(np.rint(colour + bg), 0, 255).astype(np.uint8)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info) \
            or (mode in ("L", "RGB", "1") and "transparency" in im.info):
        return np.asarray(_composite(im.convert("RGBA"), background), dtype=np.uint8).copy()
    if mode.startswith("I;16"):
        g = _gray16_to_8(np.asarray(im))
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "I":
        a = np.asarray(im).astype(np.int64)
        hi = int(a.max()) if a.size else 0
        lo = int(a.min()) if a.size else 0
        if lo >= 0 and hi <= 255:
            g = a.astype(np.uint8)
        elif lo >= 0 and hi <= 65535:
            g = _gray16_to_8(a)
        else:
            g = np.rint((a - lo) * (255.0 / max(hi - lo, 1))).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if a.size and float(a.max()) <= 1.0:
            a = a * 255.0
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "CMYK":
        icc = im.info.get("icc_profile")
        if icc:
            try:
                from PIL import ImageCms

                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
                if out is not None:
                    return np.asarray(out, dtype=np.uint8).copy()
            except Exception:  # no LittleCMS, or a broken profile: fall back to Pillow's formula
                pass
    try:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (ValueError, OSError) as e:
        raise ImageError(f"cannot convert image mode {mode!r} to RGB: {e}") from e


def _prepare(image: ImageInput, *, input_size: Optional[Callable[[int, int], Tuple[int, int]]] = None,
             max_pixels: Optional[int] = None, background: Tuple[int, int, int] = BACKGROUND) -> Prepared:
    """Any accepted image -> :class:`Prepared` (displayed RGB uint8 pixels + full-resolution displayed size).

    Args:
        image: a path (str / os.PathLike), encoded bytes (bytes-like, a binary file object, an
            :class:`EncodedImage`), a ``PIL.Image.Image`` (never modified) or a uint8 (H, W, 3) array.
        input_size: the model's ``input_size(H, W) -> (h, w)``; when given, a JPEG file is decoded in draft
            mode at the smallest DCT scale that is still at least that size. Other inputs are unaffected.
        max_pixels: pixel limit for files (default Pillow's ``Image.MAX_IMAGE_PIXELS``).
        background: RGB behind transparent pixels.
    Raises:
        FileNotFoundError: no such file. ImageTooLargeError: over the pixel limit. ImageError: unreadable,
        truncated or unconvertible. TypeError / ValueError: an array of the wrong dtype / shape, or an
        unsupported type.
    """
    image = encoded_input(image)
    if isinstance(image, np.ndarray):
        a = _check_array(image)
        return Prepared(rgb=a, size=(int(a.shape[1]), int(a.shape[0])))
    if isinstance(image, _FILE_LIKE):
        what = _describe(image)
        im = _open_path(image, _limit(max_pixels))
        try:
            full = im.size
            orientation = _orientation(im)
            swap = orientation in (5, 6, 7, 8)  # transposes: width and height exchange
            displayed = (full[1], full[0]) if swap else full
            if input_size is not None and isinstance(im, JpegImageFile):  # JPEG and MPO
                h, w = input_size(displayed[1], displayed[0])
                req = (h, w) if swap else (w, h)  # draft works in stored orientation
                im.draft(im.mode, (max(1, int(req[0])), max(1, int(req[1]))))
            _load(im, what)
            # upright (orientation 1, or none readable): exif_transpose would only copy the pixels (to_rgb
            # copies them anyway; a 1024x768 PNG spent 0.35 ms there)
            out, applied = (im, True) if orientation == 1 else _transpose(im)
            if not applied:
                displayed = full
            rgb = to_rgb(out, background)
        finally:
            im.close()
        return Prepared(rgb=rgb, size=(int(displayed[0]), int(displayed[1])))
    if isinstance(image, Image.Image):
        out = open_image(image, max_pixels=max_pixels)
        rgb = to_rgb(out, background)
        return Prepared(rgb=rgb, size=(int(rgb.shape[1]), int(rgb.shape[0])))
    raise TypeError(f"image must be {_ACCEPTED}, got {type(image).__name__}")
