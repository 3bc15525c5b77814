"""Crops for many stored images: the engine-neutral core of ``gazecrop-batch`` and of the Ray Data
(:mod:`gazecrop.ray`) and Dask (:mod:`gazecrop.dask`) integrations.

    gazecrop-batch photos/ --aspect 16:9 --aspect 1:1 --out out/                  # this machine
    gazecrop-batch manifest.txt --aspect 16:9 --out out/ --engine ray             # Ray (local or --address)
    gazecrop-batch photos/ --size 320x180 --size 64x64 --out thumbs/              # thumbnails of exactly these sizes
    gazecrop-batch manifest.txt --aspect 16:9 --out out/ --engine dask --address tcp://scheduler:8786

The unit of work is :func:`crop_records` (numpy + Pillow only): inputs (paths or :class:`~gazecrop.EncodedImage`
bytes with their names) -> one record per input per aspect and thumbnail size (:data:`COLUMNS`), or one record with
``error`` set for an input that fails; it never raises for a bad input. Every engine runs it inside a
:class:`Cropper`, which loads the model once per process. Crops are named and written by :mod:`gazecrop._output`
(format precedence, extension matching the bytes, JPEG tables / ICC / EXIF kept, verified atomic writes), as the
``gazecrop`` CLI's.

A job (:func:`run_job`) writes into ``OUT``:

- ``table/part-NNNNN.parquet``: the records, one file per chunk of ``chunk_size`` inputs in input order (file
  names and contents depend only on the inputs, model and options); each file's metadata carries the schema
  version (:data:`SCHEMA_VERSION`), the job key and the chunk's inputs.
- ``crops/<relative path of the input's folder>/<--name>``: the cropped images, so ``a/x.jpg`` and
  ``b/x.jpg`` never collide. Relative paths are taken from the folder given, or from the deepest folder common
  to a manifest's entries (``--root`` fixes it).
- ``job.json``: the job's key, options and model.
- while the job runs, ``.gazecrop-batch.lock`` (one job at a time per ``OUT``) and
  ``.gazecrop-batch.progress/`` (the records of each image finished in a chunk whose table file is not
  written yet); both are removed when the job completes.

Nothing is lost: every file is written to a temporary name and renamed into place; a chunk's table file is
written after its crops, and each finished image's records are kept in ``.gazecrop-batch.progress/`` until
its chunk's table file holds them, so an interruption loses at most the images in flight, whatever the chunk
size. A job run again skips the chunks whose table file exists with the same job key (the schema version,
gazecrop version, model file hash, aspects, thumbnail sizes, upscaling and fit, strategy, name template,
format, quality, pixel limit when one is given and whether crops are written; not the engine), the same inputs
with the same regions (a CSV manifest's per-image ``keep`` / ``boost`` / ``focal``: :func:`read_csv_manifest`)
and whose crops all exist, and the images of the other chunks already finished with the same regions; a new
model or option re-does everything, a changed region its image's chunk. A killed job (SIGKILL included) run
again finishes the rest with results identical to an uninterrupted run, and first removes the temporary files
the killed run left (:func:`gazecrop._atomic.clean_stale`). A second job on the same ``OUT`` while one runs is
refused (an exclusive ``flock`` on the lock file, which the job removes, still holding it, when it ends; a job
that locked a file just removed takes a new one). Signals, odd file names and write failures follow the
``gazecrop`` CLI's rules: SIGINT / SIGTERM / SIGHUP stop with status 130 / 143 / 129 after removing this
process's writes in progress; a file name that is not UTF-8 is kept on disk and shown with ``\\xNN`` escapes
in the table; a crop that cannot be written fails its input; a table file that cannot be written stops the
job (status 1).

Writing Parquet needs ``pyarrow`` (``pip install "gazecrop[batch]"``; the ``ray`` and ``dask`` extras include
it); :func:`crop_records` and :class:`Cropper` do not.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import posixpath
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from PIL import Image

from . import __version__
from . import _atomic
from ._atomic import umask, write_bytes
from ._image import EncodedImage
from .crop import DEFAULT_STRATEGY, STRATEGIES

__all__ = ["SCHEMA_VERSION", "COLUMNS", "BatchOptions", "Cropper", "crop_records", "model_info",
           "plan_names", "read_manifest", "read_csv_manifest", "manifest_regions", "MANIFEST_COLUMNS", "run_job", "run_engine", "JobSummary", "ENGINES", "main"]

SCHEMA_VERSION = 3
"""Version of the record layout (:data:`COLUMNS`); bumped whenever a column is added or changes meaning or type
(2: ``size_width`` / ``size_height`` for thumbnails; 3: ``kept`` and ``fit``)."""

COLUMNS: Tuple[Tuple[str, str, str], ...] = (
    ("schema_version", "int16", "layout version of this table (SCHEMA_VERSION)"),
    ("source", "string", "the input as given (path or URI)"),
    ("aspect", "string", "aspect ratio as asked for ('16:9'; a thumbnail of --size 320x180: '320:180'); null for "
                         "a failed input"),
    ("aspect_ratio", "float64", "width / height"),
    ("size_width", "int32", "thumbnail width asked for (--size), pixels; null for an --aspect crop. The crop file "
                            "is exactly this size, or smaller with --no-upscale when the box is smaller"),
    ("size_height", "int32", "thumbnail height asked for (--size), pixels"),
    ("image_width", "int32", "width of the displayed image (EXIF orientation applied), pixels"),
    ("image_height", "int32", "height of the displayed image, pixels"),
    ("left", "int32", "crop box, pixels of the displayed image"),
    ("top", "int32", ""),
    ("width", "int32", ""),
    ("height", "int32", ""),
    ("point_x", "int32", "salient point, pixels of the displayed image"),
    ("point_y", "int32", ""),
    ("point_x_norm", "float64", "salient point as a share of the image: (point_x + 0.5) / image_width, 0-1"),
    ("point_y_norm", "float64", "(point_y + 0.5) / image_height, 0-1"),
    ("score", "float64", "share of the saliency mass inside the box, 0-1"),
    ("keep_whole", "bool", "advice: show the whole image rather than this crop"),
    ("advice", "string", "why (or why not) keep the whole image"),
    ("kept", "float64", "with keep regions (manifest column keep): share of their area inside the box, 0-1 (below 1: "
                        "no box of the aspect holds them all); null without"),
    ("fit", "string", "thumbnails (--size): 'crop' (the box resized) or 'pad' (the whole image letterboxed, --fit pad "
                      "or auto); null for an --aspect crop"),
    ("crop_path", "string", "the cropped image, relative to the job's output folder; null when not written"),
    ("model_name", "string", "model file name without extension ('gazecrop-fast')"),
    ("model_version", "string", "first 16 hex digits of the model file's SHA-256"),
    ("error", "string", "why the input failed; null when it did not"),
)
"""The record fields, in table order: ``(name, Arrow type, meaning)``. Every field but ``schema_version``,
``source``, ``model_name``, ``model_version`` is null in a failure record; ``error`` is null otherwise."""

COLUMN_NAMES = tuple(c[0] for c in COLUMNS)
ENGINES = ("local", "ray", "dask")
DEFAULT_CHUNK = 256
LOCK_NAME = ".gazecrop-batch.lock"
PROGRESS_DIR = ".gazecrop-batch.progress"
"""In ``OUT``: the job's lock file, and the folder of finished images whose chunk is not written yet."""

