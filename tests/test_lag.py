"""The complaint lag learned from matched complaints (detector/lag.py), the policy rules' early
look at each window (Engine._look_ahead), sub-spans (min_span) and honest alert stamps."""
import dataclasses
import math

import numpy as np
import pytest
from scipy import optimize, stats

from detector import detectors, lag
from detector.engine import Engine, replay
from detector.rules import RuleError, RuleSet, default_rules_path, load_rules, load_rules_text

from .test_exposure import HOUR, T0, _bulk_with_lagged_complaints, _complaint_pages


def _truncated_sample(seed, n, median, sigma, span):
    """Deliveries uniform over [0, span]; a lag is seen only if it arrived by ``span``."""
    rng = np.random.default_rng(seed)
    d = span * rng.random(n)
    u = median * np.exp(sigma * rng.standard_normal(n))
    seen = d + u <= span
    return u[seen], span - d[seen]


def test_fit_is_the_truncated_maximum_likelihood_of_scipy():
    u, horizon = _truncated_sample(1, 6000, 3600.0, 0.9, 3 * HOUR)
    fit = lag.fit_truncated_lognormal(u, horizon)

    def nll(theta):  # written independently, with scipy's log-normal
        mu, s = theta
        return -float(np.sum(stats.lognorm.logpdf(u, s, scale=math.exp(mu))
                             - stats.lognorm.logcdf(horizon, s, scale=math.exp(mu))))
    ref = optimize.minimize(nll, [8.0, 1.0], method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-9})
    assert math.log(fit.median) == pytest.approx(ref.x[0], abs=2e-3)
    assert fit.sigma == pytest.approx(ref.x[1], rel=2e-3)
    # truncation corrected: the naive median of the seen lags is far too short, the fit is not
    assert np.median(u) < 0.8 * 3600.0
    assert fit.median_fast < 3600.0 < fit.median_slow
    assert fit.median == pytest.approx(3600.0, rel=0.1) and fit.sigma == pytest.approx(0.9, rel=0.1)


def test_interval_covers_the_true_median_at_about_its_level():
    covered = 0
    for seed in range(60):
        u, horizon = _truncated_sample(100 + seed, 300, 5400.0, 1.0, 8 * HOUR)
        fit = lag.fit_truncated_lognormal(u, horizon)
        covered += fit is not None and fit.median_fast <= 5400.0 <= fit.median_slow
    assert covered >= 55  # 99% nominal: 59.4 of 60 expected; 55 is well below any plausible draw


def test_a_sample_that_cannot_tell_gives_no_fit():
    assert lag.fit_truncated_lognormal(np.array([5.0]), np.array([10.0])) is None
    # three lags, all seconds old: no median between a second and years is supported
    assert lag.fit_truncated_lognormal(np.array([1.0, 2.0, 3.0]), np.array([3.0, 3.0, 3.0])) is None


def _ev(kind, mid, ts, mbp="yahoo", esp="sparkpost"):
    return {"type": kind, "message_id": mid, "timestamp": ts, "mailbox_provider": mbp, "provider": esp}


def test_complaints_are_matched_to_feedback_loop_deliveries_only():
    lags = lag.ComplaintLags(["yahoo"])
    lags.observe([_ev("delivered", "a", 100.0), _ev("delivered", "g", 100.0, mbp="gmail"),
                  _ev("delivered", None, 100.0), _ev("complained", "a", 700.0), _ev("complained", "g", 700.0),
                  _ev("complained", "zz", 700.0)])
    assert [list(s) for s in lags._lags.values()] == [[(100.0, 600.0)]]
    assert len(lags) == 0   # the matched delivery is forgotten, the gmail one never kept
    lags.observe([_ev("delivered", "b", 200.0)])
    lags.expire(200.0 + lags.ttl + 1)
    assert len(lags) == 0


def test_delivery_memory_is_bounded():
    lags = lag.ComplaintLags(["yahoo"], capacity=10)
    lags.observe([_ev("delivered", f"m{i}", float(i)) for i in range(25)])
    assert len(lags) == 10 and lags.evicted == 15
    assert "m24" in lags._delivered and "m0" not in lags._delivered


