"""Saliency metrics: the single implementation that training, evaluation and tests import (numpy only).

Definitions follow the MIT/Tuebingen saliency benchmark and pysaliency (matthias-k/pysaliency
``pysaliency/metrics.py``, ``pysaliency/models.py``):

- Bylinskii, Judd, Oliva, Torralba, Durand, "What do different evaluation metrics tell us about saliency
  models?", IEEE TPAMI 2019 (AUC-Judd, shuffled AUC, NSS, CC, KLD, SIM);
- Kuemmerer, Wallis, Bethge, "Information-theoretic model comparison unifies saliency metrics", PNAS 2015
  (log-likelihood and information gain in bits per fixation);
- Kuemmerer, Wallis, Bethge, "Saliency benchmarking made easy", ECCV 2018 (which map each metric is computed
  on for a probabilistic model: the density itself for NSS, CC, KLD and SIM; any monotone map, here the
  log-density, for the AUCs).

Conventions (shared with :mod:`gazecrop.datasets`):

- A saliency map is a float (H, W) **log-density** over pixels (natural log; it is renormalised here so that
  ``logsumexp == 0``; ``-inf`` entries are allowed, NaN is not). Arguments named ``density`` are densities.
- Fixations are float arrays ``x``, ``y`` of shape (n,) in pixels of the map (x right, y down, the centre of
  pixel ``(i, j)`` at ``x = j, y = i``); the pixel of a fixation is ``(round(y), round(x))`` clipped into the
  map. Scale fixations to the map's size before calling (:func:`gazecrop.datasets.scale_fixations`).
- Metrics are per image; average them over images (AUC, NSS, CC, KLD, SIM) or over fixations
  (log-likelihood, information gain: use the per-fixation arrays of :func:`log_likelihoods`).
- Flat (uniform) maps never divide by zero: NSS and CC return 0, the AUCs 0.5.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "normalize_log_density",
    "fixation_pixels",
    "log_likelihoods",
    "log_likelihood",
    "information_gain",
    "auc_judd",
    "shuffled_auc",
    "roc_auc",
    "nss",
    "fixation_density",
    "cc",
    "kl_divergence",
    "sim",
    "all_metrics",
    "EPS",
]

EPS = np.finfo(np.float64).eps
"""Regulariser of KLD, as in the MIT saliency benchmark code (``eps`` of MATLAB, 2.2204e-16)."""

_LN2 = math.log(2.0)


def _as_map(log_density: np.ndarray, name: str = "log_density") -> np.ndarray:
    a = np.asarray(log_density, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (H, W) array, got shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN")
    if not np.isfinite(a).any() or (a == np.inf).any():
        raise ValueError(f"{name} must have a finite maximum (no +inf, not all -inf)")
    return a


def normalize_log_density(log_density: np.ndarray) -> np.ndarray:
    """Renormalise a log-density so that ``logsumexp(map) == 0``.

    Args:
        log_density: float (H, W) unnormalised log-density (natural log).
    Returns:
        float64 (H, W).
    Raises:
        ValueError: not 2-D, empty, NaN, +inf or all -inf.
    """
    a = _as_map(log_density)
    m = a.max()
    return a - (m + math.log(float(np.exp(a - m).sum())))


def fixation_pixels(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel indices of fixations: ``(round(y), round(x))`` clipped into ``shape = (H, W)``.

    Args:
        x, y: float (n,) pixel coordinates (n >= 1).
        shape: ``(H, W)``.
    Returns:
        int64 (n,) row indices, int64 (n,) column indices.
    Raises:
        ValueError: empty, mismatched or non-finite coordinates.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape} and {y.shape}")
    if x.size == 0:
        raise ValueError("no fixations")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("fixation coordinates must be finite")
    h, w = shape
    ix = np.clip(np.rint(x), 0, w - 1).astype(np.int64)
    iy = np.clip(np.rint(y), 0, h - 1).astype(np.int64)
    return iy, ix


def log_likelihoods(log_density: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-fixation log-likelihood in bits relative to a uniform density over the map's pixels.

    ``(log p(fixation pixel) + log(H * W)) / log(2)`` with ``p`` renormalised to sum to 1 (pysaliency
    ``log_likelihoods``; Kuemmerer et al. PNAS 2015). A uniform map gives 0.

    Args:
        log_density: float (H, W) log-density. x, y: float (n,) pixel coordinates.
    Returns:
        float64 (n,) bits per fixation (``-inf`` where the map is ``-inf``).
    """
    a = normalize_log_density(log_density)
    iy, ix = fixation_pixels(x, y, a.shape)
    return (a[iy, ix] + math.log(a.size)) / _LN2


