"""``gazecrop`` command line: crop photos to aspect ratios around where people are predicted to look.

    gazecrop photo.jpg --aspect 16:9 --out out/
    gazecrop photos/ "more/*.png" --aspect 1:1 --aspect 9:16 --out crops/ --json --jobs 2
    gazecrop photos/ --size 320x180 --size 64x64 --out thumbs/     # thumbnails of exactly these sizes
    gazecrop photo.jpg --aspect 16:9 --candidates 3 --json          # ranked distinct boxes with scores
    gazecrop - --aspect 1:1 --json < photo.jpg                       # the image on standard input

Placement options (:func:`gazecrop.crops`): ``--size WxH`` crops to W:H and resizes to exactly W x H
(Lanczos; ``--no-upscale`` never enlarges; ``--fit pad`` / ``auto`` letterboxes the whole image instead, on
``--background``), ``--candidates K``, ``--zoom [MIN_SCALE,MASS]``, ``--symmetric``, ``--keep L,T,W,H`` and
``--boost L,T,W,H,WEIGHT`` (repeatable), ``--focal X,Y``.
A *close* choice (another distinct box keeps nearly as much, ``CropResult.close``) is still cropped to the
best box; the JSON record says ``"close": true`` and the text line "close choice". A box clamped to one
pixel by an extreme aspect (``CropResult.clamped``) is written and warned about on stderr.

Like libvips' ``vipsthumbnail``: each input is handled on its own; a failing file is reported on stderr and
skipped, the others complete, and the exit status is 1 if any failed (2 for usage errors). Inputs are files,
folders (their image files and, unless ``--no-recursive``, those of their sub-folders, as ``gazecrop-batch``
reads them), glob patterns (:func:`expand_inputs`) or ``-`` (the image on standard input, named ``stdin`` in
outputs); a folder that cannot be listed, a glob that matches nothing or a folder without images is reported
as a failed input. Outputs are named from a template relative to the input, ``--name
{dir}/{stem}_{aspect}{ext}`` by default (``photo_16x9.jpg``; ``a/photo_16x9.jpg`` for ``photos/a/photo.jpg``
found in the folder ``photos``: ``{dir}`` keeps each input's sub-folder, so ``a/x.jpg`` and ``b/x.jpg`` never
collide; ``--name {stem}{ext}`` keeps the input's name), and ``{dir}/{stem}_heatmap{ext}``, in ``--out``;
they never replace an input file. Formats, extensions and save options follow
:mod:`gazecrop._output` (``--format``, else the extension in ``--name``, else the input's real format; the
extension always matches the bytes; JPEG tables, ICC profile and EXIF kept, orientation reset since the
pixels are stored as displayed); every file is written by :func:`gazecrop._output.write_image` (atomic,
verified complete, see :mod:`gazecrop._atomic`). Animated (or multi-page) inputs give their first frame,
said once per input on stderr and in JSON (``"animated": true``, ``"frames": N``). A thumbnail enlarged
beyond its box (padded: beyond the image) is warned about and its JSON crop says by how much
(``"upscaled": 2.5``).

Faults: ``SIGINT`` / ``SIGTERM`` / ``SIGHUP`` stop the run (no traceback) with exit status 130 / 143 / 129
after removing the outputs being written; a closed standard output (``gazecrop photos/ | head -2``) ends the
run quietly with status 141, a failing one (a full disk) with status 1 and a message; file names that the
terminal's encoding cannot show are printed as their raw bytes; in the tab-separated text lines, a tab,
newline, other control character or backslash in a file name is written as ``\\t``, ``\\n``, ``\\xNN`` or
``\\\\`` so that each result stays one line of the same fields. Images over the pixel limit (default Pillow's,
about 89.5 million pixels) are refused as possible decompression bombs; ``--max-pixels N`` raises it.

Uses the public API only (:func:`gazecrop.predict`, :mod:`gazecrop.crop`, :func:`gazecrop._image.open_image`).
Note: the function ``gazecrop.crop`` shadows the module as a package attribute; import names from the module
with ``from gazecrop.crop import ...``.
"""

from __future__ import annotations

import argparse
import codecs
import errno
import glob
import json
import os
import signal
import stat
import string
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .crop import (DEFAULT_STRATEGY, STRATEGIES, ZOOM_DEFAULT, CropResult, check_regions, check_zoom,
                   format_aspect, parse_aspect)
from . import _atomic
from ._atomic import umask
from ._files import kind_of
from ._image import BACKGROUND, EncodedImage, ImageError, frame_count, open_image, pillow_limit, to_rgb
from ._output import (FORMATS, SourceInfo, check_format, check_template, format_of_extension, output_name,
                      source_info, write_image)
from . import __version__
from .api import FITS, Prediction, check_background, pad_image, predict, resize_crop, thumbnail_size
from .thumbor import focal_filter

DEFAULT_NAME = "{dir}/{stem}_{aspect}{ext}"
"""Output name template (fields ``dir``, ``stem``, ``aspect``, ``size``, ``ext``; ``/`` separates
sub-folders of ``--out`` and empty parts are dropped, so a file at the top of the folder given (or named
directly) gives ``photo_16x9.jpg``)."""

STDIN = "-"
"""The input that names standard input (its outputs are named after the stem ``stdin``)."""


class _Output(NamedTuple):
    """One requested output per input: an aspect ratio (``--aspect``) or a thumbnail size (``--size``)."""

    text: str  # as given on the command line
    aspect: float
    tag: str  # {aspect} and {size} in --name: "16x9", or "320x180" for a size
    size: Optional[Tuple[int, int]]  # thumbnails: exact output size

    def cut(self, full: Image.Image, result: CropResult, upscale: bool = True, fit: str = "crop",
            background="blur") -> Image.Image:
        """The output image for ``result`` of the displayed image ``full``: its box (``--aspect``), or resized
        to :attr:`size` (``--size``; :func:`gazecrop.api.resize_crop`, never enlarged unless ``upscale``), or
        the whole image padded to :attr:`size` when :meth:`pads` (:func:`gazecrop.api.pad_image`)."""
        if self.size is None:
            return full.crop(result.box.to_pil())
        if self.pads(result, fit):
            return pad_image(full, self.size, upscale=upscale, background=background)
        return resize_crop(full, result.box, self.size, upscale=upscale)

    def pads(self, result: CropResult, fit: str) -> bool:
        """True when this output is the padded whole image: a thumbnail with ``fit`` ``"pad"``, or ``"auto"``
        and ``result.pad`` (as :func:`gazecrop.thumbnail`)."""
        return self.size is not None and (fit == "pad" or (fit == "auto" and result.pad))