def test_refit_needs_enough_complaints_and_summarises_fastest_and_slowest_esp():
    lags = lag.ComplaintLags(["yahoo"])
    rng = np.random.default_rng(3)
    evs = []
    for esp, median in (("sparkpost", 1800.0), ("ses", 3 * 3600.0)):
        for i in range(400):
            d = 1e6 + 86400.0 * rng.random()
            evs.append(_ev("delivered", f"{esp}{i}", d, esp=esp))
            evs.append(_ev("complained", f"{esp}{i}", d + median * math.exp(0.8 * rng.standard_normal()), esp=esp))
    evs.sort(key=lambda e: e["timestamp"])
    lags.observe(evs[:10])
    assert not lags.refit(1e6 + 86400.0) and lags.summary() is None
    lags.observe(evs[10:])
    assert lags.refit(1e6 + 10 * 86400.0)
    s = lags.summary()
    assert lag.valid_summary(s)
    assert s["fast"][0] == pytest.approx(lags.fits["sparkpost"].median_fast)
    assert s["slow"][0] == pytest.approx(lags.fits["ses"].median_slow)
    assert s["fast"][0] < 1800.0 < 3 * 3600.0 < s["slow"][0]


@pytest.mark.parametrize("bad", [None, [], {"fast": [1.0, 1.0]}, {"fast": [0, 1], "slow": [1, 1]},
                                 {"fast": [1.0, float("nan")], "slow": [1, 1]}, {"fast": [True, 1], "slow": [1, 1]}])
def test_invalid_summaries_are_rejected(bad):
    assert not lag.valid_summary(bad)


def test_the_learned_lag_narrows_the_prior_box_never_widens_it():
    rule = next(r for r in load_rules(default_rules_path()).rules if r.name == "complaint_spike")
    assert detectors._lags(rule, None) == (rule.lag_median, rule.lag_sigma, rule.lag_fastest, rule.lag_sigma)
    inside = {"fast": [1800.0, 0.9], "slow": [5400.0, 0.9]}
    assert detectors._lags(rule, inside) == (5400.0, 0.9, 1800.0, 0.9)
    outside = {"fast": [60.0, 0.9], "slow": [30 * HOUR, 0.9]}
    assert detectors._lags(rule, outside) == (rule.lag_median, rule.lag_sigma, rule.lag_fastest, rule.lag_sigma)
    no_learning = dataclasses.replace(rule, lag_learn=False)
    assert detectors._lags(no_learning, inside)[0] == rule.lag_median


def test_a_wrong_segment_pages_sooner_once_the_lag_is_learned():
    """The same send, with and without a day of matched complaints before it."""
    rules = load_rules(default_rules_path())
    events = _bulk_with_lagged_complaints(seed=6, size=60_000, rate=0.006, lag_median=1 * HOUR, lag_sigma=0.9)
    cold = min(a["detected_at"] for a in _complaint_pages(events, rules) if a["rule"] == "complaint_spike")
    # yesterday's clean send (0.08%) on another campaign of the same ESP: its complaints teach the lag
    history = _bulk_with_lagged_complaints(seed=7, size=400_000, rate=0.0008, lag_median=1 * HOUR, lag_sigma=0.9)
    history = [{**e, "timestamp": e["timestamp"] - 30 * HOUR, "message_id": "y" + e["message_id"],
                "event_id": "y" + e["event_id"], "campaign": "yesterday" if e["campaign"] == "newsletter"
                else e["campaign"]} for e in history if e["timestamp"] < T0 + 28 * HOUR]
    engine = Engine(rules)
    pages = []
    stream = sorted(history + events, key=lambda e: e["timestamp"])
    for i in range(0, len(stream), 20_000):
        pages.extend(engine.process(stream[i:i + 20_000]))
    assert engine.meta.get("lag") and engine.lags.fits["sparkpost"].n >= lag.MIN_LAGS
    warm = [a for a in pages if a["status"] == "firing" and a["rule"] == "complaint_spike"]
    assert [a["scope"]["campaign"] for a in warm] == ["newsletter"]
    assert warm[0]["evidence"]["lag"] == "learned"
    assert warm[0]["detected_at"] < cold


def test_a_policy_line_pages_when_its_window_ends_not_after_the_lateness():
    rules = load_rules(default_rules_path())
    events = _bulk_with_lagged_complaints(seed=6, size=60_000, rate=0.006, lag_median=1 * HOUR)
    engine = Engine(rules)
    for i in range(0, len(events), 500):
        for a in engine.process(events[i:i + 500]):
            if a["status"] == "firing" and a["rule"] == "complaint_spike":
                assert a["detected_at"] == a["window"]["end"]
                newest = engine.meta["newest"]
                # paged before the window could close (its end plus the allowed lateness)
                assert a["window"]["end"] <= newest < a["window"]["end"] + rules.settings.allowed_lateness
                return
    pytest.fail("complaint_spike never fired")