def log_likelihood(log_density: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Mean of :func:`log_likelihoods`: bits per fixation over uniform (float)."""
    return float(np.mean(log_likelihoods(log_density, x, y)))


def information_gain(log_density: np.ndarray, baseline_log_density: np.ndarray, x: np.ndarray,
                     y: np.ndarray) -> float:
    """Information gain of a model over a baseline (usually the centre bias), in bits per fixation.

    ``mean(log2 p(fix) - log2 p_baseline(fix))`` with both maps renormalised (Kuemmerer et al. PNAS 2015).

    Args:
        log_density, baseline_log_density: float (H, W) log-densities of the same shape.
        x, y: float (n,) pixel coordinates.
    Returns:
        float, bits per fixation (0 when the maps are equal).
    Raises:
        ValueError: shapes differ (and see :func:`normalize_log_density`).
    """
    a = np.asarray(log_density)
    b = np.asarray(baseline_log_density)
    if a.shape != b.shape:
        raise ValueError(f"map shapes differ: {a.shape} vs baseline {b.shape}")
    return float(np.mean(log_likelihoods(a, x, y) - log_likelihoods(b, x, y)))


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Area under the ROC curve of positives against negatives; ties count one half.

    Equals the probability that a random positive scores above a random negative (+ 0.5 * P(tie)), i.e. the
    trapezoidal area under the exact ROC curve (pysaliency ``general_roc``).

    Args:
        positives: float (n,) scores, n >= 1. negatives: float (m,) scores, m >= 1.
    Returns:
        float in [0, 1].
    Raises:
        ValueError: an empty input or NaN scores.
    """
    pos = np.asarray(positives, dtype=np.float64).ravel()
    neg = np.sort(np.asarray(negatives, dtype=np.float64).ravel())
    if pos.size == 0 or neg.size == 0:
        raise ValueError("roc_auc needs at least one positive and one negative")
    if np.isnan(pos).any() or np.isnan(neg).any():
        raise ValueError("roc_auc scores contain NaN")
    lo = np.searchsorted(neg, pos, side="left")
    hi = np.searchsorted(neg, pos, side="right")
    return float((lo.sum() + 0.5 * (hi - lo).sum()) / (pos.size * neg.size))


def auc_judd(log_density: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """AUC-Judd: ROC area of the map's values at fixations (positives) against all pixels (negatives).

    Follows pysaliency's ``AUC`` with uniform nonfixations (Judd et al. ICCV 2009; Bylinskii et al. 2019):
    every fixation counts (repeats included), every pixel of the map is a negative, ties count one half (no
    random jitter as in the MATLAB code). A flat map gives 0.5. Any monotone transform of the map gives the
    same value, so the log-density is used directly.

    Args:
        log_density: float (H, W). x, y: float (n,) pixel coordinates.
    Returns:
        float in [0, 1].
    """
    a = _as_map(log_density)
    iy, ix = fixation_pixels(x, y, a.shape)
    return roc_auc(a[iy, ix], a.ravel())


def shuffled_auc(log_density: np.ndarray, x: np.ndarray, y: np.ndarray, other_x: np.ndarray,
                 other_y: np.ndarray) -> float:
    """Shuffled AUC (sAUC): positives are the map at this image's fixations, negatives the map at fixations
    from other images of the dataset (Zhang et al., "SUN", J. Vision 2008; Bylinskii et al. 2019).

    A centre-bias model scores about 0.5. Ties count one half.

    Args:
        log_density: float (H, W). x, y: float (n,) fixations of this image.
        other_x, other_y: float (m,) fixations of other images, already scaled to this map's pixel
            coordinates (e.g. via normalised coordinates).
    Returns:
        float in [0, 1].
    """
    a = _as_map(log_density)
    iy, ix = fixation_pixels(x, y, a.shape)
    oy, ox = fixation_pixels(other_x, other_y, a.shape)
    return roc_auc(a[iy, ix], a[oy, ox])


def nss(log_density: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Normalized scanpath saliency: mean of the standardised density at the fixations.

    The map is the density ``exp(log_density)`` (Kuemmerer et al. ECCV 2018), standardised by its mean and
    (population) standard deviation over pixels (Peters et al., Vision Research 2005). A flat map gives 0.

    Args:
        log_density: float (H, W). x, y: float (n,) pixel coordinates.
    Returns:
        float (standard deviations above the mean).
    """
    d = np.exp(normalize_log_density(log_density))
    iy, ix = fixation_pixels(x, y, d.shape)
    sd = d.std()
    if not sd > 1e-12 * max(abs(d.mean()), 1e-300):
        return 0.0
    return float(((d[iy, ix] - d.mean()) / sd).mean())


def fixation_density(x: np.ndarray, y: np.ndarray, shape: tuple[int, int], sigma: float | None = None) -> np.ndarray:
    """Empirical fixation density: a Gaussian of std ``sigma`` pixels at every fixation, summed over the
    map (mass outside it dropped) and normalised to sum 1.

    Args:
        x, y: float (n,) pixel coordinates (not rounded). shape: ``(H, W)``.
        sigma: Gaussian std in pixels; default ``0.035 * max(H, W)`` (about one degree of visual angle in
            MIT1003, 35 px at 1024 px).
    Returns:
        float64 (H, W) density, sum 1.
    Raises:
        ValueError: no fixations, non-positive sigma.
    """
    h, w = shape
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size == 0 or x.shape != y.shape:
        raise ValueError("need matching non-empty x and y")
    s = 0.035 * max(h, w) if sigma is None else float(sigma)
    if not s > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    gx = np.exp(-0.5 * ((np.arange(w)[None, :] - x[:, None]) / s) ** 2)
    gy = np.exp(-0.5 * ((np.arange(h)[None, :] - y[:, None]) / s) ** 2)
    d = gy.T @ gx
    tot = d.sum()
    if not tot > 0:  # all fixations far outside the map: fall back to their pixels
        d = np.zeros((h, w))
        iy, ix = fixation_pixels(x, y, shape)
        np.add.at(d, (iy, ix), 1.0)
        tot = d.sum()
    return d / tot


def _empirical(shape, x, y, sigma, empirical_density):
    if empirical_density is not None:
        p = np.asarray(empirical_density, dtype=np.float64)
        if p.shape != tuple(shape):
            raise ValueError(f"empirical_density shape {p.shape} != map shape {tuple(shape)}")
        if (p < 0).any() or not p.sum() > 0:
            raise ValueError("empirical_density must be non-negative with a positive sum")
        return p / p.sum()
    return fixation_density(x, y, shape, sigma)


def cc(log_density: np.ndarray, x: np.ndarray, y: np.ndarray, sigma: float | None = None,
       empirical_density: np.ndarray | None = None) -> float:
    """Pearson correlation coefficient between the model density and the empirical fixation density.

    (Le Meur et al. 2007; Bylinskii et al. 2019; model map = density per Kuemmerer et al. ECCV 2018.)
    A flat model map or a flat empirical map gives 0.

    Args:
        log_density: float (H, W). x, y: float (n,) pixel coordinates.
        sigma: blur of the empirical density in pixels (see :func:`fixation_density`).
        empirical_density: optional precomputed (H, W) empirical density (then x, y, sigma are ignored).
    Returns:
        float in [-1, 1].
    """
    q = np.exp(normalize_log_density(log_density))
    p = _empirical(q.shape, x, y, sigma, empirical_density)
    qc, pc = q - q.mean(), p - p.mean()
    den = math.sqrt(float((qc * qc).sum()) * float((pc * pc).sum()))
    if not den > 0:
        return 0.0
    return float((qc * pc).sum() / den)


def kl_divergence(log_density: np.ndarray, x: np.ndarray, y: np.ndarray, sigma: float | None = None,
                  empirical_density: np.ndarray | None = None) -> float:
    """KL divergence of the model density Q from the empirical fixation density P, in nats.

    ``sum P * log(EPS + P / (Q + EPS))`` with P and Q normalised to sum 1 (MIT saliency benchmark ``KLdiv.m``;
    Bylinskii et al. 2019). Lower is better; 0 for Q == P.

    Args: as :func:`cc`.
    Returns:
        float >= about 0 (nats).
    """
    q = np.exp(normalize_log_density(log_density))
    p = _empirical(q.shape, x, y, sigma, empirical_density)
    return float((p * np.log(EPS + p / (q + EPS))).sum())


def sim(log_density: np.ndarray, x: np.ndarray, y: np.ndarray, sigma: float | None = None,
        empirical_density: np.ndarray | None = None) -> float:
    """Similarity (histogram intersection): ``sum min(P, Q)`` of the two densities, each summing to 1.

    (Swain & Ballard 1991; Judd et al. MIT benchmark; Bylinskii et al. 2019.) 1 for identical maps.

    Args: as :func:`cc`.
    Returns:
        float in [0, 1].
    """
    q = np.exp(normalize_log_density(log_density))
    p = _empirical(q.shape, x, y, sigma, empirical_density)
    return float(np.minimum(p, q).sum())


def all_metrics(log_density: np.ndarray, x: np.ndarray, y: np.ndarray,
                baseline_log_density: np.ndarray | None = None, other_x: np.ndarray | None = None,
                other_y: np.ndarray | None = None, sigma: float | None = None) -> dict:
    """All metrics of one image in one pass.

    Args:
        log_density: float (H, W). x, y: float (n,) pixel coordinates.
        baseline_log_density: optional (H, W) baseline (centre bias) for ``ig``.
        other_x, other_y: optional other-image fixations for ``sauc``.
        sigma: empirical-density blur for CC / KLD / SIM.
    Returns:
        dict with ``n`` (fixations), ``ll`` (bits/fixation over uniform, mean), ``auc``, ``nss``, ``cc``,
        ``kld``, ``sim``, and ``ig`` / ``sauc`` when their inputs are given; ``ll_sum`` and ``ig_sum`` (bits,
        summed over fixations) for pooling per fixation.
    """
    a = normalize_log_density(log_density)
    ll = log_likelihoods(a, x, y)
    p = fixation_density(x, y, a.shape, sigma)
    out = {"n": int(ll.size), "ll": float(ll.mean()), "ll_sum": float(ll.sum()), "auc": auc_judd(a, x, y),
           "nss": nss(a, x, y), "cc": cc(a, x, y, empirical_density=p), "kld": kl_divergence(a, x, y, empirical_density=p),
           "sim": sim(a, x, y, empirical_density=p)}
    if baseline_log_density is not None:
        b = np.asarray(baseline_log_density)
        if b.shape != a.shape:
            raise ValueError(f"map shapes differ: {a.shape} vs baseline {b.shape}")
        d = ll - log_likelihoods(b, x, y)
        out["ig"] = float(d.mean())
        out["ig_sum"] = float(d.sum())
    if other_x is not None and other_y is not None and np.size(other_x) > 0:
        out["sauc"] = shuffled_auc(a, x, y, other_x, other_y)
    return out
