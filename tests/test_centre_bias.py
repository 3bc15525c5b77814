"""gazecrop.centre_bias: KDE centre-bias baseline (numpy only, fast, seeded)."""

import math
from pathlib import Path

import numpy as np
import pytest

from gazecrop.centre_bias import CentreBias, _histogram, default_centre_bias, fit_centre_bias, log_centre_bias


def logsumexp(a):
    m = a.max()
    return m + math.log(np.exp(a - m).sum())


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    u = np.clip(rng.normal(0.5, 0.12, 4000), 0, 1)
    v = np.clip(rng.normal(0.45, 0.1, 4000), 0, 1)
    vu = np.clip(rng.normal(0.5, 0.12, 1000), 0, 1)
    vv = np.clip(rng.normal(0.45, 0.1, 1000), 0, 1)
    return fit_centre_bias(u, v, vu, vv, bins=32, bandwidths=[0.01, 0.03, 0.1, 0.3])


@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (7, 2), (48, 64), (64, 48)], ids=lambda s: str(s))
def test_log_density_normalised(fitted, h, w):
    a = fitted.log_density(h, w)
    assert a.shape == (h, w) and a.dtype == np.float64
    assert logsumexp(a) == pytest.approx(0.0, abs=1e-9)
    assert np.isfinite(a).all()


def test_cells_integrate_exactly(fitted):
    # each cell holds the exact kernel mass, so 2x2 blocks of a (2H, 2W) map sum to the (H, W) map
    fine = np.exp(fitted.log_density(12, 16))
    coarse = np.exp(fitted.log_density(6, 8))
    np.testing.assert_allclose(fine.reshape(6, 2, 8, 2).sum((1, 3)), coarse, rtol=1e-9, atol=1e-15)


def test_peak_near_data_centre_and_beats_uniform(fitted):
    a = fitted.log_density(40, 40)
    iy, ix = np.unravel_index(a.argmax(), a.shape)
    assert abs((ix + 0.5) / 40 - 0.5) <= 0.05 and abs((iy + 0.5) / 40 - 0.45) <= 0.05
    assert fitted.info["val_ll_bits"] > 0.5  # far better than uniform on such concentrated data
    assert fitted.bandwidth[0] in (0.01, 0.03, 0.1, 0.3)


def test_symmetric_data_gives_symmetric_map():
    u = np.array([0.1875, 0.8125, 0.1875, 0.8125])  # centres of bins 1 and 6 of 8
    v = np.array([0.1875, 0.1875, 0.8125, 0.8125])
    cb = CentreBias(hist=_histogram(u, v, 8),
                    bandwidth=(0.2, 0.2))
    a = cb.log_density(10, 10)
    np.testing.assert_allclose(a, a[::-1, :], atol=1e-12)
    np.testing.assert_allclose(a, a[:, ::-1], atol=1e-12)
    np.testing.assert_allclose(a, a.T, atol=1e-12)


def test_single_fixation_bandwidth_search_cross_validated():
    rng = np.random.default_rng(1)
    cb = fit_centre_bias(rng.uniform(0, 1, 200), rng.uniform(0, 1, 200), bins=16, bandwidths=[0.05, 0.5])
    assert cb.info["selection"] == "cross-validation"
    a = cb.log_density(5, 5)
    assert logsumexp(a) == pytest.approx(0.0)


def test_save_load_roundtrip(tmp_path, fitted):
    p = tmp_path / "cb.npz"
    fitted.save(p)
    back = CentreBias.load(p)
    assert back.bandwidth == pytest.approx(fitted.bandwidth)
    np.testing.assert_allclose(back.log_density(9, 11), fitted.log_density(9, 11), atol=1e-5)
    np.testing.assert_allclose(log_centre_bias(9, 11, back), back.log_density(9, 11))


def test_errors():
    with pytest.raises(ValueError):
        fit_centre_bias([], [])
    cb = CentreBias(hist=np.full((4, 4), 1 / 16), bandwidth=(0.1, 0.1))
    with pytest.raises(ValueError):
        cb.log_density(0, 3)


# The committed file, found from this checkout (an installed package's DEFAULT_PATH points into site-packages).
COMMITTED = Path(__file__).resolve().parents[1] / "weights" / "teacher" / "centre_bias.npz"


@pytest.mark.skipif(not COMMITTED.is_file(), reason="weights/teacher/centre_bias.npz not in this checkout")
def test_committed_centre_bias():
    cb = default_centre_bias(COMMITTED)
    a = log_centre_bias(24, 32, model=cb)
    assert logsumexp(a) == pytest.approx(0.0)
    iy, ix = np.unravel_index(a.argmax(), a.shape)
    assert 6 <= iy <= 18 and 8 <= ix <= 24  # peak in the central region
    assert 0.005 <= min(cb.bandwidth) and max(cb.bandwidth) <= 0.3
