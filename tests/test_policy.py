"""Policy bounds: anchors C.10 check values and the exact Clopper-Pearson / binomtest duality."""

import numpy as np
import pytest
from scipy import stats

from detector.policy import clopper_pearson_lower, exceeds_policy, wilson_lower


def test_anchor_check_values():
    assert stats.binomtest(7, 2000, 0.001, alternative="greater").pvalue == pytest.approx(0.0045, abs=5e-5)
    assert clopper_pearson_lower(7, 2000, 0.05) == pytest.approx(0.00164, abs=5e-6)
    assert wilson_lower(7, 2000, 0.05) == pytest.approx(0.00190, abs=5e-6)
    ci = stats.binomtest(7, 2000, 0.001, alternative="greater")
    assert clopper_pearson_lower(7, 2000, 0.05) == pytest.approx(ci.proportion_ci(0.95, "exact").low, rel=1e-9)
    assert wilson_lower(7, 2000, 0.05) == pytest.approx(ci.proportion_ci(0.95, "wilson").low, rel=1e-9)
    assert exceeds_policy(7, 2000, 0.001)
    assert exceeds_policy(7, 2000, 0.001, method="wilson")
    assert not exceeds_policy(7, 2000, 0.003)


def test_duality_with_binomtest_over_grid():
    checked = 0
    for n in (20, 137, 1000, 5000):
        for x in range(0, n + 1, max(1, n // 40)):
            for p in (0.001, 0.003, 0.05, 0.1, 0.5):
                for alpha in (0.01, 0.05):
                    pval = stats.binomtest(x, n, p, alternative="greater").pvalue
                    if abs(pval - alpha) < 1e-9:
                        continue  # exactly on the boundary: either side is numerically fair
                    assert exceeds_policy(x, n, p, alpha) == (pval < alpha), (x, n, p, alpha)
                    checked += 1
    assert checked > 1000


def test_edges_and_vectorised():
    assert clopper_pearson_lower(0, 100) == 0.0
    assert wilson_lower(0, 100) == 0.0
    assert clopper_pearson_lower(0, 0) == 0.0 and wilson_lower(0, 0) == 0.0
    assert not exceeds_policy(0, 0, 0.0)
    assert clopper_pearson_lower(50, 50, 0.05) == pytest.approx(0.05 ** (1 / 50))  # x = n: alpha^(1/n)
    assert 0.9 < wilson_lower(50, 50, 0.05) < 1.0
    big = clopper_pearson_lower(np.array([3_100_000, 2_990_000]), 1e9, 0.05)
    assert big[0] > 0.003 > big[1]  # 0.31% of 1e9 is certainly above 0.3%; 0.299% is not
    np.testing.assert_array_equal(exceeds_policy(np.array([3_100_000, 2_990_000]), 1e9, 0.003), [True, False])
    x = np.array([0, 3, 30, 300])
    n = np.array([1000, 1000, 1000, 1000])
    lo = clopper_pearson_lower(x, n, 0.05)
    assert np.all(np.diff(lo) > 0) and lo[0] == 0
    assert np.all(wilson_lower(x, n) >= 0)
    for bad in [(5, 3), (-1, 3), (1, float("nan"))]:
        with pytest.raises(ValueError):
            clopper_pearson_lower(*bad)
    with pytest.raises(ValueError):
        wilson_lower(1, 10, alpha=1.5)
    with pytest.raises(ValueError):
        exceeds_policy(1, 10, 0.1, method="jeffreys")
    with pytest.raises(ValueError):
        exceeds_policy(1, 10, 1.2)