def add_size_arguments(p: argparse.ArgumentParser) -> None:
    """``--size WxH`` (repeatable), ``--no-upscale``, ``--fit`` and ``--background``, as ``gazecrop`` and
    ``gazecrop-batch`` take them (parsed by :func:`plan_outputs` and :func:`check_fit_arguments`)."""
    p.add_argument("-s", "--size", action="append", metavar="WxH",
                   help="thumbnail of exactly W x H pixels: crop to the aspect W:H, then resize (Lanczos); "
                        "repeatable; with --aspect both apply")
    p.add_argument("--no-upscale", action="store_true",
                   help="never enlarge a thumbnail: a box smaller than --size is written at its own size "
                        "(otherwise an enlarged thumbnail is warned about)")
    p.add_argument("--fit", choices=FITS, default="crop",
                   help="how a --size thumbnail gets its exact size: crop to W:H (default), pad (the whole image "
                        "letterboxed), auto (crop unless another subject of near-equal saliency would be cut out, "
                        "the aspect is the image's within 5%%, or the --keep regions do not fit: then pad)")
    p.add_argument("--background", default="blur", metavar="blur|COLOUR",
                   help="what fills the padding of --fit pad / auto: blur (default: the image blurred and "
                        "darkened) or a colour (black, '#202020')")


def check_fit_arguments(args: argparse.Namespace) -> None:
    """``--fit`` / ``--background`` of :func:`add_size_arguments` checked (``args.background`` becomes
    ``"blur"`` or an ``(r, g, b)`` tuple).

    Raises:
        ValueError: a bad colour, or ``--fit`` / ``--background`` without a ``--size``.
    """
    if args.fit != "crop" and not args.size:
        raise ValueError(f"--fit {args.fit} applies to --size thumbnails; give a --size WxH")
    if args.background != "blur" and args.fit == "crop":
        raise ValueError("--background fills the padding of --fit pad or --fit auto")
    try:
        args.background = check_background(args.background)
    except ValueError as e:
        raise ValueError(f"--background {args.background!r}: {e}") from None


def _numbers(text: str, n: int, what: str, example: str, ints: int) -> list:
    """``n`` comma-separated numbers, the first ``ints`` of them ints."""
    parts = [v.strip() for v in str(text).split(",")]
    try:
        if len(parts) != n:
            raise ValueError(f"{len(parts)} numbers")
        return [int(v) for v in parts[:ints]] + [float(v) for v in parts[ints:]]
    except ValueError as e:
        raise ValueError(f"{what} {text!r}: expected {example} ({e})") from None


def parse_regions(keep: Sequence[str] = (), boost: Sequence[str] = (), focal: Optional[str] = None) -> dict:
    """The user's regions from their text forms (``--keep L,T,W,H``, ``--boost L,T,W,H,WEIGHT``, ``--focal
    X,Y``, and ``gazecrop-batch``'s manifest columns, several regions of a cell separated by ``;``), checked
    by :func:`gazecrop.crop.check_regions`: ``{"keep": ..., "boost": ..., "focal": ...}``.

    Raises:
        ValueError: text that does not parse or a bad region (the message names the option and the text).
    """
    def items(values: Sequence[str]) -> List[str]:
        return [v for text in values for v in str(text).split(";") if v.strip()]

    kept = [_numbers(v, 4, "--keep", "L,T,W,H in pixels such as 10,20,300,200", 4) for v in items(keep)]
    boosted = [_numbers(v, 5, "--boost", "L,T,W,H,WEIGHT such as 10,20,300,200,1.5", 4) for v in items(boost)]
    point = None if focal is None or not str(focal).strip() else \
        _numbers(focal, 2, "--focal", "X,Y in pixels such as 320,200", 0)
    try:
        return check_regions(kept, [(b[:4], b[4]) for b in boosted], point)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{'--focal' if 'focal' in str(e) else '--boost' if 'boost' in str(e) else '--keep'}: "
                         f"{e}") from None


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """``-r/--recursive`` / ``--no-recursive`` and ``--max-pixels N``, as ``gazecrop`` and ``gazecrop-batch``
    take them. Both commands read sub-folders of a folder input by default: a folder stands for every image
    under it (a back-fill must not silently miss the photos filed in sub-folders), and outputs keep each
    input's sub-folder, so files of the same name in two sub-folders never collide."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("-r", "--recursive", dest="recursive", action="store_true", default=True,
                   help="read the sub-folders of folder inputs too (the default); outputs keep each input's "
                        "sub-folder")
    g.add_argument("--no-recursive", dest="recursive", action="store_false",
                   help="take only the image files directly in folder inputs")
    p.add_argument("--max-pixels", type=_pixels_arg, default=None, metavar="N",
                   help="largest image accepted, in pixels (default Pillow's limit, about 89.5 million); larger "
                        "files are refused as possible decompression bombs")


def plan_outputs(aspects: Optional[Sequence[str]], sizes: Optional[Sequence[str]] = ()) -> List[_Output]:
    """The outputs per input asked for by ``--aspect`` (``"16:9"``) and ``--size`` (``"320x180"``) options,
    aspects first; no aspect and no size means ``1:1``. ``gazecrop-batch`` parses its options here too.

    Raises:
        ValueError: an aspect or size that cannot be parsed (the message names the option).
    """
    outputs = []
    for a in aspects or ([] if sizes else ["1:1"]):
        try:
            outputs.append(_Output(a, parse_aspect(a), format_aspect(a), None))
        except (ValueError, TypeError) as e:
            raise ValueError(f"--aspect {a!r}: {e}") from None
    for text in sizes or []:
        try:
            w, h = (int(v) for v in str(text).lower().split("x"))
            size = thumbnail_size((w, h))
        except (ValueError, TypeError) as e:
            raise ValueError(f"--size {text!r}: expected WxH in pixels such as 320x180 ({e})") from None
        outputs.append(_Output(str(text), size[0] / size[1], f"{size[0]}x{size[1]}", size))
    return outputs

HEATMAP_NAME = "{dir}/{stem}_heatmap{ext}"
"""Heatmap file name in ``--out``, in the input's sub-folder (JPEG unless ``--format`` says otherwise)."""

