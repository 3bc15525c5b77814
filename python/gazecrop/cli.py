"""``gazecrop`` command line: crop photos to aspect ratios around where people are predicted to look.

    gazecrop photo.jpg --aspect 16:9 --out out/
    gazecrop photos/ "more/*.png" --aspect 1:1 --aspect 9:16 --out crops/ --json --jobs 2

Like libvips' ``vipsthumbnail``: each input is handled on its own; a failing file is reported on stderr and
skipped, the others complete, and the exit status is 1 if any failed (2 for usage errors). Inputs are files,
folders (their image files, not recursive unless ``--recursive``) or glob patterns. Outputs are named from a
template relative to the input, ``--name {stem}_{aspect}{ext}`` by default (``photo_16x9.jpg``; ``--name
{stem}{ext}`` keeps the input's name), and ``{stem}_heatmap.png``, in ``--out``; they are written to a
temporary file in the same folder and renamed into place, never replace an input file, and keep the input's
format, JPEG quantisation tables (so quality close to the original), ICC profile and EXIF (orientation reset,
since the pixels are stored as displayed). Animated inputs give their first frame.

Uses the public API only (:func:`gazecrop.predict`, :mod:`gazecrop.crop`, :func:`gazecrop._image.open_image`).
Note: the function ``gazecrop.crop`` shadows the module as a package attribute; import names from the module
with ``from gazecrop.crop import ...``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import string
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .crop import (DEFAULT_STRATEGY, STRATEGIES, CropResult, format_aspect, parse_aspect,
                   resample_log_density)
from ._atomic import atomic_open, umask
from ._image import ImageError, _open_path, open_image
from . import __version__
from .api import Prediction, predict

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp")
"""File extensions picked up from folders (case-insensitive)."""

DEFAULT_NAME = "{stem}_{aspect}{ext}"
"""Output name template (fields ``stem``, ``aspect``, ``ext``)."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Failure(Exception):
    pass


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="gazecrop",
        description="Crop photos to any aspect ratio around where people are predicted to look "
                    "(a saliency map learned from eye-tracking data).")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("--version", action="version", version=f"gazecrop {__version__}")
    p.add_argument("-a", "--aspect", action="append", metavar="W:H",
                   help="aspect ratio width:height (16:9) or a number (1.78); repeatable; default 1:1")
    p.add_argument("-o", "--out", metavar="DIR", help="write cropped images (and heatmaps) to this folder")
    p.add_argument("--name", default=DEFAULT_NAME, metavar="TEMPLATE",
                   help="output file name in --out: {stem} (input name without extension), {aspect} (16x9), "
                        "{ext} (the input's extension with the dot); default %(default)s")
    p.add_argument("--json", action="store_true", help="print one JSON record per input instead of text")
    p.add_argument("--heatmap", action="store_true", help="also write {stem}_heatmap.png: the saliency map "
                   "over the photo with the crop boxes (needs --out)")
    p.add_argument("--model", metavar="PATH", help="a .gzw model file (default: the bundled model)")
    p.add_argument("--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY,
                   help=f"how boxes are placed (default {DEFAULT_STRATEGY})")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="images processed in parallel")
    p.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders of folder inputs")
    prog = p.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="show a progress bar on stderr (default: only when stderr is a terminal)")
    prog.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args(argv)
    args.aspect = args.aspect or ["1:1"]
    for a in args.aspect:
        try:
            parse_aspect(a)
        except (ValueError, TypeError) as e:
            p.error(f"--aspect {a!r}: {e}")
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    if args.heatmap and not args.out:
        p.error("--heatmap needs --out DIR")
    try:
        fields = [(f, c) for _, f, _, c in string.Formatter().parse(args.name) if f is not None]
        if any(f not in ("stem", "aspect", "ext") or c for f, c in fields):  # no {stem.attr}, {0}, {stem!r}
            raise ValueError("fields are {stem}, {aspect} and {ext}, without conversions")
        name = args.name.format(stem="x", aspect="1x1", ext=".jpg")
    except (KeyError, IndexError, ValueError) as e:
        p.error(f"--name {args.name!r}: unknown field or bad template ({e}); use {{stem}}, {{aspect}}, {{ext}}")
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        p.error(f"--name {args.name!r} must give a plain file name")
    if len(args.aspect) > 1 and "{aspect}" not in args.name:
        p.error("--name needs {aspect} when several --aspect are given")
    return args


