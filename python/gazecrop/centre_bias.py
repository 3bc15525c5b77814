"""Centre-bias baseline: a Gaussian kernel density estimate of all training fixations in normalised image
coordinates, evaluated as a log-density on any (H, W) pixel grid.

This is the baseline for information gain (Kuemmerer, Wallis, Bethge, "Information-theoretic model comparison
unifies saliency metrics", PNAS 2015; the MIT/Tuebingen saliency benchmark) and the initial / stored log
centre-bias map of the teacher and student models (DeepGaze II adds it in log space before the softmax).

Coordinates: normalised ``u = (x + 0.5) / W``, ``v = (y + 0.5) / H`` in [0, 1] (see :mod:`gazecrop.datasets`).
The KDE is a sum of axis-aligned Gaussians (bandwidth ``(bw_x, bw_y)`` in units of image width / height),
truncated to the unit square and renormalised. For speed, fixations are binned on a fine (B, B) histogram
first (bin width 1 / B, default B = 64, far below the bandwidth). On a pixel grid, each cell gets the exact
Gaussian mass over its area (differences of the normal CDF), so tiny grids stay exact too.

numpy only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["CentreBias", "fit_centre_bias", "log_centre_bias", "default_centre_bias", "DEFAULT_PATH"]

DEFAULT_PATH = Path(os.environ.get("GAZECROP_CENTRE_BIAS",
                                   Path(__file__).resolve().parents[2] / "weights" / "teacher" / "centre_bias.npz"))
"""Where the fitted centre bias of the teacher is stored: ``weights/teacher/centre_bias.npz`` in the repository
(``$GAZECROP_CENTRE_BIAS`` overrides it, e.g. for an installed package)."""

_erf = np.frompyfunc(math.erf, 1, 1)


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(np.asarray(z, dtype=np.float64) / math.sqrt(2.0)).astype(np.float64))


def _logsumexp(a: np.ndarray) -> float:
    m = float(np.max(a))
    if not np.isfinite(m):
        return m
    return m + math.log(float(np.sum(np.exp(a - m))))


@dataclass
class CentreBias:
    """A fitted centre-bias KDE.

    Attributes:
        hist: float64 (B, B) fixation histogram in normalised coordinates, rows = v (down), cols = u (right),
            summing to 1.
        bandwidth: ``(bw_x, bw_y)`` Gaussian standard deviations in normalised units (fraction of width / height).
        info: free-form dict (fixation counts, bandwidth search table); saved alongside.
    """

    hist: np.ndarray
    bandwidth: tuple[float, float]
    info: dict = field(default_factory=dict)

    @property
    def bins(self) -> int:
        return int(self.hist.shape[0])

    def _centres(self) -> np.ndarray:
        b = self.bins
        return (np.arange(b, dtype=np.float64) + 0.5) / b

    def _axis_mass(self, n: int, bw: float) -> np.ndarray:
        """(B, n): mass of each bin's Gaussian over each of n equal cells of [0, 1], truncated and
        renormalised per bin (each bin's kernel integrates to 1 over the unit interval)."""
        edges = np.linspace(0.0, 1.0, n + 1)
        c = self._centres()[:, None]
        cdf = _norm_cdf((edges[None, :] - c) / bw)
        mass = np.diff(cdf, axis=1)
        return mass / np.maximum(cdf[:, -1:] - cdf[:, :1], 1e-300)

    def log_density(self, height: int, width: int) -> np.ndarray:
        """Log centre-bias density on an (H, W) pixel grid covering the whole image.

        Args:
            height, width: grid size in cells (pixels), positive ints.
        Returns:
            float64 (height, width) log-density over cells, ``logsumexp == 0`` (natural log).
        Raises:
            ValueError: non-positive size.
        """
        if int(height) <= 0 or int(width) <= 0:
            raise ValueError(f"grid size must be positive, got {height}x{width}")
        ky = self._axis_mass(int(height), self.bandwidth[1])  # (B, H)
        kx = self._axis_mass(int(width), self.bandwidth[0])  # (B, W)
        dens = ky.T @ self.hist @ kx
        dens = np.maximum(dens, 1e-300)
        logd = np.log(dens)
        return logd - _logsumexp(logd)

    def log_pdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Continuous log-density at normalised points (per unit area of the unit square).

        Args:
            u, v: float (n,) normalised coordinates in [0, 1].
        Returns:
            float64 (n,) natural-log densities (a uniform density gives 0).
        """
        return _kde_log_pdf(self.hist, self.bandwidth, np.asarray(u, float), np.asarray(v, float))

    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` (hist float32, bandwidth, info as JSON), atomically
        (:func:`gazecrop._atomic.atomic_open`: complete or the previous file)."""
        import json

        from ._atomic import atomic_open

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as f:
            np.savez(f, hist=self.hist.astype(np.float32), bandwidth=np.asarray(self.bandwidth, np.float64),
                     info=np.asarray(json.dumps(self.info)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CentreBias":
        """Read a file written by :meth:`save`. Raises FileNotFoundError if missing."""
        import json

        with np.load(Path(path)) as z:
            hist = z["hist"].astype(np.float64)
            bw = tuple(float(b) for b in z["bandwidth"])
            info = json.loads(str(z["info"])) if "info" in z else {}
        return cls(hist=hist / hist.sum(), bandwidth=bw, info=info)


def _histogram(u: np.ndarray, v: np.ndarray, bins: int) -> np.ndarray:
    iu = np.clip((np.asarray(u) * bins).astype(np.int64), 0, bins - 1)
    iv = np.clip((np.asarray(v) * bins).astype(np.int64), 0, bins - 1)
    h = np.zeros((bins, bins), np.float64)
    np.add.at(h, (iv, iu), 1.0)
    return h / max(h.sum(), 1.0)


def _kde_log_pdf(hist: np.ndarray, bw: Sequence[float], u: np.ndarray, v: np.ndarray) -> np.ndarray:
    b = hist.shape[0]
    c = (np.arange(b, dtype=np.float64) + 0.5) / b
    bx, by = float(bw[0]), float(bw[1])
    # truncation to the unit square: each bin's kernel renormalised over [0, 1]
    zx = _norm_cdf((1.0 - c) / bx) - _norm_cdf((0.0 - c) / bx)
    zy = _norm_cdf((1.0 - c) / by) - _norm_cdf((0.0 - c) / by)
    gx = np.exp(-0.5 * ((u[:, None] - c[None, :]) / bx) ** 2) / (bx * math.sqrt(2 * math.pi) * zx[None, :])
    gy = np.exp(-0.5 * ((v[:, None] - c[None, :]) / by) ** 2) / (by * math.sqrt(2 * math.pi) * zy[None, :])
    p = np.einsum("nb,bc,nc->n", gy, hist, gx, optimize=True)
    return np.log(np.maximum(p, 1e-300))


def fit_centre_bias(train_u: np.ndarray, train_v: np.ndarray, val_u: np.ndarray | None = None,
                    val_v: np.ndarray | None = None, *, bins: int = 128,
                    bandwidths: Sequence[float] | None = None) -> CentreBias:
    """Fit the centre-bias KDE, choosing ``(bw_x, bw_y)`` by validation log-likelihood.

    Args:
        train_u, train_v: float (n,) normalised training fixation coordinates in [0, 1].
        val_u, val_v: float (m,) normalised validation fixations; if None, the bandwidth is chosen by
            5-fold cross-validation on the training fixations (seeded).
        bins: histogram bins per axis.
        bandwidths: candidate standard deviations (normalised units), searched independently for x and y
            on the full grid of pairs; default 16 values from 0.008 to 0.3 (geometric).
    Returns:
        :class:`CentreBias`; ``info`` holds ``val_ll_bits`` (bits per fixation over uniform on the unit square)
        for the chosen pair, the search table and the counts.
    Raises:
        ValueError: no training fixations.
    """
    train_u = np.asarray(train_u, np.float64)
    train_v = np.asarray(train_v, np.float64)
    if train_u.size == 0:
        raise ValueError("no training fixations")
    if bandwidths is None:
        bandwidths = np.geomspace(0.008, 0.3, 16)
    bandwidths = [float(b) for b in bandwidths]
    if val_u is None or val_v is None:
        rng = np.random.default_rng(0)
        fold = rng.integers(0, 5, train_u.size)
        parts = [(_histogram(train_u[fold != k], train_v[fold != k], bins), train_u[fold == k], train_v[fold == k])
                 for k in range(5)]
    else:
        parts = [(_histogram(train_u, train_v, bins), np.asarray(val_u, np.float64), np.asarray(val_v, np.float64))]
    table = []
    for bx in bandwidths:
        for by in bandwidths:
            ll = sum(float(_kde_log_pdf(h, (bx, by), pu, pv).sum()) for h, pu, pv in parts)
            n = sum(pu.size for _, pu, _ in parts)
            table.append((bx, by, ll / n / math.log(2)))
    best = max(table, key=lambda t: t[2])
    info = {"n_train": int(train_u.size), "n_val": int(sum(pu.size for _, pu, _ in parts)), "bins": bins,
            "val_ll_bits": best[2], "search": [list(t) for t in table],
            "selection": "cross-validation" if val_u is None else "validation split"}
    return CentreBias(hist=_histogram(train_u, train_v, bins), bandwidth=(best[0], best[1]), info=info)


_DEFAULT: CentreBias | None = None


def default_centre_bias(path: str | os.PathLike | None = None) -> CentreBias:
    """The project's fitted centre bias (``weights/teacher/centre_bias.npz``), loaded once.

    Raises:
        FileNotFoundError: the file does not exist (fit it with ``python -m gazecrop.train.teacher centre-bias``).
    """
    global _DEFAULT
    if path is not None:
        return CentreBias.load(path)
    if _DEFAULT is None:
        if not DEFAULT_PATH.is_file():
            raise FileNotFoundError(f"centre-bias file not found: {DEFAULT_PATH} (fit it with "
                                    "`python -m gazecrop.train.teacher centre-bias`)")
        _DEFAULT = CentreBias.load(DEFAULT_PATH)
    return _DEFAULT


def log_centre_bias(height: int, width: int, model: CentreBias | None = None) -> np.ndarray:
    """Log centre-bias map on an (H, W) grid; ``logsumexp == 0``.

    This is the map a student / native model stores in its weights file (evaluated on its output grid).

    Args:
        height, width: grid size (cells), positive.
        model: a :class:`CentreBias`; default :func:`default_centre_bias`.
    Returns:
        float64 (height, width) natural-log density over grid cells.
    """
    return (model or default_centre_bias()).log_density(height, width)
