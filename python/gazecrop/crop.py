"""Crop selection: pure functions of (log-density grid, displayed image size, aspect ratio).

Nothing here decodes images or runs a model (that is :mod:`gazecrop.api`); the input is the model's
log-density over a coarse (h, w) grid that covers the whole image, and the image's displayed size
``(W, H)`` in pixels. Conventions (``DESIGN.md``): x right, y down, pixel ``j`` covers ``[j, j + 1)`` and has
its centre at ``j + 0.5`` in edge coordinates; boxes are ``(left, top, width, height)`` ints; an aspect ratio
is width / height; a saliency map is a log-density (natural log, ``logsumexp == 0``).

Grid and image are tied by one mapping, :func:`grid_to_image` (and its inverse :func:`image_to_grid`): cell
centres sit at the centres of ``W / w`` by ``H / h`` pixel tiles (half-pixel convention, as
``align_corners=False`` resizing). The density at pixel resolution is the bilinear upsampling of the grid
density (borders clamped), renormalised to sum to 1 over the image's pixels (DeepGaze renormalises after
every resize). Because bilinear upsampling is a product ``Ry @ D @ Rx.T`` of two interpolation matrices, its
summed-area table is ``cumsum(Ry) @ D @ cumsum(Rx).T``: the mass inside *any* pixel box is exact at full
resolution without building the full-size map.

Strategies (:data:`STRATEGIES`, default :data:`DEFAULT_STRATEGY`), each giving the largest box of the aspect
ratio that fits the image (or, with ``zoom``, a tighter one):

- ``"mass"`` (the default): the position keeping the most saliency mass inside the box (summed-area table)
  under the *object rule*. The most salient object is the box of pixels ``[xa, xb] x [ya, yb]`` around the
  density's maximum where its profiles (the density's maximum over each column, resp. row) stay at least
  :data:`OBJECT_LEVEL` (half) of the maximum. When the box can hold that object, it never cuts through it
  (holds it whole or leaves it out), and it holds it whole unless a box without it keeps more than
  ``1 + object_yield`` (:data:`OBJECT_YIELD`, 0.1) times the mass. Without the rule (``object_yield=None``) a
  bright secondary region can pull the box off the most salient object and cut through it (a face cut at
  the eyes to keep a badge below it); the older salient-point anchor (``margin``) kept the object but
  threw away much of what the map knows (``benchmarks/crop_quality.md``). Near-ties (within
  :data:`TIE_TOLERANCE` of the best share) go to the box centre nearest the object's centre, then nearest
  the image centre.
- ``"point"``: centre the box on the salient point and shift it back inside the image; Twitter's 2018
  method (L. Theis, Z. Wang, "Speedy Neural Networks for Smart Auto-Cropping of Images", Twitter Engineering
  blog, January 2018). ``"mass"`` with ``margin=0.5`` gives exactly this box.
- ``"centre"``: the centred box, a baseline (libvips ``VIPS_INTERESTING_CENTRE``).

Symmetry: ``"mass"`` decides on quantities averaged over the map and its mirror image (mass, profiles), so
for a map and its left-right mirror the boxes, candidates and scores are exact mirrors (no scan-order
tie-break). The only exception is a tie (within :data:`TIE_TOLERANCE`) between a box and its own mirror
image, equally near the object's and the image's centre (a map that is its own mirror, with two equal
subjects apart): the smaller left wins, and when the two boxes are distinct the mirror box is among the
candidates with the same score (and ``close`` says so when it is the runner-up).

Close choices and candidates: besides the chosen box, the rule ranks the other boxes it allows (no cut
through the object) by mass, keeping each only when it is *distinct* from every box ranked before it: IoU
below :data:`DISTINCT_IOU`, less than :data:`CLOSE_SHARED` of its mass inside that box (another subject,
not the same one with other margins) and moved by :data:`DISTINCT_SHIFT` of the image side at least
(non-maximum suppression). ``close`` is True when the best of
them keeps at least :data:`CLOSE_RATIO` of the chosen box's mass (two subjects of near-equal saliency that
one box cannot hold together): the box is still the chosen one, and ``candidates`` lists the alternatives
with their scores.

User control (every strategy, :func:`choose_crop`): ``keep`` boxes the crop must contain (the placement runs
only over the positions holding the most of their area: all of it whenever a box of that size can;
``CropResult.kept`` says how much was held), ``boost`` boxes added to the density (smartcrop.js' boost:
weight 1 adds the whole map's mass again, spread evenly over the box; then renormalised; the masses stay
exact: a uniform box's share of any box is the overlap's area over its own), and a manual ``focal`` point
(thumbor's and imgproxy's) that replaces the map by a narrow one around it (:func:`focal_log_density`).
``CropResult.pad`` says when padding the whole image is better than the crop (``fit="auto"``).

The salient point as an anchor follows Twitter 2018 (above) and libvips ``smartcrop`` with
``VIPS_INTERESTING_ATTENTION`` (``libvips/conversion/smartcrop.c``), which likewise scores a small proxy,
maps back to full size, clamps the box into the image and always returns that point. The rule, its
constants and the default were chosen by ``benchmarks/crop_quality.py`` on the train split and checked on
val (``benchmarks/crop_quality.md``).

Import names with ``from gazecrop.crop import choose_crop`` (or ``importlib.import_module("gazecrop.crop")``):
the package attribute ``gazecrop.crop`` is the public function :func:`gazecrop.crop`, which shadows this
module after ``import gazecrop``.

Implementation: numpy, and the native core for the default options: :func:`choose_crops` hands the ``"mass"``
rule for the largest box (no ``margin``, ``zoom``, ``keep`` or ``boost``) to ``gazecrop._core.place``
(``cpp/src/placement.cpp``), which computes this module's numbers bit for bit (every sum in the same order)
about ten times faster; this module's code is its reference and runs every other option.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from numbers import Real
from typing import Iterable, List, Literal, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "Strategy", "STRATEGIES", "DEFAULT_STRATEGY", "CropBox", "Peak", "CropResult", "parse_aspect",
    "format_aspect", "grid_to_image", "image_to_grid", "largest_box_size", "resample_log_density",
    "salient_point", "find_peaks", "choose_crop", "choose_crops", "aspect_list", "box_mass",
    "ASPECT_TOLERANCE", "MASS_ADVICE", "TIE_TOLERANCE", "ANCHOR_MARGIN", "OBJECT_LEVEL", "OBJECT_YIELD",
    "CLOSE_RATIO", "CLOSE_SHARED", "DISTINCT_IOU", "DISTINCT_SHIFT", "Candidate", "Zoom", "ZOOM_DEFAULT",
    "check_zoom", "check_options",
    "cut_through", "object_box", "MAX_POSITIONS", "check_regions", "focal_log_density", "FOCAL_SIGMA",
    "FOCAL_GRID", "HEAD_YIELD", "HEAD_UP", "HEAD_DOWN", "head_box", "heads_from_map", "HEAD_THRESHOLD",
    "MIN_HEAD", "HEAD_GRID", "MAX_SIDE", "MAX_BOOST",
]

Strategy = Literal["mass", "point", "centre"]
"""How the box position is chosen (module docstring)."""

STRATEGIES: Tuple[str, ...] = ("mass", "point", "centre")

DEFAULT_STRATEGY: Strategy = "mass"
"""Chosen by ``benchmarks/crop_quality.py`` (share of human fixations inside the crop), with the object rule
(:data:`OBJECT_YIELD`)."""

ASPECT_TOLERANCE = 0.05
"""Whole-image advice when the requested aspect is within 5 % of the image's (``|ln(a / a_image)|``)."""

MASS_ADVICE = 0.98
"""Whole-image advice when the box already keeps at least this share of the saliency mass."""

TIE_TOLERANCE = 1e-6
"""Shares of mass closer than this to the best count as ties for the ``"mass"`` strategy."""

OBJECT_LEVEL = 0.5
"""The most salient object is where the density stays at least this share of its maximum (half maximum)
around the maximum (module docstring)."""

OBJECT_YIELD = 0.1
"""Default ``object_yield``: the box holds the most salient object whole unless a box without it keeps more
than 1.1 times the mass. On the train and val splits (``benchmarks/crop_quality.md``) yield 0 (only never
cut) measures best but lets a marginally heavier region (a patterned torso under a head) take the box from
the object; 0.1 is the next best on both splits (within 0.011 of the mean normalised gain of pure mass on
train, 0.003 on val), and larger values cost more (0.25: 0.015 / 0.012; never yielding: 0.034 / 0.026)."""

CLOSE_RATIO = 0.95
"""``CropResult.close`` is True when the best distinct box the rule allows keeps at least this share of the
chosen box's mass (how often on photos: ``benchmarks/crop_quality.md``)."""

DISTINCT_IOU = 0.5
"""Candidates are distinct when their intersection over union is below this (boxes of one size: shifted by
more than a third of their width or height) ..."""

CLOSE_SHARED = 0.5
"""... and less than this share of a candidate's mass lies inside a box ranked before it ..."""

DISTINCT_SHIFT = 0.1
"""... and it is moved by at least this share of the image's width or height (matters only for thin boxes:
for others the IoU already asks for more)."""

ANCHOR_MARGIN = 0.25
"""The salient-point anchor margin of the rule before the object rule (``margin=ANCHOR_MARGIN``, off by
default): kept for comparison in ``benchmarks/crop_quality.md``, where it loses most of the gain over the
centre crop and is worse than the centre crop at 9:16."""

MAX_POSITIONS = 1 << 12
"""Above this many positions (a box smaller than the image on both axes, i.e. ``zoom``) the search runs on
a coarse mirror-symmetric grid of positions, then on every position within one coarse step of its best."""


HEAD_YIELD = 0.98
"""The head rule (``heads``): heads are spared when that keeps at least this share of the best box's mass."""

HEAD_UP, HEAD_DOWN = 0.5, 0.1
"""A head (:func:`head_box`) is the face box grown up by half its height (hair) and down by a tenth (chin)."""

MAX_BOOST = 1e9
"""The largest ``boost`` weight (a billion times the map's own mass: far past any visible effect; larger
weights overflowed the masses)."""

FOCAL_SIGMA = 0.02
"""``focal``: the narrow map's standard deviation as a share of the image's long side (the box of the
``"mass"`` rule holds the whole bump wherever it can, centred on the point)."""

FOCAL_GRID = 128
"""``focal``: cells of the narrow map's grid on the image's long side (2.56 cells per standard deviation)."""


class Zoom(NamedTuple):
    """``zoom`` option: the smallest box whose long side is at least ``min_scale`` of the largest box's and
    that keeps at least ``mass`` (a share of the whole saliency mass, in (0, 1]) (smartcrop.js ``minScale``)."""

    min_scale: float
    mass: float


ZOOM_DEFAULT = Zoom(0.5, 0.9)
"""``zoom=True``: down to half the largest box's side while keeping 90 % of the saliency mass."""

ZoomLike = Union[None, bool, Zoom, Tuple[float, float]]

AspectLike = Union[float, int, str]