def _expand(inputs: Sequence[str], recursive: bool) -> List[str]:
    """Files from files, folders and globs, in order, without duplicates. Paths that match nothing stay
    in the list so that they are reported as failures."""
    out: List[str] = []
    seen = set()

    def add(path: str) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)

    for item in inputs:
        if os.path.isdir(item):
            if recursive:
                found = []
                for root, dirs, files in os.walk(item):
                    dirs.sort()
                    found += [os.path.join(root, f) for f in sorted(files)]
            else:
                found = [os.path.join(item, f) for f in sorted(os.listdir(item))]
            for f in found:
                hidden = os.path.basename(f).startswith(".")
                if os.path.isfile(f) and f.lower().endswith(IMAGE_EXTENSIONS) and not hidden:
                    add(f)
        elif not os.path.exists(item) and glob.has_magic(item):
            for f in sorted(glob.glob(item, recursive=True)):
                if os.path.isfile(f):
                    add(f)
                elif os.path.isdir(f):
                    for g in _expand([f], recursive):
                        add(g)
        else:
            add(item)
    return out


# ------------------------------------------------------------------------------------------------- writing

def _save_options(src_format: Optional[str], src: Image.Image, info: dict, quant, sampling: int) -> dict:
    opts: dict = {}
    if info.get("icc_profile"):
        opts["icc_profile"] = info["icc_profile"]
    if info.get("dpi"):
        opts["dpi"] = info["dpi"]
    exif = info.get("exif_obj")
    if src_format == "JPEG":
        if quant:
            opts["qtables"] = quant
            if sampling >= 0:
                opts["subsampling"] = sampling
        else:
            opts["quality"] = 90
        if info.get("progressive") or info.get("progression"):
            opts["progressive"] = True
    elif src_format == "WEBP":
        if info.get("lossless"):
            opts["lossless"] = True
        else:
            opts["quality"] = 90
    elif src_format == "TIFF":
        if info.get("compression") and info["compression"] != "raw":
            opts["compression"] = info["compression"]
        exif = None
    elif src_format in ("PNG", "GIF"):
        if "transparency" in src.info and src.mode in ("P", "L", "RGB"):
            opts["transparency"] = src.info["transparency"]
    if exif is not None and src_format in ("JPEG", "PNG", "WEBP"):
        opts["exif"] = exif
    return opts


def _write_atomic(image: Image.Image, path: str, fmt: str, opts: dict) -> None:
    """Save to a temporary file beside ``path``, then rename it into place (never a partial file)."""
    with atomic_open(path) as f:
        image.save(f, format=fmt, **opts)


def _webp_lossless(path: str) -> bool:
    """True when the WebP file's first image chunk is lossless (``VP8L``), by walking its RIFF chunks."""
    try:
        with open(path, "rb") as f:
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
    except OSError:
        pass
    return False


def _source_info(path: str) -> Tuple[Optional[str], dict, object, int]:
    """Format, save-relevant info (ICC, EXIF with orientation 1, ...), JPEG quantisation tables and
    subsampling of the file at ``path``."""
    from PIL import JpegImagePlugin

    with _open_path(path, None) as im:
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
    return fmt, info, quant, sampling


_COLOURS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64)
_BOX_COLOURS = [(0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 255, 0), (255, 128, 0)]


