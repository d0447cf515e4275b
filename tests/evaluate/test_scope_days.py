"""Scope-days: what the false-alarm rate is divided by."""
from __future__ import annotations

import math

import pytest
from scipy.stats import chi2, poisson

from ddetect.evaluate import fa_per_1000, fa_upper_per_1000, run_engine, scope_days
from detector.event import make_event
from detector.rules import load_rules_text

RULES = """
settings: {window: 5m, allowed_lateness: 1m}
rules:
  - {name: hb, test: cusum, metric: hard_bounce_rate, scope: [campaign], category: technical, severity: warning,
     warmup: {messages: 10, windows: 1}}
  - {name: vol, test: surge, metric: volume, scope: [campaign], category: performance, severity: warning,
     warmup: {windows: 2}}
  - {name: pol, test: policy, metric: hard_bounce_rate, scope: [mailbox_provider], category: compliance,
     severity: warning, rate: 0.5, span: 10m, min_volume: 5}
"""


def test_scope_days_is_series_times_days():
    assert scope_days(100, 6 * 3600.0) == pytest.approx(25.0)
    assert scope_days(0, 86400.0) == 0.0
    assert fa_per_1000(1, 25.0) == pytest.approx(40.0)
    assert math.isinf(fa_per_1000(1, 0.0))


@pytest.mark.parametrize("k", [0, 1, 5])
def test_upper_bound_is_the_poisson_garwood_bound(k):
    days = 250.0
    upper = fa_upper_per_1000(k, days) * days / 1000.0          # upper bound on the expected count
    assert upper == pytest.approx(chi2.ppf(0.95, 2 * (k + 1)) / 2)
    assert poisson.cdf(k, upper) == pytest.approx(0.05)          # P(<= k alarms | upper) = 5%


def test_series_counts_every_rule_scope_pair_evaluated():
    """2 campaigns x 2 campaign rules + 1 provider x 1 provider rule = 5 series, armed or not."""
    rs = load_rules_text(RULES)
    t0 = 1_700_000_100.0
    events = []
    for w in range(6):                       # six 5-minute windows of traffic
        for i in range(20):
            t = t0 + w * 300.0 + i
            for camp in ("alpha", "beta"):
                kind = "bounced" if i == 0 else "delivered"
                common = dict(provider="sendgrid", timestamp=t, campaign=camp, sending_domain="x.example",
                              ip_pool=None, recipient_domain="gmail.com", recipient_hash=None,
                              mailbox_provider="gmail", smtp_code=None, reason=None, message_id=None)
                events.append(make_event(type="accepted", bounce_class=None, **common))
                events.append(make_event(type=kind, bounce_class="hard" if kind == "bounced" else None, **common))
    # beta only sends in the first window: its rules are still evaluated (on zero counts) afterwards
    events = [e for e in events if e["campaign"] == "alpha" or e["timestamp"] < t0 + 300.0]
    alerts, states = run_engine(events, rs)
    assert states.series == {("hb", "campaign=alpha"), ("vol", "campaign=alpha"), ("hb", "campaign=beta"),
                             ("vol", "campaign=beta"), ("pol", "mailbox_provider=gmail")}
    armed = {k for k in states.armed_since}
    assert ("hb", "campaign=alpha") in armed       # 10 trials after the first window
    assert ("vol", "campaign=alpha") in armed      # after two windows
    assert ("pol", "mailbox_provider=gmail") in armed
    assert ("hb", "campaign=beta") in armed        # 20 trials in its only window
    assert ("vol", "campaign=beta") in armed       # warm-up counts zero windows too
    assert all(since >= t0 - 300.0 for since in states.armed_since.values())
