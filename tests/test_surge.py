"""Volume surge: the windowed GLR scan against scipy.stats.nbinom, and the rule on a flow's windows."""
import math

import numpy as np
import pytest
from scipy import stats

from detector import detectors, flow
from detector.rules import Rule, load_rules_text
from detector.surge import pooled_dispersion, scan, sum_negbin_sf

WINDOW = 300.0


def _nb_pmf(mu, k, top):
    x = np.arange(top)
    return stats.nbinom.pmf(x, k, k / (k + mu))


def test_pooled_dispersion_is_exact_for_equal_means():
    """The sum of n iid NB(k, p) is NB(n k, p): the moment-matched tail is the exact tail."""
    mu, k, n = 20.0, 7.0, 4
    pmf = _nb_pmf(mu, k, 600)
    total = pmf
    for _ in range(n - 1):
        total = np.convolve(total, pmf)[:600]
    kn = pooled_dispersion(k, [mu] * n)
    assert kn == pytest.approx(n * k)
    for c in (80, 120, 160, 200):
        exact = total[c:].sum()
        assert stats.nbinom.sf(c - 1, kn, kn / (kn + n * mu)) == pytest.approx(exact, rel=1e-6)


def _exact_sum_sf(c, means, k, top=4000):
    total = _nb_pmf(means[0], k, top) if math.isfinite(k) else stats.poisson.pmf(np.arange(top), means[0])
    for m in means[1:]:
        total = np.convolve(total, _nb_pmf(m, k, top) if math.isfinite(k) else stats.poisson.pmf(np.arange(top), m))[:top]
    return total[int(c):].sum()


def test_pooled_dispersion_matches_the_moments_of_unequal_windows():
    means, k = [5.0, 12.0, 30.0], 4.0
    total = _nb_pmf(means[0], k, 800)
    for m in means[1:]:
        total = np.convolve(total, _nb_pmf(m, k, 800))[:800]
    x = np.arange(800)
    mean, var = (x * total).sum(), (x * x * total).sum() - (x * total).sum() ** 2
    kp = pooled_dispersion(k, means)
    M = sum(means)
    assert mean == pytest.approx(M, rel=1e-9)
    assert var == pytest.approx(M + M * M / kp, rel=1e-9)
    assert pooled_dispersion(math.inf, means) == math.inf
    with pytest.raises(ValueError):
        pooled_dispersion(0.0, means)


@pytest.mark.parametrize("means,k", [([20, 22, 25, 28] * 3, 4.0), ([20, 22, 25, 28] * 3, 20.0),
                                     ([10] * 6 + [14] * 6, 3.0), ([5, 12, 30], 4.0), ([2, 3], 0.5),
                                     ([40, 38, 36, 30, 26], 60.0)])
def test_sum_tail_matches_the_exact_convolution(means, k):
    """Saddlepoint tail of a sum of NB windows with unequal means against the convolution of
    scipy's pmfs, from a mild excess to far in the tail (0.3% where the rule decides)."""
    M = sum(means)
    for r in (1.5, 2.5, 3.0, 4.0):
        c = int(r * M)
        exact = _exact_sum_sf(c, means, k)
        rel = 0.035 if k < 1 else 0.004
        assert sum_negbin_sf(c, means, k) == pytest.approx(exact, rel=rel)


def test_sum_tail_closed_forms():
    # equal means: NB(n k, p) exactly; Poisson: Poisson(M) exactly
    assert sum_negbin_sf(120, [20.0] * 4, 7.0) == pytest.approx(stats.nbinom.sf(119, 28.0, 28.0 / 108.0), rel=1e-12)
    assert sum_negbin_sf(120, [20.0, 30.0], math.inf) == pytest.approx(stats.poisson.sf(119, 50.0), rel=1e-12)
    assert sum_negbin_sf(0, [20.0], 3.0) == 1.0
    with pytest.raises(ValueError):
        sum_negbin_sf(3, [1.0], 0.0)


def _brute(counts, means, k, factor, alpha, max_run, min_volume):
    best = None
    for n in range(1, min(len(counts), max_run) + 1):
        C, mus = sum(counts[-n:]), means[-n:]
        if C < max(min_volume, 1) or C < factor * sum(mus):
            continue
        p = _exact_sum_sf(C, mus, k)
        if best is None or p < best[1]:
            best = (n, p)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_scan_matches_a_brute_force_over_run_lengths(seed):
    rng = np.random.default_rng(seed)
    means = list(rng.uniform(3, 40, 12))
    counts = [int(rng.poisson(m * (3.0 if i >= 8 else 1.0))) for i, m in enumerate(means)]
    k = float(rng.uniform(3, 60))
    res = scan(counts, means, k, factor=2.5, alpha=1e-6, max_run=12, min_volume=100)
    ref = _brute(counts, means, k, 2.5, 1e-6, 12, 100)
    if ref is None:
        assert res.windows == 0 and not res.fire and res.p_value == 1.0
    else:
        assert res.windows == ref[0]
        assert res.p_value == pytest.approx(ref[1], rel=5e-3)
        assert res.fire == (ref[1] < 1e-6 / 12)


