"""The message-by-message CUSUM path: batch marks, the chart walk, and the engine's use of it."""
from __future__ import annotations

import numpy as np
import pytest

from detector import detectors
from detector.counts import COUNTER_INDEX, EventBatch, aggregate, sequence_type_mask
from detector.cusum import BernoulliCusum, calibrate_h
from detector.engine import Engine, sequence_types
from detector.rules import load_rules_text

BLOCK = COUNTER_INDEX["bounced_block"]
HARD = COUNTER_INDEX["bounced_hard"]
T0 = 1_700_000_000.0

RULES = """
settings: {window: 300s, allowed_lateness: 600s}
rules:
  - name: block
    test: cusum
    metric: block_rate
    scope: [campaign, mailbox_provider]
    category: technical
    severity: critical
    shift: 10
    arl0: 1.0e+6
    baseline_floor: 0.01
    baseline_cap: 0.02
    min_volume: 50
    min_sends: 20
    warmup: {messages: 1000, windows: 3}
"""


def _chart(p0=0.01, p1=0.1, arl0=1e6):
    return {"p0": p0, "p1": p1, "h": calibrate_h(p0, p1, arl0), "s": 0.0, "run_x": 0, "run_n": 0}


def _seq(outcomes: np.ndarray, slots: np.ndarray):
    """outcomes: 0 = delivered, 1 = event of the slot; -> [n, pos, slot, time, ...] as ScopeDelta.seq holds it."""
    out = [len(outcomes)]
    for i in np.flatnonzero(outcomes):
        out += [int(i), int(slots[i]), T0 + float(i)]
    return out


def test_sequence_walk_alarms_at_the_same_message_as_a_per_message_chart():
    rule = load_rules_text(RULES).rules[0]
    roles = detectors.slot_roles("block_rate")
    rng = np.random.default_rng(7)
    stream = np.concatenate([rng.random(30_000) < 0.01, rng.random(3_000) < 0.06, rng.random(20_000) < 0.01,
                             rng.random(2_000) < 0.2])
    # Some non-events are other bounce classes: they are trials (in n) but not blocks.
    other = (~stream) & (rng.random(stream.size) < 0.01)
    slots = np.where(stream, BLOCK, HARD)
    ref = BernoulliCusum(0.01, 0.1, arl0=1e6)
    expected = []
    for i, x in enumerate(stream):
        if ref.update(int(x)):
            expected.append(i)
            ref.reset()
    assert len(expected) >= 2
    # Walk the same stream cut into uneven batches: the alarms must not depend on the cuts.
    chart = _chart()
    got = []
    cuts = np.unique(np.concatenate([[0, stream.size], rng.integers(1, stream.size, 40)]))
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        part = stream[lo:hi] | other[lo:hi]
        for at, run_x, run_n, s in detectors.cusum_sequence(rule, chart, _seq(part, slots[lo:hi]), roles, True):
            got.append(int(at - T0) + lo)
            assert s >= chart["h"] and 0 < run_x <= run_n
    assert got == expected
    assert chart["s"] == pytest.approx(ref.statistic)


def test_events_outside_the_denominator_weigh_like_counts():
    """unsubscribe_rate = unsubscribes / delivered: an unsubscribe adds a + b, as x*a - (n-x)*b does."""
    rule = load_rules_text(RULES).rules[0]
    roles = detectors.slot_roles("unsubscribe_rate")
    chart = _chart(0.001, 0.005)
    a = np.log(5)
    b = np.log1p(-0.001) - np.log1p(-0.005)
    seq = [4, 3, COUNTER_INDEX["unsubscribed"], T0]   # 3 deliveries, then an unsubscribe
    detectors.cusum_sequence(rule, chart, seq, roles, True)
    assert chart["s"] == pytest.approx(max(0.0, 0 - 3 * b) + a + b)
    # count form over the same 3 deliveries + 1 unsubscribe from zero: x*a - (n-x)*b with x=1, n=3
    chart2 = _chart(0.001, 0.005)
    detectors.cusum_sequence(rule, chart2, [1, 0, COUNTER_INDEX["unsubscribed"], T0], roles, True)
    assert chart2["s"] == pytest.approx(a + b)


def test_aggregate_marks_give_each_scope_its_own_arrival_order():
    events = []
    rng = np.random.default_rng(1)
    kinds = ["delivered", "bounced", "accepted", "opened"]
    for i in range(3000):
        kind = kinds[int(rng.integers(0, 4))]
        ev = {"timestamp": T0 + rng.uniform(0, 900), "type": kind,
              "campaign": f"c{int(rng.integers(0, 3))}", "mailbox_provider": ["gmail", "yahoo"][int(rng.integers(0, 2))]}
        if kind == "bounced":
            ev["bounce_class"] = ["hard", "block", "soft"][int(rng.integers(0, 3))]
        events.append(ev)
    fields = ("campaign", "mailbox_provider")
    mask = sequence_type_mask(["delivered", "bounced"])
    deltas = aggregate(EventBatch.from_events(events), [fields], 300.0, {fields: mask})
    for delta in deltas.values():
        for start, seq in delta.seq.items():
            n = seq[0]
            mine = [e for e in events if e["campaign"] == delta.scope["campaign"]
                    and e["mailbox_provider"] == delta.scope["mailbox_provider"]
                    and np.floor(e["timestamp"] / 300) * 300 == start and e["type"] in ("delivered", "bounced")]
            assert n == len(mine) == delta.windows[start][COUNTER_INDEX["delivered"]] + \
                delta.windows[start][COUNTER_INDEX["bounced"]]
            want = [v for i, e in enumerate(mine) if e["type"] == "bounced"
                    for v in (i, COUNTER_INDEX["bounced_" + e["bounce_class"]], e["timestamp"])]
            assert seq[1:] == want
    # scopes without a CUSUM rule carry no sequence
    assert not any(d.seq for d in aggregate(EventBatch.from_events(events), [fields], 300.0).values())
    assert set(sequence_types(load_rules_text(RULES))) == {fields}


