"""Image outputs: which format a file is written in, under which name, with which options, and the one
function that writes it (:func:`write_image`, through :func:`gazecrop._atomic.write_bytes`).

Every image gazecrop writes (crops, heatmaps, thumbnails, batch outputs) goes through :func:`output_name` and
:func:`write_image`, so the same rules hold everywhere:

- **Format precedence**: the format asked for (``--format``), else the extension written literally in the
  name template (``--name '{stem}.png'``), else the input's real format (from its bytes, not its name; a
  format Pillow reads but cannot write gives PNG). A literal extension that contradicts the format asked
  for is an error.
- **The extension always matches the bytes**: ``{ext}`` becomes the chosen format's extension (the input's
  own spelling, e.g. ``.JPG`` or ``.jpeg``, when it already names that format); a template without ``{ext}``
  and without an image extension gets the format's extension appended.
- **Options**: a JPEG saved from a JPEG keeps its quantisation tables, chroma subsampling and progressive
  mode (quality close to the original) unless a quality is given; other lossy outputs use the given quality
  or :data:`DEFAULT_QUALITY`; a lossless WebP stays lossless unless a quality is given. ICC profile, DPI and
  EXIF (orientation reset to 1, since pixels are stored as displayed) are kept where the format stores them;
  the ICC profile is dropped when the pixels change colour space (CMYK or greyscale written as RGB).
  Pixels with alpha written to a format without it are composited over white (as the model sees them).
- **Complete or nothing**: the image is encoded in memory and written atomically; the file's size must equal
  the encoded size before it is renamed into place.

A new kind of output (a thumbnail, a batch record's crop) needs only::

    source = source_info(path)                        # once per input
    name, fmt = output_name(template, {"stem": stem, "size": "320x200"}, requested=fmt_asked, source=source)
    write_image(picture, os.path.join(folder, name), fmt, source=source, quality=quality)

Pillow only (plus :mod:`gazecrop._atomic`).
"""

from __future__ import annotations

import io
import os
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Mapping, Optional, Tuple

from PIL import Image

from ._atomic import write_bytes

if TYPE_CHECKING:  # pragma: no cover
    from ._image import EncodedImage

__all__ = ["FORMATS", "DEFAULT_QUALITY", "SourceInfo", "source_info", "format_of_extension", "extension_for",
           "writable", "check_format", "output_name", "check_template", "save_options", "fit_mode", "encode_image",
           "write_image"]

FORMATS: Dict[str, str] = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF"}
"""Values of the command line's ``--format`` -> Pillow format names (AVIF only where this Pillow can write it:
:func:`check_format`)."""

DEFAULT_QUALITY = 90
"""Quality of lossy outputs (JPEG, WebP, AVIF) when none is given and none can be kept from the input."""

_LOSSY = ("JPEG", "WEBP", "AVIF")
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "GIF": ".gif", "BMP": ".bmp",
               "AVIF": ".avif", "JPEG2000": ".jp2"}


@dataclass(frozen=True)
class SourceInfo:
    """What an output keeps from its input file.

    Attributes:
        format: the input's real Pillow format (``"JPEG"`` for MPO too), None when unknown.
        info: Pillow's ``info`` (``icc_profile``, ``dpi``, ``progressive``...), plus ``exif_obj`` (EXIF bytes
            with orientation 1) and ``lossless`` (WebP).
        quantization: JPEG quantisation tables, or None.
        subsampling: JPEG chroma subsampling (Pillow's code), -1 when unknown.
        extension: the input file's extension as spelled (``".JPG"``), "" for none.
    """

    format: Optional[str] = None
    info: Mapping = field(default_factory=dict)
    quantization: object = None
    subsampling: int = -1
    extension: str = ""


def _webp_lossless(path: "str | EncodedImage") -> bool:
    """True when the WebP file's first image chunk is lossless (``VP8L``), by walking its RIFF chunks."""
    from ._files import open_regular
    from ._image import EncodedImage

    try:
        with (io.BytesIO(path.data) if isinstance(path, EncodedImage) else open_regular(path)) as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
                return False
            for _ in range(64):
                ch = f.read(8)
                if len(ch) < 8:
                    return False
                tag, size = ch[:4], int.from_bytes(ch[4:], "little")
                if tag in (b"VP8L", b"VP8 "):
                    return tag == b"VP8L"
                if tag == b"ANMF":  # animation frame: its image chunk follows a 16-byte frame header
                    f.seek(16, os.SEEK_CUR)
                    continue
                f.seek(size + (size & 1), os.SEEK_CUR)
    except (OSError, ValueError):
        pass
    return False