def test_scan_needs_the_ratio_floor_and_min_volume():
    mu = [25.0] * 12
    # 2x of a busy flow is significant but below the floor of 2.5x: never a surge
    assert not scan([50] * 12, mu, math.inf, factor=2.5, alpha=1e-6, max_run=12, min_volume=100).fire
    # 3x: one window (75) is below min_volume; two windows (150 of 50 expected) page
    assert not scan([25] * 11 + [75], mu, math.inf, factor=2.5, alpha=1e-6, max_run=12, min_volume=100).fire
    res = scan([25] * 10 + [75, 75], mu, math.inf, factor=2.5, alpha=1e-6, max_run=12, min_volume=100)
    assert res.fire and res.windows == 2 and res.ratio == pytest.approx(3.0)
    assert res.p_value == pytest.approx(stats.poisson.sf(149, 50.0))
    # heavy overdispersion (k = 2: a window at 3x is ordinary) keeps the same counts quiet
    assert not scan([25] * 10 + [75, 75], mu, 2.0, factor=2.5, alpha=1e-6, max_run=12, min_volume=100).fire
    # the look-back is max_run: older windows are ignored
    assert scan([1000] + [0] * 12, [25.0] * 13, math.inf, factor=2.5, alpha=1e-6, max_run=12,
                min_volume=100).windows == 0


def _rule(**kw):
    base = dict(name="volume_surge", test="surge", metric="volume", scope=("campaign",), category="performance",
                severity="warning", factor=2.5, alpha=1e-6, min_volume=100, run_windows=12)
    base.update(kw)
    return Rule(**base)


def _armed(mu):
    prof = flow.new_profile()
    prof.update(m=[mu] * 24, n=[50] * 24, od=0.0, odn=500)
    return dict(detectors.new_state(), phase="armed", flow=prof)


def _windows(rule, st, counts, t0=0.0):
    out = []
    for i, c in enumerate(counts):
        f = detectors.eval_volume(rule, st, "campaign=c", t0 + i * WINDOW, int(c), WINDOW)
        if f.fire:
            st["firing"] = True
        out.append(f)
    return out


def test_a_3x_surge_with_a_mid_window_onset_pages_and_is_not_learned():
    """A surge starting 2 minutes into a window: the partial window (2.2x) is not learned as normal."""
    rng = np.random.default_rng(3)
    rule, st = _rule(), _armed(25.0)
    counts = list(rng.poisson(25, 30)) + [int(rng.poisson(25 * (2 + 3 * 3) / 5))] + list(rng.poisson(75, 8))
    found = _windows(rule, st, counts)
    fired = [i for i, f in enumerate(found) if f.fire]
    assert fired and 31 <= fired[0] <= 33          # within 15 minutes of the onset window
    assert max(st["flow"]["m"]) < 26.5             # the incident is not in the hour's mean
    assert flow.dispersion(st["flow"]) > 20        # nor in the overdispersion


def test_ordinary_variation_never_pages():
    """A flow at 1.6x its learned volume for a day (a Monday after a quiet weekend, a busy season)
    and single noisy windows: no page, and the profile follows the new level."""
    rng = np.random.default_rng(4)
    rule, st = _rule(), _armed(25.0)
    found = _windows(rule, st, rng.poisson(40, 288))
    assert not any(f.fire for f in found)
    assert all(30 < m < 40 for m in st["flow"]["m"][:23])   # 12 windows a slot at EWMA 0.05; 23: still held


def test_a_low_volume_flow_at_3x_pages_within_half_an_hour():
    rng = np.random.default_rng(5)
    rule, st = _rule(), _armed(10.0)      # two messages a minute
    found = _windows(rule, st, list(rng.poisson(10, 24)) + list(rng.poisson(30, 12)))
    fired = [i for i, f in enumerate(found) if f.fire]
    assert fired and fired[0] - 24 < 6


def test_recovery_is_judged_window_by_window():
    rule, st = _rule(resolve_windows=3), _armed(25.0)
    found = _windows(rule, st, [25] * 6 + [125] * 4 + [26] * 4)
    assert [f.fire for f in found].index(True) == 6
    # while firing the scan's long run still holds evidence, but each window near usual is calm
    assert [f.calm for f in found[10:]] == [True] * 4
    assert not any(f.fire for f in found[7:])


def test_max_run_loads_and_span_is_its_older_name():
    text = """
rules:
  - {name: s, test: surge, metric: volume, scope: [campaign], category: performance, severity: warning,
     factor: 2.5, max_run: 1h}
  - {name: t, test: surge, metric: volume, scope: [campaign], category: performance, severity: warning,
     span: 30m}
"""
    rules = {r.name: r for r in load_rules_text(text).rules}
    assert rules["s"].run_windows == 12 and rules["t"].run_windows == 6 and rules["t"].span_windows == 1
    with pytest.raises(ValueError, match="max_run"):
        load_rules_text(text.replace("max_run: 1h}", "max_run: 1h, span: 1h}"))