def test_peek_leaves_the_state_alone_and_agrees_with_the_close():
    rule = next(r for r in load_rules(default_rules_path()).rules if r.name == "complaint_spike")
    st = detectors.new_state()
    w0 = T0
    for k in range(20):
        detectors.eval_policy(rule, st, "s", w0 + 300 * k, 0 if k < 15 else 4, 400)
    before = repr(st)
    w = w0 + 300 * 20
    peek = detectors.peek_policy(rule, st, "s", w, [[6, 400, w]])
    assert repr(st) == before
    close = detectors.eval_policy(rule, st, "s", w, 6, 400)
    assert (peek.fire, peek.statistic, peek.x, peek.n) == (close.fire, close.statistic, close.x, close.n)


def _steady_flow_with_spike(spike: bool, seed=11):
    """A transactional flow, 50 a minute to Yahoo for 30 h at 0.05% complaints (1 h lag); with
    ``spike``, its last 4 hours draw 0.6%."""
    rng = np.random.default_rng(seed)
    out = []
    n = int(30 * 60 * 50)
    t = np.sort(T0 + 30 * HOUR * rng.random(n))
    for i, ts in enumerate(t):
        base = {"provider": "sparkpost", "campaign": "receipts", "ip_pool": "p", "sending_domain": "mail.example.com",
                "recipient_domain": "yahoo.com", "mailbox_provider": "yahoo", "recipient_hash": "a" * 64,
                "message_id": f"m{i}", "bounce_class": None, "smtp_code": None, "reason": None}
        out.append({**base, "event_id": f"d{i}", "type": "delivered", "timestamp": float(ts)})
        rate = 0.006 if spike and ts > T0 + 26 * HOUR else 0.0005
        if rng.random() < rate:
            out.append({**base, "event_id": f"c{i}", "type": "complained",
                        "timestamp": float(ts) + HOUR * math.exp(0.9 * rng.standard_normal())})
    out.sort(key=lambda e: e["timestamp"])
    return [e for e in out if e["timestamp"] < T0 + 30 * HOUR]


def test_sub_spans_catch_a_spike_the_24_hour_span_dilutes():
    rules = load_rules(default_rules_path())
    spike = _steady_flow_with_spike(True)
    whole = RuleSet([dataclasses.replace(r, min_span_windows=0) for r in rules.rules], rules.settings,
                    rules.mailbox_providers, rules.source, rules.feedback_loops)
    with_sub = [a for a in _complaint_pages(spike, rules) if a["rule"] == "complaint_spike"]
    without = [a for a in _complaint_pages(spike, whole) if a["rule"] == "complaint_spike"]
    assert with_sub and T0 + 26 * HOUR < with_sub[0]["detected_at"] < T0 + 29 * HOUR
    assert "subspan_s" in with_sub[0]["evidence"]
    assert without == [], [a["detected_at"] - T0 for a in without]   # diluted by 22 calm hours
    # and the same flow without the spike: no sub-span pages
    assert [a for a in _complaint_pages(_steady_flow_with_spike(False), rules) if a["rule"] == "complaint_spike"] == []


def test_subspans_halve_the_span_down_to_min_span():
    rule = next(r for r in load_rules(default_rules_path()).rules if r.name == "complaint_spike")
    assert detectors.subspans(rule) == [288, 144, 72, 36, 18, 9, 4]
    assert detectors.subspans(dataclasses.replace(rule, min_span_windows=0)) == [288]


def test_min_span_and_lag_learn_are_checked():
    base = """settings: {window: 5m}
rules:
  - name: c
    test: policy
    metric: complaint_rate
    scope: [campaign]
    category: complaints
    severity: warning
    rate: 0.001
    span: 1h
"""
    with pytest.raises(RuleError, match=r":\d+:\d+: .*min_span must not exceed span"):
        load_rules_text(base + "    min_span: 2h\n")
    with pytest.raises(RuleError, match=r"lag.learn must be true or false"):
        load_rules_text(base + "    lag: {median: 1h, learn: maybe}\n")
    ok = load_rules_text(base + "    min_span: 15m\n    lag: {median: 1h, learn: false}\n")
    assert ok.rules[0].min_span_windows == 3 and ok.rules[0].lag_learn is False


def test_window_closes_are_stamped_when_the_watermark_passes():
    """A window test's alert is raised when its window closes, its end plus the allowed lateness."""
    rules = load_rules(default_rules_path())
    events = _bulk_with_lagged_complaints(seed=6, size=60_000, rate=0.006, lag_median=1 * HOUR)
    no_peek = RuleSet([dataclasses.replace(r, min_span_windows=0) for r in rules.rules], rules.settings,
                      rules.mailbox_providers, rules.source, rules.feedback_loops)
    engine = Engine(no_peek)
    engine._policy_scopes = set()  # closes only
    for i in range(0, len(events), 20_000):
        for a in engine.process(events[i:i + 20_000]):
            if a["status"] == "firing" and a["test"] == "policy":
                assert a["detected_at"] == a["window"]["end"] + rules.settings.allowed_lateness
