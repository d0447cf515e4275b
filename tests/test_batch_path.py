"""The batch path's shortcuts give what the per-delta path gives: same states, alerts, counters."""
import json

import numpy as np

from detector.counts import EventBatch, aggregate, count_scopes, deltas
from detector.engine import Engine
from detector.retries import RetryMemory
from detector.rules import default_rules_path, load_rules

T0 = 1_700_000_000.0


def _events(n, seed, odd_campaign=None):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.uniform(T0, T0 + 3 * 3600, n))
    types = rng.choice(["accepted", "delivered", "bounced", "deferred", "complained", "opened"], n,
                       p=[0.4, 0.4, 0.08, 0.08, 0.02, 0.02])
    out = []
    for i in range(n):
        t = str(types[i])
        c = int(rng.integers(0, 6))
        ev = {"event_id": f"e{i}", "provider": ("sendgrid", "mailgun")[i % 2], "type": t,
              "bounce_class": ("hard", "block")[i % 2] if t == "bounced" else None, "timestamp": float(ts[i]),
              "campaign": odd_campaign if odd_campaign and c == 0 else f"c{c}",
              "recipient_domain": "gmail.com", "mailbox_provider": ("gmail", "yahoo")[int(rng.integers(0, 2))],
              "sending_domain": "d.example", "ip_pool": None if i % 5 == 0 else "p1", "recipient_hash": None,
              "smtp_code": 550 if t == "bounced" else (421 if t == "deferred" else None),
              "reason": f"r{i % 3}" if t in ("bounced", "deferred", "complained") else None,
              "message_id": f"m{i // 3}"}
        if t in ("delivered", "bounced", "deferred") and i % 2:
            ev["attempt"] = 1 + i % 3
        out.append(ev)
    return out


def _run(events, per_delta, batch=2500):
    rs = load_rules(default_rules_path())
    eng = Engine(rs)
    alerts = []
    for i in range(0, len(events), batch):
        b = EventBatch.from_events(events[i:i + batch], eng.vocab, eng.retries)
        if per_delta:  # the pipeline's way: one delta per scope
            for d in aggregate(b, eng.scope_defs, eng.window, eng.sequences).values():
                eng.apply_delta(d)
            alerts += eng.advance(float(b.timestamp.max()))
        else:
            alerts += eng.process_batch(b)
    alerts += eng.flush()
    return json.dumps([alerts, eng.states, dict(eng.meta), eng.late_events])


def test_process_batch_equals_applying_each_scopes_delta():
    events = _events(20_000, seed=3)
    assert _run(events, per_delta=False) == _run(events, per_delta=True)


def test_scope_ids_that_collide_are_applied_as_their_deltas_are():
    # campaign "c1|mailbox_provider=gmail" has the id of scope (c1, gmail): the later delta of an id wins
    events = _events(6_000, seed=4, odd_campaign="c1|mailbox_provider=gmail")
    assert _run(events, per_delta=False) == _run(events, per_delta=True)
    b = EventBatch.from_events(events)
    counted = count_scopes(b, [("campaign", "mailbox_provider"), ("campaign",)], 300.0)
    assert not all(c.plain for c in counted)
    assert deltas(counted).keys() == aggregate(b, [("campaign", "mailbox_provider"), ("campaign",)], 300.0).keys()


def test_first_attempts_in_one_call_answer_as_one_by_one():
    rng = np.random.default_rng(5)
    items = [(None if rng.random() < 0.05 else f"m{rng.integers(0, 40)}", bool(rng.random() < 0.4), float(t))
             for t in np.sort(rng.uniform(0, 5000, 3000))]
    one, batch = RetryMemory(ttl=300.0, capacity=25), RetryMemory(ttl=300.0, capacity=25)
    expected = [one.first_attempt(m, d, t) for m, d, t in items]
    got = batch.first_attempts(*map(list, zip(*items)))
    assert got == expected
    assert list(batch._deferred.items()) == list(one._deferred.items()) and batch.evicted == one.evicted
