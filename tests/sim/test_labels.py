"""Ground-truth labels agree with the traffic they describe (seeded, statistical tolerances).

Tolerances are binomial/Poisson z-scores of 4.5: with the seeds fixed the tests are
deterministic, and the margin still catches a label that is wrong by a real amount
(e.g. an incident rate of 8% where the traffic has 4%).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from sim import SCENARIOS
from tests.sim.helpers import HOUR, START, messages, observed_rate, run, z_score

Z = 4.5
LABEL_KEYS = {"scenario", "incident", "kind", "start", "end", "scope", "rule_hint", "metric", "baseline_rate",
              "incident_rate"}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_label_shape(scenario):
    events, labels = run(scenario)
    if scenario == "clean":
        assert labels == []
        return
    assert labels
    for label in labels:
        assert LABEL_KEYS <= set(label)
        assert label["scenario"] == scenario
        assert START <= label["start"] < label["end"] <= START + 6 * HOUR
        assert label["kind"] in ("step", "ramp", "silence", "surge", "outage")
        assert label["scope"] and all(isinstance(v, str) for v in label["scope"].values())
        assert label["baseline_rate"] is not None and label["incident_rate"] is not None
        if label["kind"] in ("silence", "outage"):
            assert label["incident_rate"] == 0 < label["baseline_rate"]
        else:
            assert label["incident_rate"] > 3 * label["baseline_rate"]


def _check_rate(scenario: str, label: dict, msgs, *, lag_fraction: float = 1.0) -> None:
    x, n = observed_rate(msgs, label["metric"], label["scope"], label["start"], label["end"])
    assert n > 500, (scenario, n)
    expected = label["incident_rate"] * lag_fraction
    assert abs(z_score(x, n, expected)) < Z, (scenario, x, n, x / n, expected)
    # Before the incident, the same scope runs at its baseline.
    bx, bn = observed_rate(msgs, label["metric"], label["scope"], START, label["start"])
    if bn > 2000:
        assert abs(z_score(bx, bn, label["baseline_rate"])) < Z, (scenario, bx, bn, label["baseline_rate"])
        assert bx / bn < label["incident_rate"] / 3


def test_old_list_hard_bounces_inside_only():
    events, (label,) = run("old-list")
    assert label["metric"] == "hard_bounce_rate" and label["incident_rate"] == pytest.approx(0.08, rel=0.02)
    msgs = messages(events)
    _check_rate("old-list", label, msgs)
    # The same campaign's earlier clean send is at baseline, not at the incident rate.
    ox, on = observed_rate(msgs, "hard_bounce_rate", label["scope"], START, label["start"])
    assert on > 2000 and ox / on < 0.02
    # Other campaigns during the incident stay near the benchmark.
    others = [m for m in msgs.values() if m.campaign != label["scope"]["campaign"]
              and label["start"] <= m.accepted < label["end"] and m.final in ("delivered", "bounced")]
    hard = sum(m.final == "bounced" and m.bounce_class == "hard" for m in others)
    assert hard / len(others) < 0.015


def test_provider_block_scope_and_interval():
    events, (label,) = run("provider-block")
    assert label["scope"] == {"sending_domain": "news.northwind-outdoor.com", "mailbox_provider": "gmail"}
    msgs = messages(events)
    _check_rate("provider-block", label, msgs)
    # The same domain at other providers is not blocked...
    scope = dict(label["scope"], mailbox_provider="microsoft")
    x, n = observed_rate(msgs, "block_rate", scope, label["start"], label["end"])
    assert n > 500 and x / n < 0.02
    # ...and after the block lifts, gmail accepts the domain again.
    ax, an = observed_rate(msgs, "block_rate", label["scope"], label["end"], START + 6 * HOUR)
    assert an > 200 and ax / an < 0.02
    # The block shows in the deferral stream with Gmail's rate-limit reply.
    throttled = [ev for ev in events if ev["type"] == "deferred" and "4.7.28" in ev["reason"]
                 and label["start"] <= ev["timestamp"] < label["end"] + HOUR]
    assert len(throttled) > 100


def test_wrong_segment_complaints():
    events, (label,) = run("wrong-segment", duration=8 * HOUR)
    assert label["metric"] == "complaint_rate" and label["signal_lag_s"] == HOUR
    msgs = messages(events)
    # Complaints lag delivery by a lognormal delay (median 1 h); the send is ~5 h before the
    # end of the period, so ~97% of them are inside it.
    _check_rate("wrong-segment", label, msgs, lag_fraction=0.97)
    complaint_times = [t - msgs[mid].final_ts for mid in msgs for t, typ in zip(msgs[mid].times, msgs[mid].types)
                       if typ == "complained"]
    assert 0.5 * HOUR < float(np.median(complaint_times)) < 2 * HOUR


def test_silent_stop_has_no_new_messages_inside_the_interval():
    events, (label,) = run("silent-stop")
    camp = label["scope"]["campaign"]
    msgs = messages(events)
    inside = [m for m in msgs.values() if m.campaign == camp and label["start"] <= m.accepted < label["end"]]
    assert inside == []
    # Events that still carry the campaign's name inside the interval are the tail of mail
    # accepted before it stopped (deliveries, retries, opens, complaints).
    tail = [(t, m) for m in msgs.values() if m.campaign == camp for t in m.times if t >= label["start"]]
    assert tail and all(m.accepted < label["start"] for _, m in tail)
    # The labelled baseline is what the flow sends in that interval without the incident:
    # the clean run with the same seed (same campaigns, same rates) agrees within Poisson noise.
    clean_events, _ = run("clean")
    clean = sum(1 for m in messages(clean_events).values()
                if m.campaign == camp and label["start"] <= m.accepted < label["end"])
    expected = label["baseline_rate"] * (label["end"] - label["start"]) / HOUR
    assert abs(clean - expected) < Z * math.sqrt(expected), (clean, expected)


def test_runaway_volume():
    events, (label,) = run("runaway")
    camp = label["scope"]["campaign"]
    msgs = messages(events)
    hours = (label["end"] - label["start"]) / HOUR
    inside = sum(1 for m in msgs.values() if m.campaign == camp and label["start"] <= m.accepted < label["end"])
    expected = label["incident_rate"] * hours
    assert label["incident_rate"] == pytest.approx(10 * label["baseline_rate"])
    assert abs(inside - expected) < Z * math.sqrt(expected), (inside, expected)
    after = sum(1 for m in msgs.values() if m.campaign == camp and label["end"] <= m.accepted < label["end"] + HOUR)
    assert after < 0.3 * label["incident_rate"]


def test_reputation_decay_ramps():
    events, (label,) = run("reputation-decay", scale=0.8)
    assert label["kind"] == "ramp" and label["incident_rate"] == pytest.approx(0.15, rel=0.05)
    msgs = messages(events)
    start, end = label["start"], label["end"]
    base, target = label["baseline_rate"], label["incident_rate"]
    quarter = (end - start) / 4
    rates = []
    for q in range(4):
        lo, hi = start + q * quarter, start + (q + 1) * quarter
        x, n = observed_rate(msgs, "block_rate", label["scope"], lo, hi)
        assert n > 200
        # Linear ramp from the baseline to the final rate: each attempt's expected rate
        # depends on when it was accepted (bulk sends bunch up inside a quarter).
        fracs = [(m.accepted - start) / (end - start) for m in msgs.values()
                 if lo <= m.accepted < hi and m.final in ("delivered", "bounced")
                 and m.sending_domain == label["scope"]["sending_domain"] and m.mailbox_provider == "microsoft"]
        expected = float(np.mean([base + (target - base) * f for f in fracs]))
        assert abs(z_score(x, n, expected)) < Z, (q, x, n, expected)
        rates.append(x / n)
    assert rates[-1] > 3 * rates[0]
    x, n = observed_rate(msgs, "block_rate", label["scope"], start, end)
    assert abs(z_score(x, n, label["mean_incident_rate"])) < Z


def test_demo_incidents_each_match_their_traffic():
    events, labels = run("demo", duration=3 * HOUR, scale=0.4)
    assert {lab["incident"] for lab in labels} == {"provider-block", "runaway", "old-list", "silent-stop",
                                                  "wrong-segment"}
    msgs = messages(events)
    for label in labels:
        assert label["end"] <= START + 3 * HOUR * 0.9       # every incident resolves before the end
        if label["metric"] in ("hard_bounce_rate", "block_rate"):
            _check_rate("demo", label, msgs)
        elif label["kind"] == "silence":
            camp = label["scope"]["campaign"]
            assert not any(m.campaign == camp and label["start"] <= m.accepted < label["end"] for m in msgs.values())
            resumed = sum(1 for m in msgs.values() if m.campaign == camp and m.accepted >= label["end"])
            assert resumed > 0


def test_clean_traffic_rates_near_benchmarks():
    events, _ = run("clean")
    msgs = messages(events)
    attempts = [m for m in msgs.values() if m.final in ("delivered", "bounced")]
    hard = sum(m.bounce_class == "hard" for m in attempts) / len(attempts)
    block = sum(m.bounce_class == "block" for m in attempts) / len(attempts)
    delivered = [m for m in attempts if m.final == "delivered"]
    complaints = sum("complained" in m.types for m in delivered) / len(delivered)
    deferred = sum("deferred" in m.types for m in msgs.values()) / len(msgs)
    assert 0.002 < hard < 0.008
    assert 0.0005 < block < 0.005
    assert 0.00005 < complaints < 0.001
    assert 0.01 < deferred < 0.05
