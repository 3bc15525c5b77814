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
ratio that fits the image:

- ``"mass"``: the position keeping the most saliency mass inside the box (summed-area table) among the
  positions that keep the salient point (argmax of the density) at least ``margin`` (a share of the box's
  width and of its height, default :data:`ANCHOR_MARGIN`) inside the box; the margin is relaxed towards 0
  only where the image edge forces it, and the ``"point"`` box is always allowed, so ``"mass"`` never keeps
  less mass than ``"point"``. Near-ties (within :data:`TIE_TOLERANCE` of the best share) go to the position
  whose centre is nearest the salient point. Without the anchor (``margin=None``: all positions) a bright
  secondary region can pull the box off the most salient object and cut through it (a face cut at the eyes
  to keep a badge below it), which users see as a broken crop even when the summed mass is higher; the
  anchor keeps the strongest region whole and lets the mass decide only which context goes with it.
- ``"point"``: centre the box on the salient point and shift it back inside the image; Twitter's 2018
  method (L. Theis, Z. Wang, "Speedy Neural Networks for Smart Auto-Cropping of Images", Twitter Engineering
  blog, January 2018). ``"mass"`` with ``margin=0.5`` gives exactly this box.
- ``"centre"``: the centred box, a baseline (libvips ``VIPS_INTERESTING_CENTRE``).

The salient point as the anchor of the crop follows Twitter 2018 (above) and libvips ``smartcrop`` with
``VIPS_INTERESTING_ATTENTION`` (``libvips/conversion/smartcrop.c``), which likewise scores a small proxy,
maps back to full size, positions the box around the attention point, clamps it into the image and always
returns that point. The margin and the default were chosen by ``benchmarks/crop_quality.py`` (see
``benchmarks/crop_quality.md``).

Import names with ``from gazecrop.crop import choose_crop`` (or ``importlib.import_module("gazecrop.crop")``):
the package attribute ``gazecrop.crop`` is the public function :func:`gazecrop.crop`, which shadows this
module after ``import gazecrop``.

numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Iterable, List, Literal, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "Strategy", "STRATEGIES", "DEFAULT_STRATEGY", "CropBox", "Peak", "CropResult", "parse_aspect",
    "format_aspect", "grid_to_image", "image_to_grid", "largest_box_size", "resample_log_density",
    "salient_point", "find_peaks", "choose_crop", "choose_crops", "aspect_list", "box_mass",
    "ASPECT_TOLERANCE", "MASS_ADVICE", "TIE_TOLERANCE", "ANCHOR_MARGIN",
]

Strategy = Literal["mass", "point", "centre"]
"""How the box position is chosen (module docstring)."""

STRATEGIES: Tuple[str, ...] = ("mass", "point", "centre")

DEFAULT_STRATEGY: Strategy = "mass"
"""Chosen by ``benchmarks/crop_quality.py`` (share of human fixations inside the crop on the val split), with
the salient-point anchor :data:`ANCHOR_MARGIN`."""

ASPECT_TOLERANCE = 0.05
"""Whole-image advice when the requested aspect is within 5 % of the image's (``|ln(a / a_image)|``)."""

MASS_ADVICE = 0.98
"""Whole-image advice when the box already keeps at least this share of the saliency mass."""

TIE_TOLERANCE = 1e-6
"""Shares of mass closer than this to the best count as ties for the ``"mass"`` strategy."""

