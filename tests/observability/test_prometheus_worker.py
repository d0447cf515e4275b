"""A real Prometheus scrapes a running detection worker fed through the real broker.

Nothing here is simulated on the metrics side: a ``python -m streams worker`` subprocess
consumes canonical events from the suite's Kafka broker, and Debian's
/usr/bin/prometheus scrapes its /metrics page every second with the repository's rule
files (deploy/prometheus/rules) loaded. The assertions go through Prometheus' HTTP API.

Why two phases: ``rate()`` extrapolates each series from its first sample towards the
range start, bounded by where the counter would reach zero. A series born with its full
count would show no increase at all. So phase A (one message) creates every series, and
the recording rule's value is exactly the ratio of phase B's events (one more message)
once every series in the sums shares the same sample timestamps and enough samples exist
for the extrapolation to be the same half-interval for all of them (the poll below waits
for that, a few seconds).
"""
from __future__ import annotations

import math
import time
from collections import Counter

import pytest

from detector.rules import load_rules_text
from tests.streams.test_pipeline_kafka import RULES
from tests.streams.test_worker_metrics import T0, WorkerRun, _dump, make_events, produce

from .test_prometheus_scrape import start_prometheus, stop_prometheus, vector, wait_for
from .tooling import require_binary

pytestmark = [pytest.mark.slow, pytest.mark.kafka]


def scalar(base: str, expr: str) -> float | None:
    result = vector(base, expr)
    return float(result[0]["value"][1]) if len(result) == 1 else None


def ratio(events, key, value):
    c = Counter(e["type"] for e in events if e[key] == value)
    return c["bounced"] / (c["bounced"] + c["delivered"])


@pytest.fixture
def worker_and_prometheus(kafka_bootstrap, tmp_path):
    binary = require_binary("prometheus")
    run = WorkerRun(kafka_bootstrap, tmp_path, events_partitions=1)
    proc = None
    try:
        worker = run.worker()
        base, proc = start_prometheus(binary, tmp_path, worker.port)
        yield run, worker, base, proc, tmp_path
    finally:
        if proc is not None:
            stop_prometheus(proc)
        run.stop()


def test_prometheus_scrapes_a_running_worker_and_evaluates_recording_rules(worker_and_prometheus):
    run, worker, base, proc, logdir = worker_and_prometheus
    phase_a = make_events(seed=41, hours=0.12, hard=0.05)
    phase_b = make_events(seed=42, hours=0.12, start=T0 + 0.12 * 3600, hard=0.05)
    events = phase_a + phase_b
    assert 2500 < len(events) < 4000
    gmail_a = Counter((e["type"]) for e in phase_a if e["mailbox_provider"] == "gmail")
    assert gmail_a["bounced"] >= 10 and gmail_a["delivered"] >= 300  # phase A creates every series

    wait_for(lambda: vector(base, 'up{job="ddetect-worker"} == 1'), "the worker target to be up", proc, logdir)

    def processed():
        return scalar(base, "sum(ddetect_events_processed_total)")

    # Each phase is ONE message (one JSON array), so the worker counts it in one batch and
    # no scrape sees half of it.
    produce(run.bootstrap, run.events_topic, phase_a, batch=len(phase_a))
    wait_for(lambda: processed() == len(phase_a), "phase A in Prometheus", proc, logdir)
    samples_a = 'count_over_time(ddetect_deliverability_events_total{mailbox_provider="gmail", type="bounced"}[1h])'
    wait_for(lambda: (scalar(base, samples_a) or 0) >= 3, "three scrapes of phase A", proc, logdir)
    produce(run.bootstrap, run.events_topic, phase_b, batch=len(phase_b))
    wait_for(lambda: processed() == len(events), "phase B in Prometheus", proc, logdir)

    # Key series of the worker, as Prometheus stored them.
    got = {r["metric"]["type"]: float(r["value"][1])
           for r in vector(base, 'sum by (type) (ddetect_deliverability_events_total{mailbox_provider="gmail"})')}
    assert got == {t: float(n) for t, n in Counter(e["type"] for e in events
                                                   if e["mailbox_provider"] == "gmail").items()}
    domains = vector(base, "ddetect_sending_domain_events_total")
    assert {r["metric"]["sending_domain"] for r in domains} == {"news.example.com"}

    # Watermark: the newest event minus the allowed lateness, floored to the window.
    settings = load_rules_text(RULES).settings
    newest = max(e["timestamp"] for e in events)
    closed = math.floor((newest - settings.allowed_lateness) / settings.window) * settings.window
    if not poll(lambda: scalar(base, "ddetect_watermark_timestamp_seconds") == closed, proc):
        pytest.fail(f"watermark never reached {closed}: {scalar(base, 'ddetect_watermark_timestamp_seconds')}\n"
                    + _dump(worker))
    assert scalar(base, "ddetect_last_event_timestamp_seconds") == newest

    # Consumer lag of the events partition and all 4 scope-deltas partitions, caught up.
    def lag_zero():
        rows = vector(base, "ddetect_consumer_lag_messages")
        tps = {(r["metric"]["topic"], r["metric"]["partition"]): float(r["value"][1]) for r in rows}
        want = {(run.events_topic, "0")} | {(run.deltas_topic, str(p)) for p in range(4)}
        return set(tps) == want and all(v == 0 for v in tps.values())
    if not poll(lag_zero, proc):
        pytest.fail("consumer lag series not all present and at 0\n" + _dump(worker))

    # The top-N campaign collector (decayed counts: ratios within 1%).
    for campaign in ("spring", "autumn"):
        (row,) = vector(base, f'ddetect_campaign_bounce_ratio{{campaign="{campaign}"}}')
        assert float(row["value"][1]) == pytest.approx(ratio(events, "campaign", campaign), rel=0.01)
    assert scalar(base, "ddetect_campaign_tracker_campaigns") == 2

    # Recording rules from deploy/prometheus/rules: the ratio of phase B's events (see the
    # module docstring), exact to float precision once the extrapolation has settled.
    for expr, want in (
            ('mailbox_provider:ddetect_bounce_ratio:rate1h{mailbox_provider="gmail"}',
             ratio(phase_b, "mailbox_provider", "gmail")),
            ('sending_domain:ddetect_bounce_ratio:rate1h{sending_domain="news.example.com"}',
             ratio(phase_b, "sending_domain", "news.example.com"))):
        last = poll_value(base, expr, want, proc, logdir)
        assert last == pytest.approx(want, rel=1e-9)
    # Phase B alone differs from the cumulative ratio, so the check above tells them apart.
    assert ratio(phase_b, "mailbox_provider", "gmail") != pytest.approx(ratio(events, "mailbox_provider", "gmail"))


def poll(condition, proc, timeout: float = 45.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited with {proc.returncode}")
        if condition():
            return True
        time.sleep(0.5)
    return False


def poll_value(base: str, expr: str, want: float, proc, logdir, timeout: float = 45.0) -> float | None:
    """Poll an instant query until it equals ``want``; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited with {proc.returncode}")
        last = scalar(base, expr)
        if last is not None and last == pytest.approx(want, rel=1e-9):
            return last
        time.sleep(0.5)
    pytest.fail(f"{expr} = {last}, expected {want} (after {timeout:.0f}s)\n"
                + (logdir / "prometheus.log").read_text()[-2000:])
