"""Volume tests against scipy.stats.poisson / nbinom, silence, dispersion and the hour-of-week baseline."""

import math

import numpy as np
import pytest
from scipy import stats

from detector.volume import (
    SeasonalBaseline,
    estimate_dispersion,
    hour_of_week,
    negbin_surge_pvalue,
    poisson_surge_pvalue,
    silence_probability,
)


def test_poisson_surge_matches_scipy():
    c = np.array([0, 5, 20, 35, 60])
    np.testing.assert_allclose(poisson_surge_pvalue(c, 20.0)[1:], stats.poisson.sf(c[1:] - 1, 20.0))
    assert poisson_surge_pvalue(0, 20.0) == 1.0
    assert poisson_surge_pvalue(1, 0.0) == 0.0
    assert poisson_surge_pvalue(0, 0.0) == 1.0
    with pytest.raises(ValueError):
        poisson_surge_pvalue(-1, 3.0)


def test_negbin_surge_matches_scipy_and_poisson_limit():
    mean, k = 20.0, 4.0
    c = np.array([1, 20, 40, 80])
    expected = stats.nbinom.sf(c - 1, k, k / (k + mean))
    np.testing.assert_allclose(negbin_surge_pvalue(c, mean, k), expected)
    # var = mean + mean^2/k
    assert stats.nbinom.var(k, k / (k + mean)) == pytest.approx(mean + mean**2 / k)
    assert negbin_surge_pvalue(40, mean, math.inf) == pytest.approx(poisson_surge_pvalue(40, mean))
    assert negbin_surge_pvalue(40, mean, 1e9) == pytest.approx(poisson_surge_pvalue(40, mean), rel=1e-5)
    assert negbin_surge_pvalue(40, mean, k) > poisson_surge_pvalue(40, mean)  # overdispersion: less surprising
    with pytest.raises(ValueError):
        negbin_surge_pvalue(3, 2.0, 0.0)


def test_silence_probability():
    assert silence_probability(20.0) == pytest.approx(math.exp(-20))
    assert silence_probability(20.0) == pytest.approx(stats.poisson.pmf(0, 20.0))
    assert silence_probability(20.0, 4.0) == pytest.approx(stats.nbinom.pmf(0, 4.0, 4.0 / 24.0))
    assert silence_probability(0.0) == 1.0
    np.testing.assert_allclose(silence_probability(np.array([1.0, 20.0]), np.array([math.inf, 4.0])),
                               [math.exp(-1), (4 / 24) ** 4])


def test_estimate_dispersion_recovers_k():
    rng = np.random.default_rng(5)
    k, mean = 3.0, 50.0
    counts = rng.negative_binomial(k, k / (k + mean), size=20000)
    assert estimate_dispersion(counts) == pytest.approx(k, rel=0.1)
    assert estimate_dispersion(rng.poisson(50.0, size=5000)) > 50  # (almost) no overdispersion
    assert estimate_dispersion([5, 5, 5, 5]) == math.inf
    assert estimate_dispersion([3]) == math.inf


def test_hour_of_week_slots():
    assert hour_of_week(0.0) == 3 * 24  # 1970-01-01 00:00 UTC was a Thursday
    monday = 1_704_067_200  # 2024-01-01 00:00 UTC, a Monday
    assert hour_of_week(monday) == 0
    assert hour_of_week(monday + 3600 * 25 + 59) == 25
    assert hour_of_week(monday + 7 * 86400 - 1) == 167


def test_seasonal_baseline_fallback_and_roundtrip():
    monday = 1_704_067_200
    base = SeasonalBaseline(window_seconds=600)
    assert math.isnan(base.expected(monday))
    base.update(monday, 10)  # Monday 00:00 slot
    base.update(monday + 600, 20)
    assert base.expected(monday + 1200) == pytest.approx(15.0)
    assert base.expected(monday + 3 * 3600) == pytest.approx(15.0)  # empty slot: overall mean
    base.update(monday + 3 * 3600, 300)
    assert base.expected(monday + 3 * 3600 + 7 * 86400) == pytest.approx(300.0)  # same slot next week
    clone = SeasonalBaseline.from_dict(base.to_dict())
    assert clone.expected(monday + 3 * 3600) == 300.0 and clone.n_windows == 3
    with pytest.raises(ValueError):
        base.update(monday, -1)
    with pytest.raises(ValueError):
        SeasonalBaseline(window_seconds=7200)


def test_volume_rule_survives_a_baseline_decayed_to_underflow():
    """Thousands of empty windows decay a learned mean towards ~1e-162; with k = mean^2 / (var - mean)
    that underflowed to k = 0, which volume_surge refused ("dispersion must be > 0", after one event
    30 days ahead in `ddetect replay`). The flow profile keeps k in (0, inf] by construction."""
    from detector import detectors, flow
    from detector.rules import Rule

    surge = Rule(name="volume_surge", test="surge", metric="volume", scope=("campaign",), category="performance",
                 severity="warning", factor=4, alpha=1e-6, min_volume=100)
    silence = Rule(name="campaign_silence", test="silence", metric="volume", scope=("campaign",),
                   category="performance", severity="warning", alpha=1e-6, min_expected=10)
    for od in (0.0, 1e-300, 5.0):
        profile = {"m": [1.4162952925962138e-162] * 24, "n": [500] * 24, "od": od, "odn": 500}
        assert 0 < flow.dispersion(profile) <= math.inf
        for rule in (surge, silence):
            st = dict(detectors.new_state(), phase="armed", flow=profile)
            f = detectors.eval_volume(rule, st, "campaign=c", 0.0, 0, 300.0)
            assert f is not None and not f.fire
        f = detectors.eval_volume(surge, dict(detectors.new_state(), phase="armed", flow=profile),
                                  "campaign=c", 0.0, 150, 300.0)
        assert f.p_value is not None and 0.0 <= f.p_value <= 1.0


@pytest.mark.parametrize("count,mu,k", [(0, 5.0, math.inf), (1, 5.0, math.inf), (3, 40.0, math.inf),
                                        (0, 5.0, 8.0), (2, 12.0, 3.5), (7, 90.0, 20.0)])
def test_trickle_llr_is_the_log_likelihood_ratio_scipy_gives(count, mu, k):
    from scipy import stats
    from detector.flow import trickle_llr
    rho = 0.05
    if math.isinf(k):
        want = stats.poisson.logpmf(count, rho * mu) - stats.poisson.logpmf(count, mu)
    else:
        want = (stats.nbinom.logpmf(count, k, k / (k + rho * mu)) - stats.nbinom.logpmf(count, k, k / (k + mu)))
    assert trickle_llr(count, mu, k, rho) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_trickle_zero_keeps_the_empty_window_test():
    from detector.flow import p_zero, trickle_llr
    assert trickle_llr(0, 5.0, 8.0, 0.0) == pytest.approx(-math.log(p_zero(5.0, 8.0)))
    assert trickle_llr(1, 5.0, 8.0, 0.0) == -math.inf