class CropBox(NamedTuple):
    """A crop rectangle in pixels of the displayed image: ``(left, top, width, height)``, all ints,
    ``0 <= left``, ``left + width <= W`` (same for y), ``width, height >= 1``."""

    left: int
    top: int
    width: int
    height: int

    @property
    def right(self) -> int:
        """Exclusive right edge, ``left + width``."""
        return self.left + self.width

    @property
    def bottom(self) -> int:
        """Exclusive bottom edge, ``top + height``."""
        return self.top + self.height

    def to_pil(self) -> Tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` as ``PIL.Image.Image.crop`` takes it."""
        return (self.left, self.top, self.right, self.bottom)


class Peak(NamedTuple):
    """A distinct salient point: pixel ``(x, y)`` of the displayed image and its ``strength`` (density
    relative to the strongest peak, in (0, 1])."""

    x: int
    y: int
    strength: float


class Candidate(NamedTuple):
    """One box the placement rule allows, with its ``score`` (share of the saliency mass inside)."""

    box: CropBox
    score: float


@dataclass(frozen=True)
class CropResult:
    """One crop for one aspect ratio.

    Attributes:
        aspect: requested aspect ratio, width / height.
        box: the :class:`CropBox`.
        salient_point: ``(x, y)`` int pixel of the density's maximum (the attention point), always returned.
        score: share of the saliency mass inside the box, in [0, 1].
        peaks: distinct salient points, strongest first, after non-maximum suppression (``peaks[0]`` is the
            salient point).
        keep_whole: True when the crop is optional (the whole image would do as well; nothing is lost by
            cropping either): the aspect is within :data:`ASPECT_TOLERANCE` of the image's, or the box keeps at
            least :data:`MASS_ADVICE` of the mass.
        advice: why ``keep_whole`` is True, for people ("keeps 99.2% of what people look at"; None when
            False); the CLI prints it after "crop optional:".
        strategy: the strategy that placed the box.
        close: True when the best distinct box (module docstring: IoU below :data:`DISTINCT_IOU`, less
            than :data:`CLOSE_SHARED` of its mass shared) keeps at least :data:`CLOSE_RATIO` of this box's
            mass: two subjects of near-equal saliency that one box cannot hold together. The box is still
            this one (the CLI crops it and says so in its JSON); ``candidates >= 2`` lists the alternative.
        candidates: ranked :class:`Candidate` boxes, ``candidates[0]`` is ``box`` with ``score``, then the
            distinct boxes best first; up to ``candidates=k`` of them.
        clamped: True when the aspect ratio is so extreme that one side of the box rounded to less than one
            pixel and was clamped to 1 (the box's own aspect then differs from ``aspect``); a warning on
            the command line.
        cut: how much the box cuts through what is salient (:func:`cut_through`): the highest density on its
            edges inside the image relative to the density's maximum, in [0, 1].
        scale: the box's long side relative to the largest box of the aspect (1.0 unless ``zoom``).
        kept: with ``keep`` regions, the share of their area (their union's) inside the box, in [0, 1]: 1.0
            when the box holds them all, less when no box of this size can (the box then holds as much of
            them as any can); None without ``keep``.
        pad: True when showing the whole image padded is better than this crop (what ``fit="auto"`` of
            :func:`gazecrop.thumbnail` does): the choice is ``close``, the aspect is within
            :data:`ASPECT_TOLERANCE` of the image's, or the box cannot hold all the ``keep`` regions.
    """

    aspect: float
    box: CropBox
    salient_point: Tuple[int, int]
    score: float
    peaks: Tuple[Peak, ...] = ()
    keep_whole: bool = False
    advice: Optional[str] = None
    strategy: str = DEFAULT_STRATEGY
    close: bool = False
    candidates: Tuple[Candidate, ...] = ()
    clamped: bool = False
    cut: float = 0.0
    scale: float = 1.0
    kept: Optional[float] = None
    pad: bool = False

    def to_dict(self) -> dict:
        """JSON-ready dict (lists for tuples; ``candidates`` as ``[{"box": [...], "score": s}, ...]``)."""
        return {"aspect": self.aspect, "box": list(self.box), "salient_point": list(self.salient_point),
                "score": self.score, "peaks": [[p.x, p.y, p.strength] for p in self.peaks],
                "keep_whole": self.keep_whole, "advice": self.advice, "strategy": self.strategy,
                "close": self.close, "candidates": [{"box": list(c.box), "score": c.score} for c in self.candidates],
                "clamped": self.clamped, "cut": self.cut, "scale": self.scale, "kept": self.kept, "pad": self.pad}


# --------------------------------------------------------------------------------------------- aspect ratios

def parse_aspect(aspect: AspectLike) -> float:
    """Aspect ratio (width / height) from a positive number or a string ``"16:9"``, ``"16/9"``, ``"16x9"`` or
    ``"1.78"``.

    Raises:
        ValueError: not positive and finite, or an unparsable string. TypeError: another type.
    """
    if isinstance(aspect, bool):
        raise TypeError("aspect must be a number or a string like '16:9', got bool")
    if isinstance(aspect, str):
        s = aspect.strip().lower()
        sep = next((c for c in (":", "/", "x") if c in s), None)
        try:
            parts = [float(v) for v in (s.partition(sep)[::2] if sep else (s,))]
        except ValueError:
            raise ValueError(f"cannot parse aspect ratio {aspect!r}; expected e.g. '16:9' or '1.78'") from None
        if sep is None:
            value = parts[0]
        else:
            num, den = parts
            if not (math.isfinite(num) and math.isfinite(den) and num > 0 and den > 0):
                raise ValueError(f"aspect ratio {aspect!r}: both sides must be positive")
            value = num / den  # checked below: a quotient can still under- or overflow
    elif isinstance(aspect, Real):
        try:
            value = float(aspect)
        except OverflowError:
            raise ValueError(f"aspect ratio must be positive and finite, got {aspect!r}") from None
    else:
        raise TypeError(f"aspect must be a number or a string like '16:9', got {type(aspect).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"aspect ratio must be positive and finite, got {aspect!r}")
    return value


def format_aspect(aspect: AspectLike) -> str:
    """A file-name-safe tag: ``"16:9"`` -> ``"16x9"``, ``1.5`` -> ``"1.5"``, ``"1.78"`` -> ``"1.78"``."""
    if isinstance(aspect, str):
        s = aspect.strip().lower()
        for sep in (":", "/"):
            s = s.replace(sep, "x")
        parse_aspect(s)
        return s
    return f"{parse_aspect(aspect):g}"


def _box_size(W: int, H: int, a: float) -> Tuple[int, int, bool]:
    """Largest box of aspect ``a`` in a W x H image and whether a side had to be clamped up to 1 pixel."""
    if W >= a * H:
        side = int(round(H * a))
        return max(1, min(W, side)), H, side < 1
    side = int(round(W / a))
    return W, max(1, min(H, side)), side < 1


def largest_box_size(size: Tuple[int, int], aspect: AspectLike) -> Tuple[int, int]:
    """``(width, height)`` in pixels of the largest box of ``aspect`` that fits a ``(W, H)`` image; one side
    is the image's, the other rounded to the nearest pixel and at least 1 (``CropResult.clamped`` says when
    that minimum applied).

    Raises:
        ValueError: non-positive size or bad aspect.
    """
    W, H = _check_size(size)
    bw, bh, _ = _box_size(W, H, parse_aspect(aspect))
    return bw, bh


# ------------------------------------------------------------------------------------ grid <-> image mapping

def grid_to_image(g: "float | np.ndarray", n_grid: int, n_image: int) -> "float | np.ndarray":
    """Grid index (cell centre = integer) -> image pixel coordinate (pixel centre = integer), one axis:
    ``x = (g + 0.5) * n_image / n_grid - 0.5``. The single grid <-> image mapping of gazecrop."""
    return (np.asarray(g, dtype=np.float64) + 0.5) * (n_image / n_grid) - 0.5


def image_to_grid(x: "float | np.ndarray", n_image: int, n_grid: int) -> "float | np.ndarray":
    """Inverse of :func:`grid_to_image`: image pixel coordinate -> fractional grid index."""
    return (np.asarray(x, dtype=np.float64) + 0.5) * (n_grid / n_image) - 0.5


def _upsample_index(n_image: int, n_grid: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear interpolation of a grid axis at the image's pixel centres (borders clamped, the rule of
    :func:`gazecrop.reference.resize_bilinear`): int64 (n_image,) lower and upper cell indices and float64
    (n_image,) weights of each. Built for the first half of the pixels and mirrored for the rest, so that
    pixel ``n - 1 - i`` uses exactly the mirrored cells and swapped weights of pixel ``i`` (interpolating a
    mirrored grid gives the mirrored values bit for bit)."""
    half = (n_image + 1) // 2
    s = np.clip(image_to_grid(np.arange(half), n_image, n_grid), 0.0, n_grid - 1)
    i0 = np.floor(s).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_grid - 1)
    w1 = s - i0
    w0 = 1.0 - w1
    rest = n_image - half  # pixels n-1-i for i < rest, in increasing pixel order
    return (np.concatenate([i0, n_grid - 1 - i1[:rest][::-1]]), np.concatenate([i1, n_grid - 1 - i0[:rest][::-1]]),
            np.concatenate([w0, w1[:rest][::-1]]), np.concatenate([w1, w0[:rest][::-1]]))


def _lerp(d: np.ndarray, index: Tuple[np.ndarray, ...], axis: int) -> np.ndarray:
    """``d`` interpolated along ``axis`` at the pixel centres of :func:`_upsample_index` (gathers: no BLAS,
    whose threads took milliseconds to wake for such small products)."""
    i0, i1, w0, w1 = index
    if axis == 1:
        return d[:, i0] * w0 + d[:, i1] * w1
    if d.ndim == 1:
        return d[i0] * w0 + d[i1] * w1
    return d[i0] * w0[:, None] + d[i1] * w1[:, None]


def _lerp_rows_max(d: np.ndarray, index: Tuple[np.ndarray, ...]) -> np.ndarray:
    """``_lerp(d, index, 0).max(axis=1)`` (the same products and sums, so the same bits), with contiguous
    row gathers and in-place arithmetic: (n_image,)."""
    i0, i1, w0, w1 = index
    a = np.take(d, i0, axis=0)
    a *= w0[:, None]
    b = np.take(d, i1, axis=0)
    b *= w1[:, None]
    a += b
    return a.max(axis=1)


def _axis_weights(index: Tuple[np.ndarray, ...], n_grid: int) -> np.ndarray:
    """float64 (n_grid,) total interpolation weight of each grid cell over all pixels of the axis."""
    i0, i1, w0, w1 = index
    return np.bincount(i0, w0, minlength=n_grid) + np.bincount(i1, w1, minlength=n_grid)


def _cumulative(index: Tuple[np.ndarray, ...], n_grid: int) -> np.ndarray:
    """float64 (n_image + 1, n_grid): row k is the interpolation weight of each cell summed over pixels < k
    (the summed-area table of the upsampling along one axis)."""
    i0, i1, w0, w1 = index
    n = len(i0)
    m = np.zeros((n + 1, n_grid), np.float64)
    rows = np.arange(1, n + 1)
    m[rows, i0] += w0  # each (row, col) pair occurs once per statement, so += is exact here
    m[rows, i1] += w1  # (a second statement, so i1 == i0 at the clamped border adds up)
    return np.cumsum(m, axis=0, out=m)


def _row_sum(weights: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``weights @ d`` for float64 (n,) weights and an (n, w) grid, the rows added in order (a running sum, not
    BLAS, whose order is its own): (w,). The native placement (``cpp/src/placement.cpp``) adds in the same order,
    so both give the same bits."""
    return np.cumsum(weights[:, None] * d, axis=0)[-1]


def _col_sum(d: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``d @ weights`` for an (h, n) grid and float64 (n,) weights, the columns added in order: (h,)."""
    return np.cumsum(d * weights[None, :], axis=1)[:, -1]


MAX_SIDE = 1 << 20
"""The longest image side the placement takes, in pixels (the native core's limit too)."""


def _check_size(size: Sequence[int]) -> Tuple[int, int]:
    """``(width, height)``: two ints (Python or numpy, not bools), each 1 to :data:`MAX_SIDE`.

    Raises:
        TypeError: not a pair of ints (a float, a string, a bool). ValueError: a side out of range."""
    if isinstance(size, (str, bytes, dict)):
        raise TypeError(f"size must be (width, height) ints, got {size!r}")
    try:
        W, H = size
    except (TypeError, ValueError):
        raise TypeError(f"size must be (width, height) ints, got {size!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in (W, H)):
        raise TypeError(f"size must be (width, height) ints, got {size!r}")
    W, H = int(W), int(H)
    if not (1 <= W <= MAX_SIDE and 1 <= H <= MAX_SIDE):
        raise ValueError(f"image size must be 1 to {MAX_SIDE} pixels a side, got {W}x{H}")
    return W, H


NO_PIXEL_MASS = "log_density has no mass at the image's pixels (every cell they interpolate is -inf)"


def _unit_density(log_density: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The checked float64 (h, w) log-density grid and its density relative to the maximum, ``exp(ld - max)``
    (maximum exactly 1).

    Raises:
        TypeError: not real numbers (bools, strings, complex numbers, a masked array). ValueError: not a
        non-empty 2-D grid, NaN or +inf in it, or -inf everywhere."""
    if isinstance(log_density, np.ma.MaskedArray):
        raise TypeError("log_density must be a plain array (a masked array's mask would be ignored)")
    raw = np.asarray(log_density)
    if raw.dtype.kind not in "iufO" or (raw.dtype.kind == "O" and not all(
            isinstance(v, Real) and not isinstance(v, bool) for v in raw.flat)):
        raise TypeError(f"log_density must hold real numbers, got dtype {raw.dtype}")
    try:
        ld = raw.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError("log_density must hold real numbers") from None
    if ld.ndim != 2 or ld.shape[0] < 1 or ld.shape[1] < 1:
        raise ValueError(f"log_density must be a 2-D (h, w) grid, got shape {ld.shape}")
    if np.isnan(ld).any() or np.isposinf(ld).any():
        raise ValueError("log_density contains NaN or +inf")
    m = float(ld.max())
    if not math.isfinite(m):
        raise ValueError("log_density is -inf everywhere (no mass)")
    return ld, np.exp(ld - m)


class _Density:
    """The grid density and the separable summed-area table of its pixel-resolution upsampling."""

    def __init__(self, log_density: np.ndarray, size: Sequence[int],
                 boost: Sequence[Tuple["CropBox", float]] = ()) -> None:
        self.grid, self.d = _unit_density(log_density)
        self.W, self.H = _check_size(size)
        h, w = self.d.shape
        self.iy, self.ix = _upsample_index(self.H, h), _upsample_index(self.W, w)
        self._tables: dict = {}  # cumulative weights per axis, shared with the mirror image
        self._prefix: dict = {}  # 1-D prefix sums of pixel masses, per band (not shared)
        self._tables[("full", 0)] = _axis_weights(self.iy, h)
        self._tables[("full", 1)] = _axis_weights(self.ix, w)
        # boosts as (left, top, right, bottom, weight): each adds weight x the map's own mass, spread evenly
        self.boost = tuple((b.left, b.top, b.right, b.bottom, float(w)) for b, w in boost)
        self._set_total(self._raw_total())
        if not self.raw_total > 0:
            raise ValueError(NO_PIXEL_MASS)
        self._point: Optional[Tuple[int, int]] = None
        self._cell: Optional[Tuple[float, float]] = None
        self._mirror: Optional["_Density"] = None
        self._object: Optional[Tuple[Tuple[int, int], Tuple[int, int]]] = None

    def mirror(self) -> "_Density":
        """The left-right mirror image's density (the same interpolation matrices, grid columns reversed)."""
        if self._mirror is None:
            m = object.__new__(_Density)
            m.__dict__.update(self.__dict__)
            m.d = np.ascontiguousarray(self.d[:, ::-1])
            m.boost = tuple((self.W - r, t, self.W - l, b, w) for l, t, r, b, w in self.boost)
            m._set_total(m._raw_total())
            m._point = m._cell = m._object = None
            m._prefix = {}
            m._mirror = self
            self._mirror = m
        return self._mirror

    def _raw_total(self) -> float:
        """The map's own mass (unnormalised): the pixel-resolution density summed, rows then columns in order."""
        return float(np.cumsum(_row_sum(self._tables[("full", 0)], self.d) * self._tables[("full", 1)])[-1])

    def _set_total(self, raw: float) -> None:
        """``raw`` is the map's own mass (unnormalised); :attr:`total` adds the boosts' (weight x raw each)."""
        self.raw_total = raw
        self.total = raw + sum(w * raw for *_, w in self.boost) if self.boost else raw

    def boost_mass(self, r0: np.ndarray, r1: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
        """Unnormalised boost mass inside the boxes rows ``[r0, r1)`` x columns ``[c0, c1)``: float64
        ``(len(r0), len(c0))`` for int arrays of row bounds and column bounds (0 without boosts)."""
        out = np.zeros((len(r0), len(c0)))
        for left, top, right, bottom, w in self.boost:
            oy = np.clip(np.minimum(r1, bottom) - np.maximum(r0, top), 0, None)
            ox = np.clip(np.minimum(c1, right) - np.maximum(c0, left), 0, None)
            out += (w * self.raw_total / ((right - left) * (bottom - top))) * np.outer(oy, ox)
        return out

    def sym_mass(self, tops: np.ndarray, lefts: np.ndarray, bh: int, bw: int) -> np.ndarray:
        """:meth:`mass` averaged with the mirror image's mass of the mirrored boxes: exactly (bit for bit)
        the same numbers for a map and its mirror, so decisions on it do not depend on scan direction."""
        mirrored = self.mirror().mass(tops, self.W - bw - lefts, bh, bw)
        return 0.5 * (self.mass(tops, lefts, bh, bw) + mirrored)

    def profiles(self) -> Tuple[np.ndarray, np.ndarray]:
        """Column profile (W,) and row profile (H,): the pixel-resolution density's maximum over each column
        (resp. row), relative to the grid maximum; exact mirrors for a mirrored map (:func:`_upsample_index`)."""
        return _lerp_rows_max(np.ascontiguousarray(self.d.T), self.ix), _lerp_rows_max(self.d, self.iy)

    def object_box(self) -> Tuple[Tuple[int, int], Tuple[int, int]]:
        """``((xa, xb), (ya, yb))``, inclusive pixel ranges of the most salient object: the runs of the
        profiles around their maxima where they stay at least :data:`OBJECT_LEVEL` of the maximum (maxima
        tied to 1e-12 go to the one nearest the image centre, then the smaller index)."""
        if self._object is None:
            self._object = tuple(_run(p) for p in self.profiles())  # type: ignore[assignment]
        return self._object  # type: ignore[return-value]

    def focus(self) -> Tuple[float, float]:
        """Centre of :meth:`object_box` in edge coordinates (``(xa + xb + 1) / 2``, same for y)."""
        (xa, xb), (ya, yb) = self.object_box()
        return (xa + xb + 1) / 2, (ya + yb + 1) / 2

    def _range(self, axis: int, start: int, length: int) -> np.ndarray:
        """(n_grid,) interpolation weights of the pixels [start, start + length) along ``axis``."""
        index, n_grid = (self.iy, self.d.shape[0]) if axis == 0 else (self.ix, self.d.shape[1])
        i0, i1, w0, w1 = (v[start:start + length] for v in index)
        return np.bincount(i0, w0, minlength=n_grid) + np.bincount(i1, w1, minlength=n_grid)

    def box_mass(self, box: "CropBox") -> float:
        """Share of mass inside one box, averaged with the mirror image's (as :meth:`sym_mass`)."""
        wy, wx = self._range(0, box.top, box.height), self._range(1, box.left, box.width)
        m = self.mirror()
        wxm = m._range(1, self.W - box.left - box.width, box.width)
        a, b = float(wy @ self.d @ wx), float(wy @ m.d @ wxm)
        if self.boost:
            r0, r1 = np.array([box.top]), np.array([box.bottom])
            a += float(self.boost_mass(r0, r1, np.array([box.left]), np.array([box.right]))[0, 0])
            b += float(m.boost_mass(r0, r1, np.array([self.W - box.right]), np.array([self.W - box.left]))[0, 0])
        return 0.5 * (a / self.total + b / m.total)

    def cum(self, axis: int) -> np.ndarray:
        """(n_image + 1, n_grid) cumulative interpolation weights along ``axis`` (:func:`_cumulative`),
        built once and shared with the mirror image."""
        if axis not in self._tables:
            index, n_grid = (self.iy, self.d.shape[0]) if axis == 0 else (self.ix, self.d.shape[1])
            self._tables[axis] = _cumulative(index, n_grid)
        return self._tables[axis]

    def _band(self, axis: int, starts: np.ndarray, length: int) -> np.ndarray:
        """(len(starts), n_grid) interpolation weights of the pixel bands [s, s + length) along ``axis``."""
        index, n_grid = (self.iy, self.d.shape[0]) if axis == 0 else (self.ix, self.d.shape[1])
        if length == len(index[0]):  # the whole axis (starts == [0])
            return self._tables[("full", axis)][None, :]
        c = self.cum(axis)
        return c[starts + length] - c[starts]

    def prefix(self, one_row: bool, start: int, length: int) -> np.ndarray:
        """Prefix sums (n + 1,) of the pixel masses (unnormalised) of one band: rows [start, start + length)
        summed per pixel column when ``one_row``, else columns [start, start + length) per pixel row."""
        key = (one_row, start, length)
        p = self._prefix.get(key)
        if p is None:
            s = np.array([start])
            if one_row:
                v = _row_sum(self._band(0, s, length)[0], self.d)
            else:
                v = _col_sum(self.d, self._band(1, s, length)[0])
            p = np.concatenate([[0.0], np.cumsum(_lerp(v, self.ix if one_row else self.iy, 0))])
            self._prefix[key] = p
        return p

    def mass(self, tops: np.ndarray, lefts: np.ndarray, bh: int, bw: int) -> np.ndarray:
        """Share of mass of boxes (top, left, bh, bw) for all tops x lefts: float64 (len(tops), len(lefts)).
        One band of rows (or columns) is a 1-D prefix sum over the pixels of the other axis."""
        if len(tops) == 1 or len(lefts) == 1:
            one_row = len(tops) == 1
            p = self.prefix(one_row, int(tops[0]), bh) if one_row else self.prefix(one_row, int(lefts[0]), bw)
            s, n = (lefts, bw) if one_row else (tops, bh)
            if self.boost:
                m = (p[s + n] - p[s]).reshape((1, -1) if one_row else (-1, 1))
                return (m + self.boost_mass(tops, tops + bh, lefts, lefts + bw)) / self.total
            m = (p[s + n] - p[s]) / self.total
            return m[None, :] if one_row else m[:, None]
        raw = self._band(0, tops, bh) @ self.d @ self._band(1, lefts, bw).T
        if self.boost:
            raw += self.boost_mass(tops, tops + bh, lefts, lefts + bw)
        return raw / self.total

    def cell(self) -> Tuple[float, float]:
        """(row, col) of the grid maximum; near-ties (relative 1e-6) go to the cell nearest the grid centre,
        and a flat grid gives the centre itself (fractional)."""
        if self._cell is None:
            h, w = self.d.shape
            tied = self.d >= 1.0 - 1e-6
            if tied.all():
                self._cell = ((h - 1) / 2, (w - 1) / 2)
            else:
                cand = np.argwhere(tied)
                dist = (cand[:, 0] - (h - 1) / 2) ** 2 + (cand[:, 1] - (w - 1) / 2) ** 2
                r, c = cand[int(np.argmin(dist))]
                self._cell = (int(r), int(c))
        return self._cell

    def to_pixel(self, row: float, col: float) -> Tuple[int, int]:
        h, w = self.d.shape
        x = math.floor((col + 0.5) * (self.W / w) - 0.5 + 0.5)  # grid_to_image, then the nearest pixel
        y = math.floor((row + 0.5) * (self.H / h) - 0.5 + 0.5)
        return min(max(x, 0), self.W - 1), min(max(y, 0), self.H - 1)

    def point(self) -> Tuple[int, int]:
        if self._point is None:
            self._point = self.to_pixel(*self.cell())
        return self._point


def _run(profile: np.ndarray) -> Tuple[int, int]:
    """Inclusive index range around the profile's maximum where it stays >= OBJECT_LEVEL of that maximum."""
    n = len(profile)
    top = float(profile.max())
    tied = np.flatnonzero(profile >= top * (1 - 1e-12))
    i = int(tied[np.argmin(np.abs(tied + 0.5 - n / 2))])  # nearest the centre; exact mirror ties: smaller
    below = profile < OBJECT_LEVEL * top
    left = np.flatnonzero(below[:i])
    right = np.flatnonzero(below[i + 1:])
    return (int(left[-1]) + 1 if left.size else 0), (i + int(right[0]) if right.size else n - 1)


def resample_log_density(log_density: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """The saliency map at the image's size: the grid density upsampled bilinearly to ``(W, H)`` pixels and
    renormalised.

    Args:
        log_density: float (h, w) log-density over a grid covering the whole image (any normalisation).
        size: ``(width, height)`` of the displayed image in pixels.
    Returns:
        float32 (H, W) log-density over the image's pixels, ``logsumexp == 0`` (natural log).
    Raises:
        ValueError: bad shape or size, NaN / +inf, or no mass.
    """
    dens = _Density(log_density, size)
    cols = _lerp(dens.d, dens.ix, 1)  # (h, W)
    out = np.empty((dens.H, dens.W), np.float32)
    step = max(1, (1 << 20) // max(dens.W, 1))
    log_total = math.log(dens.total)
    tiny = np.finfo(np.float64).tiny
    for r in range(0, dens.H, step):  # row blocks of ~1 M pixels: float64 work, float32 result
        block = _lerp(cols, tuple(v[r:r + step] for v in dens.iy), 0)
        np.maximum(block, tiny, out=block)
        np.log(block, out=block)
        block -= log_total
        out[r:r + step] = block
    return out


def salient_point(log_density: np.ndarray, size: Sequence[int]) -> Tuple[int, int]:
    """``(x, y)`` int pixel of the density maximum, mapped from the grid with :func:`grid_to_image` and
    clamped into the image; near-ties (relative 1e-6) go to the cell nearest the grid centre."""
    return _Density(log_density, size).point()


def box_mass(log_density: np.ndarray, size: Sequence[int], box: Sequence[int]) -> float:
    """Share of the saliency mass (of the pixel-resolution map) inside ``box = (left, top, width, height)``.

    Raises:
        ValueError: the box is empty or not inside the image.
    """
    dens = _Density(log_density, size)
    left, top, bw, bh = (int(v) for v in box)
    if bw < 1 or bh < 1 or left < 0 or top < 0 or left + bw > dens.W or top + bh > dens.H:
        raise ValueError(f"box {tuple(box)} is not inside the {dens.W}x{dens.H} image")
    return float(dens.mass(np.array([top]), np.array([left]), bh, bw)[0, 0])


def _peaks(dens: _Density, max_peaks: int, min_strength: float, radius: float) -> Tuple[Peak, ...]:
    d = dens.d
    h, w = d.shape
    p = np.full((h + 2, w + 2), -np.inf)  # d framed by -inf (np.pad costs ten times more on such small grids)
    p[1:-1, 1:-1] = d
    is_max = np.ones_like(d, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                is_max &= d >= p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
    q = np.full((h + 2, w + 2), np.inf)
    q[1:-1, 1:-1] = d
    lowest = np.min(np.stack([q[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                              if dy or dx]), axis=0)
    is_max &= (d > lowest) & (d >= min_strength)  # flat plateaus are not peaks
    rows, cols = np.nonzero(is_max)
    order = np.lexsort((cols, rows, -d[rows, cols]))
    first = dens.cell()
    cand = [first] + [(int(rows[i]), int(cols[i])) for i in order if (rows[i], cols[i]) != first]
    r2 = radius * radius
    kept: List[Tuple[float, float, float, float]] = []
    pixels = set()
    for r, c in cand:
        x = float(grid_to_image(c, w, dens.W))
        y = float(grid_to_image(r, h, dens.H))
        px = dens.to_pixel(r, c)
        if px not in pixels and all((x - kx) * (x - kx) + (y - ky) * (y - ky) >= r2 for _, _, kx, ky in kept):
            kept.append((r, c, x, y))
            pixels.add(px)
            if len(kept) >= max_peaks:
                break
    return tuple(Peak(*dens.to_pixel(r, c), float(d[int(round(r)), int(round(c))])) for r, c, _, _ in kept)


def find_peaks(log_density: np.ndarray, size: Sequence[int], *, max_peaks: int = 5, min_strength: float = 0.1,
               radius: float = 0.1) -> Tuple[Peak, ...]:
    """Distinct salient points: local maxima of the grid density (8-neighbourhood), strongest first,
    suppressing any within ``radius * max(W, H)`` pixels of a stronger one (non-maximum suppression).

    Args:
        log_density: float (h, w) log-density grid covering the image. size: ``(W, H)`` pixels.
        max_peaks: at most this many. min_strength: drop maxima below this fraction of the strongest.
        radius: suppression radius as a fraction of the image's long side.
    Returns:
        Tuple of :class:`Peak`; the first is the :func:`salient_point`.
    """
    dens = _Density(log_density, size)
    return _peaks(dens, int(max_peaks), float(min_strength), float(radius) * max(dens.W, dens.H))


def _starts(p: int, box_len: int, img_len: int, margin: Optional[float]) -> np.ndarray:
    """Allowed box starts on one axis: every start when ``margin`` is None; otherwise the starts that keep
    pixel ``p``'s centre at least ``margin * box_len`` inside the box, clamped into ``[0, img_len - box_len]``
    (so the margin shrinks only where the image edge forces it), always including the ``"point"`` start (the
    box centre nearest ``p``; exact halves go to the smaller start)."""
    last = img_len - box_len
    centred = int(np.clip(math.ceil(p - (box_len - 1) / 2 - 0.5), 0, last))
    if margin is None:
        return np.arange(last + 1)
    m = margin * box_len
    lo = int(np.clip(math.ceil(p + 0.5 - box_len + m - 1e-9), 0, last))
    hi = int(np.clip(math.floor(p + 0.5 - m + 1e-9), 0, last))
    return np.arange(min(lo, centred), max(hi, centred) + 1)


def _sym_starts(last: int, limit: int) -> np.ndarray:
    """Box starts ``0..last``, or ``limit`` of them evenly spread when there are more; the set is its own
    mirror (``s -> last - s``), so mirrored maps are searched over mirrored positions."""
    if last + 1 <= limit:
        return np.arange(last + 1)
    half = np.floor(np.arange((limit + 1) // 2) * (last / (limit - 1))).astype(np.int64)
    return np.unique(np.concatenate([half, last - half]))


def _iou(t: np.ndarray, l: np.ndarray, box: CropBox) -> np.ndarray:
    """IoU of boxes of ``box``'s size at tops ``t`` x lefts ``l`` (broadcast) with ``box``."""
    ow = np.clip(np.minimum(l + box.width, box.right) - np.maximum(l, box.left), 0, None)
    oh = np.clip(np.minimum(t + box.height, box.bottom) - np.maximum(t, box.top), 0, None)
    inter = ow * oh
    return inter / (2.0 * box.width * box.height - inter)


class _Search:
    """One box size: the placement rule of ``"mass"`` over a set of positions (module docstring)."""

    def __init__(self, dens: _Density, bw: int, bh: int, tops: np.ndarray, lefts: np.ndarray,
                 object_yield: Optional[float], keep: Tuple[Tuple[int, int, int, int], ...] = (),
                 heads: Tuple[Tuple[int, int, int, int], ...] = ()) -> None:
        self.dens, self.bw, self.bh = dens, bw, bh
        W, H = dens.W, dens.H
        self.tops, self.lefts = tops, lefts
        J = dens.sym_mass(tops, lefts, bh, bw)  # (nt, nl), exactly mirror-symmetric
        T, L = tops[:, None], lefts[None, :]
        allowed = np.ones(J.shape, bool)
        self.keep_area = None
        if keep:  # only the positions holding the most of the keep regions' area (all of it when it fits)
            self.keep_area = _keep_area(keep, tops, lefts, bh, bw)
            allowed = self.keep_area == self.keep_area.max()
        chosen = allowed
        (xa, xb), (ya, yb) = dens.object_box()
        self.object_fits = xb - xa + 1 <= bw and yb - ya + 1 <= bh
        if object_yield is not None and self.object_fits:
            whole = (L <= xa) & (L + bw - 1 >= xb) & (T <= ya) & (T + bh - 1 >= yb)
            overlap = (L <= xb) & (L + bw - 1 >= xa) & (T <= yb) & (T + bh - 1 >= ya)
            rule = ~overlap | whole  # never cut through the object: hold it whole or leave it out
            if keep:  # the keep regions come first: the rule applies when it can together with them
                whole &= allowed
                rule = rule & allowed if (rule & allowed).any() else allowed
            allowed = rule
            chosen = allowed
            if whole.any():
                m_in, m_all = float(J[whole].max()), float(J[allowed].max())
                if m_all <= (1.0 + object_yield) * m_in:  # (1 + inf) * m_in = inf: never yields
                    chosen = whole
        if heads:  # no edge through a head (:func:`_head_safe`)
            safe = _head_safe(heads, J, chosen, T, L, bh, bw)
            chosen, allowed = chosen & safe, allowed & safe
        self.J, self.allowed = J, allowed
        fx, fy = dens.focus()
        cxb, cyb = L + bw / 2, T + bh / 2  # box centres (edge coordinates; halves are exact)
        self.d_focus = (cxb - fx) ** 2 + (cyb - fy) ** 2
        self.d_centre = (cxb - W / 2) ** 2 + (cyb - H / 2) ** 2
        self.T, self.L = T, L  # (nt, 1) and (1, nl): they broadcast to J's shape
        self.best = self._best(chosen)

    def _best(self, mask: np.ndarray) -> Optional[Tuple[int, int]]:
        """Index (ti, li) of the best position in ``mask``: most mass, shares within TIE_TOLERANCE tied;
        ties go to the box centre nearest the object's centre, then nearest the image centre, then the
        smallest left and top (only exact mirror pairs reach these last two)."""
        if not mask.any():
            return None
        J = np.where(mask, self.J, -np.inf)
        tied = np.nonzero(J >= J.max() - TIE_TOLERANCE)
        order = np.lexsort((self.tops[tied[0]], self.lefts[tied[1]], self.d_centre[tied], self.d_focus[tied]))
        return int(tied[0][order[0]]), int(tied[1][order[0]])

    def box(self, idx: Tuple[int, int]) -> CropBox:
        return CropBox(int(self.lefts[idx[1]]), int(self.tops[idx[0]]), self.bw, self.bh)

    def _distinct(self, b: CropBox) -> np.ndarray:
        """Positions distinct from ``b``: IoU below :data:`DISTINCT_IOU`, less than :data:`CLOSE_SHARED` of
        their own (mirror-averaged) mass inside ``b`` (another subject, not the same one with other margins),
        and moved by at least :data:`DISTINCT_SHIFT` of the image's side (thin boxes a pixel apart are not
        alternatives)."""
        dens, T, L = self.dens, self.tops, self.lefts
        r0, r1 = np.maximum(T, b.top), np.minimum(T + self.bh, b.bottom)
        c0, c1 = np.maximum(L, b.left), np.minimum(L + self.bw, b.right)
        r1, c1 = np.maximum(r0, r1), np.maximum(c0, c1)  # empty intersections: zero weights
        m, W = dens.mirror(), dens.W
        if dens.boost:  # the boosts' share of each intersection, for the map and its mirror image
            ba, bb = dens.boost_mass(r0, r1, c0, c1), m.boost_mass(r0, r1, W - c1, W - c0)
        if len(T) == 1 and T[0] == b.top:  # one band of rows (the largest box): 1-D prefix sums
            p, q = dens.prefix(True, b.top, self.bh), m.prefix(True, b.top, self.bh)
            if dens.boost:
                shared = 0.5 * ((p[c1] - p[c0] + ba) / dens.total + (q[W - c0] - q[W - c1] + bb) / m.total)
            else:
                shared = 0.5 * ((p[c1] - p[c0]) / dens.total + (q[W - c0] - q[W - c1]) / m.total)[None, :]
        elif len(L) == 1 and L[0] == b.left:
            p, q = dens.prefix(False, b.left, self.bw), m.prefix(False, W - b.right, self.bw)
            if dens.boost:
                shared = 0.5 * (((p[r1] - p[r0])[:, None] + ba) / dens.total
                                + ((q[r1] - q[r0])[:, None] + bb) / m.total)
            else:
                shared = 0.5 * ((p[r1] - p[r0]) / dens.total + (q[r1] - q[r0]) / m.total)[:, None]
        else:
            A = dens.cum(0)[r1] - dens.cum(0)[r0]  # (nt, h)
            a = A @ dens.d @ (dens.cum(1)[c1] - dens.cum(1)[c0]).T
            b2 = A @ m.d @ (m.cum(1)[W - c0] - m.cum(1)[W - c1]).T
            if dens.boost:
                a, b2 = a + ba, b2 + bb
            shared = 0.5 * (a / dens.total + b2 / m.total)
        apart = ((np.abs(self.L - b.left) >= DISTINCT_SHIFT * dens.W)
                 | (np.abs(self.T - b.top) >= DISTINCT_SHIFT * dens.H))
        return (_iou(self.T, self.L, b) < DISTINCT_IOU) & (shared < CLOSE_SHARED * self.J) & apart

    def candidates(self, first: CropBox, score: float, k: int) -> List[Candidate]:
        """``first`` then up to ``k - 1`` more boxes the rule allows (no cut through the object), best
        first, each distinct from every box before it (:meth:`_distinct`; non-maximum suppression)."""
        out = [Candidate(first, score)]
        pool = self.allowed & self._distinct(first)
        while len(out) < k:
            idx = self._best(pool)
            if idx is None:
                break
            b = self.box(idx)
            out.append(Candidate(b, float(self.J[idx])))
            pool &= self._distinct(b)
        return out


def _mass_search(dens: _Density, bw: int, bh: int, margin: Optional[float],
                 object_yield: Optional[float], keep: Tuple[Tuple[int, int, int, int], ...] = (),
                 heads: Tuple[Tuple[int, int, int, int], ...] = ()) -> Tuple[_Search, CropBox, float]:
    """The search (for candidates) and the chosen box with its score (the search's own mirror-averaged
    share, so that mirrored maps give the same bits)."""
    W, H = dens.W, dens.H
    if margin is not None:  # the salient-point anchor (the rule before the object rule)
        px, py = dens.point()
        tops, lefts = _starts(py, bh, H, margin), _starts(px, bw, W, margin)
        s = _Search(dens, bw, bh, tops, lefts, object_yield, keep, heads)
        return s, s.box(s.best), float(s.J[s.best])
    nt, nl = H - bh + 1, W - bw + 1
    if nt == 1 or nl == 1 or nt * nl <= MAX_POSITIONS:  # the largest box: a 1-D search, always exact
        s = _Search(dens, bw, bh, np.arange(nt), np.arange(nl), object_yield, keep, heads)
        return s, s.box(s.best), float(s.J[s.best])
    # a box smaller than the image on both axes (zoom) with many positions: a mirror-symmetric coarse grid,
    # then every position within one coarse step of its best box
    per = max(2, int(math.sqrt(MAX_POSITIONS * nt / nl)))
    coarse = _Search(dens, bw, bh, _sym_starts(nt - 1, per), _sym_starts(nl - 1, max(2, MAX_POSITIONS // per)),
                     object_yield, keep, heads)
    b = coarse.box(coarse.best)
    st = max(int(np.diff(coarse.tops).max(initial=1)), int(np.diff(coarse.lefts).max(initial=1)))
    fine = _Search(dens, bw, bh, np.arange(max(0, b.top - st), min(nt - 1, b.top + st) + 1),
                   np.arange(max(0, b.left - st), min(nl - 1, b.left + st) + 1), object_yield, keep, heads)
    return coarse, fine.box(fine.best), float(fine.J[fine.best])


def _head_safe(heads: Sequence[Tuple[int, int, int, int]], J: np.ndarray, chosen: np.ndarray, T: np.ndarray,
               L: np.ndarray, bh: int, bw: int) -> np.ndarray:
    """The head rule: positions (bool, ``J``'s shape) whose edges pass through no head ``(left, top, right,
    bottom)`` that a box of this size can hold, when the best of them in ``chosen`` keeps at least
    :data:`HEAD_YIELD` of the best box's mass in ``chosen``. Heads that no such box spares are dropped, the
    smallest first (heads of equal area together, so mirror images decide alike); all True when none stays."""
    best = float(J[chosen].max())

    def ok(mask: np.ndarray) -> bool:
        m = chosen & mask
        return bool(m.any()) and float(J[m].max()) >= HEAD_YIELD * best

    spared = []
    for hl, ht, hr, hb in heads:
        if hr - hl > bw or hb - ht > bh:
            continue  # no box of this size holds it
        overlap = (L < hr) & (L + bw > hl) & (T < hb) & (T + bh > ht)
        whole = (L <= hl) & (L + bw >= hr) & (T <= ht) & (T + bh >= hb)
        safe = ~overlap | whole
        if ok(safe):
            spared.append(((hr - hl) * (hb - ht), safe))
    for area in sorted({a for a, _ in spared}):  # drop the smallest heads until the rest can all be spared
        safe = np.ones(J.shape, bool)
        for a, m in spared:
            if a >= area:
                safe &= m
        if ok(safe):
            return safe
    return np.ones(J.shape, bool)


HEAD_THRESHOLD = 0.0
""":func:`heads_from_map`: a head is where the head map's logit exceeds this (0: probability one half)."""

HEAD_GRID = 128
""":func:`heads_from_map` labels at most this many cells along a side: a larger head map is reduced to block
maxima first (the regions stay whole; their edges move out by up to one block)."""

MIN_HEAD = 0.06
""":func:`heads_from_map` drops heads narrower than this share of the image's short side: the detector the head
map learned from was run for faces at least that wide (:func:`gazecrop.train.faces.detect_faces`), so smaller
regions are outside what it was taught."""


def heads_from_map(head_logits: np.ndarray, size: Sequence[int], threshold: float = HEAD_THRESHOLD,
                   min_head: float = MIN_HEAD) -> List[CropBox]:
    """Head boxes from a model's head map (weights format version 3, :mod:`gazecrop.train.face_map`).

    Each 4-connected region of cells whose logit exceeds ``threshold`` is one head; its box edges lie where the
    logit, interpolated linearly between the centres of the region's edge cells and their outside neighbours,
    crosses ``threshold`` (an edge cell at the image border gives the border). Heads narrower than ``min_head``
    of the image's short side are dropped (:data:`MIN_HEAD`). Grids over :data:`HEAD_GRID` cells a side are
    reduced to block maxima first.

    Args:
        head_logits: float (hh, hw) logits over a grid that covers the whole image.
        size: ``(width, height)`` of the displayed image in pixels.
        threshold: logit threshold (default :data:`HEAD_THRESHOLD`).
        min_head: the narrowest head kept, a share of ``min(width, height)`` (default :data:`MIN_HEAD`).
    Returns:
        ``CropBox`` heads in pixels of the displayed image, largest first (ties: top-left first).
    Raises:
        ValueError: not a 2-D grid of real numbers, NaN in it, a threshold that is not finite, a ``min_head``
        that is NaN or negative, or a bad size.
    """
    raw = np.asarray(head_logits)
    if raw.dtype.kind not in "biuf":
        raise ValueError(f"head map must hold real numbers, got dtype {raw.dtype}")
    a = raw.astype(np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"head map must be a non-empty (h, w) grid, got shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError("head map holds NaN")
    if not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be a finite logit, got {threshold!r}")
    if not (float(min_head) >= 0):
        raise ValueError(f"min_head must be a share >= 0 of the short side, got {min_head!r}")
    W, H = _check_size(size)
    if a.shape[0] * a.shape[1] > HEAD_GRID ** 2:  # a huge grid: block maxima (heads only grow a little)
        f = -(-max(a.shape) // HEAD_GRID)
        pad = ((0, -a.shape[0] % f), (0, -a.shape[1] % f))
        a = np.pad(a, pad, constant_values=-np.inf)
        a = a.reshape(a.shape[0] // f, f, a.shape[1] // f, f).max(axis=(1, 3))
    gh, gw = a.shape
    on = a > threshold
    label = np.full(a.shape, -1, np.int32)
    boxes = []
    for r0, c0 in zip(*np.nonzero(on)):
        if label[r0, c0] >= 0:
            continue
        k = len(boxes)
        label[r0, c0] = k
        stack, cells = [(int(r0), int(c0))], []
        while stack:
            r, c = stack.pop()
            cells.append((r, c))
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= rr < gh and 0 <= cc < gw and on[rr, cc] and label[rr, cc] < 0:
                    label[rr, cc] = k
                    stack.append((rr, cc))
        rs = np.array([r for r, _ in cells])
        cs = np.array([c for _, c in cells])

        def edge(lo_cell: int, hi_cell: int, n: int, inside, outside, extent: float) -> Tuple[float, float]:
            # interpolated crossings below lo_cell and above hi_cell, in pixels of an axis of `extent`
            def cross(cell: int, step: int) -> float:
                if not 0 <= cell + step < n:
                    return 0.0 if step < 0 else extent
                b = float(inside(cell).max())
                o = float(outside(cell, cell + step).max())
                t = (b - threshold) / (b - o) if b > o else 1.0
                return (cell + 0.5 + step * min(1.0, t)) * extent / n
            return cross(lo_cell, -1), cross(hi_cell, +1)

        x0, x1 = edge(int(cs.min()), int(cs.max()), gw, lambda c: a[rs[cs == c], c],
                      lambda c, o: a[rs[cs == c], o], W)
        y0, y1 = edge(int(rs.min()), int(rs.max()), gh, lambda r: a[r, cs[rs == r]],
                      lambda r, o: a[o, cs[rs == r]], H)
        left, top = min(W - 1, max(0, int(math.floor(x0)))), min(H - 1, max(0, int(math.floor(y0))))
        right, bottom = max(left + 1, min(W, int(math.ceil(x1)))), max(top + 1, min(H, int(math.ceil(y1))))
        if right - left >= min_head * min(W, H):
            boxes.append(CropBox(left, top, right - left, bottom - top))
    return sorted(boxes, key=lambda b: (-b.width * b.height, b.top, b.left))


def head_box(face: Sequence[int], size: Sequence[int]) -> CropBox:
    """The head around a face box ``(left, top, width, height)``: grown up by :data:`HEAD_UP` of its height
    (hair) and down by :data:`HEAD_DOWN` (chin), clamped into the ``(W, H)`` image.

    Raises:
        TypeError / ValueError: as :func:`check_regions` for a bad box or size.
    """
    W, H = _check_size(size)
    f = _int_box(face, "face box")
    top = max(0, f.top - int(round(HEAD_UP * f.height)))
    bottom = min(H, f.bottom + int(round(HEAD_DOWN * f.height)))
    left, right = min(f.left, W - 1), min(W, f.right)
    return CropBox(left, min(top, H - 1), max(1, right - left), max(1, bottom - min(top, H - 1)))


def _keep_rects(keep: Sequence[CropBox]) -> Tuple[Tuple[int, int, int, int], ...]:
    """Disjoint ``(left, top, right, bottom)`` rectangles whose union is the union of the ``keep`` boxes (the
    cells of the grid their edges make that some box covers), so overlapping regions count once."""
    xs = sorted({v for k in keep for v in (k.left, k.right)})
    ys = sorted({v for k in keep for v in (k.top, k.bottom)})
    return tuple((x0, y0, x1, y1) for x0, x1 in zip(xs, xs[1:]) for y0, y1 in zip(ys, ys[1:])
                 if any(k.left <= x0 and x1 <= k.right and k.top <= y0 and y1 <= k.bottom for k in keep))


def _keep_area(rects: Sequence[Tuple[int, int, int, int]], tops: np.ndarray, lefts: np.ndarray, bh: int,
               bw: int) -> np.ndarray:
    """int64 (len(tops), len(lefts)): pixels of the keep regions (:func:`_keep_rects`) inside each box."""
    out = np.zeros((len(tops), len(lefts)), np.int64)
    for x0, y0, x1, y1 in rects:
        oy = np.clip(np.minimum(tops + bh, y1) - np.maximum(tops, y0), 0, None)
        ox = np.clip(np.minimum(lefts + bw, x1) - np.maximum(lefts, x0), 0, None)
        out += np.outer(oy, ox)
    return out


def _check_margin(margin: Optional[float]) -> Optional[float]:
    if margin is None:
        return None
    if isinstance(margin, bool) or not isinstance(margin, Real):
        raise TypeError(f"margin must be a number in [0, 0.5] or None, got {type(margin).__name__}")
    m = float(margin)
    if not 0.0 <= m <= 0.5:
        raise ValueError(f"margin must be in [0, 0.5] or None, got {margin!r}")
    return m


def _check_yield(object_yield: Optional[float]) -> Optional[float]:
    if object_yield is None:
        return None
    if isinstance(object_yield, bool) or not isinstance(object_yield, Real):
        raise TypeError(f"object_yield must be a number >= 0 (inf: never yield) or None, "
                        f"got {type(object_yield).__name__}")
    try:
        v = float(object_yield)
    except OverflowError:  # an int beyond every float: never yield, as inf
        v = math.inf
    if not v >= 0.0:
        raise ValueError(f"object_yield must be >= 0 (inf: never yield) or None, got {object_yield!r}")
    return v


def _check_candidates(candidates: int) -> int:
    if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)):
        raise TypeError(f"candidates must be an int >= 1, got {type(candidates).__name__}")
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    return int(candidates)


def check_zoom(zoom: "ZoomLike") -> Optional[Zoom]:
    """``zoom`` as a :class:`Zoom` (``True`` -> :data:`ZOOM_DEFAULT`; ``None`` / ``False`` -> None).

    Raises:
        TypeError: not None, a bool or a pair of numbers. ValueError: ``min_scale`` not in (0, 1] or
        ``mass`` not in (0, 1].
    """
    if zoom is None or zoom is False:
        return None
    if zoom is True:
        return ZOOM_DEFAULT
    try:
        min_scale, mass = zoom  # type: ignore[misc]
    except (TypeError, ValueError):
        raise TypeError(f"zoom must be None, True or (min_scale, mass), got {zoom!r}") from None
    for v in (min_scale, mass):
        if isinstance(v, bool) or not isinstance(v, Real):
            raise TypeError(f"zoom must be None, True or (min_scale, mass) numbers, got {zoom!r}")
    if not (0.0 < float(min_scale) <= 1.0 and 0.0 < float(mass) <= 1.0):
        raise ValueError(f"zoom (min_scale, mass) must both be in (0, 1], got {zoom!r}")
    return Zoom(float(min_scale), float(mass))


def _scaled(bw0: int, bh0: int, a: float, k: int) -> Tuple[int, int]:
    """Box of aspect ``a`` whose long side (the one that is long in the largest box) is ``k`` pixels."""
    if bw0 >= bh0:
        return k, int(min(bh0, max(1, round(k / a))))
    return int(min(bw0, max(1, round(k * a)))), k


def _zoom_size(dens: _Density, a: float, bw0: int, bh0: int, zoom: Zoom, margin: Optional[float],
               object_yield: Optional[float], keep: Tuple[Tuple[int, int, int, int], ...] = (),
               heads: Tuple[Tuple[int, int, int, int], ...] = ()) -> Tuple[int, int]:
    """The smallest box of aspect ``a``, long side down to ``zoom.min_scale`` of the largest box's, whose
    placed box keeps at least ``zoom.mass`` of the saliency mass (and can hold the keep regions); the
    largest box when even it keeps less.

    A binary search on the long side with the most mass any box of that size keeps (on a coarse
    mirror-symmetric grid of positions, at most 32 per axis), then the rule's own box at that size, grown
    by 2 % steps until it keeps ``zoom.mass`` (the largest box at the latest)."""
    k0 = max(bw0, bh0)
    lo = max(1, math.ceil(zoom.min_scale * k0 - 1e-9))
    W, H = dens.W, dens.H
    kw = max((r[2] for r in keep), default=0) - min((r[0] for r in keep), default=0)  # the keep regions' extent
    kh = max((r[3] for r in keep), default=0) - min((r[1] for r in keep), default=0)

    def enough(k: int) -> bool:
        bw, bh = _scaled(bw0, bh0, a, k)
        if bw < kw or bh < kh:
            return False
        return float(dens.sym_mass(_sym_starts(H - bh, 32), _sym_starts(W - bw, 32), bh, bw).max()) >= zoom.mass

    if lo >= k0 or not enough(k0):
        return bw0, bh0
    hi = k0  # enough(hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid + 1
    k = hi
    while k < k0:
        bw, bh = _scaled(bw0, bh0, a, k)
        if _mass_search(dens, bw, bh, margin, object_yield, keep, heads)[2] >= zoom.mass:
            return bw, bh
        k = min(k0, max(k + 1, math.ceil(k * 1.02)))
    return bw0, bh0


def object_box(log_density: np.ndarray, size: Sequence[int]) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """The most salient object of the ``"mass"`` rule: ``((xa, xb), (ya, yb))``, inclusive pixel ranges
    around the density's maximum where the density's maximum over each column (resp. row) stays at least
    :data:`OBJECT_LEVEL` of the maximum (module docstring).

    Raises:
        ValueError: bad grid or size.
    """
    return _Density(log_density, size).object_box()


def cut_through(log_density: np.ndarray, size: Sequence[int], box: Sequence[int]) -> float:
    """How much a box cuts through what is salient: the highest density on the box's edges inside the
    image (edges on the image border do not count), relative to the density's maximum; in [0, 1], 0 when
    the box is the whole image. A box whose edges run through background scores near 0, one whose edge
    crosses the density's peak scores 1. Densities are those of :func:`resample_log_density`.

    Raises:
        ValueError: the box is empty or not inside the image, or a bad grid.
    """
    dens = _Density(log_density, size)
    left, top, bw, bh = (int(v) for v in box)
    if bw < 1 or bh < 1 or left < 0 or top < 0 or left + bw > dens.W or top + bh > dens.H:
        raise ValueError(f"box {tuple(box)} is not inside the {dens.W}x{dens.H} image")
    return _cut(dens, CropBox(left, top, bw, bh))


def _cut(dens: _Density, b: CropBox) -> float:
    d = dens.d
    vals = [0.0]
    for x in ([b.left] if b.left > 0 else []) + ([b.right - 1] if b.right < dens.W else []):
        v = _lerp(d, tuple(i[x:x + 1] for i in dens.ix), 1)[:, 0]  # (h,) the grid column at pixel column x
        vals.append(float(_lerp(v, tuple(i[b.top:b.bottom] for i in dens.iy), 0).max()))
    for y in ([b.top] if b.top > 0 else []) + ([b.bottom - 1] if b.bottom < dens.H else []):
        v = _lerp(d, tuple(i[y:y + 1] for i in dens.iy), 0)[0]  # (w,)
        vals.append(float(_lerp(v, tuple(i[b.left:b.right] for i in dens.ix), 0).max()))
    return float(min(1.0, max(vals)))


def _result(dens: _Density, aspect: AspectLike, peaks: Tuple[Peak, ...], opts: dict) -> CropResult:
    a = parse_aspect(aspect)
    strategy, margin, object_yield, zoom = opts["strategy"], opts["margin"], opts["object_yield"], opts["zoom"]
    keep, heads = opts["keep_rects"], opts["heads"]
    W, H = dens.W, dens.H
    bw0, bh0, clamped = _box_size(W, H, a)
    bw, bh = bw0, bh0
    if strategy == "mass" and zoom is not None:
        bw, bh = _zoom_size(dens, a, bw0, bh0, zoom, margin, object_yield, keep, heads)
    close = False
    if strategy == "centre":
        box = CropBox((W - bw) // 2, (H - bh) // 2, bw, bh)
    elif strategy == "point":
        px, py = dens.point()
        box = CropBox(int(_starts(px, bw, W, 0.5)[0]), int(_starts(py, bh, H, 0.5)[0]), bw, bh)
    else:
        search, box, best = _mass_search(dens, bw, bh, margin, object_yield, keep, heads)
        cands = search.candidates(box, best, max(2, opts["candidates"]))
        close = len(cands) > 1 and cands[1].score >= CLOSE_RATIO * cands[0].score
        cands = cands[:opts["candidates"]]
    if strategy != "mass":
        if keep:  # the position nearest the strategy's own that holds the most of the keep regions
            box = _nearest_keeping(keep, box, W, H)
        cands = [Candidate(box, dens.box_mass(box))]
    return _crop_result(a, (W, H), cands, close, clamped, _cut(dens, box), dens.point(), peaks,
                        max(bw, bh) / max(bw0, bh0), opts)


def _crop_result(a: float, size: Tuple[int, int], cands: List[Candidate], close: bool, clamped: bool, cut: float,
                 point: Tuple[int, int], peaks: Tuple[Peak, ...], scale: float, opts: dict) -> CropResult:
    """The :class:`CropResult` of a placed box (``cands[0]``) with the advice, the share kept and the padding
    advice; scores clamped into [0, 1]."""
    W, H = size
    keep = opts["keep_rects"]
    cands = [Candidate(c.box, min(1.0, max(0.0, c.score))) for c in cands]
    box, score = cands[0]
    kept = None
    if keep:
        kept = float(_keep_area(keep, np.array([box.top]), np.array([box.left]), box.height, box.width)[0, 0]
                     / sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in keep))
    advice = None
    near = abs(math.log(a / (W / H))) <= math.log1p(ASPECT_TOLERANCE)
    if near:
        advice = f"the aspect {a:.3g} is within {ASPECT_TOLERANCE:.0%} of the image's own ({W / H:.3g})"
    elif score >= MASS_ADVICE and opts["focal"] is None:
        advice = f"keeps {score:.1%} of what people look at"
    return CropResult(aspect=a, box=box, salient_point=point, score=score, peaks=peaks,
                      keep_whole=advice is not None, advice=advice, strategy=opts["strategy"], close=close,
                      candidates=tuple(cands), clamped=clamped, cut=cut, scale=scale, kept=kept,
                      pad=bool(close or near or (kept is not None and kept < 1.0)))


NATIVE_CELLS = 1 << 22
"""The native placement takes grids of at most this many cells (a full-resolution map over 4.2 MP runs in
Python)."""

NATIVE_WORK = 1 << 28
"""The native placement takes grids and images whose profiles cost at most this many interpolations
(``W * h + H * w``: grid rows times image width plus grid columns times image height; a model's 24x32 grid on a
12 MP photo needs 0.2 M); bigger ones (a full-resolution map as the grid) run in Python, which vectorises them."""


def _native(opts: dict, grid_shape: Tuple[int, ...], size: Tuple[int, int]) -> bool:
    """Whether the native placement (``gazecrop._core.place``, :func:`_place_native`) runs these options: the
    ``"mass"`` rule for the largest box, without ``margin``, ``zoom``, ``keep`` or ``boost`` (the defaults;
    the rest runs here in Python), on a grid and image within :data:`NATIVE_CELLS` and :data:`NATIVE_WORK`
    (:func:`_placement_setting`: ``GAZECROP_PLACEMENT=python`` forces this module's own code)."""
    if len(grid_shape) != 2:
        return False  # the reference's error message
    (h, w), (W, H) = grid_shape, size
    return (opts["strategy"] == "mass" and opts["margin"] is None and opts["zoom"] is None and not opts["keep"]
            and not opts["boost"] and h * w <= NATIVE_CELLS and W * h + H * w <= NATIVE_WORK
            and _placement_setting() == "native")


_WARNED: set = set()


def _placement_setting() -> str:
    """``GAZECROP_PLACEMENT``: "python" forces the reference, "native" (or unset) the core; case and spaces do
    not matter; any other value warns once and means "native"."""
    raw = os.environ.get("GAZECROP_PLACEMENT", "")
    value = raw.strip().lower() or "native"
    if value not in ("python", "native"):
        if raw not in _WARNED:
            _WARNED.add(raw)
            warnings.warn(f"GAZECROP_PLACEMENT={raw!r} is neither 'python' nor 'native'; using native",
                          RuntimeWarning, stacklevel=4)
        value = "native"
    return value


def _place_native(log_density: np.ndarray, size: Tuple[int, int], aspects: List[AspectLike],
                  opts: dict) -> List[CropResult]:
    """:func:`choose_crops` for :func:`_native` options: the same rule run by the core (``cpp/src/placement.cpp``,
    bit for bit this module's numbers; ``tests/test_native_placement.py``)."""
    from . import _core

    W, H = size
    _, d = _unit_density(log_density)
    ratios = [parse_aspect(a) for a in aspects]
    sizes = [_box_size(W, H, a) for a in ratios]
    # (a transposed map's exp keeps its memory order; the ranked list ends long before 2**31 boxes)
    point, peaks, placed = _core.place(np.ascontiguousarray(d), W, H, [(bw, bh) for bw, bh, _ in sizes],
                                       list(opts["heads"]), opts["object_yield"], min(opts["candidates"], 2**31 - 1))
    if opts["focal"] is not None:  # the point itself, not the grid cell nearest it
        point = _focal_pixel(opts["focal"], W, H)
        peaks = [(*point, 1.0)]
    peaks = tuple(Peak(*p) for p in peaks)
    out = []
    for a, (bw, bh, clamped), (ranked, cut) in zip(ratios, sizes, placed):
        cands = [Candidate(CropBox(left, top, bw, bh), score) for left, top, score in ranked]
        close = len(cands) > 1 and cands[1].score >= CLOSE_RATIO * cands[0].score
        out.append(_crop_result(a, (W, H), cands[:opts["candidates"]], close, clamped, cut, point, peaks, 1.0,
                                opts))
    return out


def _nearest_keeping(keep: Tuple[Tuple[int, int, int, int], ...], box: CropBox, W: int, H: int) -> CropBox:
    """``box`` moved (same size) to the nearest position (fewest pixels moved, then smaller left and top)
    among those holding the most of the keep regions' area (:func:`_keep_rects`)."""
    tops, lefts = np.arange(H - box.height + 1), np.arange(W - box.width + 1)
    area = _keep_area(keep, tops, lefts, box.height, box.width)
    t, l = np.nonzero(area == area.max())
    i = np.lexsort((tops[t], lefts[l], np.abs(tops[t] - box.top) + np.abs(lefts[l] - box.left)))[0]
    return CropBox(int(lefts[l[i]]), int(tops[t[i]]), box.width, box.height)


def aspect_list(aspects: Iterable[AspectLike]) -> List[AspectLike]:
    """``aspects`` as a list, each checked by :func:`parse_aspect`.

    Raises:
        TypeError: a single aspect (a string or a number) where a list of them is expected, or a bad type.
        ValueError: a bad aspect ratio.
    """
    if isinstance(aspects, (str, bytes, Real)):
        raise TypeError(f"aspects must be a list of aspect ratios, got {aspects!r}; for one, pass [{aspects!r}]")
    out = list(aspects)
    for a in out:
        parse_aspect(a)
    return out


def _int_box(value: object, what: str) -> CropBox:
    """``(left, top, width, height)``: four ints, left and top >= 0, width and height >= 1."""
    try:
        v = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be (left, top, width, height), got {value!r}") from None
    if len(v) != 4 or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) for x in v):
        raise TypeError(f"{what} must be four ints (left, top, width, height), got {value!r}")
    box = CropBox(*(int(x) for x in v))
    if box.left < 0 or box.top < 0 or box.width < 1 or box.height < 1:
        raise ValueError(f"{what} {tuple(box)}: left and top must be >= 0, width and height >= 1")
    return box


def _box_list(value: object, what: str) -> list:
    """``value`` as a list of items, refusing a single box where a list of them is expected."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{what} must be a list, got {value!r}")
    try:
        items = list(value)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"{what} must be a list, got {type(value).__name__}") from None
    if items and isinstance(items[0], Real):
        raise TypeError(f"{what} must be a list of boxes, got {value!r}; for one box, pass [{value!r}]")
    return items


def check_regions(keep: Optional[Iterable[Sequence[int]]] = None,
                  boost: Optional[Iterable[Tuple[Sequence[int], float]]] = None,
                  focal: Optional[Tuple[float, float]] = None) -> dict:
    """The user's regions of :func:`choose_crops`, checked and normalised without the image's size:
    ``keep`` a tuple of :class:`CropBox`, ``boost`` a tuple of ``(CropBox, weight)``, ``focal`` an ``(x, y)``
    pair of floats, or None. Boxes are ``(left, top, width, height)`` ints, weights > 0 and at most
    :data:`MAX_BOOST`, ``focal`` two finite numbers >= 0; whether they lie inside the image is checked when the
    size is known.

    Raises:
        TypeError: a value of the wrong type (one box where a list is expected, a float coordinate).
        ValueError: a negative coordinate, an empty box, a weight <= 0 or not finite.
    """
    keeps = () if keep is None else tuple(_int_box(k, "keep box") for k in _box_list(keep, "keep"))
    boosts = []
    items = [] if boost is None else _box_list(boost, "boost")
    if len(items) == 2 and isinstance(items[1], Real):
        raise TypeError(f"boost must be a list of (box, weight) pairs, got {boost!r}; for one, pass [{boost!r}]")
    for item in items:
        try:
            b, w = item
        except (TypeError, ValueError):
            raise TypeError(f"boost must be a list of (box, weight) pairs, got {item!r}") from None
        if isinstance(w, bool) or not isinstance(w, Real):
            raise TypeError(f"boost weight must be a number, got {w!r}")
        try:
            wf = float(w)
        except OverflowError:
            wf = math.inf
        if not (0 < wf <= MAX_BOOST):
            raise ValueError(f"boost weight must be > 0 and at most {MAX_BOOST:g}, got {w!r}")
        boosts.append((_int_box(b, "boost box"), wf))
    point = None
    if focal is not None:
        try:
            x, y = focal  # type: ignore[misc]
        except (TypeError, ValueError):
            raise TypeError(f"focal must be a point (x, y), got {focal!r}") from None
        if any(isinstance(v, bool) or not isinstance(v, Real) for v in (x, y)):
            raise TypeError(f"focal must be two numbers (x, y), got {focal!r}")
        if not all(math.isfinite(float(v)) and float(v) >= 0 for v in (x, y)):
            raise ValueError(f"focal (x, y) must be finite and >= 0, got {focal!r}")
        point = (float(x), float(y))
    return dict(keep=keeps, boost=tuple(boosts), focal=point)


def _check_inside(box: CropBox, W: int, H: int, what: str) -> None:
    if box.right > W or box.bottom > H:
        raise ValueError(f"{what} {tuple(box)} is not inside the {W}x{H} image")


def _check_focal_inside(focal: Tuple[float, float], W: int, H: int) -> None:
    if not (focal[0] < W and focal[1] < H):
        raise ValueError(f"focal point {focal} is not inside the {W}x{H} image (0 <= x < {W}, 0 <= y < {H})")


def focal_log_density(size: Sequence[int], focal: Tuple[float, float]) -> np.ndarray:
    """The narrow map that ``focal`` puts in place of the model's: a Gaussian of standard deviation
    :data:`FOCAL_SIGMA` of the image's long side centred on pixel ``focal = (x, y)`` (pixel centres at
    integers, as :func:`grid_to_image`), sampled on a grid of :data:`FOCAL_GRID` cells on the long side (the
    image's own size when smaller).

    Returns:
        float64 (h, w) log-density grid covering the image (not normalised; the crop layer renormalises).
    Raises:
        ValueError: bad size, or the point is not inside the image. TypeError: a bad point.
    """
    W, H = _check_size(size)
    point = check_regions(focal=focal)["focal"]
    _check_focal_inside(point, W, H)
    s = min(1.0, FOCAL_GRID / max(W, H))
    gw, gh = max(1, round(W * s)), max(1, round(H * s))
    sigma = FOCAL_SIGMA * max(W, H)
    dx = grid_to_image(np.arange(gw), gw, W) - point[0]
    dy = grid_to_image(np.arange(gh), gh, H) - point[1]
    return -(dy[:, None] ** 2 + dx[None, :] ** 2) / (2.0 * sigma * sigma)


def check_options(*, strategy: str = DEFAULT_STRATEGY, margin: Optional[float] = None,
                  object_yield: Optional[float] = OBJECT_YIELD, candidates: int = 1,
                  zoom: "ZoomLike" = None, keep: Optional[Iterable[Sequence[int]]] = None,
                  boost: Optional[Iterable[Tuple[Sequence[int], float]]] = None,
                  focal: Optional[Tuple[float, float]] = None) -> dict:
    """The placement options of :func:`choose_crops`, checked and normalised (so that callers can fail before
    a model run; ``keep``, ``boost`` and ``focal`` by :func:`check_regions`).

    Raises:
        ValueError / TypeError: as :func:`choose_crops`.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    return dict(strategy=strategy, margin=_check_margin(margin), object_yield=_check_yield(object_yield),
                candidates=_check_candidates(candidates), zoom=check_zoom(zoom),
                **check_regions(keep, boost, focal))


def choose_crops(log_density: Optional[np.ndarray], size: Sequence[int], aspects: Iterable[AspectLike], *,
                 strategy: Strategy = DEFAULT_STRATEGY, margin: Optional[float] = None,
                 object_yield: Optional[float] = OBJECT_YIELD, candidates: int = 1,
                 zoom: "ZoomLike" = None, keep: Optional[Iterable[Sequence[int]]] = None,
                 boost: Optional[Iterable[Tuple[Sequence[int], float]]] = None,
                 focal: Optional[Tuple[float, float]] = None,
                 heads: Optional[Iterable[Sequence[int]]] = None) -> List[CropResult]:
    """:func:`choose_crop` for several aspect ratios sharing one density (one summed-area table).

    Raises:
        As :func:`choose_crop`; TypeError for a single aspect (:func:`aspect_list`).
    """
    aspects = aspect_list(aspects)
    opts = check_options(strategy=strategy, margin=margin, object_yield=object_yield, candidates=candidates,
                         zoom=zoom, keep=keep, boost=boost, focal=focal)
    W, H = _check_size(size)
    for k in opts["keep"]:
        _check_inside(k, W, H, "keep box")
    for b, _ in opts["boost"]:
        _check_inside(b, W, H, "boost box")
    if opts["focal"] is not None:
        log_density = focal_log_density((W, H), opts["focal"])
    elif log_density is None:
        raise ValueError("log_density is needed unless focal is given")
    opts["keep_rects"] = _keep_rects(opts["keep"])
    hs = () if heads is None else tuple(_int_box(h, "head box") for h in _box_list(heads, "heads"))
    for h in hs:
        _check_inside(h, W, H, "head box")
    opts["heads"] = tuple((h.left, h.top, h.right, h.bottom) for h in hs)
    if _native(opts, np.shape(log_density), (W, H)):
        return _place_native(log_density, (W, H), aspects, opts)
    dens = _Density(log_density, (W, H), opts["boost"])
    if opts["focal"] is not None:  # the point itself, not the grid cell nearest it
        dens._point = _focal_pixel(opts["focal"], W, H)
        peaks: Tuple[Peak, ...] = (Peak(*dens._point, 1.0),)
    else:
        peaks = _peaks(dens, 5, 0.1, 0.1 * max(dens.W, dens.H))
    return [_result(dens, a, peaks, opts) for a in aspects]


def _focal_pixel(focal: Tuple[float, float], W: int, H: int) -> Tuple[int, int]:
    """The pixel of a focal point ``(x, y)`` (the salient point of a ``focal`` crop)."""
    x, y = focal
    return min(W - 1, math.floor(x + 0.5)), min(H - 1, math.floor(y + 0.5))


def choose_crop(log_density: Optional[np.ndarray], size: Sequence[int], aspect: AspectLike, *,
                strategy: Strategy = DEFAULT_STRATEGY, margin: Optional[float] = None,
                object_yield: Optional[float] = OBJECT_YIELD, candidates: int = 1,
                zoom: "ZoomLike" = None, keep: Optional[Iterable[Sequence[int]]] = None,
                boost: Optional[Iterable[Tuple[Sequence[int], float]]] = None,
                focal: Optional[Tuple[float, float]] = None,
                heads: Optional[Iterable[Sequence[int]]] = None) -> CropResult:
    """The largest box of ``aspect`` that fits a ``(W, H)`` image (or a tighter one with ``zoom``), placed
    by ``strategy``.

    Args:
        log_density: float (h, w) log-density over a grid that covers the whole image (from a model's
            ``log_density``; the normalisation does not matter); ignored, and may be None, with ``focal``.
        size: ``(width, height)`` of the displayed image in pixels.
        aspect: width / height, a positive number or a string such as ``"16:9"``.
        strategy: one of :data:`STRATEGIES`.
        margin: ``"mass"`` only: the salient-point anchor (the default rule before
            :data:`OBJECT_YIELD`): the salient point stays at least this share (0 to 0.5) of the box's width
            and height inside the box, relaxed only where the image edge forces it. None (default): no anchor.
        object_yield: ``"mass"`` only: the object rule (module docstring): never cut through the most
            salient object when the box can hold it, and hold it whole unless a box without it keeps more
            than ``1 + object_yield`` times the mass; ``0`` only forbids cutting, ``math.inf`` never lets it
            go, None turns the rule off (pure mass, which may cut through the object).
        candidates: how many distinct boxes to return in ``CropResult.candidates`` (the chosen one first,
            then the next best boxes the rule allows with IoU below :data:`DISTINCT_IOU` against each box
            before them; fewer when no more exist). ``"point"`` and ``"centre"`` return only their box.
        zoom: ``"mass"`` only: None / False (default) for the largest box; ``(min_scale, mass)`` (or True
            for :data:`ZOOM_DEFAULT`) for the smallest box of the aspect, long side down to ``min_scale``
            of the largest box's, that still keeps at least ``mass`` of the saliency mass (the largest box
            when even it keeps less).
        keep: boxes ``(left, top, width, height)`` (ints, pixels of the image) the crop must contain: every
            strategy places its box among the positions holding the most of their area (their union's), so
            all of them whenever a box of this size can; the object rule then applies only where it can
            together with them, and ``zoom`` never shrinks the box below them. ``CropResult.kept`` is the
            share of their area inside the box (below 1: no box of this size holds them all).
        boost: ``[(box, weight), ...]``: a uniform density added over each box, ``weight`` (> 0) times the
            map's whole mass (1: as much again as the whole map, spread evenly over the box), then
            renormalised (smartcrop.js' ``boost``). It changes every mass: the placement, ``score``,
            candidates, ``close`` and ``zoom``; the salient point, peaks, the most salient object of the
            object rule and ``cut`` stay those of the map itself.
        focal: ``(x, y)``, a manual focal point (thumbor's and imgproxy's): the map is replaced by a narrow
            one (:func:`focal_log_density`), so the box is centred on the point as far as the image allows,
            ``salient_point`` is the point and ``score`` stays defined (the share of the narrow map); no
            mass advice (``keep_whole`` only for a near aspect). ``keep`` and ``boost`` apply on top.
        heads: ``"mass"`` only: head boxes ``(left, top, width, height)`` (the model's head map through
            :func:`heads_from_map`, as :meth:`gazecrop.Prediction.crops` passes them, or :func:`head_box` of
            each face of a detector). No box edge passes
            through a head that a box of this size can hold, when the best such box keeps at least
            :data:`HEAD_YIELD` of the mass of the box chosen without the heads (after ``keep`` and the
            object rule); heads that cannot be spared so are dropped, the smallest first.
    Returns:
        :class:`CropResult` (box, salient point, score, peaks, whole-image advice, close flag, candidates,
        clamped flag, cut-through measure, share of the keep regions kept, pad advice).
    Raises:
        ValueError: bad grid, size, aspect, strategy, margin, object_yield, candidates or zoom; a keep or boost
        box or the focal point not inside the image (:func:`check_regions` for the rest). TypeError: an
        option of the wrong type.
    """
    return choose_crops(log_density, size, [aspect], strategy=strategy, margin=margin,
                        object_yield=object_yield, candidates=candidates, zoom=zoom, keep=keep, boost=boost,
                        focal=focal, heads=heads)[0]