def source_info(path: "str | EncodedImage") -> SourceInfo:
    """Format, save-relevant info (ICC, EXIF with orientation 1, ...), JPEG quantisation tables and
    subsampling of the image file at ``path`` or in an :class:`~gazecrop.EncodedImage` (header only).

    Raises:
        As :func:`gazecrop._image.open_image` for paths.
    """
    from PIL import JpegImagePlugin

    from ._image import EncodedImage, _open_path

    im = _open_path(path, None)
    try:
        fmt = "JPEG" if isinstance(im, JpegImagePlugin.JpegImageFile) else im.format  # MPO is a JPEG too
        info = dict(im.info)
        if fmt == "WEBP":
            info["lossless"] = _webp_lossless(path)
        quant, sampling = None, -1
        if fmt == "JPEG":
            quant = getattr(im, "quantization", None)
            try:
                sampling = JpegImagePlugin.get_sampling(im)
            except Exception:
                sampling = -1
        try:
            exif = im.getexif()
            if len(exif):
                exif[0x0112] = 1
                info["exif_obj"] = exif.tobytes()
        except Exception:
            pass
    finally:
        im.close()
    name = path.name if isinstance(path, EncodedImage) else path
    return SourceInfo(fmt, info, quant, sampling, os.path.splitext(name)[1])


def format_of_extension(ext: str) -> Optional[str]:
    """Pillow format for a file extension (``".JPG"`` -> ``"JPEG"``), None when Pillow knows none."""
    Image.init()
    return Image.registered_extensions().get(ext.lower()) if ext else None


def writable(fmt: Optional[str]) -> Optional[str]:
    """``fmt`` if Pillow can write it, else None."""
    Image.init()
    return fmt if fmt and fmt.upper() in Image.SAVE else None


def extension_for(fmt: str, like: str = "") -> str:
    """File extension for Pillow format ``fmt``: ``like`` (the input's spelling) when it names that format,
    else the usual one (``.jpg``, ``.png``, ``.webp``, ``.tif``...)."""
    if like and format_of_extension(like) == fmt:
        return like
    if fmt in _EXTENSIONS:
        return _EXTENSIONS[fmt]
    return next((e for e, f in Image.registered_extensions().items() if f == fmt), "." + fmt.lower())


def check_format(name: Optional[str]) -> Optional[str]:
    """The Pillow format for a ``--format`` value (``"avif"`` -> ``"AVIF"``), None for None.

    Raises:
        ValueError: an unknown value, or a format this Pillow cannot write (AVIF needs Pillow >= 11.3 built
        with libavif, as the PyPI wheels are; the message says which Pillow is installed).
    """
    if name is None:
        return None
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; expected one of {sorted(FORMATS)}")
    fmt = FORMATS[name]
    if not writable(fmt):
        import PIL

        raise ValueError(f"--format {name}: this Pillow ({PIL.__version__}) cannot write {fmt} files; install a "
                         f"Pillow that can (AVIF: Pillow >= 11.3 with libavif, as its PyPI wheels are) or choose "
                         f"another format ({', '.join(sorted(k for k in FORMATS if writable(FORMATS[k])))})")
    return fmt


def _uses_ext(template: str) -> bool:
    return any(f == "ext" for _, f, _, _ in string.Formatter().parse(template))


def _literal_format(template: str, fields: Mapping[str, str]) -> Tuple[str, Optional[str], str]:
    name = template.format(**dict(fields, ext=""))
    ext = os.path.splitext(name)[1]
    return name, format_of_extension(ext), ext


def check_template(template: str, requested: Optional[str], fields: Mapping[str, str]) -> None:
    """Check a name template against a requested format (Pillow name or None) with example ``fields``.

    Raises:
        ValueError: the template's literal extension names a format Pillow cannot write, or one other than
        ``requested``.
    """
    if _uses_ext(template):
        return
    _, named, ext = _literal_format(template, fields)
    if named and not writable(named):
        raise ValueError(f"the extension {ext} names {named}, which Pillow can read but not write")
    if named and requested and named != requested:
        raise ValueError(f"the extension {ext} names {named} but the format asked for is {requested}")


def output_name(template: str, fields: Mapping[str, str], *, requested: Optional[str] = None,
                source: Optional[SourceInfo] = None) -> Tuple[str, str]:
    """The file name and the Pillow format of one output (rules in the module docstring).

    Args:
        template: ``str.format`` template; ``{ext}`` is filled here, the other fields from ``fields``.
        fields: e.g. ``{"stem": "photo", "aspect": "16x9"}``.
        requested: Pillow format asked for (``--format``), or None.
        source: the input's :class:`SourceInfo` (its real format and extension), or None.
    Returns:
        ``(name, format)``; ``os.path.splitext(name)[1]`` always names ``format``.
    Raises:
        ValueError: as :func:`check_template`.
    """
    src_fmt = source.format if source else None
    src_fmt = "JPEG" if src_fmt == "MPO" else src_fmt  # an MPO's first frame is a JPEG
    fallback = requested or writable(src_fmt) or "PNG"
    like = source.extension if source else ""
    if _uses_ext(template):
        return template.format(**dict(fields, ext=extension_for(fallback, like))), fallback
    check_template(template, requested, fields)
    name, named, _ = _literal_format(template, fields)
    if named:
        return name, named
    return name + extension_for(fallback, like), fallback