HEATMAP_FORMAT, HEATMAP_QUALITY, HEATMAP_SIDE = "JPEG", 85, 1024
"""Heatmap defaults: JPEG at quality 85, at most 1024 pixels on the long side (``--heatmap-size``).
Measured by ``python benchmarks/test_heatmap_speed.py`` (AMD EPYC, 2 shared cores at load average 8.6): a
1024x768 heatmap costs 12.6 ms of CPU time (54 ms wall, fsync and waiting for a core included), against
327 ms of CPU (994 ms wall) for the former float64 overlay saved as a PNG at zlib level 6."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_PIPE = 128 + 13  # a closed standard output, as a process killed by SIGPIPE reports it

_PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".png", ".apng", ".webp", ".gif", ".tif",
                     ".tiff", ".bmp", ".dib", ".avif", ".avifs", ".jp2", ".j2k", ".jpc", ".jpf", ".jpx",
                     ".j2c", ".qoi", ".tga", ".ppm", ".pgm", ".pbm", ".pnm", ".psd", ".pcx", ".sgi")


@lru_cache(maxsize=1)
def image_extensions() -> Tuple[str, ...]:
    """File extensions picked up from folders (lower case): photo formats this Pillow opens by itself (no
    external program), i.e. those of the list above whose decoder is built in (AVIF and JPEG 2000 only when
    Pillow was built with them)."""
    from PIL import features

    Image.init()
    known = Image.registered_extensions()
    optional = {"AVIF": "avif", "JPEG2000": "jpg_2000", "WEBP": "webp"}
    out = []
    for ext in _PHOTO_EXTENSIONS:
        fmt = known.get(ext, "JPEG" if ext == ".mpo" else None)
        if fmt is None or (fmt in optional and not features.check(optional[fmt])):
            continue
        out.append(ext)
    return tuple(out)


EPILOG = """\
output, one line per input and aspect (tab-separated; --json gives the same as one JSON record per input):
  INPUT  ASPECT  left= top= width= height=  point=(x, y)  score=S  [crop optional: REASON]  [-> OUTPUT]
  left, top, width, height  the crop box in pixels of the image as displayed (EXIF orientation applied)
  point      the salient point: the pixel where the predicted density of where people look is highest
  score      the share of the predicted looks (saliency mass, 0 to 1) that falls inside the box
  crop optional  the whole image would do as well: the aspect is within 5% of the image's own, or the box
             keeps at least 98% of what people look at (JSON "keep_whole": true; the crop is still written
             with --out)
  close choice  another distinct box keeps at least 95% as much: two subjects of near-equal saliency that
             one box cannot hold; the crop is still written for the best box (JSON "close": true;
             --candidates K lists the alternatives, as "alternatives=" in the text)
  kept       with --keep, the share of the regions' area inside the box when it cannot hold them all
  padded     --fit pad (or auto, when the crop is close, the aspect is the image's or --keep does not fit):
             the thumbnail is the whole image letterboxed (JSON "fit": "pad")
  a box whose side rounds below one pixel (an aspect such as 1e-9) is clamped to one pixel, written, flagged
  ("clamped": true) and warned about on stderr; so is a thumbnail enlarged beyond its box (padded: beyond
  the image; JSON "upscaled": the factor), and an animated or multi-page input, of which only the first
  frame is used (JSON "animated": true, "frames": N)
  a tab, newline, other control character or backslash in a file name is written as \\t, \\n, \\xNN, \\\\

exit status: 0 all done, 1 some inputs failed (each reported on stderr, the others done), 2 usage error or
no model, 130/143/129 stopped by SIGINT/SIGTERM/SIGHUP (outputs being written are removed), 141 standard
output closed.
"""


class _Failure(Exception):
    pass


class _Stop(BaseException):
    """A stopping signal, raised in the main thread."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _OutputClosed(Exception):
    """Standard output is closed (EPIPE) or failing (ENOSPC, EIO): the run cannot report results."""


def _pixels_arg(text: str, also: str = "") -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels{also}, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _size_arg(text: str) -> Optional[int]:
    return None if text == "full" else _pixels_arg(text, " or 'full'")


def _quality_arg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer 1..100, got {text!r}") from None
    if not 1 <= v <= 100:
        raise argparse.ArgumentTypeError(f"must be in 1..100, got {v}")
    return v


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="gazecrop", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Crop photos to any aspect ratio around where people are predicted to look "
                    "(a saliency map learned from eye-tracking data).")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders, glob patterns, or - for an image on standard input")
    p.add_argument("--version", action="version", version=f"gazecrop {__version__}")
    p.add_argument("-a", "--aspect", action="append", metavar="W:H",
                   help="aspect ratio width:height (16:9) or a number (1.78); repeatable; default 1:1")
    add_size_arguments(p)
    p.add_argument("-o", "--out", metavar="DIR", help="write cropped images (and heatmaps) to this folder")
    p.add_argument("--name", default=DEFAULT_NAME, metavar="TEMPLATE",
                   help="output file name in --out: {stem} (input name without extension; stdin for -), "
                        "{aspect} (16x9; 320x180 for --size 320x180), {size} (the same: 320x180 for a thumbnail, "
                        "the aspect for --aspect), {ext} (the output format's extension with the dot), {dir} (the "
                        "input's sub-folder in the folder given, empty for files named directly); / makes "
                        "sub-folders, empty parts are dropped; default %(default)s")
    p.add_argument("--format", choices=sorted(FORMATS), default=None,
                   help="format of the outputs (default: the extension written in --name, else the input's "
                        "real format); the file extension always matches; avif where Pillow can write it")
    p.add_argument("--quality", type=_quality_arg, default=None, metavar="Q",
                   help="quality 1..100 of JPEG / WebP / AVIF outputs (default: a JPEG input's own "
                        "quantisation tables, else 90; heatmaps 85)")
    p.add_argument("--json", action="store_true", help="print one JSON record per input instead of text")
    p.add_argument("--heatmap", action="store_true", help="also write {stem}_heatmap.jpg (or the --format): "
                   "the saliency map over the photo with the crop boxes (needs --out)")
    p.add_argument("--heatmap-size", type=_size_arg, default=HEATMAP_SIDE, metavar="PIXELS",
                   help="long side of heatmaps in pixels, or 'full' for the photo's own size (default "
                        "%(default)s)")
    p.add_argument("--model", metavar="PATH", help="a .gzw model file (default: the bundled model)")
    p.add_argument("--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY,
                   help=f"how boxes are placed (default {DEFAULT_STRATEGY})")
    p.add_argument("--candidates", type=int, default=1, metavar="K",
                   help="list up to K distinct boxes per aspect, ranked with their scores (JSON 'candidates'; "
                        "the text output shows the alternatives); the crop written is always the first")
    p.add_argument("--zoom", nargs="?", const="", metavar="MIN_SCALE,MASS",
                   help="a tighter box: the smallest of the aspect, down to MIN_SCALE of the largest box's side, "
                        f"that keeps MASS of the saliency mass (default {ZOOM_DEFAULT.min_scale:g},"
                        f"{ZOOM_DEFAULT.mass:g}); off unless given")
    p.add_argument("--symmetric", action="store_true",
                   help="flip-averaged saliency (the photo and its mirror image, twice the model's time): a "
                        "mirrored photo gets exactly the mirrored crop")
    p.add_argument("--keep", action="append", default=[], metavar="L,T,W,H",
                   help="a region (pixels of the image as displayed) every crop must contain: all of them when a "
                        "box of the aspect can, else as much of their area as it can (JSON 'kept' < 1); "
                        "repeatable")
    p.add_argument("--boost", action="append", default=[], metavar="L,T,W,H,WEIGHT",
                   help="saliency added over a region: WEIGHT times the whole map's mass spread evenly over it "
                        "(smartcrop.js' boost); repeatable")
    p.add_argument("--focal", metavar="X,Y",
                   help="a manual focal point replacing the model's map (the model does not run): crops are "
                        "centred on it as far as the image allows")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="images processed in parallel")
    add_input_arguments(p)
    prog = p.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="show a progress bar on stderr (default: only when stderr is a terminal)")
    prog.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args(argv)
    try:
        args.outputs = plan_outputs(args.aspect, args.size)
    except ValueError as e:
        p.error(str(e))
    if args.candidates < 1:
        p.error("--candidates must be >= 1")
    try:
        args.zoom = None if args.zoom is None else check_zoom(
            True if args.zoom == "" else tuple(float(v) for v in args.zoom.split(",")))
    except (ValueError, TypeError) as e:
        p.error(f"--zoom {args.zoom!r}: expected MIN_SCALE,MASS such as 0.5,0.9 ({e})")
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    try:
        args.regions = parse_regions(args.keep, args.boost, args.focal)
        check_fit_arguments(args)
    except ValueError as e:
        p.error(str(e))
    if args.out == "":  # --out "$DEST" with DEST unset: not a run that silently writes nothing
        p.error("--out needs a folder name, got an empty string")
    if args.heatmap and not args.out:
        p.error("--heatmap needs --out DIR")
    if args.inputs.count(STDIN) > 1:
        p.error("standard input (-) can be given once")
    try:
        args.pil_format = check_format(args.format)
        check_name(args.name, [o.tag for o in args.outputs], args.pil_format, sizes=True, dirs=True)
    except ValueError as e:
        p.error(str(e))
    tags = [o.tag for o in args.outputs]
    if args.out and len(set(tags)) < len(tags):  # (without --out an aspect may be listed twice)
        p.error(f"two outputs would have the same name ({', '.join(sorted({t for t in tags if tags.count(t) > 1}))}): "
                "give each --aspect / --size once")
    return args


