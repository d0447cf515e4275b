"""Lagged complaints are judged against the deliveries they can have come from (detector/exposure.py)."""
import dataclasses

import numpy as np
import pytest
from scipy import stats

from detector import exposure
from detector.engine import replay
from detector.policy import poisson_rate_lower
from detector.rules import RuleSet, default_rules_path, load_rules

T0 = 1_717_200_000.0
HOUR = 3600.0


@pytest.mark.parametrize("x,e", [(1, 500.0), (5, 2_000.0), (37, 12_345.6), (400, 90_000.0)])
def test_poisson_lower_bound_is_exact(x, e):
    lower = poisson_rate_lower(x, e, 0.05)
    # P(X >= x | mean = lower * e) = alpha: the one-sided exact bound
    assert stats.poisson.sf(x - 1, lower * e) == pytest.approx(0.05, rel=1e-6)
    assert poisson_rate_lower(0, e, 0.05) == 0.0


def test_lag_cdf_matches_scipy():
    for t in (60.0, 1800.0, 7200.0, 86400.0):
        assert exposure.lag_cdf(t, 7200.0, 1.5) == pytest.approx(stats.lognorm.cdf(t, 1.5, scale=7200.0))


def _bulk_with_lagged_complaints(seed, size, rate, lag_median, lag_sigma=1.2):
    rng = np.random.default_rng(seed)
    t = np.sort(T0 + 2 * HOUR * rng.random(size))
    out = []
    for i, ts in enumerate(t):
        base = {"provider": "sparkpost", "campaign": "newsletter", "ip_pool": "p", "sending_domain": "news.example.com",
                "recipient_domain": "yahoo.com", "mailbox_provider": "yahoo", "recipient_hash": "a" * 64,
                "message_id": f"m{i}", "bounce_class": None, "smtp_code": None, "reason": None}
        out.append({**base, "event_id": f"a{i}", "type": "accepted", "timestamp": float(ts)})
        out.append({**base, "event_id": f"d{i}", "type": "delivered", "timestamp": float(ts) + 3})
        if rng.random() < rate:
            lag = lag_median * np.exp(lag_sigma * rng.standard_normal())
            out.append({**base, "event_id": f"c{i}", "type": "complained", "timestamp": float(ts) + 3 + lag})
    # a quiet flow keeps the clock moving for two days
    for k in range(int(48 * HOUR / 60)):
        out.append({"provider": "sparkpost", "campaign": "heartbeat", "ip_pool": "p",
                    "sending_domain": "other.example.com", "recipient_domain": "gmail.com",
                    "mailbox_provider": "gmail", "recipient_hash": "b" * 64, "message_id": f"h{k}",
                    "bounce_class": None, "smtp_code": None, "reason": None, "event_id": f"h{k}",
                    "type": "delivered", "timestamp": T0 + 60.0 * k})
    out.sort(key=lambda e: e["timestamp"])
    return out


def _complaint_pages(events, ruleset):
    return [a for a in replay(events, ruleset) if a["status"] == "firing" and a["metric"] == "complaint_rate"]


def test_a_clean_send_does_not_page_when_its_deliveries_leave_the_span():
    """0.06% complaints (under every line) with a 6 h median lag: at the 24 h slide-out the span holds
    the late complaints of deliveries it no longer counts."""
    events = _bulk_with_lagged_complaints(seed=5, size=60_000, rate=0.0006, lag_median=6 * HOUR)
    rules = load_rules(default_rules_path())
    assert _complaint_pages(events, rules) == []
    # the same pack without the lag model pages at the slide-out (this is what the model fixes)
    no_lag = RuleSet([dataclasses.replace(r, lag_median=0.0) for r in rules.rules], rules.settings,
                     rules.mailbox_providers, rules.source)
    pages = _complaint_pages(events, no_lag)
    assert pages and all(a["detected_at"] > T0 + 24 * HOUR for a in pages)


def test_a_wrong_segment_still_pages():
    events = _bulk_with_lagged_complaints(seed=6, size=60_000, rate=0.006, lag_median=1 * HOUR)
    pages = _complaint_pages(events, load_rules(default_rules_path()))
    assert any(a["rule"] == "complaint_spike" for a in pages)
    assert min(a["detected_at"] for a in pages) < T0 + 4 * HOUR
    keys = [a["dedup_key"] for a in pages]
    assert len(keys) == len(set(keys)), keys  # one page per scope while its complaints trickle in


def test_the_fastest_lag_discounts_the_span_own_deliveries():
    """Each window of the span counts for F_fast(age of its middle) of its deliveries; older ones
    keep their slow-lag share; without ``fastest`` the span's deliveries count in full."""
    recent = [[0, 1000, T0], [0, 1000, T0 + 300.0], [0, 0, T0 + 600.0]]
    end = T0 + 900.0
    full = exposure.exposure({}, recent, end, 900.0, 6 * HOUR, 1.5)
    assert full == 2000.0
    fast = exposure.exposure({}, recent, end, 900.0, 6 * HOUR, 1.5, fastest=600.0, window=300.0)
    expected = 1000 * (stats.lognorm.cdf(750.0, 1.5, scale=600.0) + stats.lognorm.cdf(450.0, 1.5, scale=600.0))
    assert fast == pytest.approx(expected) and fast < full


def test_a_fastest_lag_longer_than_the_median_is_rejected():
    from detector.rules import RuleError, load_rules_text
    text = ("rules:\n  - {name: c, test: policy, metric: complaint_rate, scope: [campaign], category: complaints,\n"
            "     severity: critical, rate: 0.001, span: 24h, lag: {median: 1h, sigma: 1.5, fastest: 2h}}\n")
    with pytest.raises(RuleError) as info:
        load_rules_text(text, path="r.yaml")
    assert "lag.fastest must not exceed lag.median" in str(info.value)
    assert load_rules_text(text.replace("fastest: 2h", "fastest: 10m")).rules[0].lag_fastest == 600.0


def test_a_young_wrong_segment_pages_sooner_with_the_fastest_lag():
    events = _bulk_with_lagged_complaints(seed=6, size=60_000, rate=0.006, lag_median=1 * HOUR)
    rules = load_rules(default_rules_path())
    assert all(r.lag_fastest == 600.0 for r in rules.rules if r.lag_median)
    full = RuleSet([dataclasses.replace(r, lag_fastest=0.0) for r in rules.rules], rules.settings,
                   rules.mailbox_providers, rules.source)
    first = {name: min(a["detected_at"] for a in _complaint_pages(events, rs) if a["rule"] == "complaint_spike")
             for name, rs in (("fast", rules), ("full", full))}
    assert first["fast"] < first["full"]
