"""gazecrop under sustained load and faults: soak tests of the thumbor detector, the library in a thread pool
and the batch job (issue 26).

    python benchmarks/soak.py [--quick] [--scenario thumbor|library|batch ...] [--json OUT.json]

Each scenario prints one summary line (``soak <scenario>: PASS|FAIL|SKIPPED ...``); the exit status is 1 when
any scenario falls short, 0 otherwise. A scenario whose engine is not installed (thumbor; Ray or Dask inside
the batch scenario) says so and is skipped, never passed. ``--quick`` is the form CI runs (``.ci/run``: the
thumbor scenario in thumbor's own virtual environment, the others in the main one). Every server listens on
127.0.0.1 only; request and call counts are fixed (``--requests``, ``--calls``, ``--images`` change them, and
the results record what ran), and each wait has a deadline. Full runs take tens of minutes on 2 cores.

Synthetic corpora (seeded): photos of random size and aspect (1:4..4:1) in JPEG, PNG and WebP, 10 % of the
files odd or broken (at least two of each kind of :data:`ODD` and :data:`BROKEN`, in the short form too):
valid odd ones (1x1, a 30000x10 strip, CMYK, 16-bit, animated GIF / WebP, EXIF-rotated, palette with
transparency) must be served; broken ones (truncated JPEG / PNG, not an image, a decompression bomb, an empty
file) must fail alone, with the consumer's normal error.

glibc malloc: the script re-executes itself with ``MALLOC_ARENA_MAX=2`` and ``MALLOC_MMAP_THRESHOLD_=1048576``
(:data:`MALLOC_ENV`, unless set) and starts thumbor with them. glibc gives each thread that mallocs at the
same time an arena of its own (up to 8 per core), and after a large mmapped block is freed it raises its
mmap threshold (up to 32 MiB), so later decoded images of a few MiB are carved from the arenas instead and
fragment them; with 8 threads decoding images of very different sizes the RSS then climbs, in steps, for
thousands of calls. Measured on this project's 2-core machine (8 threads, 47 inputs, passes of 94 calls,
RSS after ``malloc_trim(0)``): +27 % over 14 passes with glibc's defaults, +15 % over 12 with two arenas, +3 %
over 14 with two arenas and the fixed 1 MiB mmap threshold (at 81 MiB instead of 102), +2 % with one arena;
a single thread +0.5 % over 8 passes with the defaults. That is the allocator, not a leak (the native leak
check and the single-threaded run agree); set the same in a long-running multi-threaded image process.

thumbor (``--scenario thumbor``, needs thumbor installed in this interpreter)
    A thumbor server on 127.0.0.1 with README.md's configuration (the gazecrop detector in thumbor's thread
    pool), the file loader over the corpus (150 files; 40 with ``--quick``), thumbor's storage off
    (``no_storage``: the detector runs on every request, no cache of images or focal points grows) and no
    result storage. Every distinct request (two ``/unsafe/WxH/smart/...`` sizes of the image and one
    ``/unsafe/meta/...`` per file) is first made alone (and, for a broken file, without ``smart``: thumbor's
    own answer, which the detector must not change); then 16 clients make the full count (5,000; 300 with
    ``--quick``) at once and every answer must equal the lone one (status and bytes). The server must
    survive (same process, health check). Latency p50 / p99 over the concurrent requests; the server's RSS
    sampled every 0.2 s; growth = median RSS over the last 10 % of the concurrent phase over the median over
    the 10 % after its warm-up (the lone requests and the first 10 % of the concurrent ones).

library (``--scenario library``)
    One :class:`gazecrop.Model` (2 intra-op threads: the core's pool) shared by 8 Python threads over the full
    count of calls (4,000; 400 with ``--quick``) cycling through the corpus (200 files; 40 with ``--quick``)
    as paths, bytes (:class:`gazecrop.EncodedImage`), arrays and ``PIL`` images, plus arrays of the wrong dtype
    or shape, a non-contiguous view and missing paths. Each call is :func:`gazecrop.predict` + crops for three
    aspects (+ a thumbnail for every fourth input); its outcome (the log-density grid's bytes, boxes, points,
    scores, thumbnail pixels, or the exception's type and message) must equal a single-threaded run's bit for
    bit. Warm-up: every input twice (at least 10 % of the calls); then 10 blocks, each followed by a
    checkpoint at rest: open file descriptors and OS threads must stay at their post-warm-up counts (the
    core's pool persists) and the RSS held (after ``malloc_trim(0)``, so what the process holds, not what
    glibc caches for later) must not grow: median of the last three checkpoints over the first three. The
    RSS sampled under load is reported beside it. Outside ``--quick`` the native core is checked for leaks:
    the model inputs the single-threaded run handed to the core (about 50) are dumped and run again by
    ``tools/leak_check.cpp`` built with AddressSanitizer + LeakSanitizer (``tools/leak_check.sh``: 4 threads
    x 3 rounds, outputs compared bit for bit, plus the core's refusals of bad shapes and bad weights files).

batch (``--scenario batch``, needs pyarrow)
    ``gazecrop-batch`` over a synthetic folder of small images (10,000 in folders of 100; 120 with
    ``--quick``; 2 % odd or broken), two aspects, crops written, chunks of 100 (12). An uninterrupted local
    run is the reference. Local engine: the job is killed with SIGKILL (6 times; 2 with ``--quick``), each time
    once a random number of table files (from none, during start-up, to a share of those left that spreads
    the kills over the job) is written, plus a random delay within half a chunk's time; then run again until it
    finishes. Ray and Dask (each when installed): a
    worker process is killed with SIGKILL once the first table file is written; the run must go on (the engine
    retries the lost work) and write two more table files, then the driver (the ``gazecrop-batch`` process;
    what is left of its local cluster is killed with it) is killed and the command run again until it
    finishes. Each final table (every row and column; only whether a
    row failed for the error text) and every crop file must equal the reference's, every input must have
    exactly one record per aspect (or one failure record), and no temporary file may be left.

RSS growth limit: :data:`RSS_GROWTH_LIMIT` in full runs, :data:`RSS_GROWTH_LIMIT_QUICK` with ``--quick``.
Results (``--json``) feed the soak section of ``benchmarks/RESULTS.md`` through ``benchmarks/report.py
--soak``.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import harness  # noqa: E402  (sets the one-thread defaults before numpy loads)
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = harness.ROOT
SCENARIOS = ("thumbor", "library", "batch")
RSS_GROWTH_LIMIT = 0.05
"""Largest RSS growth after warm-up a scenario may show (issue 26: <= 5 % over the full runs)."""

MALLOC_ENV = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576"}
"""glibc settings every soak process runs with, unless set already (module docstring)."""

RSS_GROWTH_LIMIT_QUICK = 0.5
"""The same with ``--quick``: a few hundred calls end inside the allocator's warm-up (which images happen to be
in flight together moves the RSS by tens of per cent), so only a gross leak fails the short form."""

ODD = ("1x1 png", "30000x10 strip png", "cmyk jpeg", "16-bit png", "animated gif", "animated webp",
       "exif-rotated jpeg", "palette png with transparency")
"""Valid but unusual images: every consumer must serve them."""

BROKEN = ("truncated jpeg", "not an image", "decompression bomb png", "empty file", "truncated png")
"""Files that are not usable images: each must fail alone, with the consumer's normal error."""