def heatmap_overlay(photo: Image.Image, prediction: Prediction, results: Sequence[CropResult] = (),
                    max_side: int = 1024) -> Image.Image:
    """An RGB picture of the saliency map over the photo (inferno-like colours, opacity growing with the
    density) with each crop box outlined; at most ``max_side`` pixels on the long side."""
    from PIL import ImageDraw

    W, H = prediction.size
    s = min(1.0, max_side / max(W, H))
    w, h = max(1, round(W * s)), max(1, round(H * s))
    base = np.asarray(photo.convert("RGB").resize((w, h), Image.BILINEAR), np.float64)
    dens = np.exp(resample_log_density(prediction.log_density, (w, h)).astype(np.float64))
    v = dens / max(float(dens.max()), 1e-300)
    t = v * (len(_COLOURS) - 1)
    i = np.minimum(t.astype(int), len(_COLOURS) - 2)
    f = (t - i)[..., None]
    colour = _COLOURS[i] * (1 - f) + _COLOURS[i + 1] * f
    alpha = (0.15 + 0.6 * np.sqrt(v))[..., None]
    out = Image.fromarray(np.clip(base * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8))
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

class _Run:
    def __init__(self, args: argparse.Namespace, model, inputs: List[str]) -> None:
        self.args = args
        self.model = model
        self.inputs_real = {os.path.realpath(p) for p in inputs}
        self.owner: dict = {}  # output real path -> the input that writes it (the first in input order)
        self.lock = threading.Lock()
        if args.out:  # plan names up front so that clashes fail the same input whatever the thread timing
            for p in inputs:
                for dst in self._names(p, os.path.splitext(p)[1]):
                    self.owner.setdefault(os.path.realpath(dst), p)

    def _names(self, path: str, ext: str) -> List[str]:
        stem = os.path.splitext(os.path.basename(path))[0]
        names = [self.args.name.format(stem=stem, aspect=format_aspect(a), ext=ext) for a in self.args.aspect]
        if self.args.heatmap:
            names.append(f"{stem}_heatmap.png")
        return [os.path.join(self.args.out, n) for n in names]

    def _claim(self, path: str, source: str) -> None:
        real = os.path.realpath(path)
        with self.lock:
            if real in self.inputs_real or (os.path.exists(path) and os.path.samefile(path, source)):
                raise _Failure(f"refusing to overwrite input file {path}")
            first = self.owner.setdefault(real, source)
            if first != source:
                raise _Failure(f"output {path} is also the output of {first}")

    def process(self, path: str) -> dict:
        args = self.args
        record: dict = {"input": path}
        if not os.path.isfile(path):
            raise _Failure(f"no such file: {path}" if not os.path.exists(path) else f"not a file: {path}")
        need_pixels = bool(args.out)
        fmt, info, quant, sampling = _source_info(path) if need_pixels else (None, {}, None, -1)
        full = None
        if need_pixels and fmt != "JPEG":
            full = open_image(path)  # decode once, reuse for the model and the outputs
            pred = predict(full, model=self.model)
        else:
            pred = predict(path, model=self.model)  # JPEG: draft-mode decode for the model
        results = pred.crops(args.aspect, strategy=args.strategy)
        record.update(width=pred.size[0], height=pred.size[1], crops=[])
        outputs = []
        if args.out:
            if full is None:
                full = open_image(path)
            if full.size != pred.size:
                raise _Failure(f"decoded size {full.size} differs from {pred.size}")
            stem, ext = os.path.splitext(os.path.basename(path))
            Image.init()
            if fmt is None or fmt.upper() not in Image.SAVE:  # a format Pillow reads but cannot write
                fmt, ext = None, ".png"
            ext = ext if ext else "." + (fmt or "png").lower()
            save_fmt = fmt or "PNG"
            for a, r in zip(args.aspect, results):
                dst = os.path.join(args.out, args.name.format(stem=stem, aspect=format_aspect(a), ext=ext))
                self._claim(dst, path)
                piece = full.crop(r.box.to_pil())
                if save_fmt == "JPEG" and piece.mode not in ("L", "RGB", "CMYK"):
                    piece = piece.convert("RGB")
                _write_atomic(piece, dst, save_fmt, _save_options(fmt, full, info, quant, sampling))
                outputs.append(dst)
            if args.heatmap:
                dst = os.path.join(args.out, f"{stem}_heatmap.png")
                self._claim(dst, path)
                _write_atomic(heatmap_overlay(full, pred, results), dst, "PNG", {})
                outputs.append(dst)
        for a, r, o in zip(args.aspect, results, outputs + [None] * len(results)):
            d = r.to_dict()
            d["aspect_text"] = a
            if o is not None:
                d["output"] = o
            record["crops"].append(d)
        if args.heatmap:
            record["heatmap"] = outputs[-1]
        return record