def check_name(template: str, aspects: Sequence[str], requested: Optional[str] = None, *,
               sizes: bool = False, dirs: bool = False) -> None:
    """Check an output name template (``--name``) for crops of ``aspects`` written as Pillow format
    ``requested`` (None: chosen per input); ``gazecrop-batch`` checks its ``--name`` here too. ``sizes``:
    the template may use ``{size}`` (``gazecrop --size``), which then also tells several outputs apart.
    ``dirs``: the template may use ``{dir}`` and ``/`` (a relative path inside the output folder,
    :func:`output_path`); otherwise it must give a plain file name.

    Raises:
        ValueError: unknown fields or conversions, a result that is not a plain file name (with ``dirs``: not a
        relative path without ``.`` or ``..`` parts ending in a file name), several aspects without
        ``{aspect}`` (or ``{size}``), or an extension that contradicts ``requested``
        (:func:`_output.check_template`).
    """
    known = ("stem", "aspect", "size", "ext") if sizes else ("stem", "aspect", "ext")
    known += ("dir",) if dirs else ()
    sample = {"stem": "x", "aspect": "1x1", "size": "1x1"} if sizes else {"stem": "x", "aspect": "1x1"}
    sample.update({"dir": "d"} if dirs else {})
    try:
        fields = [(f, c) for _, f, _, c in string.Formatter().parse(template) if f is not None]
        if any(f not in known or c for f, c in fields):  # no {stem.attr}, {0}, {stem!r}
            raise ValueError(f"fields are {', '.join('{' + k + '}' for k in known)}, without conversions")
        name = template.format(**sample, ext=".jpg")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"--name {template!r}: unknown field or bad template ({e}); "
                         f"use {', '.join('{' + k + '}' for k in known)}") from None
    if dirs:
        parts = name.split("/")
        if template.startswith("/") or not parts[-1] or any(q in (".", "..") for q in parts) \
                or (os.altsep and os.altsep in name):
            raise ValueError(f"--name {template!r} must give a file name or a relative path inside --out")
    elif not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise ValueError(f"--name {template!r} must give a plain file name")
    if len(aspects) > 1 and "{aspect}" not in template and not (sizes and "{size}" in template):
        raise ValueError("--name needs {aspect} " + ("or {size} " if sizes else "") + "when several "
                         + ("--aspect / --size " if sizes else "--aspect ") + "are given")
    try:
        check_template(template, requested, sample)
    except ValueError as e:
        raise ValueError(f"--name {template!r}: {e}") from None


# ------------------------------------------------------------------------------------------- inputs

class Found(NamedTuple):
    """One entry of :func:`expand_inputs`: a file to process, or (``error`` set) an input that gave none.
    ``dir``: the file's sub-folder in the folder input it was found in (``/``-separated, "" at its top and for
    files named directly); ``{dir}`` in ``--name``."""

    path: str
    error: Optional[str] = None
    dir: str = ""


def output_path(folder: str, name: str) -> str:
    """``name`` (an :func:`~gazecrop._output.output_name`, ``/`` between sub-folders, empty parts dropped)
    as a path inside ``folder``."""
    return os.path.join(folder, *[q for q in name.split("/") if q])


def _os_reason(e: OSError) -> str:
    return e.strerror or str(e)


def _unlistable(pattern: str) -> str:
    """`` (cannot list folder F: REASON)`` when the folder before the pattern's first wildcard cannot be
    listed (so the pattern could not match anything), else ""."""
    parts = pattern.split(os.sep)
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    folder = os.sep.join(fixed) or (os.sep if pattern.startswith(os.sep) else os.curdir)
    try:
        with os.scandir(folder):
            return ""
    except OSError as e:
        return f" (cannot list folder {folder}: {_os_reason(e)})"