SIZES = {"full": {"thumbor_requests": 5000, "thumbor_images": 150, "library_calls": 4000, "library_images": 200,
                  "batch_images": 10000, "batch_kills": 6, "batch_chunk": 100},
         "quick": {"thumbor_requests": 300, "thumbor_images": 40, "library_calls": 400, "library_images": 40,
                   "batch_images": 120, "batch_kills": 2, "batch_chunk": 12}}


# ------------------------------------------------------------------------------------------------ corpus

@dataclass(frozen=True)
class Item:
    """One file of a synthetic corpus: ``name`` (relative path), ``kind`` (``photo``, ``odd`` or ``broken``),
    ``what`` (an :data:`ODD` / :data:`BROKEN` entry, or the photo's size)."""

    name: str
    kind: str
    what: str


def picture(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A seeded photo-like RGB picture: a smooth textured background with one bright blob."""
    y = np.arange(h, dtype=np.float32)[:, None, None]
    x = np.arange(w, dtype=np.float32)[None, :, None]
    base = rng.uniform(40, 120, 3).astype(np.float32) + 30 * np.sin(x / rng.uniform(8, 30)) * \
        np.cos(y / rng.uniform(8, 30))
    cx, cy, r = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h, rng.uniform(0.06, 0.15) * max(w, h)
    blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
    img = base * (1 - blob) + rng.uniform(180, 255, 3).astype(np.float32) * blob
    img += rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 1-bit PNG header declaring ``width`` x ``height`` pixels (900 M by default: over twice Pillow's
    limit) with a few hundred bytes of data: refused from its header, never decoded."""
    row = b"\0" * (1 + (width + 7) // 8)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(row * 4, 9)) + _png_chunk(b"IEND", b""))


def write_odd(path: Path, what: str, rng: np.random.Generator) -> str:
    """Write one :data:`ODD` image to ``path`` without its extension; returns the file name used."""
    if what == "1x1 png":
        Image.new("RGB", (1, 1), (200, 30, 30)).save(path.with_suffix(".png"))
    elif what == "30000x10 strip png":
        a = np.zeros((10, 30000, 3), np.uint8)
        a[..., 0] = (np.arange(30000) % 256).astype(np.uint8)
        a[:, 21000:21300] = 255
        Image.fromarray(a).save(path.with_suffix(".png"))
    elif what == "cmyk jpeg":
        picture(rng, 320, 240).convert("CMYK").save(path.with_suffix(".jpg"), quality=90)
    elif what == "16-bit png":
        a = (np.asarray(picture(rng, 240, 320).convert("L"), np.uint16) * 257).astype(np.uint16)
        Image.fromarray(a).save(path.with_suffix(".png"))  # mode I;16
    elif what in ("animated gif", "animated webp"):
        frames = [picture(rng, 200, 150) for _ in range(3)]
        ext = ".gif" if "gif" in what else ".webp"
        frames[0].save(path.with_suffix(ext), save_all=True, append_images=frames[1:], duration=100, loop=0)
    elif what == "exif-rotated jpeg":
        exif = Image.Exif()
        exif[0x0112] = 6
        picture(rng, 320, 200).save(path.with_suffix(".jpg"), quality=90, exif=exif.tobytes())
    elif what == "palette png with transparency":
        im = picture(rng, 256, 192).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        im.info["transparency"] = 0
        im.save(path.with_suffix(".png"), transparency=0)
    else:
        raise ValueError(what)
    return next(p.name for p in path.parent.glob(path.name + ".*"))


def write_broken(path: Path, what: str, rng: np.random.Generator) -> str:
    """Write one :data:`BROKEN` file to ``path`` without its extension; returns the file name used."""
    if what == "truncated jpeg":
        buf = _encode(picture(rng, 320, 240), "JPEG")
        path.with_suffix(".jpg").write_bytes(buf[: len(buf) // 3])
    elif what == "truncated png":
        buf = _encode(picture(rng, 200, 200), "PNG")
        path.with_suffix(".png").write_bytes(buf[: len(buf) // 2])
    elif what == "not an image":
        path.with_suffix(".jpg").write_bytes(b"this is a text file, not a picture\n" * 20)
    elif what == "decompression bomb png":
        path.with_suffix(".png").write_bytes(bomb_png())
    elif what == "empty file":
        path.with_suffix(".png").write_bytes(b"")
    else:
        raise ValueError(what)
    return next(p.name for p in path.parent.glob(path.name + ".*"))


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def write_corpus(folder: Path, n: int, seed: int, *, long_side: Tuple[int, int] = (32, 1600),
                 special_share: float = 0.1, per_folder: int = 0, all_kinds: bool = True) -> List[Item]:
    """``n`` files under ``folder``: photos of random size (long side in ``long_side``) and aspect (1:4..4:1)
    in JPEG, PNG or WebP, and a ``special_share`` of odd and broken files alternating (:data:`ODD`,
    :data:`BROKEN`; with ``all_kinds``, enough of them for every kind to appear), at seeded random places.
    ``per_folder`` > 0 spreads them over sub-folders."""
    rng = np.random.default_rng(seed)
    n_special = min(n, max(int(round(n * special_share)), 2 * max(len(ODD), len(BROKEN)) if all_kinds else 0))
    special = set(rng.choice(n, size=n_special, replace=False).tolist()) if n_special else set()
    items: List[Item] = []
    k = 0
    for i in range(n):
        sub = folder / f"d{i // per_folder:03d}" if per_folder else folder
        sub.mkdir(parents=True, exist_ok=True)
        stem = sub / f"img{i:05d}"
        rel = (sub.relative_to(folder) / "x").parent
        if i in special:
            if k % 2 == 0:
                what = ODD[(k // 2) % len(ODD)]
                name, kind = write_odd(stem, what, rng), "odd"
            else:
                what = BROKEN[(k // 2) % len(BROKEN)]
                name, kind = write_broken(stem, what, rng), "broken"
            k += 1
        else:
            ls = int(rng.integers(long_side[0], long_side[1] + 1))
            aspect = float(np.exp(rng.uniform(np.log(0.25), np.log(4.0))))
            w, h = (ls, max(1, round(ls / aspect))) if aspect >= 1 else (max(1, round(ls * aspect)), ls)
            fmt = ("JPEG", ".jpg") if rng.random() < 0.6 else (("PNG", ".png") if rng.random() < 0.6 else
                                                              ("WEBP", ".webp"))
            picture(rng, w, h).save(stem.with_suffix(fmt[1]), fmt[0], **({"quality": 85} if fmt[0] != "PNG" else {}))
            name, kind, what = stem.with_suffix(fmt[1]).name, "photo", f"{w}x{h}"
        items.append(Item(str(rel / name) if str(rel) != "." else name, kind, what))
    return items


# ------------------------------------------------------------------------------------------------ sampling

def proc_status(pid: int) -> Dict[str, int]:
    """``rss_kb``, ``threads`` and ``fds`` of a live process (Linux ``/proc``)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss_kb"] = int(line.split()[1])
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


class Sampler:
    """Samples :func:`proc_status` of ``pid`` every ``interval`` seconds in a thread: ``samples`` is a list of
    ``(monotonic time, rss_kb, threads, fds)``."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.samples: List[Tuple[float, int, int, int]] = []
        self._stop = threading.Event()
        self.lock = threading.Lock()  # held while sampling: its own open files must not meet a checkpoint's count
        self._thread = threading.Thread(target=self._run, daemon=True, name="soak-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        try:
            with self.lock:
                s = proc_status(self.pid)
        except (OSError, ValueError):
            return
        self.samples.append((time.monotonic(), s.get("rss_kb", 0), s.get("threads", 0), s["fds"]))

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def rss_summary(samples: Sequence[Tuple[float, int, int, int]], t0: float, t_warm: float, t1: float) -> dict:
    """RSS figures in MiB of a run measured from ``t0`` to ``t1``, warmed up at ``t_warm``: ``start`` (the
    first sample of all), ``warm`` (median over the first 10 % after the warm-up), ``peak``, ``end`` (median
    over the last 10 %), ``growth`` = end / warm - 1, and ``trajectory_mib``: the median over each twentieth
    of ``[t0, t1]``."""

    def window(a: float, b: float) -> List[int]:
        got = [s[1] for s in samples if a <= s[0] <= b]
        return got or [min(samples, key=lambda s: abs(s[0] - b))[1]]

    mib = 1 / 1024
    after = max(t1 - t_warm, 1e-9)
    warm = statistics.median(window(t_warm, t_warm + 0.1 * after))
    end = statistics.median(window(t1 - 0.1 * after, t1))
    step = (t1 - t0) / 20
    trajectory = [round(statistics.median(window(t0 + k * step, t0 + (k + 1) * step)) * mib, 1) for k in range(20)]
    return {"start_mib": samples[0][1] * mib, "warm_mib": warm * mib, "peak_mib": max(s[1] for s in samples) * mib,
            "end_mib": end * mib, "growth": end / warm - 1, "samples": len(samples), "trajectory_mib": trajectory}


def checkpoint(sampler: "Sampler") -> Dict[str, int]:
    """:func:`proc_status` of this process at rest (no call in flight; ``sampler`` paused), plus ``held_kb``:
    its RSS after glibc's ``malloc_trim(0)`` returned the free pages its arenas cache (what the process holds,
    not what the allocator keeps for later; the plain RSS off glibc)."""
    import ctypes

    with sampler.lock:
        s = proc_status(sampler.pid)
        try:
            ctypes.CDLL(None).malloc_trim(0)
            s["held_kb"] = proc_status(sampler.pid)["rss_kb"]
        except (OSError, AttributeError):
            s["held_kb"] = s["rss_kb"]
    return s


def held_summary(checkpoints: Sequence[Dict[str, int]]) -> dict:
    """``held_mib`` (per checkpoint) and ``held_growth``: the median held RSS of the last three checkpoints
    over that of the first three (the first is right after the warm-up), minus 1."""
    held = [c["held_kb"] for c in checkpoints]
    k = min(3, len(held))
    return {"held_mib": [round(h / 1024, 1) for h in held],
            "held_growth": statistics.median(held[-k:]) / statistics.median(held[:k]) - 1}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` (linear interpolation)."""
    return float(np.quantile(np.asarray(values, np.float64), q))


def _short(err: str, n: int = 160) -> str:
    return err if len(err) <= n else err[:n] + "..."


# ------------------------------------------------------------------------------------------------ thumbor

THUMBOR_TARGETS = ((300, 200), (200, 300), (128, 128), (640, 360), (90, 160))

THUMBOR_CONF = """
LOADER = 'thumbor.loaders.file_loader'
FILE_LOADER_ROOT_PATH = {images!r}
STORAGE = 'thumbor.storages.no_storage'
RESULT_STORAGE = None
NON_BLOCKING_SOCKETS = True
"""


def _readme_thumbor_conf() -> str:
    text = (ROOT / "README.md").read_text()
    begin, end = "<!-- thumbor-conf:begin -->", "<!-- thumbor-conf:end -->"
    block = text[text.index(begin) + len(begin):text.index(end)]
    return "\n".join(line for line in block.splitlines() if not line.startswith("```")) + "\n"


class ThumborServer:
    """A thumbor server on 127.0.0.1 (a listening socket handed over with ``--fd``: no port race) serving
    ``images``; ``port``, ``proc``, ``log``."""

    def __init__(self, top: Path, images: Path) -> None:
        conf = top / "thumbor.conf"
        conf.write_text(_readme_thumbor_conf() + THUMBOR_CONF.format(images=str(images)))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self.log = top / "thumbor.log"
        env = {**os.environ, **MALLOC_ENV}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "import sys; from thumbor.server import main; sys.exit(main())",
                 "--fd", str(sock.fileno()), "--conf", str(conf), "--log-level", "warning"],
                pass_fds=[sock.fileno()], stdout=log, stderr=subprocess.STDOUT, cwd=str(top), env=env)
        sock.close()
        deadline = time.monotonic() + 90
        while True:
            try:
                if self.get("/healthcheck")[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("thumbor did not start:\n" + self.log.read_text(errors="replace")[-2000:])
            time.sleep(0.2)

    def get(self, path: str, conn: Optional[http.client.HTTPConnection] = None, timeout: float = 120):
        """``(status, body)`` of a GET on the server."""
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            if conn is None:
                c.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def scenario_thumbor(sizes: dict, seed: int, work: Path, rss_limit: float) -> dict:
    """The thumbor scenario (module docstring). Returns its result dict (``passed``, figures, ``problems``)."""
    try:
        import thumbor  # noqa: F401
    except ImportError:
        return {"skipped": "thumbor is not installed in this interpreter (pip install '.[thumbor]' in a venv of "
                           "its own: it pins Pillow<13)"}
    import thumbor as _t

    images = work / "thumbor-images"
    images.mkdir()
    items = write_corpus(images, sizes["thumbor_images"], seed)
    rng = random.Random(seed)
    requests: List[Tuple[str, Item]] = []
    for it in items:
        for (w, h) in rng.sample(THUMBOR_TARGETS, 2):
            requests.append((f"/unsafe/{w}x{h}/smart/{it.name}", it))
        w, h = rng.choice(THUMBOR_TARGETS)
        requests.append((f"/unsafe/meta/{w}x{h}/smart/{it.name}", it))
    problems: List[str] = []
    server = ThumborServer(work, images)
    pid = server.proc.pid
    try:
        with Sampler(pid) as sampler:
            # every distinct request alone, then its plain (no detector) twin for the broken files
            alone: Dict[str, Tuple[int, str]] = {}
            for path, it in requests:
                st, body = server.get(path)
                alone[path] = (st, hashlib.sha256(body).hexdigest())
                if it.kind == "odd" and st != 200:
                    problems.append(f"odd image not served alone: {it.what} {path} -> {st}")
                if it.kind == "broken":  # thumbor's own answer: that of the request without the detector
                    plain = server.get(path.replace("/smart/", "/"))[0]
                    if st != plain:
                        problems.append(f"broken file: {it.what} {path} -> {st}, without the detector {plain}")
            n = sizes["thumbor_requests"]
            order = [requests[i % len(requests)] for i in range(n)]
            rng.shuffle(order)
            latencies: List[float] = [0.0] * n
            mismatches: List[str] = []
            failures: List[str] = []
            statuses: Dict[str, Dict[int, int]] = {}
            lock = threading.Lock()
            next_i = iter(range(n))

            def client() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                while True:
                    with lock:
                        i = next(next_i, None)
                    if i is None:
                        break
                    path, it = order[i]
                    t = time.perf_counter()
                    try:
                        st, body = server.get(path, conn)
                    except (OSError, http.client.HTTPException) as e:
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                        with lock:
                            failures.append(f"{path}: {type(e).__name__}: {e}")
                        continue
                    latencies[i] = time.perf_counter() - t
                    got = (st, hashlib.sha256(body).hexdigest())
                    with lock:
                        statuses.setdefault(it.kind if it.kind == "photo" else it.what, {}).setdefault(st, 0)
                        statuses[it.kind if it.kind == "photo" else it.what][st] += 1
                        if got != alone[path]:
                            mismatches.append(f"{path}: {got[0]} vs alone {alone[path][0]}")
                conn.close()

            t0 = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                for f in [pool.submit(client) for _ in range(16)]:
                    f.result()
            t1 = time.monotonic()
            alive = server.proc.poll() is None
            health = server.get("/healthcheck")[0] if alive else None
        rss = rss_summary(sampler.samples, t0, t0 + 0.1 * (t1 - t0), t1)
    finally:
        server.stop()
    log = server.log.read_text(errors="replace")
    detector_failures = log.count("gazecrop detector failed")
    if not alive or health != 200:
        problems.append(f"the server died or stopped answering (alive {alive}, health check {health})")
    if mismatches:
        problems.append(f"{len(mismatches)} answers differ from the same request alone, e.g. {mismatches[0]}")
    if failures:
        problems.append(f"{len(failures)} requests got no answer, e.g. {_short(failures[0])}")
    if rss["growth"] > rss_limit:
        problems.append(f"server RSS grew {rss['growth']:.1%} after warm-up (limit {rss_limit:.0%})")
    ok_lat = [latencies[i] for i in range(n) if latencies[i] > 0]
    return {"passed": not problems, "problems": problems, "requests": n, "distinct_requests": len(requests),
            "images": len(items), "clients": 16, "thumbor": _t.__version__,
            "odd_or_broken": sum(it.kind != "photo" for it in items),
            "statuses": {k: {str(s): c for s, c in v.items()} for k, v in sorted(statuses.items())},
            "p50_ms": percentile(ok_lat, 0.5) * 1e3, "p99_ms": percentile(ok_lat, 0.99) * 1e3,
            "seconds": t1 - t0, "rss": rss, "mismatches": len(mismatches), "no_answer": len(failures),
            "detector_failures_logged": detector_failures, "server_alive": alive}


# ------------------------------------------------------------------------------------------------ library

ASPECTS = ("16:9", "1:1", "4:5")


def library_inputs(items: Sequence[Item], folder: Path, seed: int) -> List[Tuple[str, object]]:
    """``(label, input)`` pairs: each corpus file as a path, bytes, array or PIL image (cycling), plus inputs
    only the library can be handed: arrays of the wrong dtype or shape, a non-contiguous view, missing paths."""
    import gazecrop

    out: List[Tuple[str, object]] = []
    forms = ("path", "bytes", "array", "pil")
    for i, it in enumerate(items):
        path = folder / it.name
        form = forms[i % 4] if it.kind != "broken" else ("path", "bytes")[i % 2]
        label = f"{it.kind}:{it.what}:{form}"
        if form == "path":
            out.append((label, str(path)))
        elif form == "bytes":
            out.append((label, gazecrop.EncodedImage(path.read_bytes(), str(path))))
        else:
            try:
                with Image.open(path) as im:
                    im.load()
                    im = im.copy()
            except Exception:  # (animated files and the like open fine; anything else stays a path)
                out.append((f"{it.kind}:{it.what}:path", str(path)))
                continue
            if form == "pil":
                out.append((label, im))
            else:
                from gazecrop._image import open_image, to_rgb

                out.append((label, to_rgb(open_image(im))))
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    out += [("bad:float32 array", base.astype(np.float32)), ("bad:rgba array", np.zeros((60, 80, 4), np.uint8)),
            ("bad:empty array", np.zeros((0, 10, 3), np.uint8)), ("bad:missing path", str(folder / "missing.jpg")),
            ("bad:folder path", str(folder)), ("odd:strided view", base[::2, ::3]),
            ("odd:1x1 array", np.full((1, 1, 3), 9, np.uint8))]
    return out


def library_call(model, image, thumb: bool) -> tuple:
    """One library call's full outcome, comparable bit for bit: the grid's bytes, the crops, a thumbnail's
    pixels, or the exception's type and message."""
    import gazecrop

    try:
        pred = gazecrop.predict(image, model=model)
        crops = tuple((tuple(r.box), tuple(r.salient_point), r.score) for r in pred.crops(ASPECTS))
        out = ("ok", pred.size, hashlib.sha256(np.ascontiguousarray(pred.log_density).tobytes()).hexdigest(), crops)
        if thumb:
            t = gazecrop.thumbnail(image, (96, 64), model=model)
            out += (t.size, hashlib.sha256(t.tobytes()).hexdigest())
        return out
    except Exception as e:  # the outcome of a bad input is its error
        return ("error", type(e).__name__, str(e))


def write_leak_calls(path: Path, calls: Sequence[Tuple[np.ndarray, int, np.ndarray]]) -> None:
    """Write the calls file of ``tools/leak_check.cpp``: (uint8 (h, w, 3) input, threads, float32 output)."""
    with open(path, "wb") as f:
        f.write(b"GZLEAK01" + struct.pack("<I", len(calls)))
        for rgb, threads, out in calls:
            f.write(struct.pack("<iii", rgb.shape[0], rgb.shape[1], threads))
            f.write(np.ascontiguousarray(rgb, np.uint8).tobytes())
            f.write(struct.pack("<ii", out.shape[0], out.shape[1]))
            f.write(np.ascontiguousarray(out, "<f4").tobytes())


def native_leak_check(model_path: str, calls: Sequence[Tuple[np.ndarray, int, np.ndarray]], work: Path) -> dict:
    """Run ``tools/leak_check.sh`` over ``calls``; ``{"passed", "line", "seconds"}`` (``error`` on failure)."""
    path = work / "leak-calls.bin"
    write_leak_calls(path, calls)
    t = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    try:
        p = subprocess.run(["bash", str(ROOT / "tools" / "leak_check.sh"), model_path, str(path), "4", "3"],
                           capture_output=True, text=True, timeout=1800, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"passed": False, "error": f"{type(e).__name__}: {e}"}
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("leak_check:")), "")
    res = {"passed": p.returncode == 0, "line": line, "seconds": time.monotonic() - t, "calls": len(calls)}
    if p.returncode != 0:
        res["error"] = _short((p.stderr or p.stdout)[-3000:], 3000)
    return res


def scenario_library(sizes: dict, seed: int, work: Path, quick: bool, rss_limit: float) -> dict:
    """The library scenario (module docstring)."""
    gazecrop = harness.import_gazecrop()
    folder = work / "library-images"
    folder.mkdir()
    items = write_corpus(folder, sizes["library_images"], seed + 1)
    inputs = library_inputs(items, folder, seed)
    model = gazecrop.load_model(threads=2)
    problems: List[str] = []
    # the single-threaded run; it also records what the Python layer hands the core (the leak check's calls)
    recorded: List[Tuple[np.ndarray, int, np.ndarray]] = []
    core_run = model.run

    def recording_run(image, *, threads=None, head_map=False):
        out = core_run(image, threads=threads, head_map=head_map)
        if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
            density = out[0] if head_map else out  # the leak check's driver compares the log-density
            recorded.append((image.copy(), model.threads if threads is None else threads, density.copy()))
        return out

    model.run = recording_run
    try:
        reference = [library_call(model, img, i % 4 == 0) for i, (_, img) in enumerate(inputs)]
    finally:
        del model.run
    n = sizes["library_calls"]
    rng = random.Random(seed)
    order = [i % len(inputs) for i in range(n)]
    rng.shuffle(order)
    results: List[Optional[tuple]] = [None] * n
    warm_n = min(n, max(n // 10, 2 * len(inputs)))  # every input seen twice, from all threads
    counts: Dict[str, Dict[str, int]] = {}
    pid = os.getpid()
    with ThreadPoolExecutor(8, thread_name_prefix="soak-lib") as pool:
        def one(k: int) -> None:
            i = order[k]
            results[k] = library_call(model, inputs[i][1], i % 4 == 0)

        with Sampler(pid) as sampler:
            t0 = time.monotonic()
            list(pool.map(one, range(warm_n)))
            t_warm = time.monotonic()
            # quiescent checkpoints: after the warm-up, then after each tenth of the remaining calls
            checkpoints = [checkpoint(sampler)]
            bounds = np.linspace(warm_n, n, 11).round().astype(int)
            for a, b in zip(bounds[:-1], bounds[1:]):
                list(pool.map(one, range(a, b)))
                checkpoints.append(checkpoint(sampler))  # the pool's threads alive, as after the warm-up
            t1 = time.monotonic()
    for k, i in enumerate(order):
        label = inputs[i][0]
        kind = label.split(":")[0]
        key = "photo" if kind == "photo" else (label.rsplit(":", 1)[0] if label.count(":") == 2 else label)
        c = counts.setdefault(key, {"ok": 0, "error": 0})
        c[results[k][0]] += 1
    wrong = [(inputs[i][0], results[k], reference[i]) for k, i in enumerate(order) if results[k] != reference[i]]
    if wrong:
        lab, got, ref = wrong[0]
        problems.append(f"{len(wrong)} of {n} calls differ from the single-threaded run, e.g. {lab}: "
                        f"{_short(repr(got))} vs {_short(repr(ref))}")
    for (label, _), ref in zip(inputs, reference):
        kind = label.split(":")[0]
        if kind in ("photo", "odd") and ref[0] != "ok":
            problems.append(f"valid input failed: {label}: {_short(repr(ref))}")
        if kind in ("broken", "bad") and ref[0] != "error":
            problems.append(f"bad input accepted: {label}")
    # the pool's 8 threads existed before the warm-up ended (pool.map started them); counts must not move
    rss = rss_summary(sampler.samples, t0, t_warm, t1)
    rss.update(held_summary(checkpoints))
    if rss["held_growth"] > rss_limit:
        problems.append(f"RSS held at rest grew {rss['held_growth']:.1%} after warm-up (limit {rss_limit:.0%})")
    first = checkpoints[0]
    for key in ("fds", "threads"):
        moved = [c[key] for c in checkpoints if c[key] != first[key]]
        if moved:
            problems.append(f"{key}: {first[key]} after warm-up, then {moved[0]}")
    res = {"calls": n, "threads": 8, "model_threads": model.threads, "distinct_inputs": len(inputs),
           "odd_or_broken": sum(not lab.startswith("photo") for lab, _ in inputs), "outcomes": counts,
           "seconds": t1 - t0, "calls_per_s": n / (t1 - t0), "rss": rss,
           "fds": [first["fds"], checkpoints[-1]["fds"]], "os_threads": [first["threads"], checkpoints[-1]["threads"]],
           "mismatches": len(wrong)}
    if quick:
        res["leak_check"] = {"skipped": "--quick (the native leak check runs in full runs)"}
    else:
        step = max(1, len(recorded) // 48)
        res["leak_check"] = leak = native_leak_check(model.path, recorded[::step], work)
        if not leak["passed"]:
            problems.append(f"native leak check failed: {_short(leak.get('error', leak.get('line', '')), 800)}")
    res.update(passed=not problems, problems=problems)
    return res


# ------------------------------------------------------------------------------------------------ batch

def read_job(out: Path) -> Tuple[List[dict], Dict[str, str], List[str]]:
    """A batch job's table rows (file order; ``error`` reduced to whether the row failed), its crops
    (relative path -> SHA-256) and the temporary files left under ``out``."""
    import pyarrow.parquet as pq

    rows: List[dict] = []
    table = out / "table"
    for f in sorted(os.listdir(table)):
        rows += [{**r, "error": r["error"] is not None} for r in pq.read_table(table / f).to_pylist()]
    crops: Dict[str, str] = {}
    temps: List[str] = []
    for root, _d, files in os.walk(out):
        for f in files:
            p = Path(root) / f
            if f.endswith(".tmp"):
                temps.append(str(p.relative_to(out)))
            elif p.parent.parts and "crops" in p.relative_to(out).parts[:1]:
                crops[str(p.relative_to(out))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return rows, crops, temps


def check_records(rows: Sequence[dict], sources: Sequence[str], aspects: Sequence[str]) -> List[str]:
    """Duplicate or missing records: each source exactly once per aspect, or exactly one failure row."""
    by: Dict[str, List[dict]] = {}
    for r in rows:
        by.setdefault(r["source"], []).append(r)
    problems = []
    missing = [s for s in sources if s not in by]
    extra = [s for s in by if s not in set(sources)]
    bad = [s for s, rs in by.items() if not ((len(rs) == 1 and rs[0]["error"]) or
                                            sorted(r["aspect"] for r in rs) == sorted(aspects))]
    if missing:
        problems.append(f"{len(missing)} inputs without a record, e.g. {missing[0]}")
    if extra:
        problems.append(f"{len(extra)} records of unknown inputs, e.g. {extra[0]}")
    if bad:
        problems.append(f"{len(bad)} inputs with duplicate or partial records, e.g. {bad[0]}")
    return problems


def _descendants(pid: int) -> List[int]:
    """Live processes in ``pid``'s tree (children found through ``/proc/*/stat``), ``pid`` excluded."""
    parent: Dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _session(pid: int) -> List[int]:
    """Live processes of the session ``pid`` leads (started by this script with ``start_new_session``); dead
    ones not yet reaped by their parent (zombies) are left out."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    state, _, _, session = f.read().rsplit(")", 1)[1].split()[:4]
                if int(session) == pid and state != "Z":
                    out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


SURVIVOR_GRACE = 5.0
"""Seconds a killed driver's cluster is given to die with it; what is still alive then counts as a survivor
(the local cluster must not outlive its driver: :mod:`gazecrop._reaper`)."""


def _kill_session(pid: int, grace: float = 0.0) -> int:
    """Wait up to ``grace`` seconds for a session this script started (a killed driver's cluster) to end by
    itself, then SIGKILL what is left; returns how many processes were still alive after the grace."""
    deadline = time.monotonic() + grace
    while _session(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _session(pid)
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 30
    while _session(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(left)


WORKER_MARK = {"ray": "ray::", "dask": "spawn_main"}
"""How a worker process of each engine shows in its command line (Ray's actors and tasks, Dask's spawned
worker processes)."""


def _worker_of(engine: str, driver: int) -> Optional[int]:
    """A worker process of ``engine`` under the driver ``driver`` (the Ray cluster's processes may have left
    its tree: its session is searched too)."""
    mark = WORKER_MARK[engine]
    cands = [p for p in sorted(set(_descendants(driver)) | set(_session(driver)))
             if p != driver and mark in _cmdline(p)]
    if engine == "ray":  # a cropping actor, not the cluster's own services
        cands = [p for p in cands if "Map" in _cmdline(p) or "Cropper" in _cmdline(p)] or []
    return cands[0] if cands else None


def batch_command(corpus: Path, out: Path, engine: str, chunk: int) -> List[str]:
    return [sys.executable, "-m", "gazecrop.batch", str(corpus), "--out", str(out), "-a", "16:9", "-a", "1:1",
            "--chunk-size", str(chunk), "-j", "2", "--no-progress", "--engine", engine]


def _parts(out: Path) -> int:
    try:
        return sum(f.endswith(".parquet") for f in os.listdir(out / "table"))
    except OSError:
        return 0


def faulted_run(engine: str, corpus: Path, out: Path, chunk: int, kills: int, ref_seconds: float, n_parts: int,
                rng: random.Random, log: Callable[[str], None], deadline: float) -> dict:
    """Run the job, killing it as the scenario says, until one run finishes; returns what happened.

    Local engine: ``kills`` SIGKILLs of the job at random times within what is left of it. Ray / Dask: in the
    first run, SIGKILL of one worker process once a table file is written; the run must go on (the engine
    retries): the driver is killed only after two more table files, then the command runs to its end."""
    events: List[str] = []
    runs = 0
    rc = None
    worker_killed = False
    parts_at_worker_kill = 0
    progress_after_worker_kill = None
    worker_run = failed_after_worker_kill = None
    driver_kills = 0
    survivors = 0
    errlog = out.parent / f"{out.name}.stderr"
    while time.monotonic() < deadline:
        runs += 1
        t = time.monotonic()
        with open(errlog, "wb") as err:  # a file, not a pipe: a chatty engine must never block on it
            proc = subprocess.Popen(batch_command(corpus, out, engine, chunk), stdout=subprocess.DEVNULL,
                                    stderr=err, start_new_session=True)
        kill_driver = driver_kills < kills
        # local: once a random number of the remaining table files is written (none: during start-up or the
        # first chunk), after a random delay within a chunk's time: independent of the machine's load
        done = _parts(out)
        target = done + rng.randint(0, max(0, n_parts - done) // (kills - driver_kills + 1))  # spread the kills
        delay = rng.uniform(0, 0.5 * ref_seconds / max(n_parts, 1))
        reached = None
        while proc.poll() is None and time.monotonic() < deadline:
            now = time.monotonic()
            if engine != "local" and not worker_killed and _parts(out) >= 1:
                w = _worker_of(engine, proc.pid)
                if w is not None:
                    parts_at_worker_kill, what = _parts(out), _cmdline(w)[:60].strip()
                    os.kill(w, signal.SIGKILL)
                    worker_killed, worker_run = True, runs
                    events.append(f"run {runs}: killed {engine} worker {w} ({what!r}) at "
                                  f"{now - t:.1f} s ({parts_at_worker_kill} table files)")
                    log(events[-1])
            if engine == "local":
                if reached is None and _parts(out) >= target:
                    reached = now
                due = reached is not None and now >= reached + delay
            else:
                due = worker_killed and _parts(out) >= parts_at_worker_kill + 2
            if kill_driver and due:
                if engine != "local":
                    progress_after_worker_kill = _parts(out) - parts_at_worker_kill
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                driver_kills += 1
                survivors += _kill_session(proc.pid, SURVIVOR_GRACE)
                events.append(f"run {runs}: killed the driver at {now - t:.1f} s ({_parts(out)} table files)")
                log(events[-1])
                break
            time.sleep(0.05)
        if proc.poll() is None:  # the deadline
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            _kill_session(proc.pid)
            events.append("deadline reached")
            break
        if proc.returncode >= 0:
            rc = proc.returncode
            survivors += _kill_session(proc.pid, SURVIVOR_GRACE)
            if worker_killed and progress_after_worker_kill is None:
                progress_after_worker_kill = _parts(out) - parts_at_worker_kill
            events.append(f"run {runs}: finished, status {rc} in {time.monotonic() - t:.1f} s")
            log(events[-1])
            if rc not in (0, 1):
                events.append("stderr: " + _short(errlog.read_text(errors="replace")[-800:], 800))
                if worker_run == runs:  # the worker kill failed the run: recorded; a rerun must still finish
                    failed_after_worker_kill = rc
                    continue
            break
    return {"runs": runs, "failed_after_worker_kill": failed_after_worker_kill, "driver_kills": driver_kills, "worker_killed": worker_killed, "final_status": rc,
            "parts_after_worker_kill": progress_after_worker_kill, "events": events,
            "survivors": survivors}


def scenario_batch(sizes: dict, seed: int, work: Path, log: Callable[[str], None], deadline_s: float) -> dict:
    """The batch scenario (module docstring)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return {"skipped": "pyarrow is not installed (pip install '.[batch]')"}
    harness.import_gazecrop()
    corpus = work / "batch-images"
    n = sizes["batch_images"]
    t = time.monotonic()
    items = write_corpus(corpus, n, seed + 2, long_side=(24, 200), special_share=0.02, per_folder=100,
                         all_kinds=n >= 1000)
    sources = [str(corpus / it.name) for it in items]
    broken = sum(it.kind == "broken" for it in items)
    log(f"batch: wrote {n} images ({broken} broken) in {time.monotonic() - t:.0f} s")
    chunk = sizes["batch_chunk"]
    ref = work / "batch-reference"
    t = time.monotonic()
    p = subprocess.run(batch_command(corpus, ref, "local", chunk), capture_output=True, text=True)
    ref_seconds = time.monotonic() - t
    log(f"batch: uninterrupted local run {ref_seconds:.0f} s, status {p.returncode}")
    problems: List[str] = []
    if p.returncode != (1 if broken else 0):
        problems.append(f"the uninterrupted run ended with status {p.returncode}: {_short(p.stderr[-600:], 600)}")
    ref_rows, ref_crops, ref_temps = read_job(ref)
    problems += [f"reference: {m}" for m in check_records(ref_rows, sources, ("16:9", "1:1"))]
    versions = {}
    for mod in ("pyarrow", "ray", "dask", "distributed"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    res: dict = {"images": n, "broken": broken, "chunk_size": chunk, "reference_seconds": ref_seconds,
                 "versions": versions,
                 "records": len(ref_rows), "crops": len(ref_crops), "engines": {}}
    rng = random.Random(seed)
    t_end = time.monotonic() + deadline_s
    for engine, module in (("local", None), ("ray", "ray"), ("dask", "distributed")):
        if module is not None:
            try:
                __import__(module)
            except ImportError:
                res["engines"][engine] = {"skipped": f"{module} is not installed (pip install '.[{engine}]')"}
                log(f"batch {engine}: skipped, {module} is not installed")
                continue
        out = work / f"batch-{engine}"
        t = time.monotonic()
        run = faulted_run(engine, corpus, out, chunk, sizes["batch_kills"] if engine == "local" else 1,
                          ref_seconds, _parts(ref), rng, log, t_end)
        run["seconds"] = time.monotonic() - t
        eprob: List[str] = []
        if run["final_status"] not in (0, 1):
            eprob.append(f"never finished ({run['events'][-1] if run['events'] else 'no run'})")
        else:
            rows, crops, temps = read_job(out)
            eprob += check_records(rows, sources, ("16:9", "1:1"))
            if rows != ref_rows:
                diff = next((i for i, (a, b) in enumerate(zip(rows, ref_rows)) if a != b), min(len(rows),
                                                                                             len(ref_rows)))
                eprob.append(f"table differs from the uninterrupted run ({len(rows)} vs {len(ref_rows)} rows, "
                             f"first at row {diff})")
            if crops != ref_crops:
                changed = sorted(set(crops) ^ set(ref_crops)) or sorted(k for k in crops if crops[k] != ref_crops[k])
                eprob.append(f"crops differ from the uninterrupted run ({len(crops)} vs {len(ref_crops)}, e.g. "
                             f"{changed[0]})")
            if temps:
                eprob.append(f"{len(temps)} temporary files left, e.g. {temps[0]}")
            run["records"] = len(rows)
        if engine != "local" and not run["worker_killed"]:
            eprob.append("no worker process was found to kill")
        elif engine != "local" and (run["failed_after_worker_kill"] is not None or
                                    not run["parts_after_worker_kill"]):
            eprob.append("the run did not go on after a worker was killed (the engine did not retry its work; "
                         f"status {run['failed_after_worker_kill']})")
        if run["survivors"]:
            eprob.append(f"{run['survivors']} processes outlived the driver by {SURVIVOR_GRACE:.0f} s (killed)")
        if run["driver_kills"] < (sizes["batch_kills"] if engine == "local" else 1):
            eprob.append(f"only {run['driver_kills']} kills happened before the job finished")
        run["problems"] = eprob
        run["passed"] = not eprob
        res["engines"][engine] = run
        problems += [f"{engine}: {m}" for m in eprob]
    res.update(passed=not problems, problems=problems)
    return res


# ------------------------------------------------------------------------------------------------ main

def summary_line(name: str, r: dict) -> str:
    """The one line printed per scenario."""
    if "skipped" in r:
        return f"soak {name}: SKIPPED ({r['skipped']})"
    head = f"soak {name}: {'PASS' if r['passed'] else 'FAIL'}"
    if "rss" not in r and "engines" not in r:  # it stopped before measuring anything
        body = "did not run to the end"
    elif name == "thumbor":
        rss = r["rss"]
        body = (f"{r['requests']} requests by {r['clients']} clients over {r['images']} images "
                f"({r['odd_or_broken']} odd or broken), {r['mismatches']} differ from alone, {r['no_answer']} "
                f"unanswered; p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms; server RSS start "
                f"{rss['start_mib']:.0f} / warm {rss['warm_mib']:.0f} / peak {rss['peak_mib']:.0f} / end "
                f"{rss['end_mib']:.0f} MiB (growth {rss['growth']:+.1%})")
    elif name == "library":
        rss = r["rss"]
        leak = r["leak_check"]
        body = (f"{r['calls']} calls from {r['threads']} threads on one model over {r['distinct_inputs']} inputs "
                f"({r['odd_or_broken']} odd or bad), {r['mismatches']} differ from the single-threaded run; RSS "
                f"held at rest {rss['held_mib'][0]:.0f} -> {rss['held_mib'][-1]:.0f} MiB (growth "
                f"{rss['held_growth']:+.1%}), under load start {rss['start_mib']:.0f} / warm {rss['warm_mib']:.0f} / "
                f"peak {rss['peak_mib']:.0f} / end {rss['end_mib']:.0f} MiB; fds {r['fds'][0]}->{r['fds'][1]}, "
                f"threads {r['os_threads'][0]}->{r['os_threads'][1]}; native leak check: "
                + ("skipped (--quick)" if "skipped" in leak else ("clean" if leak["passed"] else "FAILED")))
    else:
        parts = []
        for e, er in r.get("engines", {}).items():
            if "skipped" in er:
                parts.append(f"{e} SKIPPED ({er['skipped']})")
            else:
                parts.append(f"{e} {'ok' if er['passed'] else 'FAILED'} ({er['driver_kills']} driver kills"
                             + (", a worker killed" if er.get("worker_killed") else "") + f", {er['runs']} runs)")
        body = f"{r.get('images', 0)} images; " + "; ".join(parts)
    line = f"{head}: {body}"
    if not r.get("passed", True) and r.get("problems"):
        line += " | " + "; ".join(_short(p, 300) for p in r["problems"][:4])
    return line


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/soak.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the short form CI runs")
    p.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only these (repeatable)")
    p.add_argument("--json", default=None, help="write the results here (benchmarks/report.py --soak reads it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--requests", type=int, help="thumbor requests (default 5000, --quick 300)")
    p.add_argument("--calls", type=int, help="library calls (default 4000, --quick 400)")
    p.add_argument("--images", type=int, help="batch images (default 10000, --quick 200)")
    p.add_argument("--batch-deadline", type=float, default=None,
                   help="seconds the faulted batch runs may take in all (default 3600, --quick 300)")
    p.add_argument("--keep", action="store_true", help="keep the working folder (printed)")
    a = p.parse_args(argv)
    if argv is None and any(os.environ.get(k) is None for k in MALLOC_ENV):
        # glibc's per-thread malloc arenas and adaptive mmap threshold: see the module docstring
        os.execve(sys.executable, [sys.executable, *sys.argv], {**MALLOC_ENV, **os.environ})
    mode = "quick" if a.quick else "full"
    sizes = dict(SIZES[mode])
    for arg, key in ((a.requests, "thumbor_requests"), (a.calls, "library_calls"), (a.images, "batch_images")):
        if arg is not None:
            if arg < 1:
                p.error(f"counts must be >= 1, got {arg}")
            sizes[key] = arg
    scenarios = list(dict.fromkeys(a.scenario or SCENARIOS))
    limit = RSS_GROWTH_LIMIT_QUICK if a.quick else RSS_GROWTH_LIMIT
    work = Path(tempfile.mkdtemp(prefix="gazecrop-soak-"))

    def log(msg: str) -> None:
        print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    results: dict = {"machine": harness.machine(), "mode": mode, "sizes": sizes, "seed": a.seed,
                     "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
                     "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"), "rss_growth_limit": limit,
                     "command": "python benchmarks/soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                     "scenarios": {}}
    status = 0
    try:
        for name in scenarios:
            t = time.monotonic()
            log(f"{name}: start")
            try:
                if name == "thumbor":
                    r = scenario_thumbor(sizes, a.seed, work, limit)
                elif name == "library":
                    r = scenario_library(sizes, a.seed, work, a.quick, limit)
                else:
                    r = scenario_batch(sizes, a.seed, work, log,
                                       a.batch_deadline or (300.0 if a.quick else 3600.0))
            except Exception as e:  # a scenario that cannot run is a failure, never a pass
                import traceback

                traceback.print_exc()
                r = {"passed": False, "problems": [f"{type(e).__name__}: {e}"]}
            r["wall_s"] = time.monotonic() - t
            results["scenarios"][name] = r
            print(summary_line(name, r), flush=True)
            if not r.get("passed", True) and "skipped" not in r:
                status = 1
    finally:
        if a.keep:
            print(f"working folder kept: {work}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    if a.json:
        harness.write_json(a.json, results)
    return status


if __name__ == "__main__":
    sys.exit(main())