ANCHOR_MARGIN = 0.25
"""Default ``margin`` of the ``"mass"`` strategy: the salient point stays at least this share of the box's
width (and height) inside the box, unless the image edge forces it closer (module docstring). The smallest
round margin that keeps the eyes and mouth of ``examples/photo.jpg`` in its 16:9 and 2:1 crops with both the
teacher (needs about 0.21) and the student (about 0.16); on the val split it costs about 1.1 points of
fixation share against the unanchored rule and gains about 4 against ``"point"``
(``benchmarks/crop_quality.md``)."""

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
        keep_whole: True when cropping is not worth it: the aspect is within :data:`ASPECT_TOLERANCE` of the
            image's, or the box already keeps at least :data:`MASS_ADVICE` of the mass.
        advice: why ``keep_whole`` is True (None when False).
        strategy: the strategy that placed the box.
    """

    aspect: float
    box: CropBox
    salient_point: Tuple[int, int]
    score: float
    peaks: Tuple[Peak, ...] = ()
    keep_whole: bool = False
    advice: Optional[str] = None
    strategy: str = DEFAULT_STRATEGY

    def to_dict(self) -> dict:
        """JSON-ready dict (lists for tuples)."""
        return {"aspect": self.aspect, "box": list(self.box), "salient_point": list(self.salient_point),
                "score": self.score, "peaks": [[p.x, p.y, p.strength] for p in self.peaks],
                "keep_whole": self.keep_whole, "advice": self.advice, "strategy": self.strategy}


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
        value = float(aspect)
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


def largest_box_size(size: Tuple[int, int], aspect: AspectLike) -> Tuple[int, int]:
    """``(width, height)`` in pixels of the largest box of ``aspect`` that fits a ``(W, H)`` image; one side
    is the image's, the other rounded to the nearest pixel and at least 1.

    Raises:
        ValueError: non-positive size or bad aspect.
    """
    W, H = _check_size(size)
    a = parse_aspect(aspect)
    if W >= a * H:
        return max(1, min(W, int(round(H * a)))), H
    return W, max(1, min(H, int(round(W / a))))


# ------------------------------------------------------------------------------------ grid <-> image mapping

def grid_to_image(g: "float | np.ndarray", n_grid: int, n_image: int) -> "float | np.ndarray":
    """Grid index (cell centre = integer) -> image pixel coordinate (pixel centre = integer), one axis:
    ``x = (g + 0.5) * n_image / n_grid - 0.5``. The single grid <-> image mapping of gazecrop."""
    return (np.asarray(g, dtype=np.float64) + 0.5) * (n_image / n_grid) - 0.5


def image_to_grid(x: "float | np.ndarray", n_image: int, n_grid: int) -> "float | np.ndarray":
    """Inverse of :func:`grid_to_image`: image pixel coordinate -> fractional grid index."""
    return (np.asarray(x, dtype=np.float64) + 0.5) * (n_grid / n_image) - 0.5


def _upsample_matrix(n_image: int, n_grid: int) -> np.ndarray:
    """float64 (n_image, n_grid) bilinear weights: row i interpolates the grid at pixel i's centre
    (clamped at the borders, the same rule as :func:`gazecrop.reference.resize_bilinear`)."""
    s = np.clip(image_to_grid(np.arange(n_image), n_image, n_grid), 0.0, n_grid - 1)
    i0 = np.floor(s).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_grid - 1)
    f = s - i0
    m = np.zeros((n_image, n_grid), np.float64)
    rows = np.arange(n_image)
    m[rows, i0] += 1.0 - f  # each (row, col) pair occurs once per statement, so += is exact here
    m[rows, i1] += f  # (a second statement, so i1 == i0 at the clamped border adds up)
    return m


def _check_size(size: Sequence[int]) -> Tuple[int, int]:
    try:
        W, H = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if W < 1 or H < 1:
        raise ValueError(f"image size must be positive, got {W}x{H}")
    return W, H


class _Density:
    """The grid density and the separable summed-area table of its pixel-resolution upsampling."""

    def __init__(self, log_density: np.ndarray, size: Sequence[int]) -> None:
        ld = np.asarray(log_density, dtype=np.float64)
        if ld.ndim != 2 or ld.shape[0] < 1 or ld.shape[1] < 1:
            raise ValueError(f"log_density must be a 2-D (h, w) grid, got shape {ld.shape}")
        if np.isnan(ld).any() or np.isposinf(ld).any():
            raise ValueError("log_density contains NaN or +inf")
        m = float(ld.max())
        if not math.isfinite(m):
            raise ValueError("log_density is -inf everywhere (no mass)")
        self.W, self.H = _check_size(size)
        self.grid = ld
        self.d = np.exp(ld - m)  # (h, w), max 1
        h, w = ld.shape
        self.ry = _upsample_matrix(self.H, h)
        self.rx = _upsample_matrix(self.W, w)
        zero = np.zeros((1, h)), np.zeros((1, w))
        self.cy = np.concatenate([zero[0], np.cumsum(self.ry, axis=0)])  # (H + 1, h)
        self.cx = np.concatenate([zero[1], np.cumsum(self.rx, axis=0)])  # (W + 1, w)
        self.total = float(self.cy[-1] @ self.d @ self.cx[-1])
        self._point: Optional[Tuple[int, int]] = None
        self._cell: Optional[Tuple[float, float]] = None

    def mass(self, tops: np.ndarray, lefts: np.ndarray, bh: int, bw: int) -> np.ndarray:
        """Share of mass of boxes (top, left, bh, bw) for all tops x lefts: float64 (len(tops), len(lefts))."""
        a = self.cy[tops + bh] - self.cy[tops]
        b = self.cx[lefts + bw] - self.cx[lefts]
        return (a @ self.d @ b.T) / self.total

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
        x = int(np.clip(np.floor(grid_to_image(col, self.d.shape[1], self.W) + 0.5), 0, self.W - 1))
        y = int(np.clip(np.floor(grid_to_image(row, self.d.shape[0], self.H) + 0.5), 0, self.H - 1))
        return x, y

    def point(self) -> Tuple[int, int]:
        if self._point is None:
            self._point = self.to_pixel(*self.cell())
        return self._point


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
    cols = dens.d @ dens.rx.T  # (h, W)
    out = np.empty((dens.H, dens.W), np.float32)
    step = max(1, (1 << 20) // max(dens.W, 1))
    log_total = math.log(dens.total)
    tiny = np.finfo(np.float64).tiny
    for r in range(0, dens.H, step):  # row blocks of ~1 M pixels: float64 work, float32 result
        block = dens.ry[r:r + step] @ cols
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
    p = np.pad(d, 1, constant_values=-np.inf)
    is_max = np.ones_like(d, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                is_max &= d >= p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
    q = np.pad(d, 1, constant_values=np.inf)
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
        if px not in pixels and all((x - kx) ** 2 + (y - ky) ** 2 >= r2 for _, _, kx, ky in kept):
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


def _place(dens: _Density, bw: int, bh: int, strategy: str, margin: Optional[float]) -> CropBox:
    W, H = dens.W, dens.H
    if strategy == "centre":
        return CropBox((W - bw) // 2, (H - bh) // 2, bw, bh)
    px, py = dens.point()
    if strategy == "point":
        return CropBox(int(_starts(px, bw, W, 0.5)[0]), int(_starts(py, bh, H, 0.5)[0]), bw, bh)
    if strategy == "mass":
        tops = _starts(py, bh, H, margin)
        lefts = _starts(px, bw, W, margin)
        mass = dens.mass(tops, lefts, bh, bw)
        best = float(mass.max())
        ti, li = np.nonzero(mass >= best - TIE_TOLERANCE)
        dist = (tops[ti] + (bh - 1) / 2 - py) ** 2 + (lefts[li] + (bw - 1) / 2 - px) ** 2
        k = int(np.argmin(dist))
        return CropBox(int(lefts[li[k]]), int(tops[ti[k]]), bw, bh)
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")


def _check_margin(margin: Optional[float]) -> Optional[float]:
    if margin is None:
        return None
    if isinstance(margin, bool) or not isinstance(margin, Real):
        raise TypeError(f"margin must be a number in [0, 0.5] or None, got {type(margin).__name__}")
    m = float(margin)
    if not 0.0 <= m <= 0.5:
        raise ValueError(f"margin must be in [0, 0.5] or None, got {margin!r}")
    return m


def _result(dens: _Density, aspect: AspectLike, strategy: str, peaks: Tuple[Peak, ...],
            margin: Optional[float]) -> CropResult:
    a = parse_aspect(aspect)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    bw, bh = largest_box_size((dens.W, dens.H), a)
    box = _place(dens, bw, bh, strategy, margin)
    score = float(np.clip(dens.mass(np.array([box.top]), np.array([box.left]), bh, bw)[0, 0], 0.0, 1.0))
    advice = None
    if abs(math.log(a / (dens.W / dens.H))) <= math.log1p(ASPECT_TOLERANCE):
        advice = f"aspect {a:.3g} is within {ASPECT_TOLERANCE:.0%} of the image's {dens.W / dens.H:.3g}"
    elif score >= MASS_ADVICE:
        advice = f"the box already keeps {score:.1%} of the saliency mass"
    return CropResult(aspect=a, box=box, salient_point=dens.point(), score=score, peaks=peaks,
                      keep_whole=advice is not None, advice=advice, strategy=strategy)


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


def choose_crops(log_density: np.ndarray, size: Sequence[int], aspects: Iterable[AspectLike], *,
                 strategy: Strategy = DEFAULT_STRATEGY,
                 margin: Optional[float] = ANCHOR_MARGIN) -> List[CropResult]:
    """:func:`choose_crop` for several aspect ratios sharing one density (one summed-area table).

    Raises:
        As :func:`choose_crop`; TypeError for a single aspect (:func:`aspect_list`).
    """
    aspects = aspect_list(aspects)
    margin = _check_margin(margin)
    dens = _Density(log_density, size)
    peaks = _peaks(dens, 5, 0.1, 0.1 * max(dens.W, dens.H))
    return [_result(dens, a, strategy, peaks, margin) for a in aspects]


def choose_crop(log_density: np.ndarray, size: Sequence[int], aspect: AspectLike, *,
                strategy: Strategy = DEFAULT_STRATEGY, margin: Optional[float] = ANCHOR_MARGIN) -> CropResult:
    """The largest box of ``aspect`` that fits a ``(W, H)`` image, placed by ``strategy``.

    Args:
        log_density: float (h, w) log-density over a grid that covers the whole image (from a model's
            ``log_density``; the normalisation does not matter).
        size: ``(width, height)`` of the displayed image in pixels.
        aspect: width / height, a positive number or a string such as ``"16:9"``.
        strategy: one of :data:`STRATEGIES`.
        margin: ``"mass"`` only: the salient point stays at least this share (0 to 0.5) of the box's width
            and height inside the box, relaxed only where the image edge forces it; None lets the box go
            anywhere (pure mass, which may cut through the most salient object). Ignored by the other
            strategies.
    Returns:
        :class:`CropResult` (box, salient point, score, peaks, whole-image advice).
    Raises:
        ValueError: bad grid, size, aspect, strategy or margin. TypeError: a margin that is not a number.
    """
    return choose_crops(log_density, size, [aspect], strategy=strategy, margin=margin)[0]