def _family(mode: str) -> str:
    if mode == "CMYK":
        return "cmyk"
    if mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16"):
        return "grey"
    return "rgb"


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in im.info


def fit_mode(image: Image.Image, fmt: str) -> Image.Image:
    """``image`` in a mode ``fmt`` can store: unchanged when it can, else converted (alpha composited over
    white for formats without alpha; CMYK through its ICC profile; 16-bit and float greyscale scaled)."""
    from ._image import to_rgb

    mode = image.mode
    if fmt == "JPEG":
        if mode in ("L", "RGB", "CMYK") and not _has_alpha(image):
            return image
        return Image.fromarray(to_rgb(image))
    if fmt in ("WEBP", "AVIF"):
        if mode in ("RGB", "RGBA") or (fmt == "AVIF" and mode == "L" and not _has_alpha(image)):
            return image
        return image.convert("RGBA") if _has_alpha(image) else Image.fromarray(to_rgb(image))
    if fmt == "PNG":
        if mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B", "I;16L"):
            return image
        if mode == "I":  # Pillow writes 16-bit grey PNGs from I;16 only; wider values are scaled by to_rgb
            lo, hi = image.getextrema()
            if 0 <= lo and hi <= 65535:
                return image.convert("I;16")
        return image.convert("RGBA") if _has_alpha(image) else Image.fromarray(to_rgb(image))
    return image


def save_options(fmt: str, image: Image.Image, source: Optional[SourceInfo] = None,
                 quality: Optional[int] = None, original_mode: Optional[str] = None) -> dict:
    """Pillow ``save`` options for writing ``image`` (already :func:`fit_mode`) as ``fmt`` (module
    docstring). ``original_mode``: the mode before :func:`fit_mode`, to drop an ICC profile that no longer
    fits; ``quality`` (1..100) for lossy formats."""
    info = dict(source.info) if source else {}
    same = source is not None and source.format == fmt
    opts: dict = {}
    if info.get("icc_profile") and _family(original_mode or image.mode) == _family(image.mode):
        opts["icc_profile"] = info["icc_profile"]
    if info.get("dpi"):
        opts["dpi"] = info["dpi"]
    if fmt == "JPEG":
        if quality is not None:
            opts["quality"] = int(quality)
        elif same and source.quantization:
            opts["qtables"] = source.quantization
        else:
            opts["quality"] = DEFAULT_QUALITY
        if same and source.subsampling >= 0:
            opts["subsampling"] = source.subsampling
        if same and (info.get("progressive") or info.get("progression")):
            opts["progressive"] = True
    elif fmt == "WEBP":
        if quality is None and same and info.get("lossless"):
            opts["lossless"] = True
        else:
            opts["quality"] = DEFAULT_QUALITY if quality is None else int(quality)
    elif fmt == "AVIF":
        opts["quality"] = DEFAULT_QUALITY if quality is None else int(quality)
    elif fmt == "TIFF":
        if same and info.get("compression") and info["compression"] != "raw":
            opts["compression"] = info["compression"]
    elif fmt in ("PNG", "GIF"):
        if "transparency" in image.info and image.mode in ("P", "L", "RGB"):
            opts["transparency"] = image.info["transparency"]
    if info.get("exif_obj") is not None and fmt in ("JPEG", "PNG", "WEBP", "AVIF"):
        opts["exif"] = info["exif_obj"]
    return opts


def encode_image(image: Image.Image, fmt: str, opts: dict) -> bytes:
    """The bytes of ``image`` saved as ``fmt`` with ``opts`` (in memory)."""
    buf = io.BytesIO()
    image.save(buf, format=fmt, **opts)
    return buf.getvalue()


def write_image(image: Image.Image, path: "str | os.PathLike[str]", fmt: str, *,
                source: Optional[SourceInfo] = None, quality: Optional[int] = None,
                options: Optional[dict] = None) -> int:
    """Write ``image`` to ``path`` as Pillow format ``fmt``, atomically and verified complete.

    Args:
        image: any PIL image (converted by :func:`fit_mode` when ``fmt`` cannot store its mode).
        path: destination; its extension should come from :func:`output_name`.
        fmt: Pillow format name (``"JPEG"``, ``"PNG"``, ``"WEBP"``...).
        source: the input's :class:`SourceInfo` (JPEG tables, ICC, EXIF kept from it), or None.
        quality: 1..100 for lossy formats, or None (module docstring).
        options: extra Pillow ``save`` options, applied last (e.g. ``{"compress_level": 1}``).
    Returns:
        Bytes written.
    Raises:
        OSError: the write failed (nothing is left at ``path``'s name but its previous content);
        ValueError: Pillow cannot encode the image as ``fmt``.
    """
    fitted = fit_mode(image, fmt)
    opts = save_options(fmt, fitted, source, quality, original_mode=image.mode)
    opts.update(options or {})
    return write_bytes(path, encode_image(fitted, fmt, opts))
