"""gazecrop.metrics pinned to hand-computed values (numpy only, fast)."""

import math

import numpy as np
import pytest

from gazecrop import metrics as M


def logmap(density):
    return np.log(np.asarray(density, dtype=np.float64))


# --- ROC / AUC ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pos,neg,expected",
    [
        ([1.0], [1.0], 0.5),  # a single tie
        ([2.0], [1.0], 1.0),
        ([0.0], [1.0], 0.0),
        ([2.0, 1.0], [1.0, 0.0], 3.5 / 4),  # 2>1, 2>0, 1=1 (half), 1>0
        ([1.0, 1.0, 1.0], [1.0, 1.0], 0.5),  # all ties
        ([3.0, 0.0], [1.0, 2.0, 5.0], (2 + 0) / 6),
    ],
    ids=["tie", "above", "below", "mixed-tie", "all-ties", "two-by-three"],
)
def test_roc_auc_hand_computed(pos, neg, expected):
    assert M.roc_auc(pos, neg) == pytest.approx(expected)


def test_roc_auc_matches_pairwise_count_seeded():
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 5, 37).astype(float)  # many ties
    neg = rng.integers(0, 5, 53).astype(float)
    diff = pos[:, None] - neg[None, :]
    brute = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert M.roc_auc(pos, neg) == pytest.approx(brute)


def test_auc_judd_uniform_map_is_half():
    assert M.auc_judd(np.zeros((4, 5)), [0.0, 3.0, 4.0], [0.0, 2.0, 3.0]) == pytest.approx(0.5)


def test_auc_judd_perfect_map_single_fixation():
    # one fixated pixel higher than the 8 others: it beats 8 negatives and ties with itself -> (8 + 0.5) / 9
    a = np.zeros((3, 3))
    a[1, 2] = 5.0
    assert M.auc_judd(a, [2.0], [1.0]) == pytest.approx(8.5 / 9)


def test_auc_judd_worst_map():
    a = np.zeros((3, 3))
    a[1, 2] = -5.0
    assert M.auc_judd(a, [2.0], [1.0]) == pytest.approx(0.5 / 9)


def test_auc_judd_invariant_to_monotone_transform():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 7))
    x, y = rng.uniform(0, 6, 10), rng.uniform(0, 5, 10)
    assert M.auc_judd(a, x, y) == pytest.approx(M.auc_judd(3 * a + 2, x, y))


def test_shuffled_auc_same_fixations_is_half():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(5, 5))
    x, y = np.array([1.0, 2.0, 4.0]), np.array([0.0, 3.0, 4.0])
    assert M.shuffled_auc(a, x, y, x, y) == pytest.approx(0.5)


def test_shuffled_auc_hand_computed():
    a = np.array([[0.0, 1.0], [2.0, 3.0]])
    # positives: a[1,1]=3; negatives: a[0,0]=0, a[0,1]=1, a[1,1]=3 (tie)
    assert M.shuffled_auc(a, [1.0], [1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]) == pytest.approx(2.5 / 3)


# --- log-likelihood and information gain ---------------------------------------------------------------------


def test_log_likelihood_single_fixation():
    d = [[0.5, 0.25], [0.125, 0.125]]
    assert M.log_likelihood(logmap(d), [0.0], [0.0]) == pytest.approx(1.0)  # log2(0.5 * 4)
    assert M.log_likelihood(logmap(d), [1.0], [1.0]) == pytest.approx(-1.0)  # log2(0.125 * 4)


def test_log_likelihood_uniform_is_zero_and_normalisation_applied():
    assert M.log_likelihood(np.full((3, 4), 7.0), [0.0, 2.0], [1.0, 2.0]) == pytest.approx(0.0)