def expand_inputs(inputs: Sequence[str], *, recursive: bool = True, stdin: bool = False) -> List[Found]:
    """Files from files, folders and glob patterns, in order, without duplicates (same real path).

    - A folder gives its image files (:func:`image_extensions`, case-insensitive, hidden files skipped),
      sorted by name, and with ``recursive`` (the default) those of its sub-folders, each with its sub-folder
      in :attr:`Found.dir`. Entries with an image extension that cannot be read (a dangling symbolic link, a
      loop, a FIFO) are given too, so that they are reported.
    - With ``stdin``, ``-`` is passed on as it is (:data:`STDIN`, standard input).
    - A glob pattern (when no file has that exact name) gives its matches (folders among them expanded).
    - Anything else is passed on as a file, even when missing, so that the caller reports the operating
      system's reason when it opens it.

    Returns:
        :class:`Found` entries. An entry with ``error`` set reports an input that gave no file: a folder (or,
        with ``recursive``, a sub-folder) that cannot be listed (the operating system's reason), a pattern
        that matches nothing, a folder without image files. Never raises for file-system errors.
    """
    out: List[Found] = []
    seen = set()

    def add(path: str, sub: str = "") -> None:
        key = path if stdin and path == STDIN else os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.append(Found(path, None, sub))

    def folder(item: str) -> None:
        exts = image_extensions()
        errors: List[Found] = []
        found: List[Tuple[str, str]] = []  # (path, its sub-folder in item)
        subfolders = False
        if recursive:
            def onerror(e: OSError) -> None:
                errors.append(Found(e.filename or item, f"{e.filename or item}: cannot list folder: "
                                                        f"{_os_reason(e)}"))

            for root, dirs, files in os.walk(item, onerror=onerror):
                dirs.sort()
                sub = os.path.relpath(root, item)
                sub = "" if sub == os.curdir else sub.replace(os.sep, "/")
                found += [(os.path.join(root, f), sub) for f in sorted(files)]
        else:
            try:
                with os.scandir(item) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                out.append(Found(item, f"{item}: cannot list folder: {_os_reason(e)}"))
                return
            for e in entries:
                try:
                    subfolders = subfolders or e.is_dir()
                except OSError:
                    pass
            found = [(os.path.join(item, e.name), "") for e in entries]
        n = len(out)
        for f, sub in found:
            base = os.path.basename(f)
            if not base.startswith(".") and os.path.splitext(base)[1].lower() in exts and not os.path.isdir(f):
                add(f, sub)  # a dangling link, a loop or a FIFO too: processing reports the system's reason
        out.extend(errors)
        if len(out) == n and not errors:
            hint = " (it has sub-folders: drop --no-recursive to read them)" if subfolders else ""
            out.append(Found(item, f"{item}: no image files in folder{hint}"))

    for item in inputs:
        if stdin and item == STDIN:
            add(item)
        elif os.path.isdir(item):
            folder(item)
        elif not os.path.lexists(item) and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                out.append(Found(item, f"{item}: no file matches this pattern{_unlistable(item)}"))
            for f in matches:
                if os.path.isdir(f):
                    folder(f)
                else:
                    add(f)
        else:
            add(item)
    return out


# ------------------------------------------------------------------------------------------- heatmaps

_COLOURS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64)
_BOX_COLOURS = [(0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 255, 0), (255, 128, 0)]


def _luts() -> Tuple[np.ndarray, np.ndarray]:
    v = np.arange(256) / 255.0
    t = v * (len(_COLOURS) - 1)
    i = np.minimum(t.astype(int), len(_COLOURS) - 2)
    f = (t - i)[:, None]
    colour = np.clip(np.rint(_COLOURS[i] * (1 - f) + _COLOURS[i + 1] * f), 0, 255).astype(np.uint8)
    alpha = np.clip(np.rint(255 * (0.15 + 0.6 * np.sqrt(v))), 0, 255).astype(np.uint8)
    return colour, alpha


_COLOUR_LUT, _ALPHA_LUT = _luts()


def heatmap_overlay(photo: Image.Image, prediction: Prediction, results: Sequence[CropResult] = (),
                    max_side: Optional[int] = HEATMAP_SIDE) -> Image.Image:
    """An RGB picture of the saliency map over the photo (inferno-like colours, opacity growing with the
    density) with each crop box outlined and the salient point circled.

    Args:
        photo: the displayed image (any mode; transparent pixels are composited over
            :data:`gazecrop._image.BACKGROUND`, as the model and the crops written without alpha see them).
        prediction: its :class:`gazecrop.Prediction`.
        results: crops to outline.
        max_side: long side of the picture in pixels (never larger than the photo); None for full size.
    Returns:
        RGB ``PIL.Image.Image``. The density relative to its maximum, as 8-bit levels on the model grid, is
        upsampled by Pillow's bilinear filter (cell centres at tile centres, as
        :func:`gazecrop.crop.grid_to_image`), then coloured and blended by lookup tables, all in Pillow
        (a few ms for 1024x768).
    """
    from PIL import ImageDraw

    W, H = prediction.size
    s = 1.0 if max_side is None else min(1.0, max_side / max(W, H))
    w, h = max(1, round(W * s)), max(1, round(H * s))
    base = photo if photo.mode == "RGB" else Image.fromarray(to_rgb(photo, BACKGROUND))
    base = base.resize((w, h), Image.BILINEAR) if base.size != (w, h) else base.copy()  # ours to paint on
    grid = np.asarray(prediction.log_density, np.float64)
    v = np.clip(np.rint(255.0 * np.exp(grid - grid.max())), 0, 255).astype(np.uint8)  # 8-bit levels
    level = Image.fromarray(v, "L").resize((w, h), Image.BILINEAR)
    colour = Image.merge("RGB", [level.point(_COLOUR_LUT[:, c].tolist()) for c in range(3)])
    out = base
    out.paste(colour, None, level.point(_ALPHA_LUT.tolist()))
    draw = ImageDraw.Draw(out)
    for k, r in enumerate(results):
        b = r.box  # a box under 2 px on the picture is drawn as a line (Pillow needs x1 >= x0)
        x0, y0 = b.left * s, b.top * s
        draw.rectangle([x0, y0, max(x0, b.right * s - 1), max(y0, b.bottom * s - 1)],
                       outline=_BOX_COLOURS[k % len(_BOX_COLOURS)], width=max(1, round(2 * max(w, h) / 512)))
    if results:
        px, py = results[0].salient_point
        rr = max(2, round(max(w, h) / 128))
        draw.ellipse([px * s - rr, py * s - rr, px * s + rr, py * s + rr], outline=(255, 255, 255), width=2)
    return out


# ------------------------------------------------------------------------------------------- one input

