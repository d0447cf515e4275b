"""Window tests: binomial / beta-binomial tails against scipy, rho recovery, BH, calibration under H0."""

import numpy as np
import pytest
from scipy import stats

from detector.window_test import benjamini_hochberg, betabinom_pvalue, binomial_pvalue, estimate_rho


@pytest.mark.parametrize("x,n,p0", [(7, 2000, 0.001), (0, 10, 0.5), (3, 10, 0.2), (10, 10, 0.3), (60, 1000, 0.05)])
def test_binomial_pvalue_matches_binomtest(x, n, p0):
    assert binomial_pvalue(x, n, p0) == pytest.approx(stats.binomtest(x, n, p0, alternative="greater").pvalue)


def test_binomial_pvalue_edges_and_vectorised():
    assert binomial_pvalue(0, 0, 0.3) == 1.0
    assert binomial_pvalue(0, 100, 0.3) == 1.0
    assert binomial_pvalue(1, 100, 0.0) == 0.0
    assert binomial_pvalue(0, 100, 0.0) == 1.0
    assert binomial_pvalue(100, 100, 1.0) == 1.0
    assert binomial_pvalue(5, 100, 1.0) == 1.0
    # huge n: 1e9 sends at 1%, observed 1.001% (3.2 sd above) and exactly 1%
    big = binomial_pvalue(np.array([10_010_000, 10_000_000]), 1_000_000_000, 0.01)
    np.testing.assert_allclose(big, stats.binom.sf(np.array([10_009_999, 9_999_999]), 1e9, 0.01))
    assert 1e-4 < big[0] < 2e-3 and 0.45 < big[1] < 0.55
    x = np.array([0, 1, 5, 9])
    n = np.array([10, 10, 10, 0])
    res = binomial_pvalue(np.minimum(x, n), n, 0.2)
    assert isinstance(res, np.ndarray) and res.shape == (4,)
    assert res[0] == 1.0 and res[3] == 1.0
    assert res[2] == pytest.approx(stats.binom.sf(4, 10, 0.2))
    for bad in [(5, 3, 0.1), (-1, 3, 0.1), (1, 3, 1.5), (1, 3, float("nan"))]:
        with pytest.raises(ValueError):
            binomial_pvalue(*bad)


def test_binomial_pvalues_are_superuniform_under_h0():
    rng = np.random.default_rng(11)
    n = rng.integers(50, 5000, size=200_000)
    x = rng.binomial(n, 0.003)
    p = binomial_pvalue(x, n, 0.003)
    for level in (0.001, 0.01, 0.05):
        assert np.mean(p <= level) <= level + 3 * np.sqrt(level / p.size)
    assert np.mean(p <= 0.05) > 0.02  # and not trivially conservative


def test_betabinom_pvalue_matches_scipy():
    mu, rho = 0.02, 0.01
    a, b = mu * (1 / rho - 1), (1 - mu) * (1 / rho - 1)
    x = np.array([0, 5, 20, 40])
    n = np.array([500, 500, 500, 500])
    res = betabinom_pvalue(x, n, mu, rho)
    np.testing.assert_allclose(res[1:], stats.betabinom.sf(x[1:] - 1, 500, a, b), rtol=1e-10)
    assert res[0] == 1.0
    # overdispersion makes the same excess less surprising
    assert betabinom_pvalue(20, 500, mu, rho) > binomial_pvalue(20, 500, mu)
    assert betabinom_pvalue(20, 500, mu, 0.0) == binomial_pvalue(20, 500, mu)
    assert betabinom_pvalue(0, 0, mu, rho) == 1.0
    with pytest.raises(ValueError):
        betabinom_pvalue(3, 10, 0.1, 1.0)


@pytest.mark.parametrize("rho_true", [0.0, 0.002, 0.01, 0.05])
def test_estimate_rho_recovers_simulated_overdispersion(rho_true):
    rng = np.random.default_rng(int(rho_true * 1e4) + 1)
    mu = 0.02
    k = 3000
    n = rng.integers(200, 2000, size=k)
    if rho_true > 0:
        s = 1 / rho_true - 1
        p = rng.beta(mu * s, (1 - mu) * s, size=k)
    else:
        p = np.full(k, mu)
    x = rng.binomial(n, p)
    est = estimate_rho(x, n)
    assert est == pytest.approx(rho_true, abs=max(0.2 * rho_true, 0.0008))


def test_estimate_rho_edges():
    assert estimate_rho([], []) == 0.0
    assert estimate_rho([1, 2], [10, 10]) == 0.0  # too few windows
    assert estimate_rho([0, 0, 0, 0], [10, 20, 30, 40]) == 0.0  # no events
    assert estimate_rho([5, 5, 5, 5], [10, 10, 10, 10]) == 0.0  # underdispersed
    assert estimate_rho([0, 10, 0, 10, 0, 10], [10] * 6) < 1.0
    assert estimate_rho([0, 10, 0, 10, 0, 10], [10] * 6) > 0.9


def test_benjamini_hochberg_hand_example():
    # m = 10, q = 0.05: thresholds k*q/m = 0.005, 0.010, 0.015, 0.020, 0.025, ...
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.060, 0.074, 0.205, 0.212, 0.216])
    # sorted p_(2) = 0.008 <= 0.010 but p_(3) = 0.039 > 0.015 and no later p_(k) <= k*q/m -> reject 2
    mask = benjamini_hochberg(p, 0.05)
    assert mask.tolist() == [True, True] + [False] * 8
    # step-up, m = 5, thresholds 0.01..0.05: p_(2) = 0.025 > 0.02 but p_(3) = 0.028 <= 0.03 rejects it too
    p2 = np.array([0.025, 0.9, 0.001, 0.028, 0.5])
    assert benjamini_hochberg(p2, 0.05).tolist() == [True, False, True, True, False]
    assert benjamini_hochberg(p2, 0.045).tolist() == [False, False, True, False, False]
    assert benjamini_hochberg([], 0.05).shape == (0,)
    with pytest.raises(ValueError):
        benjamini_hochberg([0.1, 1.2], 0.05)
    with pytest.raises(ValueError):
        benjamini_hochberg([0.1], 0.0)
