"""First-attempt refusals (refusal_rate): one trial per message, judged at its first attempt."""
from __future__ import annotations

import numpy as np
import pytest

from detector import detectors
from detector.counts import COUNTER_INDEX, FIRST_ATTEMPT_BASIS, EventBatch, aggregate
from detector.cusum import BernoulliCusum, calibrate_h
from detector.engine import Engine, sequence_types
from detector.retries import RetryMemory
from detector.rules import RuleError, load_rules_text

T0 = 1_700_000_000.0
TRIALS, REFUSED = COUNTER_INDEX["attempt_trials"], COUNTER_INDEX["refused"]
TSS04 = "421 4.7.0 [TSS04] Messages from 203.0.113.9 temporarily deferred due to user complaints"
GREYLIST = "451 4.7.1 Greylisting in action, please come back later"

RULES = """
settings: {window: 300s, allowed_lateness: 600s}
rules:
  - name: refusals
    test: cusum
    metric: refusal_rate
    scope: [sending_domain, mailbox_provider]
    category: technical
    severity: critical
    shift: 10
    arl0: 1.0e+6
    baseline_floor: 0.01
    baseline_cap: 0.05
    min_volume: 50
    warmup: {messages: 1000, windows: 3}
"""


def _ev(t, kind, mid=None, provider="yahoo", **kw):
    ev = {"timestamp": t, "type": kind, "sending_domain": "news.example.com", "mailbox_provider": provider,
          "campaign": "c"}
    if mid is not None:
        ev["message_id"] = mid
    ev.update(kw)
    return ev


def _counts(events, retries=None):
    batch = EventBatch.from_events(events, retries=retries)
    rows = lambda a: [] if a is None else a.tolist()  # noqa: E731
    return rows(batch.attempt_trials), rows(batch.refused)


def test_each_message_is_one_trial_refused_only_by_its_first_attempt():
    events = [
        _ev(T0, "deferred", "m1", smtp_code=421, reason=TSS04),          # 0 refused first attempt
        _ev(T0 + 60, "deferred", "m1", smtp_code=421, reason=TSS04),     # 1 retry: same trial
        _ev(T0 + 600, "delivered", "m1"),                                # 2 its outcome: same trial
        _ev(T0 + 1, "deferred", "m2", smtp_code=451, reason=GREYLIST),    # 3 routine first attempt
        _ev(T0 + 900, "bounced", "m2", bounce_class="block"),            # 4 blocked after retries: same trial
        _ev(T0 + 2, "bounced", "m3", bounce_class="block"),              # 5 refused at once
        _ev(T0 + 3, "delivered", "m4"),                                  # 6 accepted at once
        _ev(T0 + 4, "bounced", None, bounce_class="block"),              # 7 no message_id: its own trial
        _ev(T0 + 5, "delivered", None, attempt=3),                       # 8 numbered retry: not a trial
        _ev(T0 + 6, "accepted", "m5"),                                   # 9 not an attempt
    ]
    trials, refused = _counts(events, RetryMemory())
    assert trials == [0, 3, 5, 6, 7]
    assert refused == [0, 5, 7]


def test_without_a_retry_memory_every_unnumbered_outcome_is_a_trial():
    events = [_ev(T0, "deferred", "m1", smtp_code=421, reason=TSS04), _ev(T0 + 600, "delivered", "m1"),
              _ev(T0 + 1, "bounced", "m2", bounce_class="block")]
    trials, refused = _counts(events)
    assert trials == [1, 2] and refused == [2]


def test_a_bounce_with_a_transient_reply_ends_retries_and_is_no_trial_of_its_window():
    """An ESP that posts no deferrals (Postmark) shows a throttled message only as its final
    bounce, hours after the send, with the 4xx reply it gave up on: that is no first attempt."""
    gave_up = "421-4.7.28 [198.51.100.22] Gmail has detected an unusual rate of unsolicited mail"
    events = [_ev(T0, "bounced", "m1", provider="gmail", bounce_class="block", smtp_code=421, reason=gave_up),
              _ev(T0 + 1, "bounced", None, provider="gmail", bounce_class="block", smtp_code=421, reason=gave_up),
              _ev(T0 + 2, "bounced", "m3", provider="gmail", bounce_class="block", smtp_code=550),
              _ev(T0 + 3, "bounced", None, provider="gmail", bounce_class="block", smtp_code=550),
              _ev(T0 + 4, "bounced", "m5", provider="gmail", bounce_class="block", smtp_code=421, attempt=1)]
    for retries in (RetryMemory(), None):
        trials, refused = _counts(events, retries)
        assert trials == [2, 3, 4] and refused == [2, 3, 4]  # a numbered first attempt is believed
    batch = EventBatch.from_events(events, retries=RetryMemory())
    assert batch.first_attempts.tolist() == [2, 4]


