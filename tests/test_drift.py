"""The daily-against-28-day monitor catches a drift over days that charts absorb."""

import numpy as np

from detector import drift
from detector.engine import replay
from detector.rules import RuleSet, default_rules_path, load_rules

T0 = 1_717_200_000.0 - (1_717_200_000.0 % 86400)  # a UTC midnight
DAY = 86400.0


def _days(rates, per_day=3000, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for d, rate in enumerate(rates):
        day_rate = rate * np.exp(0.15 * rng.standard_normal())  # day-to-day spread
        ts = np.sort(T0 + d * DAY + DAY * rng.random(per_day))
        bounced = rng.random(per_day) < day_rate
        for i, (t, b) in enumerate(zip(ts.tolist(), bounced.tolist())):
            out.append({"event_id": f"{d}-{i}", "provider": "sparkpost", "campaign": "receipts",
                        "type": "bounced" if b else "delivered", "bounce_class": "block" if b else None,
                        "timestamp": t, "sending_domain": "mail.example.com", "ip_pool": "p",
                        "recipient_domain": "yahoo.com", "mailbox_provider": "yahoo", "recipient_hash": "a" * 64,
                        "message_id": f"m{d}-{i}", "smtp_code": None, "reason": None})
    return out


def _drift_rules():
    rs = load_rules(default_rules_path())
    return RuleSet([r for r in rs.rules if r.test == "drift"], rs.settings, rs.mailbox_providers, rs.source)


def test_a_rate_creeping_up_over_days_pages_once():
    rates = [0.01] * 30 + [0.01 * (1 + 0.2 * k) for k in range(1, 11)]   # +20% a day from day 30
    firing = [a for a in replay(_days(rates), _drift_rules()) if a["status"] == "firing"]
    assert [(a["rule"], a["scope"]) for a in firing] == [
        ("bounce_drift", {"mailbox_provider": "yahoo", "sending_domain": "mail.example.com"})]
    day = (firing[0]["detected_at"] - T0) / DAY
    assert 30 < day <= 36, day
    assert firing[0]["baseline"] < 0.0125


def test_forty_clean_days_page_nothing():
    assert [a for a in replay(_days([0.01] * 40, seed=2), _drift_rules()) if a["status"] == "firing"] == []


def test_no_judgement_before_a_week_of_history():
    st = {}
    for d in range(drift.MIN_HISTORY_DAYS):
        drift.add(st, 30, 3000)
        assert drift.judge(st, 28, 1000) is None
        drift.keep(st, 28, fired=False)
    drift.add(st, 300, 3000)
    judged = drift.judge(st, 28, 1000)
    assert judged is not None and judged[4] < 1e-6  # 10% against 1%: far in the tail
