"""Complaint rates count only mail to providers with a per-message feedback loop."""
from __future__ import annotations

import numpy as np
import pytest

from detector.counts import COUNTER_INDEX, EventBatch, aggregate
from detector.coverage import Coverage, feedback_gaps
from detector.engine import Engine, replay
from detector.feedback_loops import FEEDBACK_LOOPS
from detector.rates import METRICS
from detector.rules import RuleError, load_rules_text

T0 = 1_700_000_000.0

POLICY = """
settings: {window: 300s}
rules:
  - name: spam_line
    test: policy
    metric: complaint_rate
    scope: [campaign]
    category: compliance
    severity: critical
    rate: 0.003
    alpha: 0.05
    span: 1h
    min_volume: 1000
"""


def _events(n_per_provider: int, complaint_rate: dict[str, float], seed: int = 1):
    """One campaign's deliveries to each provider, with complaints at the given rate per delivery."""
    rng = np.random.default_rng(seed)
    out = []
    for provider, domain in (("gmail", "gmail.com"), ("yahoo", "yahoo.com"), ("other", "corp.example")):
        for i in range(n_per_provider):
            ts = T0 + 3000 * rng.random()
            base = {"provider": "sendgrid", "campaign": "promo", "sending_domain": "news.example.com",
                    "recipient_domain": domain, "mailbox_provider": provider, "message_id": f"{provider}{i}"}
            out.append({**base, "type": "delivered", "timestamp": ts})
            if rng.random() < complaint_rate.get(provider, 0.0):
                out.append({**base, "type": "complained", "timestamp": ts + 60})
    out.sort(key=lambda e: e["timestamp"])
    return out


def _campaign_counts(events, loops=FEEDBACK_LOOPS):
    deltas = aggregate(EventBatch.from_events(events), [("campaign",)], 3600.0, feedback_loops=loops)
    return np.sum([c for c in deltas["campaign=promo"].windows.values()], axis=0)


def test_only_feedback_loop_providers_count_in_the_complaint_rate():
    # "other" posting complaints is what an unlisted provider with its own loop looks like
    events = _events(2000, {"yahoo": 0.01, "other": 0.01})
    counts = _campaign_counts(events)
    yahoo = [e for e in events if e["mailbox_provider"] == "yahoo"]
    assert counts[COUNTER_INDEX["delivered_fbl"]] == sum(e["type"] == "delivered" for e in yahoo) == 2000
    assert counts[COUNTER_INDEX["complained_fbl"]] == sum(e["type"] == "complained" for e in yahoo) > 0
    assert counts[COUNTER_INDEX["delivered"]] == 6000
    x, n = METRICS["complaint_rate"].pair(counts)
    assert (x, n) == (counts[COUNTER_INDEX["complained_fbl"]], 2000)
    x_all, n_all = METRICS["complaint_rate_all"].pair(counts)
    assert n_all == 6000 and x_all > x          # the unlisted provider's complaints are in the raw rate only


def test_a_rule_file_replaces_the_table():
    rs = load_rules_text(POLICY + "feedback_loops: [gmail, Other]\n")
    assert rs.feedback_loops == frozenset({"gmail", "other"})
    counts = _campaign_counts(_events(500, {"other": 0.02}), rs.feedback_loops)
    assert counts[COUNTER_INDEX["delivered_fbl"]] == 1000   # gmail + other, not yahoo
    assert load_rules_text(POLICY).feedback_loops == FEEDBACK_LOOPS


def test_a_bad_table_is_rejected_with_its_position():
    with pytest.raises(RuleError) as info:
        load_rules_text(POLICY + "feedback_loops: {yahoo: true}\n", path="r.yaml")
    assert info.value.errors[0].startswith("r.yaml:14:17: feedback_loops must be a list")


def test_a_cusum_cannot_chart_a_metric_whose_terms_are_not_event_types():
    text = ("rules:\n  - {name: c, test: cusum, metric: complaint_rate, scope: [campaign], category: complaints,\n"
            "     severity: critical, shift: 3, baseline_cap: 0.01}\n")
    with pytest.raises(RuleError) as info:
        load_rules_text(text, path="r.yaml")
    assert "charts message by message" in str(info.value) and "complaint_rate" in str(info.value)


def test_a_line_crossed_at_the_providers_that_report_pages():
    """0.6% of Yahoo's deliveries complain; Gmail and corporate mail report none. Over all
    deliveries that reads 0.2%, under the 0.3% line; over the mail that can complain it is 0.6%."""
    events = _events(4000, {"yahoo": 0.006})
    pages = [a for a in replay(events, load_rules_text(POLICY)) if a["status"] == "firing"]
    assert [a["rule"] for a in pages] == ["spam_line"]
    all_deliveries = load_rules_text(POLICY.replace("metric: complaint_rate", "metric: complaint_rate_all"))
    assert [a for a in replay(events, all_deliveries) if a["status"] == "firing"] == []


def test_doctor_numbers_say_what_the_complaint_rate_cannot_see():
    cov = Coverage()
    cov.update(EventBatch.from_events(_events(1000, {"yahoo": 0.01, "other": 0.02})))
    (gap,) = feedback_gaps(cov, FEEDBACK_LOOPS)
    assert gap.esp == "sendgrid" and gap.unseen_share == pytest.approx(2 / 3)
    assert set(gap.unseen) == {"gmail", "other"}
    assert [p for p, _ in gap.unlisted] == ["other"]


def test_window_counts_stored_by_an_older_version_are_padded():
    engine = Engine(load_rules_text(POLICY))
    events = _events(300, {"yahoo": 0.01})
    deltas = aggregate(EventBatch.from_events(events), engine.scope_defs, engine.window)
    delta = deltas["campaign=promo"]
    start, counts = next(iter(delta.windows.items()))
    short = counts[:-2]                       # the two feedback-loop counters did not exist
    engine.apply_delta(type(delta)(delta.scope_id, delta.scope, {start: short}, {}))
    engine.apply_delta(delta)
    stored = engine.states["campaign=promo"]["windows"]
    assert next(iter(stored.values()))[-2:] == counts[-2:]
