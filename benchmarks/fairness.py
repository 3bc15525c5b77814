"""Fairness audit of crops: does the crop keep one person of a pair over the other by race or gender?

The protocol of Yee, Tantipongpipat and Mishra, "Image cropping on Twitter: fairness metrics, their limitations,
and the importance of representation, design, and agency" (CSCW 2021, arXiv:2105.08667; code
twitter-research/image-crop-analysis), with the changes their own discussion asks for:

- **Portraits and groups**: labelled portraits (``labels.csv``: ``file,gender,ethnicity``; default
  ``../shared/data/faces/congress``). A group is (ethnicity, gender); groups with fewer than
  :data:`MIN_GROUP` portraits are left out (each half must hold a few).
- **Two halves**: within each group the portraits are ordered by the SHA-256 of their file name and dealt
  alternately into ``tune`` and ``holdout`` (so the split depends on no seed and on no other portrait). The
  protocol and any fix were built looking at ``tune`` only; both halves are reported, and ``all`` pools them.
- **Pairs**: for each comparison (group A vs group B, :data:`COMPARISONS`) and each half, ``--pairs`` pairs
  are drawn with replacement (portrait of A, portrait of B, side), seeded from ``--seed`` and the names of
  the half and comparison only. **Which side A is on is random** (Twitter's code always put the first group
  on the left, which mixes position into the figure). The same draws serve both layouts.
- **Composites** (:func:`compose`): both portraits at the same size, no gap: side by side (``side``,
  cropped to the largest 1:1 box) and one above the other (``stacked``, the largest 16:9 box). Composites
  are built in memory only and never written (never commit composites of real faces).
- **Outcome** (:func:`kept_first`): the crop keeps the portrait whose tile its box covers more; equal cover
  (a tie) counts one half for each. Recorded beside it: which tile holds the salient point (Twitter's
  argmax measure), whether the result says the choice was close (``CropResult.close`` when the installed
  gazecrop has it) or advises keeping the whole image (``CropResult.keep_whole``).
- **Methods**: gazecrop's default strategy, and as references the centre crop (on these symmetric layouts
  always a tie: it shows the tie rule), ``point`` (Twitter 2018: centred on the argmax) and, as a diagnostic
  of the model's maps without any placement rule, ``tile mass`` (which tile holds more of the saliency mass).
- **Statistics** (:func:`share_stats`, :func:`summarise`): per comparison the share p for the first group,
  delta = p - 0.5 with two 95 % intervals: ``pairs`` (normal approximation over pairs, i.e. binomial with
  ties as halves; it treats pairs as independent) and ``bootstrap over portraits`` (percentile interval of a
  two-stage bootstrap: resample each group's portraits, then the pairs in proportion to how often their two
  portraits were resampled; the groups are small, so it is the honest one). Pooled race delta: the
  same-gender white vs Black comparisons together (white first); pooled gender delta: the same-race female vs
  male comparisons together (female first). Worst |delta|: over the six comparisons of white / Black x
  female / male. The share kept on the *first* tile (left or top) is reported too: it is the position bias
  that the random sides remove from delta.

    python benchmarks/fairness.py                      # full audit: 2,000 pairs per comparison and half
    python benchmarks/fairness.py --pairs 200 --half tune
    python benchmarks/fairness.py --gate               # the CI gate (benchmarks/gates.sh): exit 1 on failure
    python benchmarks/fairness.py --json benchmarks/results/fairness.json   # what report.py turns into RESULTS.md

Without the portraits (``--faces`` missing) it prints why and exits 0: a skip, never a pass.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
import os
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from gazecrop.portraits import GROUP_CODES, HALVES, MIN_GROUP, compose, load_groups, split_halves  # noqa: F401

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_FACES = ROOT / ".." / "shared" / "data" / "faces" / "congress"
RESULTS_JSON = HERE / "results" / "fairness.json"

MAIN = (("WF", "WM"), ("BF", "BM"), ("WF", "BF"), ("WM", "BM"), ("WF", "BM"), ("WM", "BF"))
"""The six comparisons of white / Black x female / male (first group first: delta > 0 favours it)."""
EXTRA = (("WF", "HF"), ("WM", "HM"), ("HF", "HM"), ("WF", "AF"))
"""More comparisons where the data allows (groups of at least :data:`MIN_GROUP`)."""
POOLED = {"race (white vs Black, same gender)": (("WF", "BF"), ("WM", "BM")),
          "gender (female vs male, same race)": (("WF", "WM"), ("BF", "BM"))}

@dataclass(frozen=True)
class Layout:
    """How two tiles are put together and cropped: ``axis`` 1 side by side (first = left), 0 stacked (first =
    top); ``aspect`` of the largest box."""

    name: str
    axis: int
    aspect: str
    title: str


LAYOUTS = {"side": Layout("side", 1, "1:1", "side by side, largest 1:1 box"),
           "stacked": Layout("stacked", 0, "16:9", "stacked, largest 16:9 box")}


def group_name(code: str) -> str:
    """``"WF"`` -> ``"white female"``."""
    eth = {v: k for k, v in GROUP_CODES.items()}[code[0]]
    return f"{eth} {'female' if code[1] == 'F' else 'male'}"


def comparison_name(a: str, b: str) -> str:
    return f"{a} vs {b}"


# ------------------------------------------------------------------------------------------------ portraits

def comparisons(groups: Mapping[str, Sequence[str]]) -> List[Tuple[str, str]]:
    """The comparisons of :data:`MAIN` and :data:`EXTRA` whose two groups are present.

    Raises:
        ValueError: a main comparison is missing (the audit needs white / Black x female / male)."""
    missing = [comparison_name(a, b) for a, b in MAIN if a not in groups or b not in groups]
    if missing:
        raise ValueError(f"the portraits lack groups for {missing} (need >= {MIN_GROUP} portraits per group)")
    return list(MAIN) + [(a, b) for a, b in EXTRA if a in groups and b in groups]


# ------------------------------------------------------------------------------------------- pairs, outcomes

@dataclass(frozen=True)
class Draws:
    """Pairs of one comparison in one half: int64 (n,) indices into the two groups' file lists and bool
    (n,) ``a_first`` (group A on the left / top)."""

    ia: np.ndarray
    ib: np.ndarray
    a_first: np.ndarray


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator seeded by ``seed`` and names only (adding a comparison changes no other draws)."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(n.encode()) for n in names])


def draw_pairs(n: int, n_a: int, n_b: int, rng: np.random.Generator) -> Draws:
    """``n`` pairs with replacement, sides random (probability 1/2 each, independent of the portraits)."""
    if n < 1 or n_a < 1 or n_b < 1:
        raise ValueError(f"need n, n_a, n_b >= 1, got {n}, {n_a}, {n_b}")
    return Draws(rng.integers(n_a, size=n), rng.integers(n_b, size=n), rng.random(n) < 0.5)


def kept_first(box: Sequence[int], tile: Tuple[int, int], axis: int) -> float:
    """1.0 when ``box = (left, top, width, height)`` covers more of the first tile (left / top) than of the
    second, 0.0 when less, 0.5 for equal cover (a tie). ``tile = (W, H)`` of one tile."""
    left, top, w, h = (int(v) for v in box)
    start, length, size = (left, w, tile[0]) if axis == 1 else (top, h, tile[1])
    first = max(0, min(start + length, size) - start)
    second = max(0, start + length - max(start, size))
    return 1.0 if first > second else 0.0 if first < second else 0.5


def point_first(point: Sequence[int], tile: Tuple[int, int], axis: int) -> float:
    """1.0 when the salient point ``(x, y)`` lies in the first tile, else 0.0."""
    return 1.0 if (point[0] if axis == 1 else point[1]) < (tile[0] if axis == 1 else tile[1]) else 0.0


Record = Dict[str, float]
"""One method's outcome on one composite: ``first`` (:func:`kept_first`), ``point`` (:func:`point_first`,
NaN when the method has no point), ``close`` and ``keep_whole`` (1.0 / 0.0, NaN when not reported)."""

Evaluate = Callable[[np.ndarray, Layout], Dict[str, Record]]
"""composite uint8 (H, W, 3), layout -> method name -> :data:`Record`."""


def _flag(result, name: str) -> float:
    v = getattr(result, name, None)
    return math.nan if v is None else float(bool(v))


def crop_record(result, tile: Tuple[int, int], axis: int) -> Record:
    """:data:`Record` of a ``gazecrop`` ``CropResult``."""
    return {"first": kept_first(result.box, tile, axis), "point": point_first(result.salient_point, tile, axis),
            "close": _flag(result, "close"), "keep_whole": _flag(result, "keep_whole")}


TWITTER = "Twitter 2018, as released"
FASTGAZE_DIR = ROOT / ".." / "shared" / "anchors" / "fastgaze"


class GazecropEvaluate:
    """The :data:`Evaluate` of gazecrop: one model run per composite (``gazecrop.predict``), then the default
    strategy, ``point`` and ``centre`` (``Prediction.crops``) and the ``tile mass`` diagnostic. With ``twitter``,
    also Twitter's released cropper (its own model and rule, ``../shared/anchors/fastgaze``) as the reference
    method :data:`TWITTER` (the composite goes through a temporary PNG: the anchor takes paths).

    Raises:
        FileNotFoundError: ``twitter`` but ``../shared/anchors/fastgaze`` is absent."""

    def __init__(self, model=None, twitter: bool = False) -> None:
        import gazecrop
        from gazecrop.crop import DEFAULT_STRATEGY

        self.gz = gazecrop
        self.model = model if model is not None else gazecrop.load_model(threads=1)
        self.default = DEFAULT_STRATEGY
        self.methods = {f"default ({DEFAULT_STRATEGY})": DEFAULT_STRATEGY, "point": "point", "centre": "centre"}
        self.fastgaze = None
        if twitter:
            if not (FASTGAZE_DIR / "fastgaze.py").is_file():
                raise FileNotFoundError(f"Twitter's cropper is not at {FASTGAZE_DIR}")
            import atexit
            import shutil
            import tempfile

            sys.path.insert(0, str(FASTGAZE_DIR))
            import fastgaze

            self.fastgaze = fastgaze
            self.tmp = tempfile.mkdtemp(prefix="gazecrop-fairness-")
            atexit.register(shutil.rmtree, self.tmp, True)
            self.count = 0

    def _twitter(self, composite: np.ndarray, layout: "Layout", tile: Tuple[int, int]) -> Record:
        from PIL import Image

        self.count += 1
        path = os.path.join(self.tmp, f"c{self.count}.png")  # a new name each time: the anchor caches by path
        Image.fromarray(composite).save(path, compress_level=1)
        try:
            box = self.fastgaze.crop_box(path, float(self.gz.parse_aspect(layout.aspect)))
            point = self.fastgaze.salient_point(path)
        finally:
            os.unlink(path)
        return {"first": kept_first(box, tile, layout.axis), "point": point_first(point, tile, layout.axis),
                "close": math.nan, "keep_whole": math.nan}

    def __call__(self, composite: np.ndarray, layout: Layout) -> Dict[str, Record]:
        from gazecrop.crop import box_mass

        pred = self.gz.predict(composite, model=self.model)
        H, W = composite.shape[:2]
        tile = (W // 2, H) if layout.axis == 1 else (W, H // 2)
        out = {name: crop_record(pred.crops([layout.aspect], strategy=s)[0], tile, layout.axis)
               for name, s in self.methods.items()}
        share = box_mass(pred.log_density, pred.size, (0, 0, tile[0], tile[1]))
        out["tile mass"] = {"first": 1.0 if share > 0.5 + 1e-9 else 0.0 if share < 0.5 - 1e-9 else 0.5,
                            "point": math.nan, "close": math.nan, "keep_whole": math.nan}
        if self.fastgaze is not None:
            out[TWITTER] = self._twitter(composite, layout, tile)
        return out


def run_pairs(draws: Draws, files_a: Sequence[str], files_b: Sequence[str], layout: Layout,
              evaluate: Evaluate, load: Callable[[str], np.ndarray],
              cache: Optional[dict] = None) -> Dict[str, Dict[str, np.ndarray]]:
    """Outcomes of every pair: method -> ``{"a": share for A (float (n,)), "first": kept on the first tile,
    "point_a": salient point in A's tile, "close", "keep_whole"}``. ``cache`` (a dict kept across calls)
    holds each distinct composite's records (the model is deterministic; small groups repeat pairs)."""
    cache = {} if cache is None else cache
    rows = []
    for ia, ib, af in zip(draws.ia, draws.ib, draws.a_first):
        fa, fb = files_a[int(ia)], files_b[int(ib)]
        key = (layout.name, fa, fb) if af else (layout.name, fb, fa)
        rec = cache.get(key)
        if rec is None:
            rec = evaluate(compose(load(key[1]), load(key[2]), layout.axis), layout)
            cache[key] = rec
        rows.append(rec)
    af = np.asarray(draws.a_first, bool)
    out: Dict[str, Dict[str, np.ndarray]] = {}
    for m in rows[0]:
        first = np.array([r[m]["first"] for r in rows])
        point = np.array([r[m]["point"] for r in rows])
        out[m] = {"a": np.where(af, first, 1.0 - first), "first": first, "point_a": np.where(af, point, 1.0 - point),
                  "close": np.array([r[m]["close"] for r in rows]),
                  "keep_whole": np.array([r[m]["keep_whole"] for r in rows])}
    return out


# ------------------------------------------------------------------------------------------------ statistics

Z95 = 1.959963984540054


def pairs_interval(y: np.ndarray) -> Tuple[float, float]:
    """95 % interval of the mean of per-pair outcomes ``y`` in {0, 0.5, 1} (normal approximation with the
    sample variance: the binomial interval, ties counted as halves; zero width when every outcome agrees)."""
    y = np.asarray(y, np.float64)
    n = y.size
    if n == 0:
        return math.nan, math.nan
    half = Z95 * (float(y.std(ddof=1)) if n > 1 else 0.5) / math.sqrt(n)
    p = float(y.mean())
    return max(0.0, p - half), min(1.0, p + half)


def portrait_counts(sizes: Mapping[str, int], n_boot: int, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Bootstrap resamples of each group's portraits: group -> int (n_boot, size) counts (multinomial,
    ``size`` draws with replacement)."""
    return {g: rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot) for g, n in sizes.items()}


def boot_shares(y: np.ndarray, ia: np.ndarray, ib: np.ndarray, ca: np.ndarray, cb: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """float (n_boot,) bootstrap replicates of the mean of ``y``: for each replicate, pair i weighs
    ``ca[ia[i]] * cb[ib[i]]`` (how often its two portraits were resampled), and ``n`` pairs are redrawn in
    proportion to those weights (the pairs' own sampling noise). NaN where no pair has weight."""
    y = np.asarray(y, np.float64)
    w = ca[:, ia].astype(np.float64) * cb[:, ib]
    tot = w.sum(axis=1)
    out = np.full(w.shape[0], np.nan)
    ok = tot > 0
    if ok.any():
        counts = rng.multinomial(y.size, w[ok] / tot[ok, None])
        out[ok] = counts @ y / y.size
    return out


def _interval(reps: np.ndarray) -> Tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return float(lo), float(hi)


def share_stats(y: np.ndarray, reps: Optional[np.ndarray] = None, *, first: Optional[np.ndarray] = None,
                point_a: Optional[np.ndarray] = None, close: Optional[np.ndarray] = None,
                keep_whole: Optional[np.ndarray] = None) -> dict:
    """Statistics of the share ``y`` (per pair, for the first group) as JSON-ready floats: ``n``, ``p``,
    ``delta`` = p - 0.5, ``ci_pairs`` and ``ci_boot`` (delta's 95 % intervals; the latter from ``reps``,
    bootstrap replicates of p), ``ties`` (share of pairs with equal cover), ``first_tile`` (share kept on the
    left / top: position bias), ``point_delta`` (salient point in the first group's tile, minus 0.5),
    ``close`` and ``keep_whole`` shares (None where the method does not report them)."""
    y = np.asarray(y, np.float64)
    p = float(y.mean())
    lo, hi = pairs_interval(y)
    out = {"n": int(y.size), "p": p, "delta": p - 0.5, "ci_pairs": [lo - 0.5, hi - 0.5],
           "ties": float(np.mean(y == 0.5))}
    if reps is not None:
        blo, bhi = _interval(np.asarray(reps, np.float64))
        out["ci_boot"] = [blo - 0.5, bhi - 0.5]
    for key, arr in (("first_tile", first), ("point_delta", point_a), ("close", close), ("keep_whole", keep_whole)):
        if arr is None:
            continue
        arr = np.asarray(arr, np.float64)
        v = None if np.isnan(arr).all() else float(np.nanmean(arr))
        out[key] = None if v is None else (v - 0.5 if key == "point_delta" else v)
    return out


def summarise(raw: dict, n_boot: int = 2000, seed: int = 0) -> dict:
    """Statistics of an :func:`audit`'s raw outcomes: ``layout -> half ("tune", "holdout", "all") -> method
    -> {"comparisons": {name: share_stats}, "pooled": {name: share_stats}, "worst": {...}}``.

    The bootstrap resamples each half's portraits once per replicate (the same counts for every comparison,
    so pooled and worst statistics see one consistent resample); ``all`` combines the halves' replicates
    weighted by their pairs (the halves hold different portraits)."""
    present = tuple(h for h in HALVES if h in raw["halves"])
    sizes = {h: {g: len(f) for g, f in raw["halves"][h].items()} for h in present}
    counts = {h: portrait_counts(sizes[h], n_boot, rng_for(seed, "bootstrap", h)) for h in present}
    out: dict = {}
    for lay, per_half in raw["outcomes"].items():
        out[lay] = {}
        methods = list(next(iter(per_half[present[0]].values())))
        reps: dict = {}
        for h in present:
            for comp, by_method in per_half[h].items():
                a, b = comp.split(" vs ")
                d = raw["draws"][h][comp]
                for m in methods:
                    rrng = rng_for(seed, "pairs", lay, h, comp, m)
                    reps[h, comp, m] = boot_shares(by_method[m]["a"], d.ia, d.ib, counts[h][a], counts[h][b], rrng)
        for half in present + (("all",) if len(present) > 1 else ()):
            hs = present if half == "all" else (half,)
            out[lay][half] = {}
            for m in methods:
                comps, comp_reps = {}, {}
                for comp in per_half[present[0]]:
                    cat = {k: np.concatenate([per_half[h][comp][m][k] for h in hs]) for k in
                           ("a", "first", "point_a", "close", "keep_whole")}
                    ns = [per_half[h][comp][m]["a"].size for h in hs]
                    r = sum(n * reps[h, comp, m] for n, h in zip(ns, hs)) / sum(ns)
                    comp_reps[comp] = r
                    comps[comp] = share_stats(cat["a"], r, first=cat["first"], point_a=cat["point_a"],
                                              close=cat["close"], keep_whole=cat["keep_whole"])
                pooled = {}
                for pname, members in POOLED.items():
                    names = [comparison_name(a, b) for a, b in members]
                    y = np.concatenate([np.concatenate([per_half[h][c][m]["a"] for h in hs]) for c in names])
                    pa = np.concatenate([np.concatenate([per_half[h][c][m]["point_a"] for h in hs]) for c in names])
                    r = np.mean([comp_reps[c] for c in names], axis=0)
                    pooled[pname] = share_stats(y, r, point_a=pa)
                main = [comparison_name(a, b) for a, b in MAIN]
                absd = {c: abs(comps[c]["delta"]) for c in main}
                worst = max(absd, key=absd.get)
                worst_reps = np.max([np.abs(comp_reps[c] - 0.5) for c in main], axis=0)
                worst_reps = worst_reps[np.isfinite(worst_reps)]
                out[lay][half][m] = {
                    "comparisons": comps, "pooled": pooled,
                    "worst": {"comparison": worst, "abs_delta": absd[worst],
                              "pairs_upper": max(max(abs(v) for v in comps[c]["ci_pairs"]) for c in main),
                              "boot_upper": float(np.percentile(worst_reps, 95)) if worst_reps.size else None}}
    return out


# ------------------------------------------------------------------------------------------------- protocol

def audit(halves: Mapping[str, Mapping[str, Sequence[str]]], comps: Sequence[Tuple[str, str]],
          layouts: Sequence[Layout], evaluate: Evaluate, load: Callable[[str], np.ndarray], n_pairs: int,
          seed: int, progress: Optional[Callable[[str], None]] = None, only: Sequence[str] = HALVES) -> dict:
    """Draw the pairs, build the composites, crop them: ``{"halves", "draws": half -> comparison -> Draws,
    "outcomes": layout -> half -> comparison -> method -> arrays (:func:`run_pairs`), "distinct": composites
    run, "seconds"}``. ``only``: the halves to run (a subset of :data:`HALVES`)."""
    t0 = time.perf_counter()
    draws = {h: {comparison_name(a, b): draw_pairs(n_pairs, len(halves[h][a]), len(halves[h][b]),
                                                   rng_for(seed, "draws", h, comparison_name(a, b)))
                 for a, b in comps} for h in only}
    cache: dict = {}
    outcomes: dict = {}
    for lay in layouts:
        outcomes[lay.name] = {}
        for h in only:
            outcomes[lay.name][h] = {}
            for a, b in comps:
                name = comparison_name(a, b)
                outcomes[lay.name][h][name] = run_pairs(draws[h][name], halves[h][a], halves[h][b], lay, evaluate,
                                                        load, cache)
                if progress:
                    progress(f"{lay.name} {h} {name}: {len(cache)} composites so far, "
                             f"{time.perf_counter() - t0:.0f} s")
    return {"halves": {h: {g: list(f) for g, f in halves[h].items()} for h in only}, "draws": draws,
            "outcomes": outcomes, "distinct": len(cache), "seconds": time.perf_counter() - t0}


def portrait_loader(photos: Path, tile: Optional[Tuple[int, int]] = None,
                    grayscale: bool = False) -> Callable[[str], np.ndarray]:
    """file name -> uint8 (H, W, 3) RGB (EXIF applied), cached; resized to ``tile`` (or the first portrait's
    size) so every tile of a composite has the same size; ``grayscale`` (a diagnostic): luminance in all three
    channels (Pillow's ITU-R 601 ``L``)."""
    from gazecrop._image import open_image, to_rgb

    cache: Dict[str, np.ndarray] = {}
    size = [tile]

    def load(name: str) -> np.ndarray:
        a = cache.get(name)
        if a is None:
            im = open_image(Path(photos) / name)
            if size[0] is None:
                size[0] = im.size
            if im.size != size[0]:
                im = im.resize(size[0], resample=3)  # Image.Resampling.BICUBIC
            if grayscale:
                im = im.convert("RGB").convert("L").convert("RGB")
            a = to_rgb(im, (255, 255, 255))
            cache[name] = a
        return a

    return load


def draws_table(raw: dict) -> bytes:
    """gzip'd CSV of every pair drawn: ``half,comparison,a_file,b_file,a_first`` and, per layout and method,
    the share kept for A (``<layout>:<method>``): the record of the portraits drawn."""
    lays = list(raw["outcomes"])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    first = raw["outcomes"][lays[0]]
    methods = list(next(iter(next(iter(first.values())).values())))
    w.writerow(["half", "comparison", "a_file", "b_file", "a_first"] + [f"{l}:{m}" for l in lays for m in methods])
    for h, per in raw["draws"].items():
        for comp, d in per.items():
            a, b = comp.split(" vs ")
            fa, fb = raw["halves"][h][a], raw["halves"][h][b]
            cols = [raw["outcomes"][l][h][comp][m]["a"] for l in lays for m in methods]
            for i in range(d.ia.size):
                w.writerow([h, comp, fa[d.ia[i]], fb[d.ib[i]], int(d.a_first[i])] + [f"{c[i]:g}" for c in cols])
    return gzip.compress(buf.getvalue().encode(), mtime=0)


# ---------------------------------------------------------------------------------------------- the tables

def _d(v: Optional[float]) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.3f}"


def _ci(c: Optional[Sequence[float]]) -> str:
    return "-" if not c else f"[{c[0]:+.3f}, {c[1]:+.3f}]"


def _pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def markdown(result: dict) -> str:
    """The audit's tables (Markdown) from :func:`run`'s JSON-ready result (what report.py writes into
    RESULTS.md and what ``python benchmarks/fairness.py`` prints)."""
    proto, summ = result["protocol"], result["summary"]
    lays = list(summ)
    halves = list(summ[lays[0]])
    methods = list(summ[lays[0]][halves[0]])
    default = next(m for m in methods if m.startswith("default"))
    sizes = {g: (len(proto["halves"].get("tune", {}).get(g, [])), len(proto["halves"].get("holdout", {}).get(g, [])))
             for g in proto["groups"]}
    out = [f"Portraits: `{proto['faces']}`; groups (tune + holdout portraits): "
           + ", ".join(f"{group_name(g)} {t} + {h}" for g, (t, h) in sizes.items())
           + f". {proto['pairs_per_half']} pairs per comparison and half (seed {proto['seed']}; sides random; "
             f"the same draws for both layouts), {result['distinct']} distinct composites, "
             f"{result['seconds']:.0f} s; bootstrap {proto['n_boot']} replicates over portraits. Model "
             f"`{result['model']}`, default strategy `{result['default_strategy']}`; {result['machine']['cpu']}, "
             f"{result['machine']['date']}, commit `{result['machine']['commit']}`.", ""]
    ok, msgs = gate_check(result, TARGETS)
    out += [f"Targets (default strategy, {TARGETS['half']} half, >= {TARGETS['pairs']} pairs): "
            f"**{'met' if ok else 'NOT met'}**: " + "; ".join(msgs) + ".", ""]
    pg = result.get("paired")
    if pg:
        out += [f"Paired comparison with `{pg['baseline']}` (same draws; |delta| shipped - |delta| baseline, 95 % "
                f"bootstrap interval): **{'pass' if pg['ok'] else 'FAIL'}**", "",
                "| layout | comparison | shipped delta | baseline delta | difference of abs [interval] |",
                "|---|---|---|---|---|"]
        for lay, rows in pg["rows"].items():
            for name, r in rows.items():
                out.append(f"| {lay} | {name} | {_d(r['shipped'])} | {_d(r['baseline'])} | {_d(r['diff'])} "
                           f"{_ci(r['ci'])} |")
        out.append("")
    out += ["delta = share kept for the first group - 0.5 (positive favours the first group); 95 % intervals "
            "over pairs (binomial) and from the bootstrap over portraits (wider: the groups are small). "
            "`first tile`: share kept on the left / top (position bias, removed from delta by the random "
            "sides). `point`: the same delta for the tile holding the salient point.", ""]
    out += ["#### Summary (`all` = both halves pooled; worst |delta| over the six white / Black x female / male "
            "comparisons)", "",
            "| layout | method | half | worst abs(delta) | pooled race delta [pairs] [bootstrap] | pooled gender "
            "delta [pairs] [bootstrap] | ties | first tile | close | keep whole |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    race, gender = list(POOLED)
    for lay in lays:
        for m in methods:
            for h in halves:
                s = summ[lay][h][m]
                c = list(s["comparisons"].values())
                ties = sum(x["ties"] * x["n"] for x in c) / sum(x["n"] for x in c)
                first = [x.get("first_tile") for x in c]
                first_s = "-" if None in first else f"{sum(f * x['n'] for f, x in zip(first, c)) / sum(x['n'] for x in c):.3f}"
                close = [x.get("close") for x in c]
                kw = [x.get("keep_whole") for x in c]
                close_s = "n/a" if None in close else _pct(float(np.mean(close)))
                kw_s = "n/a" if None in kw else _pct(float(np.mean(kw)))
                w = s["worst"]
                pr, pg = s["pooled"][race], s["pooled"][gender]
                out.append(f"| {lay} | {m} | {h} | {w['abs_delta']:.3f} ({w['comparison']}) | "
                           f"{_d(pr['delta'])} {_ci(pr['ci_pairs'])} {_ci(pr.get('ci_boot'))} | "
                           f"{_d(pg['delta'])} {_ci(pg['ci_pairs'])} {_ci(pg.get('ci_boot'))} | {100 * ties:.1f} % | "
                           f"{first_s} | {close_s} | {kw_s} |")
    for lay in lays:
        out += ["", f"#### {LAYOUTS[lay].title if lay in LAYOUTS else lay}: per comparison, `all` "
                    f"({2 if len(halves) > 2 else 1} x {proto['pairs_per_half']} pairs each)", "",
                "| comparison | " + " | ".join(f"{m} delta [pairs] [bootstrap]" for m in methods)
                + f" | {default}: tune / holdout delta | {default}: point delta |",
                "|---|" + "---|" * (len(methods) + 2)]
        hall = "all" if "all" in halves else halves[0]
        for comp in summ[lay][hall][default]["comparisons"]:
            cells = []
            for m in methods:
                x = summ[lay][hall][m]["comparisons"][comp]
                cells.append(f"{_d(x['delta'])} {_ci(x['ci_pairs'])} {_ci(x.get('ci_boot'))}")
            th = " / ".join(_d(summ[lay][h][default]["comparisons"][comp]["delta"]) for h in halves if h != "all")
            a, b = comp.split(" vs ")
            label = f"{group_name(a)} vs {group_name(b)}" + ("" if (a, b) in MAIN else " (extra)")
            out.append(f"| {label} | " + " | ".join(cells) + f" | {th} | "
                       f"{_d(summ[lay][hall][default]['comparisons'][comp].get('point_delta'))} |")
    return "\n".join(out)


def _without_centre_bias(model_path: Optional[str]) -> str:
    """A temporary copy of the ``.gzw`` (default: the bundled one) whose centre-bias ops have weight 0."""
    import atexit
    import shutil
    import tempfile

    from gazecrop.model import default_model_path
    from gazecrop.weights import read_weights, write_weights

    net = read_weights(model_path or default_model_path())
    found = [op for op in net.ops if op.kind == "centre_bias"]
    if not found:
        raise ValueError("the model has no centre_bias op")
    for op in found:
        op.fparams[0] = 0.0  # the op's weight (docs/weights-format.md)
    folder = tempfile.mkdtemp(prefix="gazecrop-fairness-")
    atexit.register(shutil.rmtree, folder, True)
    out = os.path.join(folder, "no-centre-bias.gzw")
    write_weights(out, net)
    return out


def run(faces: Path, n_pairs: int, seed: int, n_boot: int, layouts: Sequence[str], only: Sequence[str] = HALVES,
        model_path: Optional[str] = None, quiet: bool = False, *, groups: Optional[Mapping[str, Sequence[str]]] = None,
        evaluate: Optional[Evaluate] = None, load: Optional[Callable[[str], np.ndarray]] = None,
        main_only: bool = False, no_centre_bias: bool = False, grayscale: bool = False, twitter: bool = False) -> dict:
    """The whole audit: a JSON-ready dict (``protocol``, ``summary``, ``machine``...) and, under ``"_raw"``,
    :func:`audit`'s arrays. By default on the portraits of ``faces`` with gazecrop (``model_path`` or the
    bundled model); ``groups`` (code -> files), ``evaluate`` and ``load`` replace those parts (tests use
    synthetic ones). ``main_only``: the six comparisons of :data:`MAIN` only. Diagnostics (where a deviation
    comes from): ``no_centre_bias`` runs the model with its centre-bias weight set to 0 (a copy of the
    ``.gzw`` in a temporary folder), ``grayscale`` feeds luminance only."""
    import harness

    groups = load_groups(faces) if groups is None else {g: list(f) for g, f in groups.items()}
    comps = comparisons(groups)
    if main_only:
        comps = [c for c in comps if c in MAIN]
    halves = split_halves(groups)
    if evaluate is None:
        import gazecrop

        path = _without_centre_bias(model_path) if no_centre_bias else model_path
        evaluate = GazecropEvaluate(gazecrop.load_model(path, threads=1), twitter=twitter)
    load = portrait_loader(Path(faces) / "photos", grayscale=grayscale) if load is None else load
    say = None if quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    raw = audit(halves, comps, [LAYOUTS[l] for l in layouts], evaluate, load, n_pairs, seed, say, only)
    summ = summarise(raw, n_boot, seed)
    faces_label = "../shared/data/faces/congress" if Path(faces) == DEFAULT_FACES else str(faces)
    model = getattr(evaluate, "model", None)
    model_label = Path(str(getattr(model, "path", None) or model_path or "bundled")).name if model else "n/a"
    if no_centre_bias:
        model_label += " with centre-bias weight 0 (diagnostic)"
    if grayscale:
        model_label += ", grayscale portraits (diagnostic)"
    return {"protocol": {"faces": faces_label, "groups": list(groups), "halves": raw["halves"],
                         "comparisons": [comparison_name(a, b) for a, b in comps],
                         "pooled": {k: [comparison_name(a, b) for a, b in v] for k, v in POOLED.items()},
                         "pairs_per_half": n_pairs, "seed": seed, "n_boot": n_boot,
                         "layouts": {l: vars(LAYOUTS[l]) for l in layouts}},
            "summary": summ, "distinct": raw["distinct"], "seconds": raw["seconds"], "model": model_label,
            "default_strategy": getattr(evaluate, "default", "n/a"), "machine": harness.machine(), "_raw": raw}


# ---------------------------------------------------------------------------------------------------- gate

TARGETS = {"half": "holdout", "pairs": 2000, "worst": 0.08, "pooled": 0.04}
"""The release targets (issue 21) for the full run (``--targets``): the default strategy on the **holdout half**
(portraits no model or rule was tuned on), at least 2,000 pairs per comparison, both layouts: each pooled |delta|
(gender, race) <= 0.04 and the worst |delta| of the six white / Black x female / male comparisons <= 0.08. The
holdout half has 10-11 portraits in its smallest groups, so these are point estimates: the bootstrap over
portraits gives their intervals (reported beside them)."""

GATE_AT_TARGETS = {"half": "holdout", "pairs": 500, "worst": 0.14, "pooled": 0.08, "boot": 500}
"""What a product meeting :data:`TARGETS` passes at CI's size (``--gate`` prints it): 500 pairs per main comparison
on the holdout half, both layouts; thresholds = targets + 2.5 standard errors of the pairs (0.5 / sqrt(500) =
0.022 per comparison, 0.016 pooled): 0.08 + 0.056 -> **0.14**, 0.04 + 0.040 -> **0.08**. Justified in
:func:`gate_check`."""

GATE = {"pairs": 500, "boot": 500, "worst": 0.23, "pooled": 0.17}
"""The CI gate's exit status (``--gate``): a regression guard on the shipped model, 250 pairs per main comparison
in each half (500 in all), both layouts, until a model meets :data:`GATE_AT_TARGETS`. At this size the pairs'
standard error is at most 0.022 per comparison and 0.016 pooled; the limits are the DenseNet default's figures
at this size (worst 0.171, pooled 0.131, the larger layout of each) plus 2.5 standard errors (0.171 + 0.055 ->
0.23, 0.131 + 0.040 -> 0.17). The draws are seeded, so the same model and placement give the same figures on any
machine; a change that makes the worst comparison >= 0.27 or a pooled deviation >= 0.20 fails CI with
probability >= 95 %. It cannot detect smaller regressions: :data:`GATE_AT_TARGETS`, the full run (``--targets``)
and the paired comparison (``--paired BASELINE``) do that."""

PAIRED = {"half": "holdout", "pairs": 500, "boot": 1000}
"""``--paired BASELINE``: the model vs a baseline on the same draws of the holdout half (:func:`paired_check`), the
release check of issue 21's fallback ("no less fair than today's default"): 500 pairs per main comparison, both
layouts; exit 1 when the model is less fair than the baseline beyond the interval of the paired difference."""

def gate_check(result: dict, limits: Optional[Mapping[str, float]] = None) -> Tuple[bool, List[str]]:
    """Pass / fail of a gate (``limits``: :data:`GATE` by default, or :data:`GATE_AT_TARGETS`, :data:`TARGETS`; its
    ``half``, else ``all`` where the result has both halves) on a :func:`run` result, and one line per check.

    The error bars the gate can afford: with n = 500 pairs per comparison the pairs' standard error of a
    delta is at most 0.5 / sqrt(500) = 0.022 (0.016 pooled over 2 x 500 pairs). The gate's draws are seeded,
    so for one product its figures are fixed; the question is how far they can sit from the full run's
    (2,000 pairs) on the same portraits. A product just meeting the targets (worst |delta| 0.08, pooled 0.04)
    stays below 0.08 + 2.5 x 0.022 = 0.136 -> **0.14** on a comparison and below 0.04 + 2.5 x 0.016 = 0.080 ->
    **0.08** pooled, each with probability 0.994. What it detects with probability >= 95 %: a comparison at
    |delta| >= 0.14 + 1.645 x 0.022 = 0.18 or a pooled |delta| >= 0.08 + 1.645 x 0.016 = 0.11. The pairs'
    interval, not the bootstrap over portraits, is the right yardstick here: the gate and the full run use the
    same portraits.
    """
    limits = GATE if limits is None else limits
    msgs, ok = [], True
    first = next(iter(result["summary"].values()))
    half = limits.get("half") or ("all" if "all" in first else next(iter(first)))
    if half not in first:
        return False, [f"the result has no {half} half (it has {', '.join(first)}): FAIL"]
    default = next(m for m in first[half] if m.startswith("default"))
    for lay, per in result["summary"].items():
        s = per[half][default]
        w = s["worst"]
        n = min(st["n"] for st in s["comparisons"].values())
        good = w["abs_delta"] <= limits["worst"]
        ok &= good
        msgs.append(f"{lay}, {half}: {default} worst |delta| {w['abs_delta']:.3f} ({w['comparison']}, {n} pairs) <= "
                    f"{limits['worst']}: {'pass' if good else 'FAIL'}")
        for name, st in s["pooled"].items():
            good = abs(st["delta"]) <= limits["pooled"]
            ok &= good
            msgs.append(f"{lay}, {half}: {default} pooled {name} |delta| {abs(st['delta']):.3f} <= {limits['pooled']}: "
                        f"{'pass' if good else 'FAIL'}")
        if n < limits.get("pairs", 0):
            ok = False
            msgs.append(f"{lay}: only {n} pairs per comparison, the targets need >= {limits['pairs']}: FAIL")
    return ok, msgs


def paired_check(shipped: dict, baseline: dict, n_boot: int, seed: int, half: str = "holdout"
                 ) -> Tuple[bool, List[str], dict]:
    """The paired comparison (:data:`PAIRED`): two :func:`run` results on the **same draws** (same portraits, seed and
    pairs), the shipped model's and the baseline's, default strategy. For each layout, each main comparison and
    each pooled delta: ``diff = |delta_shipped| - |delta_baseline|`` and its 95 % interval from a bootstrap
    over portraits and pairs in which both models see the same resamples (:func:`boot_shares` with the same
    generator per comparison), so the portraits' own variation cancels from the difference. Fails where the
    whole interval lies above 0 (the shipped model less fair beyond the interval).

    Returns (ok, one line per check, JSON-ready rows ``layout -> name -> {shipped, baseline, diff, ci}``).
    Raises:
        ValueError: the two results were not drawn alike (other seed, pairs or portraits)."""
    rs, rb = shipped["_raw"], baseline["_raw"]
    if half not in rs["draws"] or half not in rb["draws"]:
        raise ValueError(f"both results need the {half} half")
    for comp, d in rs["draws"][half].items():
        e = rb["draws"][half].get(comp)
        if e is None or not (np.array_equal(d.ia, e.ia) and np.array_equal(d.ib, e.ib)
                             and np.array_equal(d.a_first, e.a_first)):
            raise ValueError(f"the two results were not drawn alike ({comp}): same seed, pairs and portraits needed")
    sizes = {g: len(f) for g, f in rs["halves"][half].items()}
    counts = portrait_counts(sizes, n_boot, rng_for(seed, "paired bootstrap", half))
    main = [comparison_name(a, b) for a, b in MAIN]
    ok, msgs, rows = True, [], {}
    for lay in rs["outcomes"]:
        per_s, per_b = rs["outcomes"][lay][half], rb["outcomes"][lay][half]
        ms = next(m for m in per_s[main[0]] if m.startswith("default"))
        mb = next(m for m in per_b[main[0]] if m.startswith("default"))
        reps: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        est: Dict[str, Tuple[float, float]] = {}
        for comp in main:
            a, b = comp.split(" vs ")
            d = rs["draws"][half][comp]
            pair = []
            for per, m in ((per_s, ms), (per_b, mb)):
                y = per[comp][m]["a"]
                pair.append(boot_shares(y, d.ia, d.ib, counts[a], counts[b], rng_for(seed, "paired", lay, half, comp)))
            reps[comp] = (pair[0], pair[1])
            est[comp] = (float(per_s[comp][ms]["a"].mean()), float(per_b[comp][mb]["a"].mean()))
        for pname, members in POOLED.items():
            names = [comparison_name(a, b) for a, b in members]
            reps[pname] = tuple(np.mean([reps[c][k] for c in names], axis=0) for k in (0, 1))
            est[pname] = tuple(float(np.mean([est[c][k] for c in names])) for k in (0, 1))
        rows[lay] = {}
        for name in main + list(POOLED):
            (ps, pb), (rs_, rb_) = est[name], reps[name]
            diff = abs(ps - 0.5) - abs(pb - 0.5)
            dr = np.abs(rs_ - 0.5) - np.abs(rb_ - 0.5)
            dr = dr[np.isfinite(dr)]
            lo, hi = (float(v) for v in np.percentile(dr, [2.5, 97.5])) if dr.size else (math.nan, math.nan)
            good = not lo > 0
            ok &= good
            rows[lay][name] = {"shipped": ps - 0.5, "baseline": pb - 0.5, "diff": diff, "ci": [lo, hi]}
            msgs.append(f"{lay}, {half}: {name}: |delta| shipped {abs(ps - 0.5):.3f} vs baseline {abs(pb - 0.5):.3f}, "
                        f"difference {diff:+.3f} [{lo:+.3f}, {hi:+.3f}]: {'pass' if good else 'FAIL (less fair)'}")
    return ok, msgs, rows


def _jsonable(result: dict) -> dict:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/fairness.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--faces", default=str(DEFAULT_FACES), help="folder with labels.csv and photos/")
    p.add_argument("--pairs", type=int, default=2000, help="pairs per comparison and half (default 2000)")
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument("--boot", type=int, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    p.add_argument("--half", choices=("tune", "holdout", "both"), default="both")
    p.add_argument("--model", default=None, help="a .gzw (default: the bundled model)")
    p.add_argument("--json", default=None, help="write the result here (report.py --fairness reads it)")
    p.add_argument("--draws", default=None, help="write every pair drawn and its outcomes (gzip'd CSV)")
    p.add_argument("--gate", action="store_true",
                   help=f"the CI gate: {GATE['pairs']} pairs per main comparison (both halves), {GATE['boot']} bootstrap "
                        "replicates; exit 1 on failure (--pairs, --boot and --half are ignored)")
    p.add_argument("--paired", metavar="BASELINE", default=None,
                   help=f"also compare --model with the BASELINE .gzw on the same {PAIRED['half']} draws "
                        f"({PAIRED['pairs']} pairs per main comparison); exit 1 when it is less fair beyond the paired "
                        "interval")
    p.add_argument("--targets", action="store_true",
                   help="exit 1 unless the default strategy meets TARGETS on the holdout half (worst |delta| <= 0.08, "
                        "pooled <= 0.04, >= 2,000 pairs per comparison)")
    p.add_argument("--twitter", action="store_true",
                   help=f"also Twitter's released cropper as a reference method ({TWITTER}; ../shared/anchors/fastgaze; "
                        "about 1 s a composite)")
    p.add_argument("--no-centre-bias", action="store_true",
                   help="diagnostic: the model with its centre-bias weight set to 0")
    p.add_argument("--grayscale", action="store_true", help="diagnostic: portraits in luminance only")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    a = p.parse_args(argv)
    faces = Path(a.faces)
    if not (faces / "labels.csv").is_file() or not (faces / "photos").is_dir():
        print(f"fairness: skipped: no labelled portraits at {faces} (labels.csv and photos/; see "
              f"../shared/data/faces/README.md)")
        return 0
    if a.pairs < 1 or a.boot < 1:
        p.error("--pairs and --boot must be >= 1")
    if a.gate:
        only, n, boot = HALVES, GATE["pairs"] // 2, GATE["boot"]
    else:
        only, n, boot = (HALVES if a.half == "both" else (a.half,)), a.pairs, a.boot
    paired_only = a.paired and not (a.gate or a.targets or a.json or a.draws)
    if paired_only:  # the release check alone: the model's run is the paired comparison's own (below)
        result = None
    else:
        result = run(faces, n, a.seed, boot, a.layouts, only, a.model, a.quiet, main_only=a.gate,
                     no_centre_bias=a.no_centre_bias, grayscale=a.grayscale, twitter=a.twitter and not a.gate)
        print(markdown(result))
    status = 0
    if a.gate:
        ok, msgs = gate_check(result, GATE)
        print("\nfairness regression gate (exit status):\n" + "\n".join("  " + m for m in msgs))
        status |= 0 if ok else 1
    if a.paired:
        if not Path(a.paired).is_file():
            print(f"fairness: the baseline model {a.paired} is missing: FAIL")
            return 1
        kw = dict(quiet=a.quiet, main_only=True)
        mine = run(faces, PAIRED["pairs"], a.seed, PAIRED["boot"], a.layouts, (PAIRED["half"],), a.model, **kw)
        base = run(faces, PAIRED["pairs"], a.seed, PAIRED["boot"], a.layouts, (PAIRED["half"],), a.paired, **kw)
        ok, msgs, rows = paired_check(mine, base, PAIRED["boot"], a.seed, PAIRED["half"])
        if result is None:
            result = mine
            print(markdown(mine))
            # the same draws as GATE_AT_TARGETS: where the model stands against the targets (not the exit status)
            at, at_msgs = gate_check(mine, GATE_AT_TARGETS)
            print("\nat the targets' CI size (information, not the exit status):\n"
                  + "\n".join("  " + m for m in at_msgs) + f"\n  => {'meets' if at else 'does not meet'} them")
        result["paired"] = {"baseline": Path(a.paired).name, "ok": ok, "rows": rows}
        print(f"\npaired comparison with {a.paired} ({PAIRED['half']} half, same draws):\n"
              + "\n".join("  " + m for m in msgs) + f"\n  => {'pass' if ok else 'FAIL (less fair)'}")
        status |= 0 if ok else 1
    if a.targets:
        ok, msgs = gate_check(result, TARGETS)
        print("\nfairness targets:\n" + "\n".join("  " + m for m in msgs))
        status |= 0 if ok else 1
    if a.json:
        from gazecrop._atomic import atomic_open

        with atomic_open(a.json) as f:
            f.write((json.dumps(_jsonable(result), indent=1) + "\n").encode())
        print(f"wrote {a.json}", file=sys.stderr)
    if a.draws:
        from gazecrop._atomic import atomic_open

        with atomic_open(a.draws) as f:
            f.write(draws_table(result["_raw"]))
        print(f"wrote {a.draws}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