def _traffic(start, minutes, per_min, block_rate, rng, campaign="c", sends=True, trials_per_min=None):
    evs = []
    for m in range(minutes):
        for k in range(per_min):
            t = start + 60 * m + 60 * k / per_min
            if sends:
                evs.append({"timestamp": t, "type": "accepted", "campaign": campaign, "mailbox_provider": "gmail"})
        for k in range(trials_per_min or per_min):
            t = start + 60 * m + 60 * (k + 0.5) / (trials_per_min or per_min)
            if rng.random() < block_rate:
                evs.append({"timestamp": t, "type": "bounced", "bounce_class": "block", "campaign": campaign,
                            "mailbox_provider": "gmail"})
            else:
                evs.append({"timestamp": t, "type": "delivered", "campaign": campaign, "mailbox_provider": "gmail"})
    return sorted(evs, key=lambda e: e["timestamp"])


def _run(events, batch=200):
    engine = Engine(load_rules_text(RULES))
    out = []
    for i in range(0, len(events), batch):
        out += engine.process(events[i:i + batch])
    return engine, out


def test_armed_chart_fires_mid_window_before_the_window_closes():
    rng = np.random.default_rng(2)
    clean = _traffic(T0, 60, 40, 0.002, rng)
    block = _traffic(T0 + 3600, 10, 40, 0.4, rng)
    _, alerts = _run(clean + block)
    fired = [a for a in alerts if a["status"] == "firing"]
    assert len(fired) == 1 and fired[0]["evidence"]["sequential"]
    a = fired[0]
    assert a["baseline"] == 0.01  # learned rate raised to the floor
    assert T0 + 3600 < a["detected_at"] < T0 + 3600 + 120  # about 2 minutes of 40 trials/min at 40% blocks
    assert a["detected_at"] < a["window"]["end"]
    assert a["observed"]["events"] >= 5


def test_provisional_chart_catches_an_incident_during_warm_up():
    """A new scope's first traffic is already bad: tested against baseline_cap before anything is learned."""
    rng = np.random.default_rng(3)
    _, alerts = _run(_traffic(T0, 10, 40, 0.3, rng))
    fired = [a for a in alerts if a["status"] == "firing"]
    assert len(fired) == 1
    assert fired[0]["baseline"] == 0.02 and fired[0]["detected_at"] < T0 + 120


def test_outcomes_trailing_a_finished_send_are_not_charted():
    """Retries ending in blocks after the send stopped: 30% blocks, but no accepted messages beside them."""
    rng = np.random.default_rng(4)
    clean = _traffic(T0, 60, 40, 0.002, rng)
    tail = _traffic(T0 + 3600, 20, 0, 0.3, rng, sends=False, trials_per_min=6)
    engine, alerts = _run(clean + tail)
    assert [a for a in alerts if a["status"] == "firing"] == []
    # the same outcomes while the scope is sending do page
    live = _traffic(T0 + 3600, 20, 6, 0.3, rng)
    _, alerts = _run(clean + live)
    assert [a["rule"] for a in alerts if a["status"] == "firing"] == ["block"]


BANK_RULES = RULES.replace("shift: 10", "shift: [3, 30]")


def test_a_bank_of_shifts_splits_the_false_alarm_budget_between_its_charts():
    rule = load_rules_text(BANK_RULES).rules[0]
    assert (rule.shift, rule.bank) == (3.0, (30.0,))
    main, more = detectors.bank(rule, 0.01, 1e6)
    assert [c["p1"] for c in [main, *more]] == [0.03, 0.3]
    for c in (main, *more):
        assert c["arl0"] == 1e6 and c["chart_arl0"] == 2e6   # the union of two charts keeps 1e6
        assert c["h"] == pytest.approx(calibrate_h(0.01, c["p1"], 2e6))
    # a shift whose p1 caps at 0.99 like the one before it adds no chart
    capped = load_rules_text(RULES.replace("shift: 10", "shift: [200, 400]")).rules[0]
    assert detectors.bank(capped, 0.01, 1e6)[1] == []


def test_a_bank_with_p1_is_rejected():
    with pytest.raises(Exception) as info:
        load_rules_text(BANK_RULES.replace("shift: [3, 30]", "shift: [3, 30]\n    p1: 0.1"))
    assert "exclude each other" in str(info.value)


def test_the_chart_nearest_the_incident_names_the_alarm_and_is_faster():
    """A 40% block rate on a 1% baseline: the 30x chart of the bank crosses first, sooner than
    the 3x chart alone would, although each chart of the bank is held to twice the ARL0."""
    def first_alarm(rules_text):
        rng = np.random.default_rng(2)
        events = _traffic(T0, 60, 40, 0.002, rng) + _traffic(T0 + 3600, 10, 40, 0.4, rng)
        engine = Engine(load_rules_text(rules_text))
        out = []
        for i in range(0, len(events), 200):
            out += engine.process(events[i:i + 200])
        return next(a for a in out if a["status"] == "firing")

    alone = first_alarm(RULES.replace("shift: 10", "shift: 3"))
    banked = first_alarm(BANK_RULES)
    assert banked["evidence"]["p1"] == pytest.approx(0.3) and banked["evidence"]["chart_arl0"] == 2e6
    assert banked["evidence"]["arl0"] == 1e6
    assert banked["detected_at"] < alone["detected_at"]
    assert banked["observed"]["events"] < alone["observed"]["events"]