def _check_input(path: str) -> None:
    """The operating system's reason when ``path`` cannot be an input (missing, loop, permission, FIFO...)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise _Failure(f"{path}: {_os_reason(e)}") from e
    if stat.S_ISDIR(st.st_mode):
        raise _Failure(f"{path}: is a folder")
    if not stat.S_ISREG(st.st_mode):
        raise _Failure(f"{path}: not a regular file ({kind_of(st.st_mode)})")


def predict_input(image, model, source: Optional[SourceInfo] = None, *, symmetric: bool = False,
                  max_pixels: Optional[int] = None, focal: Optional[Tuple[float, float]] = None
                  ) -> Tuple[Prediction, Optional[Image.Image]]:
    """One model run on an input file (a path or an :class:`~gazecrop.EncodedImage`) and, when outputs are
    written (``source`` = its :func:`~gazecrop._output.source_info`), its full-resolution displayed image,
    decoded once: a JPEG is decoded in draft mode for the model and again in full for the outputs, any other
    format once for both. ``gazecrop`` and ``gazecrop-batch`` crop through here. ``symmetric``: flip-averaged
    inference; ``max_pixels``: the pixel limit; ``focal``: a manual focal point, no model run (all as
    :func:`gazecrop.predict`).

    Returns:
        ``(prediction, full image or None)``.
    Raises:
        As :func:`gazecrop.predict`; _Failure when the two decodes disagree on the size.
    """
    full = None
    if source is not None and source.format != "JPEG":
        full = open_image(image, max_pixels=max_pixels)  # decode once, reuse for the model and the outputs
        pred = predict(full, model=model, symmetric=symmetric, focal=focal)
    else:  # JPEG: draft-mode decode for the model
        pred = predict(image, model=model, symmetric=symmetric, max_pixels=max_pixels, focal=focal)
    if source is not None:
        if full is None:
            full = open_image(image, max_pixels=max_pixels)
        if full.size != pred.size:
            raise _Failure(f"decoded size {full.size} differs from {pred.size}")
    return pred, full


class _Run:
    def __init__(self, args: argparse.Namespace, model, inputs: List[str], dirs: Optional[dict] = None,
                 stdin: Optional[EncodedImage] = None) -> None:
        self.args = args
        self.model = model
        self.dirs = dirs or {}  # input -> its sub-folder ({dir})
        self.stdin = stdin  # the bytes of standard input, when - is an input
        self.stop = threading.Event()
        self.inputs_real = {os.path.realpath(p) for p in inputs if p != STDIN}
        self.owner: dict = {}  # output real path -> the input that writes it (the first in input order)
        self.lock = threading.Lock()
        if args.out:  # plan names up front so that clashes fail the same input whatever the thread timing
            for p in inputs:  # from the real formats (a header read): PNG bytes named .jpg give a .png
                ext = os.path.splitext(p)[1]
                try:
                    real = source_info(self._image(p)).format
                except (OSError, ValueError):  # reported when the input is processed
                    real = format_of_extension(ext)
                for dst, _ in self._outputs(p, SourceInfo(format=real, extension=ext)):
                    self.owner.setdefault(os.path.realpath(dst), p)

    def _image(self, path: str):
        """What to decode for an input: its path, or the bytes of standard input for ``-``."""
        return self.stdin if path == STDIN and self.stdin is not None else path

    def _outputs(self, path: str, source: SourceInfo) -> List[Tuple[str, str]]:
        """(destination, Pillow format) of each output of ``path``: one per aspect and size, then the
        heatmap."""
        args = self.args
        stem = "stdin" if path == STDIN else os.path.splitext(os.path.basename(path))[0]
        fields = {"stem": stem, "dir": self.dirs.get(path, "")}
        outs = [output_name(args.name, {**fields, "aspect": o.tag, "size": o.tag}, requested=args.pil_format,
                            source=source) for o in args.outputs]
        if args.heatmap:
            outs.append(output_name(HEATMAP_NAME, fields, requested=args.pil_format or HEATMAP_FORMAT))
        return [(output_path(args.out, n), f) for n, f in outs]

    def _claim(self, path: str, source: str) -> None:
        if self.stop.is_set():
            raise _Failure("stopped")
        real = os.path.realpath(path)
        with self.lock:
            if real in self.inputs_real or (source != STDIN and os.path.exists(path)
                                            and os.path.samefile(path, source)):
                raise _Failure(f"refusing to overwrite input file {path}")
            first = self.owner.setdefault(real, source)
            if first != source:
                raise _Failure(f"output {path} is also the output of {first}")

    @staticmethod
    def _write(dst: str, image: Image.Image, fmt: str, **kw) -> None:
        try:
            os.makedirs(os.path.dirname(dst), exist_ok=True)  # a sub-folder of --out ({dir}, / in --name)
            write_image(image, dst, fmt, **kw)
        except (OSError, ValueError) as e:  # the system's (or the encoder's) reason, naming the output
            raise _Failure(f"cannot write {dst}: {getattr(e, 'strerror', None) or e}") from e

    def process(self, path: str) -> dict:
        args = self.args
        record: dict = {"input": path}
        image = self._image(path)
        if image is path:
            _check_input(path)
        source = source_info(image) if args.out else None
        regions = args.regions
        pred, full = predict_input(image, self.model, source, symmetric=args.symmetric, max_pixels=args.max_pixels,
                                   focal=regions["focal"])
        results = pred.crops([o.aspect for o in args.outputs], strategy=args.strategy, candidates=args.candidates,
                             zoom=args.zoom, keep=regions["keep"], boost=regions["boost"])
        try:
            frames = frame_count(image)
        except (OSError, ValueError):  # decoded above; a frame count that cannot be read is not an error
            frames = 1
        record.update(width=pred.size[0], height=pred.size[1], frames=frames, animated=frames > 1, crops=[])
        if pred.head_map is not None:  # the model's head boxes, which the crops keep their edges out of
            record["heads"] = [list(h) for h in pred.heads]
        written = []
        if args.out:
            outs = self._outputs(path, source)
            for dst, _ in outs:  # every name first: an input that clashes writes none of its outputs
                self._claim(dst, path)
            for (dst, fmt), r, o in zip(outs, results, args.outputs):
                self._write(dst, o.cut(full, r, not args.no_upscale, args.fit, args.background), fmt,
                            source=source, quality=args.quality)
                written.append(dst)
            if args.heatmap:
                dst, fmt = outs[-1]
                self._write(dst, heatmap_overlay(full, pred, results, args.heatmap_size), fmt,
                            quality=args.quality or HEATMAP_QUALITY,
                            options={"compress_level": 1} if fmt == "PNG" else None)
                written.append(dst)
        for spec, r, o in zip(args.outputs, results, written + [None] * len(results)):
            d = r.to_dict()
            d["aspect_text"] = spec.text
            if spec.size is not None:
                d["size"] = list(spec.size)
                pads = spec.pads(r, args.fit)
                d["fit"] = "pad" if pads else "crop"
                if pads:  # the whole image fitted inside the size
                    factor = min(spec.size[0] / pred.size[0], spec.size[1] / pred.size[1])
                else:  # the box resized to the size
                    factor = max(spec.size[0] / r.box.width, spec.size[1] / r.box.height)
                if factor > 1 and not args.no_upscale:  # the thumbnail is enlarged
                    d["upscaled"] = round(factor, 3)
            d["focal"] = focal_filter(r.box)  # serve this box from thumbor: /unsafe/WxH/filters:focal(...)/img
            if o is not None:
                d["output"] = o
            record["crops"].append(d)
        if args.heatmap:
            record["heatmap"] = written[-1]
        return record


_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_field(text: str) -> str:
    """``text`` as one field of a tab-separated line: backslash, tab, newline and carriage return written as
    ``\\\\``, ``\\t``, ``\\n``, ``\\r``, other control characters as ``\\xNN`` (as ``ls`` and
    ``find -printf`` escape them); other text unchanged."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_ESCAPES.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch)
                   for ch in text)


