"""Bulk sends are normal business: no surge, no silence, no security page for a newsletter."""
import numpy as np
import pytest

from detector.event import UNATTRIBUTED_CAMPAIGN
from detector.engine import replay
from detector.rules import default_rules_path, load_rules

T0 = 1_717_200_000.0  # a Saturday 00:00 UTC; the flows below run around the clock
DAY = 86400.0
RULES = load_rules(default_rules_path())


def _events(rng, times, campaign, pool, sends=True):
    out = []
    for i, t in enumerate(np.sort(times)):
        mid = f"{campaign}-{i}"
        base = {"provider": "sendgrid", "campaign": campaign, "ip_pool": pool, "sending_domain": "news.example.com",
                "recipient_domain": "gmail.com", "mailbox_provider": "gmail", "recipient_hash": "h" * 64,
                "message_id": mid, "bounce_class": None, "smtp_code": None, "reason": None}
        if sends:
            out.append({**base, "event_id": mid + "-a", "type": "accepted", "timestamp": float(t)})
        out.append({**base, "event_id": mid + "-d", "type": "delivered", "timestamp": float(t) + 2.0})
    return out


def _steady(rng, campaign, per_minute, start, end, pool="shared", sends=True):
    n = rng.poisson(per_minute * (end - start) / 60)
    return _events(rng, start + (end - start) * rng.random(n), campaign, pool, sends)


def _bulk(rng, campaign, size, start, hours, pool="shared", attributed=True):
    evs = _events(rng, start + hours * 3600 * rng.random(size), campaign, pool)
    if not attributed:
        for e in evs:
            e["campaign"] = None
    return evs


def _alerts(events):
    events.sort(key=lambda e: e["timestamp"])
    return [a for a in replay(events, RULES) if a["status"] == "firing"]


def test_daily_newsletter_and_one_off_promo_page_nothing():
    rng = np.random.default_rng(1)
    events = _steady(rng, "receipts", 2, T0, T0 + 3 * DAY)
    for day in range(3):
        events += _bulk(rng, f"daily-news-{day}", 30_000, T0 + day * DAY + 8 * 3600, 1.0)
    events += _bulk(rng, "one-off-promo", 50_000, T0 + 2 * DAY + 14 * 3600, 2.0)
    assert _alerts(events) == []


def test_a_steady_low_volume_flow_that_stops_pages_silence_within_30_minutes():
    rng = np.random.default_rng(2)
    stop = T0 + 1.5 * DAY
    events = _steady(rng, "password-reset", 1, T0, stop) + _steady(rng, "receipts", 2, T0, T0 + 2 * DAY)
    events += _bulk(rng, "newsletter", 20_000, T0 + DAY + 9 * 3600, 1.0)
    firing = _alerts(events)
    assert [(a["rule"], a["scope"]) for a in firing] == [("campaign_silence", {"campaign": "password-reset", "provider": "sendgrid"})]
    assert stop <= firing[0]["detected_at"] <= stop + 30 * 60


def test_outcome_only_flow_that_stops_pages_silence():
    rng = np.random.default_rng(3)
    stop = T0 + 1.5 * DAY
    events = _steady(rng, "receipts", 1, T0, stop, sends=False) + _steady(rng, "other", 2, T0, 2 * DAY + T0,
                                                                        sends=False)
    firing = _alerts(events)
    assert [(a["rule"], a["scope"]) for a in firing] == [("campaign_silence", {"campaign": "receipts", "provider": "sendgrid"})]
    assert stop <= firing[0]["detected_at"] <= stop + 30 * 60


def test_outcome_only_flow_that_stops_pages_silence_through_its_retry_trickle():
    """After the stop, deliveries of retried messages keep arriving (one every 15-30 min for
    three hours, 5% of the flow's volume and less): an outcome-only stream cannot tell them
    from new mail, and a flow fallen to such a trickle is silent all the same."""
    rng = np.random.default_rng(4)
    stop = T0 + 1.5 * DAY
    events = _steady(rng, "receipts", 1, T0, stop, sends=False) + _steady(rng, "other", 2, T0, 2 * DAY + T0,
                                                                        sends=False)
    # messages deferred before the stop: their retries succeed less and less often after it
    retries = _events(rng, stop + 60 * np.array([7, 22, 41, 63, 90, 120, 150, 180]), "receipts", "shared",
                      sends=False)
    for e in retries:
        e["event_id"] += "-retry"
        e["message_id"] += "-retry"
    firing = _alerts(events + retries)
    assert [(a["rule"], a["scope"]) for a in firing] == [("campaign_silence", {"campaign": "receipts", "provider": "sendgrid"})]
    assert stop <= firing[0]["detected_at"] <= stop + 30 * 60


def test_a_flow_at_half_its_volume_is_not_silent():
    """A slow day (half the usual volume for a day) is not a stopped flow: silence is a drop to a trickle."""
    rng = np.random.default_rng(5)
    slow = T0 + 1.5 * DAY
    events = (_steady(rng, "receipts", 2, T0, slow) + _steady(rng, "receipts", 1, slow, T0 + 2.5 * DAY)
              + _steady(rng, "other", 2, T0, T0 + 2.5 * DAY))
    assert [a["rule"] for a in _alerts(events) if a["rule"] == "campaign_silence"] == []


@pytest.mark.parametrize("no_campaign", [None, UNATTRIBUTED_CAMPAIGN])
def test_unattributed_surge_on_a_pool_is_a_security_page_and_campaign_volume_is_not(no_campaign):
    """Mail that names no campaign: null, or the campaign ingest gives it ("(none)", which is
    what every real stream carries: the canonical event requires a campaign)."""
    rng = np.random.default_rng(4)
    events = _steady(rng, "receipts", 3, T0, T0 + 2 * DAY, pool="txn")
    for e in _steady(rng, "untagged", 2, T0, T0 + 2 * DAY, pool="txn"):
        e["campaign"] = no_campaign
        events.append(e)
    events += _bulk(rng, "big-promo", 40_000, T0 + DAY + 10 * 3600, 1.0, pool="txn")
    leak = T0 + DAY + 20 * 3600
    leaked = _bulk(rng, None, 20_000, leak, 1.0, pool="txn", attributed=False)
    for e in leaked:
        e["campaign"] = no_campaign
    events += leaked
    firing = _alerts(events)
    assert ("ip_pool_surge", {"ip_pool": "txn"}) in [(a["rule"], a["scope"]) for a in firing]
    assert {a["rule"] for a in firing} <= {"ip_pool_surge", "volume_surge"}
    assert all(a["scope"] == {"campaign": UNATTRIBUTED_CAMPAIGN} for a in firing if a["rule"] == "volume_surge")
    pool_page = next(a for a in firing if a["rule"] == "ip_pool_surge")
    assert leak <= pool_page["detected_at"] <= leak + 15 * 60
