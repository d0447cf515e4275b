"""Streams without send events (Postmark, Mailjet, SES classic): delivery attempts stand in for sends."""
import numpy as np
import pytest

from detector import sends
from detector.counts import COUNTER_INDEX, N_COUNTERS
from detector.engine import replay
from detector.rules import load_rules
from sim.api import simulate

ACCEPTED = COUNTER_INDEX["accepted"]
TYPE_ACCEPTED = 0  # sim.traffic.TYPE_NAMES[0]


def window(accepted=0, delivered=0, bounced=0):
    c = [0] * N_COUNTERS
    c[ACCEPTED], c[COUNTER_INDEX["delivered"]], c[COUNTER_INDEX["bounced"]] = accepted, delivered, bounced
    return c


def test_coverage_is_learned_per_scope():
    with_sends, outcome_only, mixed = {}, {}, {}
    for _ in range(10):
        sends.observe(with_sends, window(accepted=100, delivered=97, bounced=3))
        sends.observe(outcome_only, window(delivered=97, bounced=3))
        sends.observe(mixed, window(accepted=50, delivered=97, bounced=3))
    assert sends.coverage(with_sends) == 1.0
    assert sends.coverage(outcome_only) == 0.0 and not sends.observed(outcome_only)
    assert sends.coverage(mixed) == pytest.approx(0.5)


def test_attempts_stand_in_for_the_share_without_send_events():
    counts = window(accepted=40, delivered=90, bounced=10)
    assert sends.sends(counts, 1.0) == 40          # send stream: its send events
    assert sends.sends(window(delivered=90, bounced=10), 0.0) == 100   # outcome-only: attempts
    assert sends.sends(counts, 0.5) == 40 + 50     # half the traffic posts no sends
    # the sending gate: a send stream's retry tail is closed, an outcome-only stream is never shut out
    assert not sends.sending(window(accepted=10, delivered=90, bounced=10), 1.0, 0.8)
    assert sends.sending(window(delivered=90, bounced=10), 0.0, 0.8)


def test_a_new_history_that_starts_posting_sends_is_relearned():
    st = {}
    for _ in range(5000):
        sends.observe(st, window(delivered=100))
    assert sends.coverage(st) == 0.0
    for _ in range(5000):
        sends.observe(st, window(accepted=100, delivered=100))
    assert sends.coverage(st) > 0.9


def outcome_only(scenario, seed=1):
    table, labels = simulate(scenario, seed=seed, scale=0.5)
    table = table.take(np.flatnonzero(table.type != TYPE_ACCEPTED))
    return list(table), labels


@pytest.mark.parametrize("scenario,rule", [("old-list", "hard_bounce_spike"), ("provider-block", "provider_block")])
def test_outcome_only_stream_pages_on_the_labelled_scope(scenario, rule):
    events, labels = outcome_only(scenario)
    assert not any(e["type"] == "accepted" for e in events)
    label = labels[0]
    firing = [a for a in replay(events, load_rules(_default())) if a["status"] == "firing" and a["rule"] == rule]
    assert firing, f"{rule} never fired on an outcome-only {scenario} stream"
    for a in firing:
        assert all(a["scope"].get(k, v) == v for k, v in label["scope"].items()), a["scope"]
        assert label["start"] <= a["detected_at"] <= label["start"] + 15 * 60


def test_outcome_only_clean_stream_pages_nothing():
    events, _ = outcome_only("clean")
    assert [a for a in replay(events, load_rules(_default())) if a["status"] == "firing"] == []


def _default():
    from detector.rules import default_rules_path
    return default_rules_path()


def test_wrong_segment_pages_once_per_scope_while_its_complaints_trickle_in():
    """Complaints keep arriving after the send's last delivery: no resolve-and-fire-again."""
    table, _ = simulate("wrong-segment", seed=1, scale=0.5)
    alerts = list(replay(list(table), load_rules(_default())))
    by_scope = {}
    for a in alerts:
        by_scope.setdefault(a["dedup_key"], []).append(a["status"])
    assert by_scope, "the wrong segment paged nothing"
    for key, statuses in by_scope.items():
        assert statuses in (["firing"], ["firing", "resolved"]), (key, statuses)


def test_numbered_first_attempts_stand_in_for_sends_and_close_the_retry_tail():
    fa = COUNTER_INDEX["first_attempts"]
    st = {}
    for _ in range(10):
        c = window(delivered=95, bounced=5)
        c[fa] = 98
        sends.observe(st, c)
    assert sends.coverage(st) == 0.0 and sends.numbered(st)
    steady = window(delivered=95, bounced=5)
    steady[fa] = 97
    tail = window(delivered=40, bounced=20)   # retries of an earlier bulk send ending
    tail[fa] = 5
    assert sends.sends(steady, 0.0, first=True) == 97
    assert sends.sending(steady, 0.0, 0.8, first=True)
    assert not sends.sending(tail, 0.0, 0.8, first=True)
    assert sends.sending(tail, 0.0, 0.8, first=False)   # without numbers the tail cannot be seen


def test_outcome_only_clean_days_with_bulk_sends_page_no_block():
    """The retry tails of bulk sends paged provider_block on outcome-only streams (23 false alarms in
    two 7-day runs) until first attempts (numbered by the ESP, or told by message_id from the
    deferrals the ESP posts) marked the sends."""
    table, _ = simulate("clean", seed=5, scale=0.5, duration=2 * 86400.0, profile="outcome-only")
    firing = [a for a in replay(list(table), load_rules(_default())) if a["status"] == "firing"]
    assert [a for a in firing if a["rule"] == "provider_block"] == [], [a["summary"] for a in firing]
