"""The simulated stream: valid canonical events, realistic structure, reproducible."""
from __future__ import annotations

import hashlib
import hmac
import io
import json
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from detector.event import EVENT_TYPES, dumps, validate_event
from sim import DEMO_HASH_KEY, simulate, sort_by_timestamp, write_jsonl
from sim.catalog import DOMAINS
from sim.table import recipient_hash, synthetic_address
from tests.sim.helpers import HOUR, START, messages, run

SCENARIOS = ["clean", "provider-block", "old-list", "wrong-segment", "silent-stop", "runaway",
             "reputation-decay", "webhook-outage", "demo"]


def _jsonl(events) -> str:
    buf = io.StringIO()
    write_jsonl(events, buf)
    return buf.getvalue()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_event_validates_and_jsonl_is_canonical(scenario):
    events, _ = run(scenario)
    lines = _jsonl(events).splitlines()
    assert len(lines) == len(events) > 10_000
    for line, ev in zip(lines, events):
        clean = validate_event(ev)
        assert clean == ev                      # nothing to fill in or coerce
        assert dumps(clean) == line             # the fast writer emits exactly detector.event.dumps
    assert set(events.column("type")) <= set(EVENT_TYPES)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_address_anywhere(scenario):
    events, labels = run(scenario)
    assert "@" not in _jsonl(events)
    assert "@" not in json.dumps(labels)


def test_same_seed_same_bytes_other_seed_other_bytes():
    a, la = simulate("demo", seed=11, start=START, duration=2 * HOUR, scale=0.05)
    b, lb = simulate("demo", seed=11, start=START, duration=2 * HOUR, scale=0.05)
    c, _ = simulate("demo", seed=12, start=START, duration=2 * HOUR, scale=0.05)
    assert _jsonl(a) == _jsonl(b)
    assert la == lb
    assert _jsonl(a) != _jsonl(c)


def test_write_jsonl_of_dicts_matches_fast_path(tmp_path):
    events, _ = simulate("old-list", seed=3, start=START, duration=2 * HOUR, scale=0.03)
    write_jsonl(events, tmp_path / "fast.jsonl")
    write_jsonl(list(events), tmp_path / "dicts.jsonl")
    assert (tmp_path / "fast.jsonl").read_bytes() == (tmp_path / "dicts.jsonl").read_bytes()


def test_duplicates_share_event_id_and_payload():
    events, _ = run("clean")
    by_id: dict[str, list[dict]] = {}
    for ev in events:
        by_id.setdefault(ev["event_id"], []).append(ev)
    dups = {k: v for k, v in by_id.items() if len(v) > 1}
    # ~0.2% of events are delivered twice; never three times.
    assert 0.001 * len(events) < len(dups) < 0.004 * len(events)
    assert all(len(v) == 2 and v[0] == v[1] for v in dups.values())


def test_arrival_order_with_late_deliveries():
    events, _ = run("clean")
    arrival, ts = events.arrival, events.ts
    assert np.all(np.diff(arrival) >= 0)               # emitted in arrival order
    assert np.all(arrival >= ts)                        # nothing arrives before it happened
    delay = arrival - ts
    late = delay > 5 * 60
    assert 0.002 < late.mean() < 0.008                  # ~0.4% retried webhooks arrive minutes later
    # ... so the stream is out of timestamp order, and by a lot at those rows.
    timestamps = [ev["timestamp"] for ev in events]
    assert sum(b < a - 60 for a, b in zip(timestamps, timestamps[1:])) > 0
    ordered = list(sort_by_timestamp(events))
    assert [e["timestamp"] for e in ordered] == sorted(timestamps)
    assert sorted(e["event_id"] for e in ordered) == sorted(e["event_id"] for e in events)
    as_list = sort_by_timestamp(list(events))
    assert [e["timestamp"] for e in as_list] == sorted(timestamps)


def test_message_lifecycle_is_consistent():
    events, _ = run("demo", duration=3 * HOUR)
    msgs = messages(events)
    end = START + 3 * HOUR
    finals = Counter()
    for msg in msgs.values():
        counts = Counter(msg.types)
        assert counts["accepted"] == 1, msg
        assert counts["delivered"] + counts["bounced"] + counts["dropped"] <= 1, msg
        assert min(msg.times) == msg.accepted
        finals[msg.final] += 1
        if msg.final is None:                    # still retrying when the period ended
            assert msg.accepted > end - 2 * HOUR
            assert set(counts) <= {"accepted", "deferred"}
        engaged = counts["opened"] + counts["clicked"] + counts["complained"] + counts["unsubscribed"]
        if engaged:
            assert msg.final == "delivered"
            for t, typ in zip(msg.times, msg.types):
                if typ in ("opened", "clicked", "complained", "unsubscribed"):
                    assert t >= msg.final_ts
        if counts["clicked"]:
            assert counts["opened"] == 1
        if msg.final == "bounced":
            assert msg.bounce_class in ("hard", "soft", "block")
        if counts["deferred"]:
            assert msg.final in (None, "delivered", "bounced")
    assert finals["delivered"] > 0.9 * len(msgs)     # the demo blocks and bounces a lot on purpose