def _text(record: dict) -> str:
    lines = []
    for c in record["crops"]:
        b = c["box"]
        line = (f"{escape_field(record['input'])}\t{c['aspect_text']}\tleft={b[0]} top={b[1]} width={b[2]} "
                f"height={b[3]}\tpoint=({c['salient_point'][0]}, {c['salient_point'][1]})\tscore={c['score']:.3f}")
        if c["keep_whole"]:
            line += f"\tcrop optional: {c['advice']}"
        if c.get("close"):
            line += "\tclose choice: another box keeps nearly as much (cropped to this one; see --candidates)"
        if c.get("kept") is not None and c["kept"] < 1:
            line += f"\tkept {c['kept']:.0%} of the --keep regions (no box of this aspect holds them all)"
        if c.get("fit") == "pad":
            line += "\tpadded: the whole image"
        if len(c.get("candidates", ())) > 1:
            line += "\talternatives=" + "; ".join(f"left={a['box'][0]} top={a['box'][1]} score={a['score']:.3f}"
                                                 for a in c["candidates"][1:])
        if "output" in c:
            line += f"\t-> {escape_field(c['output'])}"
        lines.append(line)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- terminal

def _raw_names(e: UnicodeError):
    """Codec error handler: undecodable file-name bytes (surrogate escapes) are written back as the raw bytes
    (as ``ls`` does), other characters the encoding lacks as ``\\uXXXX``."""
    if not isinstance(e, UnicodeEncodeError):
        raise e
    out = bytearray()
    for ch in e.object[e.start:e.end]:
        c = ord(ch)
        out += bytes([c - 0xDC00]) if 0xDC80 <= c <= 0xDCFF else ch.encode("ascii", "backslashreplace")
    return bytes(out), e.end


codecs.register_error("gazecrop.rawnames", _raw_names)


def _write(stream, text: str) -> None:
    """Write ``text`` to a text stream whatever its encoding (``gazecrop.rawnames``) and flush it.
    Raises OSError(EBADF) for a stream that Python could not open (None: its descriptor was closed)."""
    if stream is None:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    enc = getattr(stream, "encoding", None) or "utf-8"
    buf = getattr(stream, "buffer", None)
    try:
        text.encode(enc)
        ok = True
    except UnicodeEncodeError:
        ok = False
    if ok or buf is None:
        stream.write(text if ok else text.encode(enc, "gazecrop.rawnames").decode(enc, "replace"))
        stream.flush()
    else:
        stream.flush()
        buf.write(text.encode(enc, "gazecrop.rawnames"))
        buf.flush()


class _Terminal:
    """Result lines on stdout, messages and the progress bar on stderr, never running into each other: the
    bar is erased before any line is written and redrawn after it (one lock for all three)."""

    def __init__(self, total: int, progress: bool) -> None:
        self.total, self.done, self.failed, self.progress = total, 0, 0, progress
        self.lock = threading.Lock()
        self.drawn = False

    def _bar(self) -> None:
        n = 30
        k = n * self.done // max(self.total, 1)
        _write(sys.stderr, f"\r[{'#' * k}{'.' * (n - k)}] {self.done}/{self.total}"
                           + (f" ({self.failed} failed)" if self.failed else ""))
        self.drawn = True

    def _erase(self) -> None:
        if self.drawn:
            _write(sys.stderr, "\r\x1b[K")
            self.drawn = False

    def step(self, failed: bool) -> None:
        with self.lock:
            self.done += 1
            self.failed += int(failed)
            if self.progress:
                self._bar()

    def out(self, text: str) -> None:
        """A result line on stdout. Raises _OutputClosed when stdout is closed or failing."""
        with self.lock:
            try:
                self._erase()
            except (OSError, ValueError):
                pass
            try:
                _write(sys.stdout, text + "\n")
            except BrokenPipeError as e:
                raise _OutputClosed(None) from e
            except (OSError, ValueError) as e:
                raise _OutputClosed(f"cannot write to standard output: "
                                    f"{getattr(e, 'strerror', None) or e}") from e
            self._redraw()

    def err(self, text: str) -> None:
        """A message on stderr (errors writing it are ignored: there is nowhere left to report them)."""
        with self.lock:
            try:
                self._erase()
                _write(sys.stderr, text + "\n")
            except (OSError, ValueError):
                pass
            self._redraw()

    def _redraw(self) -> None:
        if self.progress and self.done:
            try:
                self._bar()
            except (OSError, ValueError):
                pass

    def finish(self) -> None:
        with self.lock:
            if self.drawn:
                try:
                    _write(sys.stderr, "\n")
                except (OSError, ValueError):
                    pass
                self.drawn = False