def test_aggregate_sequences_first_attempts_in_arrival_order():
    rng = np.random.default_rng(5)
    events, truth = [], []
    for i in range(2000):
        t = T0 + i * 0.3
        r = rng.random()
        if r < 0.1:
            events.append(_ev(t, "deferred", f"m{i}", smtp_code=421, reason=TSS04))
            events.append(_ev(t + 0.1, "deferred", f"m{i}", smtp_code=421, reason=TSS04))  # its retry
            truth.append(True)
        elif r < 0.15:
            events.append(_ev(t, "bounced", f"m{i}", bounce_class="block"))
            truth.append(True)
        else:
            events.append(_ev(t, "delivered", f"m{i}"))
            truth.append(False)
    fields = ("sending_domain", "mailbox_provider")
    batch = EventBatch.from_events(events, retries=RetryMemory())
    deltas = aggregate(batch, [fields], 300.0, {fields: FIRST_ATTEMPT_BASIS})
    (delta,) = deltas.values()
    walked = []
    for start in sorted(delta.seq):
        seq = delta.seq[start]
        n = seq[0]
        assert n == delta.windows[start][TRIALS]
        marks = {seq[i]: seq[i + 1] for i in range(1, len(seq), 3)}
        assert set(marks.values()) == {REFUSED}
        walked += [k in marks for k in range(n)]
    assert walked == truth
    assert sum(delta.windows[s][REFUSED] for s in delta.windows) == sum(truth)


def test_the_chart_walk_matches_a_per_message_chart_over_first_attempts():
    rule = load_rules_text(RULES).rules[0]
    roles = detectors.slot_roles("refusal_rate")
    assert roles[0][REFUSED] and roles[1][REFUSED] and not roles[0][TRIALS]
    rng = np.random.default_rng(9)
    stream = np.concatenate([rng.random(20_000) < 0.01, rng.random(500) < 0.3, rng.random(10_000) < 0.01])
    ref = BernoulliCusum(0.01, 0.1, arl0=1e6)
    expected = []
    for i, x in enumerate(stream):
        if ref.update(int(x)):
            expected.append(i)
            ref.reset()
    assert expected
    chart = {"p0": 0.01, "p1": 0.1, "h": calibrate_h(0.01, 0.1, 1e6), "s": 0.0, "run_x": 0, "run_n": 0}
    got = []
    cuts = np.unique(np.concatenate([[0, stream.size], rng.integers(1, stream.size, 30)]))
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        seq = [int(hi - lo)]
        for i in np.flatnonzero(stream[lo:hi]):
            seq += [int(i), REFUSED, T0 + float(lo + i)]
        got += [int(at - T0) for at, *_ in detectors.cusum_sequence(rule, chart, seq, roles, True)]
    assert got == expected


def _stream(start, minutes, per_min, refuse, block_after, rng, first_id=0):
    """Yahoo traffic: each message's first attempt, a share of them deferred with TSS04 whose
    block bounce comes ``block_after`` seconds later (after the retries)."""
    evs, mid = [], first_id
    for m in range(minutes):
        for k in range(per_min):
            t = start + 60 * m + 60 * k / per_min
            evs.append(_ev(t, "accepted", f"m{mid}"))
            if rng.random() < refuse:
                evs.append(_ev(t + 1, "deferred", f"m{mid}", smtp_code=421, reason=TSS04))
                evs.append(_ev(t + block_after, "bounced", f"m{mid}", bounce_class="block", smtp_code=421,
                               reason=TSS04))
            else:
                evs.append(_ev(t + 1, "delivered", f"m{mid}"))
            mid += 1
    return evs, mid


def test_a_block_pages_at_the_first_attempts_not_when_the_retries_end():
    rng = np.random.default_rng(3)
    clean, mid = _stream(T0, 60, 40, 0.002, 1800, rng)
    block, _ = _stream(T0 + 3600, 40, 40, 0.5, 1800, rng, mid)
    events = sorted(clean + block, key=lambda e: e["timestamp"])
    engine = Engine(load_rules_text(RULES))
    alerts = []
    for i in range(0, len(events), 200):
        alerts += engine.process(events[i:i + 200])
    fired = [a for a in alerts if a["status"] == "firing"]
    assert len(fired) == 1 and fired[0]["rule"] == "refusals"
    # 40 first attempts a minute, half of them refused: a few minutes, while every block bounce
    # of the incident is still 30 minutes away
    assert T0 + 3600 < fired[0]["detected_at"] < T0 + 3600 + 180
    assert fired[0]["metric"] == "refusal_rate"


def test_sequence_basis_is_first_attempts_for_a_refusal_chart():
    assert sequence_types(load_rules_text(RULES)) == {("sending_domain", "mailbox_provider"): FIRST_ATTEMPT_BASIS}


def test_mixing_trial_bases_on_one_scope_is_rejected_with_its_line():
    text = RULES + """
  - name: blocks
    test: cusum
    metric: block_rate
    scope: [sending_domain, mailbox_provider]
    category: technical
    severity: critical
    shift: 10
    arl0: 1.0e+6
    baseline_cap: 0.05
"""
    with pytest.raises(RuleError) as err:
        load_rules_text(text, "pack.yaml")
    message = str(err.value)
    line = text.splitlines().index("  - name: blocks") + 1
    assert f"pack.yaml:{line}:5:" in message and "first attempts" in message and "'refusals'" in message