Input = Union[str, "os.PathLike[str]", EncodedImage]


def _printable(s: str) -> str:
    """``s`` as valid UTF-8 text: bytes of a non-UTF-8 file name (surrogate escapes) become ``\\xNN``."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# --------------------------------------------------------------------------------------------- options

@dataclass(frozen=True)
class BatchOptions:
    """What a batch job computes (part of its resume key).

    Attributes:
        aspects: aspect ratios as given (``"16:9"``); None: ``1:1`` unless ``sizes`` are given.
        sizes: thumbnail sizes as given (``"320x180"``, as ``gazecrop --size``): the box of the aspect W:H resized
            to exactly W x H pixels (Lanczos). Records and crops come per aspect, then per size; at least one
            aspect or size in all.
        upscale: enlarge a box smaller than its size (default); False (``--no-upscale``) writes it at its own
            size.
        fit: thumbnails: ``"crop"``, ``"pad"`` or ``"auto"`` (as :func:`gazecrop.thumbnail`, ``--fit``).
        background: the padding's fill, ``"blur"`` or a colour (a name, ``"#rrggbb"`` or ``(r, g, b)``).
        strategy: box placement (:data:`gazecrop.STRATEGIES`).
        name: crop file name template, fields ``{stem}``, ``{aspect}``, ``{size}``, ``{ext}`` (as ``gazecrop
            --name``: ``{aspect}`` and ``{size}`` are both ``16x9`` for an aspect, ``320x180`` for a size).
        write_crops: write the cropped images (else records only).
        format: ``"jpeg"``, ``"png"``, ``"webp"`` or ``"avif"`` (where Pillow can write it) for every crop, or
            None: the extension in ``name``, else each input's own format (as ``gazecrop --format``;
            :mod:`gazecrop._output`).
        quality: 1..100 for lossy crops, or None (a JPEG input's own tables, else 90).
        model: a ``.gzw`` file, or None for the bundled model.
        max_pixels: the largest image accepted, in pixels (None: Pillow's limit; :func:`gazecrop.predict`).
    Raises:
        ValueError / TypeError: a bad aspect, size, strategy, template, format or pixel limit; two outputs with
        the same name tag (``16:9`` and ``16/9``, or ``--size 16x9`` and ``--aspect 16:9``).
    """

    aspects: Optional[Tuple[str, ...]] = None
    sizes: Tuple[str, ...] = ()
    upscale: bool = True
    fit: str = "crop"
    background: Union[str, Tuple[int, int, int]] = "blur"
    strategy: str = DEFAULT_STRATEGY
    name: str = "{stem}_{aspect}{ext}"
    write_crops: bool = True
    format: Optional[str] = None
    quality: Optional[int] = None
    model: Optional[str] = None
    max_pixels: Optional[int] = None

    def __post_init__(self) -> None:
        from ._image import _check_limit
        from ._output import check_format
        from .cli import check_name, plan_outputs

        for f, what in (("aspects", "aspect ratios, e.g. ('16:9',)"), ("sizes", "sizes, e.g. ('320x180',)")):
            if isinstance(getattr(self, f), str):
                raise TypeError(f"{f} must be a sequence of {what}, not one string")
        sizes = tuple(str(v) for v in self.sizes)
        aspects = ("1:1",) if self.aspects is None and not sizes else tuple(str(a) for a in self.aspects or ())
        if not aspects and not sizes:
            raise ValueError("at least one aspect ratio or thumbnail size is needed")
        outputs = plan_outputs(aspects, sizes)
        tags = [o.tag for o in outputs]
        if len(set(tags)) != len(tags):
            twice = ", ".join(sorted({t for t in tags if tags.count(t) > 1}))
            raise ValueError(f"aspect ratios or sizes repeat (two outputs named {twice}): {aspects + sizes}")
        object.__setattr__(self, "aspects", aspects)
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "upscale", bool(self.upscale))
        from .api import check_background, check_fit

        check_fit(self.fit)
        if self.fit != "crop" and not sizes:
            raise ValueError(f"fit {self.fit!r} applies to thumbnail sizes; give a size")
        bg = self.background
        object.__setattr__(self, "background", check_background(tuple(bg) if isinstance(bg, list) else bg))
        object.__setattr__(self, "_outputs", tuple(outputs))
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; expected one of {STRATEGIES}")
        check_format(self.format)
        object.__setattr__(self, "max_pixels", _check_limit(self.max_pixels))
        if self.quality is not None and (isinstance(self.quality, bool) or not 1 <= int(self.quality) <= 100):
            raise ValueError(f"quality must be in 1..100, got {self.quality!r}")
        check_name(self.name, tags, self.pil_format, sizes=True)
        if self.model is not None:
            object.__setattr__(self, "model", os.path.abspath(os.fspath(self.model)))

    @property
    def outputs(self) -> tuple:
        """One entry per record and crop of an input, aspects then sizes (:func:`gazecrop.cli.plan_outputs`):
        ``text`` (as given), ``aspect`` (float), ``tag`` (``{aspect}`` / ``{size}`` in the name), ``size``
        (``(w, h)`` or None)."""
        return self._outputs

    @property
    def pil_format(self) -> Optional[str]:
        """The Pillow name of :attr:`format` (``"JPEG"``), or None."""
        from ._output import FORMATS

        return FORMATS[self.format] if self.format else None

    def to_dict(self) -> dict:
        """JSON-ready dict; ``BatchOptions(**d)`` rebuilds it (how engines ship options to workers)."""
        d = dataclasses.asdict(self)
        d["aspects"] = list(self.aspects)
        d["sizes"] = list(self.sizes)
        if not isinstance(self.background, str):
            d["background"] = list(self.background)
        return d


_INFO_LOCK = threading.Lock()
_INFO: Dict[Optional[str], Tuple[str, str]] = {}


def model_info(model: Optional[str] = None) -> Tuple[str, str]:
    """``(name, version)`` of a ``.gzw`` file (None: the bundled model): the file name without extension and
    the first 16 hex digits of the file's SHA-256 (a retrained model under the same name gets a new version).

    Raises:
        FileNotFoundError: no such file.
    """
    from .model import default_model_path

    with _INFO_LOCK:
        if model not in _INFO:
            path = default_model_path() if model is None else model
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            _INFO[model] = (os.path.splitext(os.path.basename(path))[0], h.hexdigest()[:16])
        return _INFO[model]


def job_key(options: BatchOptions) -> str:
    """The resume key: a hash of everything that decides a job's records and crops (schema version, gazecrop
    version, model version, options)."""
    name, version = model_info(options.model)
    d = options.to_dict()
    d.pop("model")
    if d["max_pixels"] is None:  # keys of jobs made before the option existed stay valid
        d.pop("max_pixels")
    blob = json.dumps({"schema": SCHEMA_VERSION, "gazecrop": __version__, "model": [name, version], **d},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# ------------------------------------------------------------------------------------------ the unit of work

class Cropper:
    """Turns inputs into records; the model is loaded once, when the Cropper is made (once per process: the
    Ray actor, the Dask worker plugin and the local engine each hold one).

    Args:
        options: a :class:`BatchOptions` or its :meth:`~BatchOptions.to_dict`.
        crops_dir: folder the crops are written under (needed when ``options.write_crops``); crop paths in the
            records are relative to its parent (the job's output folder).
    Raises:
        FileNotFoundError / WeightsFormatError: the model cannot be loaded. ValueError: bad options.
    """

    def __init__(self, options: "BatchOptions | dict", crops_dir: Optional[str] = None) -> None:
        from .api import _model

        self.options = options if isinstance(options, BatchOptions) else BatchOptions(**options)
        if self.options.write_crops and not crops_dir:
            raise ValueError("crops_dir is needed when write_crops is set")
        self.crops_dir = os.path.abspath(crops_dir) if crops_dir else None
        self.model = _model(self.options.model)
        self.model_name, self.model_version = model_info(self.options.model)

    def _failure(self, source: str, error: str) -> dict:
        rec = dict.fromkeys(COLUMN_NAMES)
        rec.update(schema_version=SCHEMA_VERSION, source=_printable(source), model_name=self.model_name,
                   model_version=self.model_version, error=_printable(error))
        return rec

    def _one(self, image: Input, relname: str, regions: Optional[dict] = None) -> List[dict]:
        from ._output import output_name, source_info, write_image
        from .cli import _check_input, predict_input

        source = image.name if isinstance(image, EncodedImage) else os.fspath(image)
        if not isinstance(image, EncodedImage):
            _check_input(source)  # the operating system's reason: missing, a folder, a FIFO, no permission
        opts = self.options
        info = source_info(image) if opts.write_crops else None
        regions = regions or {}
        pred, full = predict_input(image, self.model, info, max_pixels=opts.max_pixels, focal=regions.get("focal"))
        results = pred.crops([o.aspect for o in opts.outputs], strategy=opts.strategy, keep=regions.get("keep"),
                             boost=regions.get("boost"))
        outputs: List[str] = []
        if info is not None:
            assert self.crops_dir is not None and full is not None
            folder = os.path.join(self.crops_dir, *posixpath.dirname(relname).split("/"))
            stem = os.path.splitext(posixpath.basename(relname))[0]
            real_source = None if isinstance(image, EncodedImage) else os.path.realpath(source)
            os.makedirs(folder, exist_ok=True)
            for o, r in zip(opts.outputs, results):
                name, fmt = output_name(opts.name, {"stem": stem, "aspect": o.tag, "size": o.tag},
                                        requested=opts.pil_format, source=info)
                dst = os.path.join(folder, name)
                if real_source is not None and os.path.realpath(dst) == real_source:
                    raise ValueError(f"refusing to overwrite input file {dst}")
                try:
                    write_image(o.cut(full, r, opts.upscale, opts.fit, opts.background), dst, fmt, source=info,
                                quality=opts.quality)
                except OSError as e:  # the system's reason, naming the crop (not the temporary file)
                    raise OSError(e.errno, f"cannot write {dst}: {e.strerror or e}") from e
                outputs.append(dst)
        W, H = pred.size
        base = os.path.dirname(self.crops_dir) if self.crops_dir else ""
        records = []
        for i, (o, r) in enumerate(zip(opts.outputs, results)):
            b = r.box
            px, py = r.salient_point
            crop_path = os.path.relpath(outputs[i], base).replace(os.sep, "/") if outputs else None
            records.append({
                "schema_version": SCHEMA_VERSION, "source": _printable(source),
                "aspect": o.text if o.size is None else f"{o.size[0]}:{o.size[1]}", "aspect_ratio": float(r.aspect),
                "size_width": None if o.size is None else o.size[0],
                "size_height": None if o.size is None else o.size[1], "image_width": int(W), "image_height": int(H),
                "left": int(b.left), "top": int(b.top), "width": int(b.width), "height": int(b.height),
                "point_x": int(px), "point_y": int(py),
                "point_x_norm": (px + 0.5) / W, "point_y_norm": (py + 0.5) / H,
                "score": float(r.score), "keep_whole": bool(r.keep_whole), "advice": r.advice, "kept": r.kept,
                "fit": None if o.size is None else ("pad" if o.pads(r, opts.fit) else "crop"),
                "crop_path": None if crop_path is None else _printable(crop_path),
                "model_name": self.model_name, "model_version": self.model_version, "error": None})
        return records

    def run(self, inputs: Sequence[Input], relnames: Optional[Sequence[str]] = None,
            regions: Optional[Sequence["Optional[dict | str]"]] = None) -> List[dict]:
        """Records for ``inputs`` (see :func:`crop_records`)."""
        inputs = list(inputs)
        if relnames is None:
            relnames = [os.path.basename(i.name if isinstance(i, EncodedImage) else os.fspath(i)) for i in inputs]
        elif len(relnames) != len(inputs):
            raise ValueError(f"{len(relnames)} relative names for {len(inputs)} inputs")
        regions = [None] * len(inputs) if regions is None else list(regions)
        if len(regions) != len(inputs):
            raise ValueError(f"{len(regions)} regions for {len(inputs)} inputs")
        from .cli import _Failure

        from ._image import pillow_limit

        out: List[dict] = []
        for image, rel, reg in zip(inputs, relnames, regions):
            source = image.name if isinstance(image, EncodedImage) else os.fspath(image)
            try:
                with pillow_limit(self.options.max_pixels):
                    out += self._one(image, rel, json.loads(reg) if isinstance(reg, str) and reg else reg or None)
            except Exception as e:  # one bad input never stops the others
                msg = str(e) or type(e).__name__
                if not isinstance(e, (OSError, ValueError, _Failure)):
                    msg = f"{type(e).__name__}: {msg}"
                out.append(self._failure(source, msg if msg.startswith(source) else f"{source}: {msg}"))
        return out


def crop_records(inputs: Sequence[Input], options: "BatchOptions | dict", *, crops_dir: Optional[str] = None,
                 relnames: Optional[Sequence[str]] = None,
                 regions: Optional[Sequence[Optional[dict]]] = None) -> List[dict]:
    """The engine-neutral unit of work: one record per input per aspect (fields :data:`COLUMNS`), in input
    order, or one record with ``error`` set for an input that cannot be used (missing, unreadable, not an
    image, too large, unwritable crop); never raises for a bad input.

    Args:
        inputs: paths, or :class:`~gazecrop.EncodedImage` (the file's bytes and its name) for data already
            read by an engine. Boxes are exactly those of :func:`gazecrop.crops` on the same file.
        options: aspects, strategy, name template, crops on/off, model.
        crops_dir: folder for the crops (when ``options.write_crops``).
        relnames: per input, its relative path (``"a/x.jpg"``) that crop names follow; default its file name.
        regions: per input, None or ``{"keep": [...], "boost": [...], "focal": (x, y)}`` (any of the keys; as
            :func:`gazecrop.crops` takes them; or that dict as JSON text): a region outside its image fails
            that input.
    Returns:
        A list of dicts with the keys of :data:`COLUMNS`.
    Raises:
        ValueError / TypeError: bad options. FileNotFoundError / WeightsFormatError: no usable model.
    """
    return Cropper(options, crops_dir).run(inputs, relnames, regions)


def records_to_columns(records: Sequence[dict]) -> Dict[str, list]:
    """Records -> one list per column (:data:`COLUMNS` order)."""
    return {c: [r[c] for r in records] for c in COLUMN_NAMES}


def arrow_schema():
    """The table's ``pyarrow.Schema`` (needs pyarrow), with the schema version in its metadata."""
    import pyarrow as pa

    types = {"int16": pa.int16(), "int32": pa.int32(), "float64": pa.float64(), "bool": pa.bool_(),
             "string": pa.string()}
    return pa.schema([pa.field(n, types[t], nullable=n not in ("schema_version", "source")) for n, t, _ in COLUMNS],
                     metadata={"gazecrop.schema_version": str(SCHEMA_VERSION)})


def records_to_arrow(records: Sequence[dict]):
    """Records -> ``pyarrow.Table`` with :func:`arrow_schema` (needs pyarrow)."""
    import pyarrow as pa

    return pa.Table.from_pydict(records_to_columns(records), schema=arrow_schema())


# ---------------------------------------------------------------------------------------------- planning

def _is_uri(s: str) -> bool:
    head, sep, _ = s.partition("://")
    return bool(sep) and head.replace("+", "").replace("-", "").replace(".", "").isalnum()


def _location(source: str) -> str:
    """Absolute POSIX-style location of a source: URIs lose their scheme (``s3://b/k`` -> ``/b/k``)."""
    if _is_uri(source):
        return posixpath.normpath("/" + source.partition("://")[2].lstrip("/"))
    return os.path.abspath(source).replace(os.sep, "/")


def plan_names(sources: Sequence[str], root: Optional[str] = None) -> List[str]:
    """Relative path of each source that its crops are named after: relative to ``root`` (a folder or URI
    prefix), else to the deepest folder common to all sources (a single source: its file name).

    Raises:
        ValueError: a source outside ``root``.
    """
    locs = [_location(s) for s in sources]
    if root is not None:
        base = _location(root).rstrip("/") or "/"
    elif len(locs) == 1:
        base = posixpath.dirname(locs[0])
    elif locs:
        base = posixpath.commonpath([posixpath.dirname(p) for p in locs])
    else:
        return []
    prefix = base if base.endswith("/") else base + "/"
    out = []
    for s, p in zip(sources, locs):
        if not p.startswith(prefix):
            raise ValueError(f"{s} is not under --root {root}")
        out.append(p[len(prefix):])
    return out


def read_manifest(path: str) -> List[str]:
    """Sources listed in a manifest file: one path or URI per line; blank lines and lines starting with ``#``
    are skipped; relative paths are relative to the current folder (as ``find photos > list.txt`` writes them).
    A ``.csv`` manifest gives its ``path`` column (:func:`read_csv_manifest`).

    Raises:
        OSError: the file cannot be read. ValueError: it is not text (or not a valid CSV manifest).
    """
    if path.lower().endswith(".csv"):
        return [s for s, _ in read_csv_manifest(path)]
    lines = _manifest_text(path).splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _manifest_text(path: str) -> str:
    from ._files import open_regular

    with open_regular(path) as f:  # a FIFO or a device is refused, not read forever
        data = f.read()
    if b"\0" in data:
        raise ValueError(f"{path}: not a text manifest (one path or URI per line)")
    return os.fsdecode(data)


MANIFEST_COLUMNS = ("path", "keep", "boost", "focal")
"""Columns of a CSV manifest: ``path`` (required), and per image, all optional and empty for none: ``keep``
(``L,T,W,H``, several separated by ``;``), ``boost`` (``L,T,W,H,WEIGHT``, several by ``;``), ``focal`` (``X,Y``),
as ``gazecrop --keep / --boost / --focal`` take them (pixels of the image as displayed)."""


def read_csv_manifest(path: str) -> List[Tuple[str, Optional[dict]]]:
    """``(source, regions)`` per row of a CSV manifest (:data:`MANIFEST_COLUMNS`, a header row first; cells
    with commas quoted, as spreadsheets write them): ``regions`` is None or the checked dict
    ``{"keep": [...], "boost": [...], "focal": [x, y] or None}`` (JSON-ready) for :func:`crop_records`.

    Raises:
        OSError: the file cannot be read. ValueError: no ``path`` column, an unknown column, or a cell that
        does not parse (the message names the line).
    """
    import csv
    import io

    from .cli import parse_regions

    rows = csv.reader(io.StringIO(_manifest_text(path)))
    header = [h.strip().lower() for h in next(rows, [])]
    unknown = [h for h in header if h not in MANIFEST_COLUMNS]
    if "path" not in header or unknown or len(set(header)) != len(header):
        raise ValueError(f"{path}: a CSV manifest needs a header row with a 'path' column and optional "
                         f"{', '.join(repr(c) for c in MANIFEST_COLUMNS[1:])} (each once), got {header}")
    out: List[Tuple[str, Optional[dict]]] = []
    for row in rows:
        cells = dict(zip(header, (c.strip() for c in row)))
        line = rows.line_num
        if not cells.get("path") or cells["path"].startswith("#"):
            if any(v for k, v in cells.items() if k != "path") and not cells.get("path"):
                raise ValueError(f"{path}, line {line}: regions without a path")
            continue
        if len(row) > len(header):
            raise ValueError(f"{path}, line {line}: {len(row)} cells for {len(header)} columns (quote cells "
                             f"with commas: \"10,20,300,200\")")
        regions = None
        if any(cells.get(k) for k in MANIFEST_COLUMNS[1:]):
            try:
                r = parse_regions([cells.get("keep", "")], [cells.get("boost", "")], cells.get("focal") or None)
            except ValueError as e:
                raise ValueError(f"{path}, line {line}: {e}") from None
            regions = {"keep": [list(k) for k in r["keep"]], "boost": [[list(b), w] for b, w in r["boost"]],
                       "focal": None if r["focal"] is None else list(r["focal"])}
        out.append((cells["path"], regions))
    return out


class Expanded(NamedTuple):
    """What :func:`expand_inputs` found: ``sources`` (paths and URIs, in order, without duplicates), ``root``
    (the folder crop names are relative to, when one folder was given) and ``errors`` (inputs that gave no
    source: a folder that cannot be listed or holds no image, a pattern that matches nothing)."""

    sources: List[str]
    root: Optional[str]
    errors: List[str]


def expand_inputs(inputs: Sequence[str], recursive: bool = True) -> Expanded:
    """Sources from the command line's inputs: folders (their image files, sub-folders too unless
    ``recursive`` is False) and glob patterns as the ``gazecrop`` CLI expands them
    (:func:`gazecrop.cli.expand_inputs`), manifest files (a file whose extension is not an image's:
    :func:`read_manifest`), image files and URIs. Never raises for an input that gives nothing (see
    :class:`Expanded`), except a manifest that cannot be read (OSError / ValueError)."""
    from .cli import expand_inputs as expand_files
    from .cli import image_extensions

    out: List[str] = []
    errors: List[str] = []
    for item in inputs:
        if _is_uri(item):
            out.append(item)
        elif os.path.isfile(item) and os.path.splitext(item)[1].lower() not in image_extensions():
            out += read_manifest(item)
        else:
            for f in expand_files([item], recursive=recursive):
                if f.error is None:
                    out.append(f.path)
                else:
                    errors.append(f.error)
    seen = set()
    unique = []
    for s in out:
        key = s if _is_uri(s) else os.path.realpath(s)
        if key not in seen:
            seen.add(key)
            unique.append(s)
    root = inputs[0] if len(inputs) == 1 and os.path.isdir(inputs[0]) else None
    return Expanded(unique, root, errors)


def manifest_regions(inputs: Sequence[str]) -> Dict[str, dict]:
    """Source -> its regions, from the CSV manifests among ``inputs`` (:func:`read_csv_manifest`; the first
    row of a source repeated wins, as :func:`expand_inputs` keeps its first occurrence).

    Raises:
        OSError / ValueError: as :func:`read_csv_manifest`.
    """
    regions: Dict[str, dict] = {}
    seen = set()
    for item in inputs:
        if not _is_uri(item) and os.path.isfile(item) and item.lower().endswith(".csv"):
            for s, r in read_csv_manifest(item):
                if s not in seen and r is not None:
                    regions[s] = r
                seen.add(s)
    return regions


# ------------------------------------------------------------------------------------------------ the job

@dataclass
class JobSummary:
    """What :func:`run_job` did.

    Attributes:
        inputs: number of inputs. processed: inputs processed in this run. skipped: inputs whose records and
        crops already existed (resumed). failed: ``(source, error)`` of every failed input in the table.
        table: the Parquet dataset folder. seconds: wall time of this run. startup_s: engine start-up (cluster
        start and model load) until the first record arrived, included in ``seconds``. input_errors: inputs
        that gave no image (:func:`run_engine` and the command line fill it).
    """

    inputs: int = 0
    processed: int = 0
    skipped: int = 0
    failed: List[Tuple[str, str]] = field(default_factory=list)
    table: str = ""
    seconds: float = 0.0
    startup_s: float = 0.0
    input_errors: List[str] = field(default_factory=list)


class _Part:
    def __init__(self, index: int, sources: List[str], relnames: List[str], regions: List[str]) -> None:
        self.index, self.sources, self.relnames, self.regions = index, sources, relnames, regions
        h = hashlib.sha256()
        for s, r, g in zip(sources, relnames, regions):  # a changed region redoes its chunk
            h.update(s.encode("utf-8", "surrogateescape") + b"\0" + r.encode("utf-8", "surrogateescape") + b"\0")
            if g:
                h.update(g.encode() + b"\0")
        self.digest = h.hexdigest()[:32]
        self.records: Dict[str, List[dict]] = {}

    @property
    def filename(self) -> str:
        return f"part-{self.index:05d}.parquet"


def _done_part(path: str, key: str, part: _Part, out: str) -> Optional[List[Tuple[str, str]]]:
    """The failures recorded in an existing table file when it is complete for this job (same key, same
    inputs, every crop present), else None."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path).metadata or {}
        if meta.get(b"gazecrop.job_key", b"").decode() != key or \
                meta.get(b"gazecrop.chunk", b"").decode() != part.digest:
            return None
        t = pq.read_table(path, columns=["source", "crop_path", "error"]).to_pydict()
    except Exception:  # unreadable or foreign file: recompute it
        return None
    if any(c is not None and not os.path.isfile(os.path.join(out, c)) for c in t["crop_path"]):
        return None
    return [(s, e) for s, e in zip(t["source"], t["error"]) if e is not None]


def _write_named(path: str, data: bytes) -> None:
    """:func:`gazecrop._atomic.write_bytes`, with an OSError that names ``path`` and gives the system's reason."""
    try:
        write_bytes(path, data)
    except OSError as e:
        raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from e


def _write_part(path: str, part: _Part, key: str, n_aspects: int) -> List[Tuple[str, str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    records: List[dict] = []
    for s in part.sources:  # input order, then aspect order: the file depends only on the inputs
        records += part.records[_printable(s)]
    table = records_to_arrow(records)
    meta = dict(table.schema.metadata or {})
    meta.update({b"gazecrop.job_key": key.encode(), b"gazecrop.chunk": part.digest.encode(),
                 b"gazecrop.sources": json.dumps([_printable(s) for s in part.sources]).encode()})
    table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    _write_named(path, sink.getvalue().to_pybytes())
    return [(r["source"], r["error"]) for r in records if r["error"] is not None]


Executor = Callable[[List[Tuple[str, str, str]], BatchOptions, str, Optional[int], Optional[str]],
                    Iterator[List[dict]]]
"""An engine: tasks ``(source, relname, regions as JSON text or "")`` -> batches of records."""


def _local_executor(tasks: List[Tuple[str, str, str]], options: BatchOptions, crops_dir: str,
                    jobs: Optional[int], address: Optional[str]) -> Iterator[List[dict]]:
    """This process, ``jobs`` threads (the native core releases the GIL), one shared model."""
    if address:
        raise ValueError("--address is for --engine ray or dask")
    cropper = Cropper(options, crops_dir)
    jobs = jobs or (os.cpu_count() or 1)
    it = iter(tasks)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending = set()
        try:
            while True:
                while len(pending) < 4 * jobs:
                    task = next(it, None)
                    if task is None:
                        break
                    pending.add(pool.submit(cropper.run, [task[0]], [task[1]], [task[2]]))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        finally:
            for fut in pending:
                fut.cancel()


def _executor(engine: str) -> Executor:
    if engine == "local":
        return _local_executor
    if engine == "ray":
        from .ray import _ray_executor

        return _ray_executor
    if engine == "dask":
        from .dask import _dask_executor

        return _dask_executor
    raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")


@contextlib.contextmanager
def _job_lock(out: str) -> Iterator[None]:
    """One job at a time per output folder: an exclusive ``flock`` on ``OUT/.gazecrop-batch.lock``, which is
    removed (while still locked) when the job ends, so a finished job leaves no lock file. A job that locks a
    file another job has just removed (it opened the name before the removal) sees that the name no longer
    leads to its file and starts again with a new one, so two jobs never both hold the lock. A file system
    without locks: no check.

    Raises:
        RuntimeError: another job holds the lock.
    """
    import errno
    import fcntl

    path = os.path.join(out, LOCK_NAME)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise RuntimeError(f"another gazecrop-batch job is writing to {out}") from None
            locked = False  # no locks here (ENOLCK): run unchecked, as before
        try:
            st, now = os.fstat(fd), os.stat(path)
            current = (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino)
        except FileNotFoundError:
            current = False
        if current or not locked:
            break
        os.close(fd)  # the job that held this file removed it: lock the file now at that name
    try:
        yield
    finally:
        if locked:
            with contextlib.suppress(OSError):
                os.unlink(path)  # still holding the lock: a job waiting on this file will retry
        os.close(fd)


def _progress_file(folder: str, key: str, source: str, relname: str, regions: str) -> str:
    h = hashlib.sha256("\0".join((key, source, relname, regions)).encode("utf-8", "surrogateescape")).hexdigest()
    return os.path.join(folder, h[:40] + ".json")


def _keep_finished(folder: str, key: str, source: str, relname: str, regions: str, records: List[dict]) -> None:
    """Keep one finished image's records until its chunk's table file is written (atomically). ``regions``:
    its regions as JSON text ("" without), so that records of other regions are never taken back."""
    os.makedirs(folder, exist_ok=True)
    _write_named(_progress_file(folder, key, source, relname, regions), json.dumps(
        {"job_key": key, "source": _printable(source), "relname": _printable(relname), "regions": regions,
         "records": records},
        default=lambda v: v.item()).encode())  # numpy scalars from an engine's batches as Python numbers


def _finished(folder: str, key: str, source: str, relname: str, regions: str, out: str) -> Optional[List[dict]]:
    """The records an interrupted run of this job kept for an image with these regions, when they are there
    and its crops exist, else None."""
    try:
        with open(_progress_file(folder, key, source, relname, regions), "rb") as f:
            d = json.loads(f.read())
        if d["job_key"] != key or d["source"] != _printable(source) or d["relname"] != _printable(relname) or \
                d["regions"] != regions:
            return None
        records = [{c: r[c] for c in COLUMN_NAMES} for r in d["records"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not records or any(r["crop_path"] is not None and not os.path.isfile(os.path.join(out, r["crop_path"]))
                          for r in records):
        return None
    return records


def _forget(folder: str, key: str, part: "_Part") -> None:
    """Remove the kept records of a chunk whose table file is written."""
    for s, r, g in zip(part.sources, part.relnames, part.regions):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_progress_file(folder, key, s, r, g))


def _clear_progress(folder: str) -> None:
    """Remove the folder of kept records (the job is complete, or recomputes everything)."""
    if os.path.isdir(folder):
        for f in os.listdir(folder):
            with contextlib.suppress(OSError):  # (nothing else is ever written there)
                os.unlink(os.path.join(folder, f))
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def _complete(part: "_Part", n_aspects: int) -> bool:
    """Every input of the chunk has all its records (or its failure record)."""
    return len(part.records) == len(part.sources) and all(
        len(v) == n_aspects or v[0]["error"] is not None for v in part.records.values())


def _clean_stale(folder: str) -> None:
    """Remove the temporary files that killed writers left in ``folder`` and its sub-folders
    (:func:`gazecrop._atomic.clean_stale`: files of live writers and of other programs are never touched)."""
    for root, _dirs, _files in os.walk(folder):
        _atomic.clean_stale(root)


def run_job(inputs: Sequence[str], out: str, options: BatchOptions, *, engine: str = "local",
            jobs: Optional[int] = None, address: Optional[str] = None, chunk_size: int = DEFAULT_CHUNK,
            overwrite: bool = False, root: Optional[str] = None,
            progress: Optional[Callable[[int, int, int], None]] = None,
            regions: Optional[Dict[str, dict]] = None) -> JobSummary:
    """Crop every input into ``out`` (layout, resume and atomicity rules in the module docstring).

    Args:
        inputs: sources (paths or URIs), in the order the table keeps; duplicates are dropped.
        out: output folder (a local or shared file system path that every worker can write).
        options: what to compute. engine: ``"local"``, ``"ray"`` or ``"dask"``.
        jobs: local: threads; ray / dask without ``address``: workers of the local cluster started
            (default: the CPU count); with ``address``: Ray actors / ignored for Dask (all workers).
        address: Ray (``ray://host:10001``, ``auto``) or Dask (``tcp://host:8786``) cluster to use.
        chunk_size: inputs per table file (a resumed job skips finished chunks by their table file, and the
            finished images of the other chunks by the records kept for them).
        overwrite: recompute everything, ignoring finished table files.
        root: folder or URI prefix crop names are relative to (default: see :func:`plan_names`).
        progress: ``progress(done, total, failed)`` after each input of this run.
        regions: source -> its regions (``{"keep": ..., "boost": ..., "focal": ...}``, JSON-ready, as
            :func:`read_csv_manifest` gives them); they are part of their chunk's resume key, so a changed
            region redoes that chunk.
    Returns:
        :class:`JobSummary`.
    Raises:
        ValueError: bad arguments. RuntimeError: another job holds ``out``. ImportError: the engine (or
        pyarrow) is not installed. OSError: the table cannot be written (the job stops; run it again).
    """
    import pyarrow  # noqa: F401  (fail before any work when Parquet cannot be written)

    t0 = time.perf_counter()
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    run = _executor(engine)
    sources = list(dict.fromkeys(os.fspath(s) for s in inputs))
    relnames = plan_names(sources, root)
    out = os.path.abspath(out)
    table_dir, crops_dir = os.path.join(out, "table"), os.path.join(out, "crops")
    os.makedirs(table_dir, exist_ok=True)
    umask()
    key = job_key(options)
    summary = JobSummary(inputs=len(sources), table=table_dir)
    progress_dir = os.path.join(out, PROGRESS_DIR)
    with _job_lock(out):
        _clean_stale(table_dir)
        _clean_stale(crops_dir)
        _clean_stale(progress_dir)
        if overwrite:
            _clear_progress(progress_dir)
        name, version = model_info(options.model)
        _write_named(os.path.join(out, "job.json"), json.dumps(
            {"schema_version": SCHEMA_VERSION, "job_key": key, "gazecrop": __version__, "model_name": name,
             "model_version": version, "inputs": len(sources), "chunk_size": chunk_size,
             "options": options.to_dict()}, indent=1).encode())
        texts = [json.dumps((regions or {})[s], sort_keys=True) if s in (regions or {}) else "" for s in sources]
        parts = [_Part(i // chunk_size, sources[i:i + chunk_size], relnames[i:i + chunk_size],
                       texts[i:i + chunk_size]) for i in range(0, len(sources), chunk_size)]
        wanted = {p.filename for p in parts}
        for f in os.listdir(table_dir):  # table files of another input list: not part of this table
            if f.startswith("part-") and f.endswith(".parquet") and f not in wanted:
                os.unlink(os.path.join(table_dir, f))
        todo: List[_Part] = []
        for p in parts:
            done = None if overwrite else _done_part(os.path.join(table_dir, p.filename), key, p, out)
            if done is None:
                todo.append(p)
            else:
                summary.skipped += len(p.sources)
                summary.failed += done
        n_aspects = len(options.outputs)  # records per input
        owner: Dict[str, Tuple[_Part, str, str, str]] = {}
        for p in todo:
            for s, rel, g in zip(p.sources, p.relnames, p.regions):
                owner[_printable(s)] = (p, s, rel, g)
                kept = _finished(progress_dir, key, s, rel, g, out)  # finished before an interruption
                if kept is not None:
                    p.records[_printable(s)] = kept
                    summary.skipped += 1
            if _complete(p, n_aspects):
                summary.failed += _write_part(os.path.join(table_dir, p.filename), p, key, n_aspects)
                _forget(progress_dir, key, p)
                p.records.clear()
        tasks = [(s, r, g) for p in todo for s, r, g in zip(p.sources, p.relnames, p.regions)
                 if _printable(s) not in p.records]
        total, done_n, failed_n = len(tasks), 0, 0
        first = True
        if tasks:
            for records in run(tasks, options, crops_dir, jobs, address):
                if first:
                    summary.startup_s, first = time.perf_counter() - t0, False
                for r in records:
                    p, source, relname, reg = owner[r["source"]]
                    got = p.records.setdefault(r["source"], [])
                    got.append(r)
                    if r["error"] is not None or len(got) == n_aspects:
                        if r["error"] is not None and len(got) > 1:
                            raise RuntimeError(f"inconsistent records for {r['source']}")
                        done_n += 1
                        failed_n += r["error"] is not None
                        if _complete(p, n_aspects):
                            summary.failed += _write_part(os.path.join(table_dir, p.filename), p, key,
                                                          n_aspects)
                            _forget(progress_dir, key, p)
                            p.records.clear()
                        else:  # kept until its chunk is written: an interruption loses only images in flight
                            _keep_finished(progress_dir, key, source, relname, reg, got)
                        if progress is not None:  # reported once kept
                            progress(done_n, total, failed_n)
            if done_n != total:
                raise RuntimeError(f"the engine returned records for {done_n} of {total} inputs")
        summary.processed = done_n
        _clear_progress(progress_dir)
    order = {_printable(s): i for i, s in enumerate(sources)}
    summary.failed.sort(key=lambda f: order.get(f[0], 0))
    summary.seconds = time.perf_counter() - t0
    return summary


def run_engine(engine: str, inputs: "Union[str, Sequence[str]]", out: str, *,
               aspects: Optional[Sequence[str]] = None,
               address: Optional[str] = None, jobs: Optional[int] = None, **kwargs) -> JobSummary:
    """:func:`run_job` from command-line-style inputs (a folder, a manifest, or a list of them and of image
    paths / URIs; :func:`expand_inputs`), with :class:`BatchOptions` fields (``sizes``, ``upscale``,
    ``strategy``, ``name``, ``write_crops``, ``format``, ``quality``, ``model``; ``aspects`` None: ``1:1``
    unless ``sizes`` are given) and :func:`run_job` arguments mixed in ``kwargs``.
    Inputs that gave no image (:class:`Expanded` ``errors``) are in the summary's ``input_errors``.

    Raises:
        ValueError: no image found; otherwise as :func:`run_job`.
    """
    opt_fields = set(BatchOptions.__dataclass_fields__)
    opts = BatchOptions(aspects=None if aspects is None else tuple(aspects),
                        **{k: v for k, v in kwargs.items() if k in opt_fields})
    job_kw = {k: v for k, v in kwargs.items() if k not in opt_fields}
    found = expand_inputs([os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike)) else list(inputs))
    if not found.sources:
        raise ValueError("no input images found" + "".join(f"; {e}" for e in found.errors))
    job_kw.setdefault("root", found.root)
    job_kw.setdefault("regions", manifest_regions([os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike))
                                                  else list(inputs)))
    summary = run_job(found.sources, out, opts, engine=engine, jobs=jobs, address=address, **job_kw)
    summary.input_errors = list(found.errors)
    return summary


# --------------------------------------------------------------------------------------------- command line

def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    from ._output import FORMATS
    from .cli import _quality_arg, add_input_arguments, add_size_arguments, check_fit_arguments

    p = argparse.ArgumentParser(
        prog="gazecrop-batch",
        description="Crops for many stored images, on this machine, Ray or Dask: a Parquet table of one record "
                    "per image and aspect (box, salient point, score, advice, error) and the cropped images. "
                    "Run it again to finish an interrupted job: finished images are kept and skipped.")
    p.add_argument("inputs", nargs="+", metavar="MANIFEST_OR_FOLDER",
                   help="folders (image files in them and their sub-folders), manifest files (one path or URI "
                        "per line; or a .csv with columns path, keep, boost, focal: per-image regions as gazecrop's "
                        "--keep L,T,W,H, --boost L,T,W,H,WEIGHT, --focal X,Y, several in a cell separated by ;), "
                        "image files or URIs")
    p.add_argument("--version", action="version", version=f"gazecrop {__version__}")
    p.add_argument("-a", "--aspect", action="append", metavar="W:H",
                   help="aspect ratio width:height (16:9) or a number (1.78); repeatable; default 1:1 "
                        "(none with --size)")
    add_size_arguments(p)
    p.add_argument("-o", "--out", required=True, metavar="DIR",
                   help="output folder: table/ (Parquet), crops/, job.json")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: this process (threads); ray: Ray Data; dask: Dask distributed (default local)")
    p.add_argument("--address", metavar="ADDR", help="cluster to use: Ray (auto, ray://host:10001) or Dask "
                   "(tcp://host:8786); default: start a local one with --jobs workers")
    p.add_argument("-j", "--jobs", type=int, metavar="N",
                   help="threads (local) or local-cluster workers (ray, dask); default: the CPU count")
    p.add_argument("--name", default=BatchOptions.name, metavar="TEMPLATE",
                   help="crop file name: {stem}, {aspect}, {size}, {ext}, as in gazecrop (320x180 for --size "
                        "320x180), in crops/ under the input's relative folder; default %(default)s")
    p.add_argument("--format", choices=sorted(FORMATS), default=None,
                   help="format of the crops (default: the extension written in --name, else each input's "
                        "real format); the file extension always matches; avif where Pillow can write it")
    p.add_argument("--quality", type=_quality_arg, default=None, metavar="Q",
                   help="quality 1..100 of JPEG / WebP / AVIF crops (default: a JPEG input's own tables, else 90)")
    p.add_argument("--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY,
                   help=f"how boxes are placed (default {DEFAULT_STRATEGY})")
    p.add_argument("--model", metavar="PATH", help="a .gzw model file (default: the bundled model)")
    p.add_argument("--no-crops", action="store_true", help="write the table only")
    p.add_argument("--overwrite", action="store_true", help="recompute everything, even finished table files")
    add_input_arguments(p)
    p.add_argument("--root", metavar="DIR", help="folder (or URI prefix) crop names are relative to "
                   "(default: the folder given, or the folder common to a manifest's entries)")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, metavar="N",
                   help="inputs per Parquet table file (default %(default)s); a resumed job skips finished table "
                        "files and, whatever the chunk size, the images of unfinished ones already done")
    prog = p.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="show a progress bar on stderr (default: only when stderr is a terminal)")
    prog.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        p.error("--jobs must be >= 1")
    if args.chunk_size < 1:
        p.error("--chunk-size must be >= 1")
    if args.out == "":  # --out "$DEST" with DEST unset: never the current folder by accident
        p.error("--out needs a folder name, got an empty string")
    try:
        check_fit_arguments(args)
        args.options = BatchOptions(aspects=args.aspect, sizes=tuple(args.size or ()), upscale=not args.no_upscale,
                                    fit=args.fit, background=args.background, strategy=args.strategy, name=args.name,
                                    write_crops=not args.no_crops, format=args.format, quality=args.quality,
                                    model=args.model, max_pixels=args.max_pixels)
    except (ValueError, TypeError) as e:
        p.error(str(e))
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``gazecrop-batch``. Exit status: 0 every input cropped, 1 some failed (listed, and in
    the table's ``error`` column) or the output could not be written, 2 usage error, 128 + N when stopped by
    signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP; run the same command again to finish). Signals follow the
    ``gazecrop`` CLI's rules (:func:`gazecrop.cli.main`): writes in progress in this process are removed, an
    ignored signal stays ignored."""
    from .cli import _STOP_SIGNALS, _Stop, _Terminal, _on_signal

    term = _Terminal(0, False)
    installed = {}
    if threading.current_thread() is threading.main_thread():
        for s in _STOP_SIGNALS:
            if signal.getsignal(s) != signal.SIG_IGN:
                installed[s] = signal.signal(s, _on_signal)
    stopped = False
    try:
        with warnings.catch_warnings():  # over Pillow's limit: the record's error says so, not a raw warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _main(argv, term)
    except (_Stop, KeyboardInterrupt) as e:
        stopped = True
        _atomic.cancel_pending()
        signum = e.signum if isinstance(e, _Stop) else signal.SIGINT
        term.finish()
        term.err(f"gazecrop-batch: stopped by {signal.Signals(signum).name}; finished work is kept, run the same "
                 f"command again to finish")
        return 128 + signum
    finally:
        for s, old in installed.items():  # after a stop, a second signal ends the process at once
            signal.signal(s, signal.SIG_DFL if stopped else old)


def _main(argv: Optional[Sequence[str]], term) -> int:
    args = _parse_args(argv)
    _atomic.allow_writes()
    try:
        found = expand_inputs(args.inputs, args.recursive)
        regions = manifest_regions(args.inputs)
    except (OSError, ValueError) as e:
        term.err(f"gazecrop-batch: {e}")
        return 2
    for e in found.errors:
        term.err(f"gazecrop-batch: {e}")
    if not found.sources:
        term.err("gazecrop-batch: no input images found")
        return 2
    term.progress = bool(args.progress if args.progress is not None else sys.stderr.isatty())

    def progress(done: int, total: int, failed: int) -> None:
        term.total = total
        term.step(failed > term.failed)

    try:
        summary = run_job(found.sources, args.out, args.options, engine=args.engine, jobs=args.jobs,
                          address=args.address, chunk_size=args.chunk_size, overwrite=args.overwrite,
                          root=args.root or found.root, progress=progress, regions=regions)
    except ImportError as e:
        extra = args.engine if args.engine != "local" else "batch"
        term.err(f"gazecrop-batch: {e}; install it with: pip install \"gazecrop[{extra}]\"")
        return 2
    except (ValueError, RuntimeError) as e:
        term.err(f"gazecrop-batch: {e}")
        return 2
    except OSError as e:
        term.finish()
        term.err(f"gazecrop-batch: {e}; run the job again to finish")
        return 1
    term.finish()
    n_failed = len(summary.failed)
    term.err(f"gazecrop-batch: {summary.inputs} input(s): {summary.processed} processed, {summary.skipped} "
             f"already done, {n_failed} failed; table {summary.table} ({summary.seconds:.1f} s)")
    for source, error in summary.failed[:20]:
        term.err(f"  failed: {error if error.startswith(source) else f'{source}: {error}'}")
    if n_failed > 20:
        term.err(f"  ... and {n_failed - 20} more (the table's error column lists them all)")
    return 1 if n_failed or found.errors else 0


if __name__ == "__main__":  # pragma: no cover - python -m gazecrop.batch: run the package's module, not a copy
    from gazecrop.batch import main as _package_main  # (isinstance checks in the engines need its classes)

    sys.exit(_package_main())