def test_smtp_codes_and_reasons_are_provider_specific():
    events, _ = run("provider-block")
    by_key = Counter()
    for ev in events:
        if ev["type"] == "bounced":
            assert 400 <= ev["smtp_code"] <= 599 and ev["reason"]
            assert ev["reason"].startswith(str(ev["smtp_code"]))
            by_key[(ev["mailbox_provider"], ev["bounce_class"], ev["reason"][:10])] += 1
        elif ev["type"] == "deferred":
            assert 400 <= ev["smtp_code"] <= 499 and ev["reason"]
        elif ev["type"] == "delivered":
            assert ev["smtp_code"] == 250 and ev["reason"] is None
        elif ev["type"] == "dropped":
            assert ev["smtp_code"] is None and ev["reason"]
        else:
            assert ev["smtp_code"] is None and ev["reason"] is None and ev["bounce_class"] is None
    assert by_key[("gmail", "hard", "550-5.1.1 ")] > 0
    assert by_key[("gmail", "block", "421-4.7.28")] > 0
    assert by_key[("gmail", "block", "550-5.7.1 ")] > 0
    assert any(k[0] == "microsoft" and k[1] == "hard" for k in by_key)
    assert any(k[0] == "yahoo" and k[1] == "soft" for k in by_key)


def test_complaints_only_from_feedback_loop_providers():
    events, _ = run("wrong-segment")
    complainers = Counter(ev["mailbox_provider"] for ev in events if ev["type"] == "complained")
    assert sum(complainers.values()) > 15
    assert complainers["gmail"] == 0 and complainers["apple"] == 0
    assert complainers["yahoo"] > 0 and complainers["microsoft"] > 0


def test_recipient_hash_is_hmac_of_a_synthetic_address():
    events, _ = simulate("clean", seed=5, start=START, duration=HOUR, scale=0.02)
    rid, dom = int(events.m_rid[0]), DOMAINS.names[events.m_dom[0]]
    expected = hmac.new(DEMO_HASH_KEY, synthetic_address(rid, dom).encode(), hashlib.sha256).hexdigest()
    assert events.message_hashes()[0] == expected == recipient_hash(synthetic_address(rid, dom))
    first = next(ev for ev in events if ev["message_id"] == events.message_id(0))
    assert first["recipient_hash"] == expected and first["recipient_domain"] == dom


def test_mailbox_provider_mix():
    events, _ = run("clean")
    accepted = events.column("mailbox_provider")[events.column("type") == "accepted"]
    share = {k: v / len(accepted) for k, v in Counter(accepted).items()}
    assert share["gmail"] == pytest.approx(0.45, abs=0.03)
    assert share["microsoft"] == pytest.approx(0.20, abs=0.03)
    assert share["yahoo"] == pytest.approx(0.12, abs=0.02)
    assert share["apple"] == pytest.approx(0.10, abs=0.02)
    assert share["other"] > 0.03                      # corporate domains


def test_campaign_rates_are_overdispersed():
    """Hard-bounce rates differ between campaigns by more than binomial noise."""
    events, _ = run("clean", duration=12 * HOUR, scale=0.5)
    msgs = messages(events)
    table: dict[str, list[int]] = {}
    for msg in msgs.values():
        if msg.final in ("delivered", "bounced"):
            row = table.setdefault(msg.campaign, [0, 0])
            row[0 if (msg.final == "bounced" and msg.bounce_class == "hard") else 1] += 1
    counts = np.array([r for r in table.values() if sum(r) > 2000])
    assert len(counts) >= 8
    _, p_value, _, _ = stats.chi2_contingency(counts)
    assert p_value < 1e-3
    rates = counts[:, 0] / counts.sum(axis=1)
    assert 0.001 < np.median(rates) < 0.01           # around the 0.4% benchmark


def test_steady_volume_follows_the_time_of_day():
    events, _ = simulate("clean", seed=2, start=START, duration=24 * HOUR, scale=0.05)
    camp = events.column("campaign")
    accepted = (events.column("type") == "accepted") & (camp == "order-confirmation")
    hours = ((events.ts[accepted] - START) // HOUR).astype(int)
    per_hour = np.bincount(hours, minlength=24)
    assert per_hour.max() > 2.5 * per_hour.min()
    utc_hour = (8 + np.arange(24)) % 24
    assert 15 <= utc_hour[per_hour.argmax()] <= 22     # afternoon in the US
    assert utc_hour[per_hour.argmin()] in range(3, 12)


def test_bulk_sends_are_bursts():
    events, _ = run("clean")
    camp = events.column("campaign")
    accepted = events.column("type") == "accepted"
    bulk = {c for c in set(camp) if c.count("-2024") == 1}
    assert bulk
    for name in bulk:
        times = events.ts[accepted & (camp == name)]
        assert len(times) > 1000
        assert times.max() - times.min() < 2 * HOUR     # handed out in one burst


def test_clean_million_events_is_reachable_quickly():
    """scale 2 over 6 h is the "1M clean events" replay file; check the size only."""
    events, labels = simulate("clean", seed=1, start=START, duration=6 * HOUR, scale=2.0)
    assert labels == []
    assert 800_000 < len(events) < 1_400_000


def test_a_webhook_outage_holds_back_only_its_esp_and_only_the_arrivals():
    import numpy as np
    table, (label,) = simulate("webhook-outage", seed=3, start=START, duration=6 * HOUR, scale=0.2)
    clean, _ = simulate("clean", seed=3, start=START, duration=6 * HOUR, scale=0.2)
    esp = np.asarray(table.camp_esp, dtype=object)[table.m_camp[table.msg]]
    mine = esp == label["scope"]["provider"]
    during = (table.arrival >= label["start"]) & (table.arrival < label["end"])
    assert not (mine & during).any() and (~mine & during).sum() > 1000
    held = mine & (table.ts >= label["start"]) & (table.ts < label["end"] - 600)
    assert held.sum() > 200 and (table.arrival[held] >= label["end"]).all()
    # the mail is the same: every event of the clean run, at the same event time
    assert sorted(table.ts.tolist()) == sorted(clean.ts.tolist())
    assert list(table.arrival) == sorted(table.arrival)
