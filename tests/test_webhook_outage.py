"""A webhook outage is not a silent flow: the ESP's stream went quiet, not its mail."""
from __future__ import annotations

from detector.engine import Engine
from detector.rules import CHANNEL_SCOPE, default_rules_path, load_rules, load_rules_text

from .streamgen import stream

T0 = 1_700_000_000.0

RULES = """
settings: {window: 5m, allowed_lateness: 2m}
rules:
  - name: flow_silence
    test: silence
    metric: volume
    scope: [campaign, provider]
    category: performance
    severity: warning
    alpha: 1.0e-6
    min_expected: 10
    warmup: {windows: 12}
    resolve: {windows: 1}
  - name: webhook_silence
    test: silence
    metric: volume
    scope: [provider]
    category: technical
    severity: critical
    alpha: 1.0e-6
    trickle: 0
    min_expected: 10
    warmup: {windows: 12}
    resolve: {windows: 1}
"""


def _two_esps(outage=None, stop=None, two_flows=False):
    """Flows on two ESPs; ``outage`` (start, end): ESP "a" posts nothing then and re-posts its events
    after it (they arrive late); ``stop`` (start, end): flow "a-flow" sends nothing then."""
    events = []
    for esp, seed in (("a", 1), ("b", 2)):
        flows = (f"{esp}-flow", f"{esp}-other") if esp == "a" and two_flows else (f"{esp}-flow",)
        for ev in stream(seed=seed, start=T0, hours=6, rate_per_s=1, campaigns=flows):
            ev["provider"] = esp
            if stop and ev["campaign"] == "a-flow" and stop[0] <= ev["timestamp"] < stop[1]:
                continue
            events.append((ev["timestamp"], ev))
    if outage:
        events = [((outage[1] + 60 if outage[0] <= t < outage[1] and ev["provider"] == "a" else t), ev)
                  for t, ev in events]
    events.sort(key=lambda pair: pair[0])
    engine = Engine(load_rules_text(RULES))
    alerts, batch, cut = [], [], None
    for arrival, ev in events:  # batches of a minute of arrivals, as the pipeline reads them
        if batch and arrival >= cut:
            alerts += engine.process(batch)
            batch = []
        if not batch:
            cut = arrival + 60
        batch.append(ev)
    alerts += engine.process(batch) + engine.flush()
    return engine, [(a["rule"], a["status"], a["scope"]) for a in alerts]


def test_an_outage_pages_the_esp_stream_and_not_its_flows():
    engine, alerts = _two_esps(outage=(T0 + 3 * 3600, T0 + 3.75 * 3600))
    assert ("webhook_silence", "firing", {"provider": "a"}) in alerts
    assert not [a for a in alerts if a[0] == "flow_silence"]
    assert not [a for a in alerts if a[2] == {"provider": "b"}]
    assert engine.late_events > 1000   # the re-posted backlog came after its windows had closed


def test_a_flow_that_stops_while_its_esp_posts_pages_the_flow():
    _, alerts = _two_esps(stop=(T0 + 3 * 3600, T0 + 3.75 * 3600), two_flows=True)
    assert ("flow_silence", "firing", {"campaign": "a-flow", "provider": "a"}) in alerts
    assert not [a for a in alerts if a[0] == "webhook_silence"]


def test_the_only_flow_of_an_esp_stopping_pages_the_esp_stream():
    """Its ESP then posts nothing at all: the flow's windows are unobserved, and the page is the
    stream's (nothing goes silently blind)."""
    _, alerts = _two_esps(stop=(T0 + 3 * 3600, T0 + 3.75 * 3600))
    assert ("webhook_silence", "firing", {"provider": "a"}) in alerts
    assert not [a for a in alerts if a[0] == "flow_silence"]


def test_the_esp_stream_is_counted_where_a_silence_rule_names_the_esp():
    assert load_rules_text(RULES).scopes()[-1] == CHANNEL_SCOPE
    assert CHANNEL_SCOPE in load_rules(default_rules_path()).scopes()
    without = RULES.replace("scope: [campaign, provider]", "scope: [campaign]").split("  - name: webhook_silence")[0]
    assert CHANNEL_SCOPE not in load_rules_text(without).scopes()


def test_the_pipeline_puts_an_esps_flows_on_the_partition_of_its_stream():
    from streams.partitioning import Partitioner
    part = Partitioner(load_rules(default_rules_path()), 12)
    for esp in ("mailgun", "postmark", "ses", "sendgrid"):
        home = part(CHANNEL_SCOPE, f"provider={esp}")
        flows = {part(("campaign", "provider"), f"campaign={c}|provider={esp}") for c in ("a", "b", "welcome", "x|y")}
        assert flows == {home}
    spread = {part(("sending_domain", "mailbox_provider"), f"sending_domain=d{i}.example|mailbox_provider=gmail")
              for i in range(40)}
    assert len(spread) > 6   # every other scope still spreads by its own id (pooled ones: tests/test_shrinkage.py)