def test_log_likelihoods_per_fixation():
    d = [[0.5, 0.25], [0.125, 0.125]]
    ll = M.log_likelihoods(logmap(d), [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(ll, [1.0, 0.0, -1.0])


def test_information_gain():
    d = logmap([[0.5, 0.25], [0.125, 0.125]])
    u = np.zeros((2, 2))
    assert M.information_gain(d, u, [0.0], [0.0]) == pytest.approx(1.0)
    assert M.information_gain(d, d, [0.0, 1.0], [1.0, 1.0]) == pytest.approx(0.0)
    assert M.information_gain(u, d, [0.0], [0.0]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        M.information_gain(d, np.zeros((3, 2)), [0.0], [0.0])


def test_fixation_rounding_and_clipping():
    iy, ix = M.fixation_pixels([1.6, -3.0, 99.0], [0.4, 0.5, 2.0], (3, 4))
    np.testing.assert_array_equal(ix, [2, 0, 3])
    np.testing.assert_array_equal(iy, [0, 0, 2])  # 0.5 rounds to even


# --- NSS, CC, KLD, SIM ---------------------------------------------------------------------------------------


def test_nss_hand_computed():
    # density [1/2, 1/6, 1/6, 1/6]: mean 1/4, std sqrt(1/48) -> NSS at the peak = (1/4) / sqrt(1/48) = sqrt(3)
    d = logmap([[0.5, 1 / 6], [1 / 6, 1 / 6]])
    assert M.nss(d, [0.0], [0.0]) == pytest.approx(math.sqrt(3))
    assert M.nss(d, [1.0], [1.0]) == pytest.approx(-(1 / 12) / math.sqrt(1 / 48))


def test_flat_map_guards():
    flat = np.zeros((4, 4))
    x, y = [1.0, 2.0], [1.0, 3.0]
    assert M.nss(flat, x, y) == 0.0
    assert M.cc(flat, x, y) == 0.0
    assert M.auc_judd(flat, x, y) == 0.5
    assert np.isfinite(M.kl_divergence(flat, x, y))
    assert 0 < M.sim(flat, x, y) <= 1


def test_kld_and_sim_hand_computed():
    p = np.array([[0.5, 0.5], [0.0, 0.0]])
    q = np.zeros((2, 2))  # uniform
    assert M.kl_divergence(q, [0.0], [0.0], empirical_density=p) == pytest.approx(math.log(2), rel=1e-9)
    assert M.sim(q, [0.0], [0.0], empirical_density=p) == pytest.approx(0.5)


def test_perfect_map_cc_kld_sim():
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 20, 8), rng.uniform(0, 15, 8)
    p = M.fixation_density(x, y, (16, 21), sigma=2.0)
    lp = np.log(p)
    assert M.cc(lp, x, y, sigma=2.0) == pytest.approx(1.0)
    assert M.kl_divergence(lp, x, y, sigma=2.0) == pytest.approx(0.0, abs=1e-9)
    assert M.sim(lp, x, y, sigma=2.0) == pytest.approx(1.0)


def test_cc_anticorrelated():
    p = np.array([[0.75, 0.25]])
    q = np.log(np.array([[0.25, 0.75]]))
    assert M.cc(q, [0.0], [0.0], empirical_density=p) == pytest.approx(-1.0)


def test_fixation_density_single_fixation():
    d = M.fixation_density([2.0], [1.0], (3, 5), sigma=0.5)
    assert d.sum() == pytest.approx(1.0)
    assert np.unravel_index(d.argmax(), d.shape) == (1, 2)
    assert d[1, 1] == pytest.approx(d[1, 3])  # symmetric


def test_all_metrics_consistent():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(12, 16))
    b = np.zeros((12, 16))
    x, y = rng.uniform(0, 15, 9), rng.uniform(0, 11, 9)
    r = M.all_metrics(a, x, y, baseline_log_density=b, other_x=x[::-1] * 0.5, other_y=y)
    assert r["n"] == 9
    assert r["auc"] == pytest.approx(M.auc_judd(a, x, y))
    assert r["nss"] == pytest.approx(M.nss(a, x, y))
    assert r["ig"] == pytest.approx(M.information_gain(a, b, x, y))
    assert r["ig"] == pytest.approx(r["ll"])  # uniform baseline
    assert r["ig_sum"] == pytest.approx(9 * r["ig"])
    assert r["cc"] == pytest.approx(M.cc(a, x, y))
    assert r["kld"] == pytest.approx(M.kl_divergence(a, x, y))
    assert r["sim"] == pytest.approx(M.sim(a, x, y))
    assert "sauc" in r


def test_normalize_log_density():
    a = M.normalize_log_density(np.array([[0.0, math.log(3.0)]]))
    np.testing.assert_allclose(np.exp(a), [[0.25, 0.75]])
    b = M.normalize_log_density(np.array([[-np.inf, 1000.0]]))
    np.testing.assert_allclose(b, [[-np.inf, 0.0]])


@pytest.mark.parametrize("bad", [np.array([[np.nan, 0.0]]), np.zeros((0, 3)), np.zeros(4), np.full((2, 2), -np.inf),
                                 np.array([[np.inf, 0.0]])], ids=["nan", "empty", "1d", "all-minus-inf", "plus-inf"])
def test_bad_maps_rejected(bad):
    with pytest.raises(ValueError):
        M.log_likelihood(bad, [0.0], [0.0])


def test_bad_fixations_rejected():
    with pytest.raises(ValueError, match="no fixations"):
        M.auc_judd(np.zeros((2, 2)), [], [])
    with pytest.raises(ValueError, match="same length"):
        M.nss(np.zeros((2, 2)), [0.0, 1.0], [0.0])
    with pytest.raises(ValueError, match="finite"):
        M.log_likelihood(np.zeros((2, 2)), [np.nan], [0.0])