def _reserve_std_descriptors() -> None:
    """Point closed descriptors 0, 1 and 2 at /dev/null, so that no file the run opens takes one of them
    (a stray message of a library to "stderr" would otherwise land inside an image being written)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
            except OSError:
                pass


def _silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        fd = sys.stdout.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except (AttributeError, OSError, ValueError):
        pass


# ------------------------------------------------------------------------------------------- main

_STOP_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s)


def _on_signal(signum, frame) -> None:
    for s in _STOP_SIGNALS:  # one stop is enough; later signals wait for the clean-up (a few ms)
        signal.signal(s, signal.SIG_IGN)
    raise _Stop(signum)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``gazecrop`` console script (and ``python -m gazecrop``). Returns the exit status:
    0 all inputs cropped, 1 some failed (reported on stderr, the rest completed), 2 usage error or no model,
    128 + N when stopped by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP), 141 when stdout was closed."""
    _reserve_std_descriptors()
    installed = {}
    if threading.current_thread() is threading.main_thread():
        for s in _STOP_SIGNALS:
            if signal.getsignal(s) != signal.SIG_IGN:  # an ignored signal stays ignored (nohup, background jobs)
                installed[s] = signal.signal(s, _on_signal)
    stopped = False
    try:
        with warnings.catch_warnings():  # over Pillow's limit: refused with gazecrop's own message instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _main(argv)
    except _Stop as e:
        stopped = True
        _atomic.cancel_pending()
        try:
            _write(sys.stderr, f"\ngazecrop: stopped by {signal.Signals(e.signum).name}; "
                               f"outputs being written were removed\n")
        except (OSError, ValueError):
            pass
        return 128 + e.signum
    except _OutputClosed as e:
        _atomic.cancel_pending()
        _silence_stdout()
        if e.args[0] is None:
            return EXIT_PIPE
        try:
            _write(sys.stderr, f"gazecrop: {e.args[0]}\n")
        except (OSError, ValueError):
            pass
        return EXIT_FAILED
    finally:
        for s, old in installed.items():  # after a stop, a second signal ends the process at once
            signal.signal(s, signal.SIG_DFL if stopped else old)


def _main(argv: Optional[Sequence[str]]) -> int:
    try:
        args = _parse_args(argv)
    except BrokenPipeError:
        raise _OutputClosed(None) from None
    except SystemExit as e:  # --help / --version / usage error: a closed stdout is not a traceback
        try:
            if sys.stdout is not None:
                sys.stdout.flush()
        except BrokenPipeError:
            raise _OutputClosed(None) from None
        except OSError:
            pass
        raise e
    _atomic.allow_writes()
    found = expand_inputs(args.inputs, recursive=args.recursive, stdin=True)
    term = _Terminal(0, False)
    stdin = None
    if STDIN in args.inputs:
        found, stdin = _read_stdin(found)
    inputs = [f.path for f in found if f.error is None]
    term.total = len(inputs)
    for f in found:
        if f.error is not None:
            term.err(f"gazecrop: {f.error}")
            if args.json:
                term.out(json.dumps({"input": f.path, "error": f.error}))
    expansion_failed = len(found) - len(inputs)
    if not inputs:
        term.err("gazecrop: no input images found")
        return EXIT_USAGE
    try:
        from .api import _model

        model = None if args.regions["focal"] is not None else _model(args.model)  # --focal: no model run
    except (OSError, ValueError) as e:
        hint = "" if args.model else " (pass --model PATH to use a .gzw file)"
        term.err(f"gazecrop: cannot load model: {e}{hint}")
        return EXIT_USAGE
    if args.out:
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as e:
            reason = e.strerror or str(e)
            if isinstance(e, FileExistsError):  # the name exists: say what it is (a file, a link loop...)
                try:
                    os.stat(args.out)
                    reason = "not a folder"
                except OSError as why:
                    reason = why.strerror or str(why)
            term.err(f"gazecrop: cannot create output folder {args.out}: {reason}")
            return EXIT_USAGE
    umask()  # read once, before worker threads start
    with pillow_limit(args.max_pixels):  # Pillow must not refuse what --max-pixels allows
        return _crop_all(args, model, found, inputs, stdin, term, expansion_failed)


def _read_stdin(found: List[Found]) -> Tuple[List[Found], Optional[EncodedImage]]:
    """The bytes of standard input for the input ``-``, or ``-`` reported as failed (a terminal, a read
    error)."""
    reason = None
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        reason = f"{STDIN}: standard input is closed"
    elif sys.stdin.isatty():
        reason = f"{STDIN}: standard input is a terminal; pipe an image into it (gazecrop - < photo.jpg)"
    else:
        try:
            data = stream.read()
            if data:
                return found, EncodedImage(data, STDIN)
            reason = f"{STDIN}: standard input is empty"
        except OSError as e:
            reason = f"{STDIN}: cannot read standard input: {_os_reason(e)}"
    return [Found(f.path, reason) if f.path == STDIN else f for f in found], None


def _crop_all(args: argparse.Namespace, model, found: List[Found], inputs: List[str],
              stdin: Optional[EncodedImage], term: "_Terminal", expansion_failed: int) -> int:
    run = _Run(args, model, inputs, {f.path: f.dir for f in found}, stdin)
    show = args.progress if args.progress is not None else (len(inputs) > 1 and sys.stderr.isatty())
    term.progress = bool(show)

    def job(path: str):
        if run.stop.is_set():
            return path, None, "stopped"
        try:
            rec, err = run.process(path), None
        except (_Failure, ImageError, OSError, ValueError, TypeError) as e:
            rec, err = None, str(e) or type(e).__name__
        except Exception as e:  # one bad file must not stop the batch
            rec, err = None, f"{type(e).__name__}: {e}"
        term.step(err is not None)
        return path, rec, err

    failed = expansion_failed
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    try:
        for path, rec, err in pool.map(job, inputs):
            if err is not None:
                failed += 1
                term.err(f"gazecrop: {err if err.startswith(path) else f'{path}: {err}'}")
                if args.json:
                    term.out(json.dumps({"input": path, "error": err}))
                continue
            if rec.get("animated"):
                term.err(f"gazecrop: warning: {path}: {rec['frames']} frames (animated or multi-page): only the "
                         "first frame is cropped")
            for c in rec["crops"]:
                if c.get("clamped"):
                    term.err(f"gazecrop: warning: {path}: aspect {c['aspect_text']}: a side of the box is under "
                             f"one pixel and was clamped to 1 (box {c['box'][2]}x{c['box'][3]}, not the aspect "
                             "asked for)")
                if c.get("upscaled") and "output" in c:
                    what, (w, h) = ("the image", (rec["width"], rec["height"])) if c.get("fit") == "pad" else \
                        ("the box", c["box"][2:])
                    term.err(f"gazecrop: warning: {path}: --size {c['aspect_text']}: {what} is only {w}x{h} "
                             f"pixels and was enlarged {c['upscaled']:g} times (--no-upscale keeps it at its own "
                             "size)")
            term.out(json.dumps(rec) if args.json else _text(rec))
    except BaseException:
        run.stop.set()
        _atomic.cancel_pending()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    term.finish()
    if failed:
        term.err(f"gazecrop: {failed} of {len(inputs) + expansion_failed} input(s) failed")
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