def _text(record: dict) -> str:
    lines = []
    for c in record["crops"]:
        b = c["box"]
        line = (f"{record['input']}\t{c['aspect_text']}\tleft={b[0]} top={b[1]} width={b[2]} height={b[3]}"
                f"\tpoint=({c['salient_point'][0]}, {c['salient_point'][1]})\tscore={c['score']:.3f}")
        if c["keep_whole"]:
            line += f"\tkeep whole: {c['advice']}"
        if "output" in c:
            line += f"\t-> {c['output']}"
        lines.append(line)
    return "\n".join(lines)


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.failed, self.enabled = total, 0, 0, enabled
        self.lock = threading.Lock()

    def step(self, failed: bool) -> None:
        with self.lock:
            self.done += 1
            self.failed += int(failed)
            if self.enabled:
                n = 30
                k = n * self.done // max(self.total, 1)
                sys.stderr.write(f"\r[{'#' * k}{'.' * (n - k)}] {self.done}/{self.total}"
                                 + (f" ({self.failed} failed)" if self.failed else ""))
                if self.done == self.total:
                    sys.stderr.write("\n")
                sys.stderr.flush()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``gazecrop`` console script (and ``python -m gazecrop``). Returns the exit status:
    0 all inputs cropped, 1 some failed (reported on stderr, the rest completed), 2 usage error or no model."""
    args = _parse_args(argv)
    inputs = _expand(args.inputs, args.recursive)
    if not inputs:
        print("gazecrop: no input images found", file=sys.stderr)
        return EXIT_USAGE
    try:
        from .api import _model

        model = _model(args.model)
    except (OSError, ValueError) as e:
        hint = "" if args.model else " (pass --model PATH to use a .gzw file)"
        print(f"gazecrop: cannot load model: {e}{hint}", file=sys.stderr)
        return EXIT_USAGE
    if args.out:
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as e:
            print(f"gazecrop: cannot create output folder {args.out}: {e.strerror or e}", file=sys.stderr)
            return EXIT_USAGE
    umask()  # read once, before worker threads start
    run = _Run(args, model, inputs)
    show = args.progress if args.progress is not None else (len(inputs) > 1 and sys.stderr.isatty())
    progress = _Progress(len(inputs), bool(show))

    def job(path: str):
        try:
            rec, err = run.process(path), None
        except (_Failure, ImageError, OSError, ValueError, TypeError) as e:
            rec, err = None, str(e) or type(e).__name__
        except Exception as e:  # one bad file must not stop the batch
            rec, err = None, f"{type(e).__name__}: {e}"
        progress.step(err is not None)
        return path, rec, err

    failed = 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for path, rec, err in pool.map(job, inputs):
            if err is not None:
                failed += 1
                if progress.enabled:
                    sys.stderr.write("\n")
                print(f"gazecrop: {err if err.startswith(path) else f'{path}: {err}'}", file=sys.stderr)
                if args.json:
                    print(json.dumps({"input": path, "error": err}), flush=True)
                continue
            print(json.dumps(rec) if args.json else _text(rec), flush=True)
    if failed:
        print(f"gazecrop: {failed} of {len(inputs)} input(s) failed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
