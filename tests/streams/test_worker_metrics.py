"""The worker's Prometheus metrics: label-bounded deliverability counters, the top-N
campaign collector, consumer lag per partition, scopes tracked.

The unit tests feed ``_observe_batch`` and the lag helpers on a fresh registry and compare
with counts computed the slow, obvious way. The integration test runs a real worker
subprocess on the suite's Kafka broker, produces canonical events and reads its /metrics
page: the counters must equal what was produced, per label set.
"""
from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from ddetect.metrics import Metrics
from detector.counts import SCOPE_FIELDS, EventBatch, Vocabulary, aggregate
from detector.event import validate_event
from detector.rules import load_rules_text
from streams.app import (MAX_MAILBOX_PROVIDER_LABELS, MAX_SENDING_DOMAIN_LABELS, _observe_batch,
                         campaign_collector, partition_lags, set_lag_gauges)
from tests.kafka_fixture import create_topic
from tests.streamgen import stream
from tests.streams.test_pipeline_kafka import RULES, Worker

T0 = 1_700_000_000.0


# --- helpers shared with tests/observability/test_prometheus_worker.py -------------------
def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample of a /metrics page, keyed by (sample name, label items)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def series(samples: dict, name: str, *label_names: str) -> dict[tuple, float]:
    """The samples of one metric, keyed by the values of ``label_names``."""
    out = {}
    for (n, labels), v in samples.items():
        if n == name:
            d = dict(labels)
            out[tuple(d.get(k) for k in label_names)] = v
    return out


def wait_until(condition, what: str, timeout: float = 45.0, detail=lambda: ""):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}\n{detail()}")


def make_events(seed: int, hours: float, start: float = T0, hard: float = 0.03,
                complaint: float = 0.002) -> list[dict]:
    return [validate_event(e) for e in stream(seed=seed, start=start, hours=hours, rate_per_s=1,
                                               campaigns=("spring", "autumn"), hard=hard, complaint=complaint)]


def produce(bootstrap: str, topic: str, events: list[dict], partitions: int = 1, batch: int = 500) -> None:
    """JSON arrays of ``batch`` events per message, spread round-robin over ``partitions``."""
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for k, i in enumerate(range(0, len(events), batch)):
        p.send(topic, json.dumps(events[i:i + batch]).encode(), partition=k % partitions)
    p.flush()
    p.close()


class WorkerRun:
    """Topics, rule file and environment of one isolated worker group on the suite's broker."""

    def __init__(self, bootstrap: str, tmp: Path, events_partitions: int = 1, partitions: int = 4):
        run = uuid.uuid4().hex[:8]
        self.bootstrap, self.tmp = bootstrap, tmp
        self.app_id = f"ddetect-m-{run}"
        self.events_topic = f"ev-m-{run}"
        self.deltas_topic = f"{self.app_id}-scope-deltas"
        self.events_partitions, self.partitions = events_partitions, partitions
        create_topic(bootstrap, self.events_topic, partitions=events_partitions)
        rules = tmp / "rules.yaml"
        rules.write_text(RULES)
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DDETECT_RULES": str(rules),
                    "DDETECT_APP_ID": self.app_id, "DDETECT_PARTITIONS": str(partitions),
                    "DDETECT_STORE": "memory://", "DDETECT_EVENTS_TOPIC": self.events_topic,
                    "DDETECT_DLQ_TOPIC": f"dlq-m-{run}", "DDETECT_ALERTS_TOPIC": f"al-m-{run}"}
        self.workers: list[Worker] = []

    def worker(self, name: str = "w1") -> Worker:
        w = Worker(self.env, self.tmp, name)
        self.workers.append(w)
        return w.start()

    def produce(self, events: list[dict]) -> None:
        produce(self.bootstrap, self.events_topic, events, self.events_partitions)

    def broker_lag(self) -> dict[tuple[str, str], int]:
        """End offset minus the group's committed offset, asked of the broker."""
        # A consumer in the worker's group that never subscribes: committed() only reads
        # the group's offsets (works on kafka-python 2 and 3, unlike the admin calls).
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.app_id,
                                 enable_auto_commit=False)
        try:
            tps = [TopicPartition(self.events_topic, p) for p in range(self.events_partitions)]
            tps += [TopicPartition(self.deltas_topic, p) for p in range(self.partitions)]
            ends = consumer.end_offsets(tps)
            return {(tp.topic, str(tp.partition)): ends[tp] - (consumer.committed(tp) or 0) for tp in tps}
        finally:
            consumer.close()

    def end_offsets(self, topic: str, partitions: int) -> dict[int, int]:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
            return {tp.partition: v for tp, v in ends.items()}
        finally:
            consumer.close()

    def stop(self):
        for w in self.workers:
            w.stop()


def _dump(w: Worker) -> str:
    """The worker's ddetect_ samples (no histogram buckets) and the tail of its log."""
    lines = [f"{n}{dict(l)} {v}" for (n, l), v in sorted(scrape(w.port).items(), key=str)
             if n.startswith("ddetect_") and "_bucket" not in n and "_created" not in n]
    return "\n".join(lines) + "\n" + w.log.read_text()[-2000:]


def processed_total(samples: dict) -> float:
    return sum(series(samples, "ddetect_events_processed_total", "type", "bounce_class").values())


# --- unit: counters from one batch --------------------------------------------------------
def _spread_labels(events: list[dict]) -> list[dict]:
    """60 sending domains (and nulls) and 55 mailbox providers, beyond both label bounds."""
    out = []
    for i, e in enumerate(events):
        e = dict(e)
        e["sending_domain"] = None if i % 11 == 0 else f"d{i % 60:02d}.example.com"
        e["mailbox_provider"] = f"mbp{i % 55:02d}"
        out.append(e)
    return out


def test_observe_batch_counts_equal_a_python_recount_with_bounded_labels():
    events = _spread_labels(make_events(seed=5, hours=0.2))
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    vocab = {f: Vocabulary() for f in SCOPE_FIELDS}
    collector = campaign_collector(registry)
    assert campaign_collector(registry) is collector  # registered once per registry
    half = len(events) // 2
    for part in (events[:half], events[half:]):
        _observe_batch(metrics, EventBatch.from_events(part, vocab), collector)

    first_domains = list(dict.fromkeys(e["sending_domain"] for e in events if e["sending_domain"]))
    keep_d = set(first_domains[:MAX_SENDING_DOMAIN_LABELS])
    first_mbp = list(dict.fromkeys(e["mailbox_provider"] for e in events))
    keep_p = set(first_mbp[:MAX_MAILBOX_PROVIDER_LABELS])
    assert len(first_domains) > len(keep_d) and len(first_mbp) > len(keep_p)  # both bounds are exercised

    want_prov = Counter((e["mailbox_provider"] if e["mailbox_provider"] in keep_p else "other",
                         e["type"], e["bounce_class"] or "none") for e in events)
    want_dom = Counter(("none" if e["sending_domain"] is None else
                        e["sending_domain"] if e["sending_domain"] in keep_d else "other", e["type"])
                       for e in events)
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for fam in registry.collect() for s in fam.samples}
    got_prov = series(samples, "ddetect_deliverability_events_total", "mailbox_provider", "type", "bounce_class")
    got_dom = series(samples, "ddetect_sending_domain_events_total", "sending_domain", "type")
    assert got_prov == {k: float(v) for k, v in want_prov.items()}
    assert got_dom == {k: float(v) for k, v in want_dom.items()}
    assert {d for d, _ in got_dom} == keep_d | {"other", "none"}

    want_types = Counter((e["campaign"], e["type"]) for e in events)
    rows = {r.campaign: r for r in collector.top()}
    assert set(rows) == {"spring", "autumn"}
    for (campaign, etype), n in want_types.items():
        # 1 h half-life on a monotonic clock: the test's milliseconds decay it by < 1e-4.
        assert rows[campaign].counts[etype] == pytest.approx(n, rel=1e-4)


def test_partition_lags_and_stale_series_removal():
    from faust.types import TP

    a0, a1, d0 = TP("ev", 0), TP("ev", 1), TP("deltas", 0)
    lags = partition_lags([a0, a1, d0], ends={a0: 100, a1: 7, d0: 5},
                          committed={a0: 40, a1: None, d0: 9}, starts={a1: 2})
    # committed 40 of 100; nothing committed -> from the log start (2); a commit past the
    # end (a stale end offset) is clamped at 0, never negative.
    assert lags == {("ev", "0"): 60, ("ev", "1"): 5, ("deltas", "0"): 0}

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    exported: set = set()
    set_lag_gauges(metrics, lags, exported)
    # ev/1 moved to another worker: its series disappears from this one.
    set_lag_gauges(metrics, {("ev", "0"): 3, ("deltas", "0"): 1}, exported)
    samples = {s.labels["topic"] + "/" + s.labels["partition"]: s.value
               for fam in registry.collect() for s in fam.samples if s.name == "ddetect_consumer_lag_messages"}
    assert samples == {"ev/0": 3, "deltas/0": 1}


# --- integration: a real worker on the real broker --------------------------------------
@pytest.mark.kafka
@pytest.mark.slow
def test_worker_exports_deliverability_campaign_lag_and_scope_metrics(kafka_bootstrap, tmp_path):
    run = WorkerRun(kafka_bootstrap, tmp_path, events_partitions=2)
    try:
        _run_worker_metrics_checks(run)
    finally:
        run.stop()


def _run_worker_metrics_checks(run: WorkerRun):
    events = make_events(seed=21, hours=0.25)
    # Phase 1 (one message) holds 50 distinct sending domains: the worker sees them first,
    # so they keep their names. Phase 2 adds 10 more (-> "other") and nulls (-> "none").
    first, rest = events[:500], events[500:]
    first = [{**e, "sending_domain": f"d{i % 50:02d}.example.com"} for i, e in enumerate(first)]
    rest = [{**e, "sending_domain": None if i % 13 == 0 else f"d{i % 60:02d}.example.com"}
            for i, e in enumerate(rest)]
    events = first + rest
    assert 3000 < len(events) < 5000

    w = run.worker()
    produce(run.bootstrap, run.events_topic, first, partitions=1)
    wait_until(lambda: processed_total(scrape(w.port)) == len(first), "phase 1 to be counted")
    run.produce(rest)
    wait_until(lambda: processed_total(scrape(w.port)) == len(events), "all events to be counted",
               detail=lambda: _dump(w))
    samples = scrape(w.port)

    want_prov = Counter((e["mailbox_provider"], e["type"], e["bounce_class"] or "none") for e in events)
    got_prov = series(samples, "ddetect_deliverability_events_total", "mailbox_provider", "type", "bounce_class")
    assert got_prov == {k: float(v) for k, v in want_prov.items()}
    assert {p for p, _, _ in got_prov} == {"gmail", "microsoft", "yahoo", "apple"}

    named = {f"d{i:02d}.example.com" for i in range(50)}
    want_dom = Counter(("none" if e["sending_domain"] is None else
                        e["sending_domain"] if e["sending_domain"] in named else "other", e["type"])
                       for e in events)
    got_dom = series(samples, "ddetect_sending_domain_events_total", "sending_domain", "type")
    assert got_dom == {k: float(v) for k, v in want_dom.items()}
    assert {d for d, _ in got_dom} == named | {"other", "none"}
    assert want_dom[("other", "accepted")] > 0 and want_dom[("none", "accepted")] > 0

    # Top-N campaign collector: decayed counts (1 h half-life, so ~1e-3 over a test) and ratios.
    got_camp = series(samples, "ddetect_campaign_events", "campaign", "type")
    want_camp = Counter((e["campaign"], e["type"]) for e in events)
    assert set(got_camp) == set(want_camp)
    for k, n in want_camp.items():
        assert got_camp[k] == pytest.approx(n, rel=0.01), k
    ratios = series(samples, "ddetect_campaign_bounce_ratio", "campaign")
    for c in ("spring", "autumn"):
        bounced, delivered = want_camp[(c, "bounced")], want_camp[(c, "delivered")]
        assert ratios[(c,)] == pytest.approx(bounced / (bounced + delivered), rel=0.01)
    assert series(samples, "ddetect_campaign_tracker_campaigns") == {(): 2.0}

    # Scopes: every (campaign, provider) and campaign scope of the rule file.
    ruleset = load_rules_text(RULES)
    n_scopes = len(aggregate(EventBatch.from_events(events), ruleset.scopes(), ruleset.settings.window))
    assert n_scopes == 2 * 4 + 2
    wait_until(lambda: scrape(w.port).get(("ddetect_scopes_tracked", frozenset())) == n_scopes,
               "scopes_tracked to equal the rule file's scopes",
               detail=lambda: _dump(w))

    # Consumer lag: one series per assigned partition of the events and deltas topics, equal
    # to what the broker says (end offset minus the group's committed offset): 0 once caught up.
    want_tps = {(run.events_topic, str(p)) for p in range(2)} | {(run.deltas_topic, str(p)) for p in range(4)}

    def lag_caught_up():
        lag = series(scrape(w.port), "ddetect_consumer_lag_messages", "topic", "partition")
        return lag if set(lag) == want_tps and all(v == 0 for v in lag.values()) else None
    wait_until(lag_caught_up, "consumer lag series of all 6 partitions at 0")
    assert run.broker_lag() == {tp: 0 for tp in want_tps}
    # The deltas topic really carried data (4 partitions x one message per events batch),
    # so "0" is a caught-up consumer, not an empty topic.
    assert all(v > 0 for v in run.end_offsets(run.deltas_topic, 4).values())

    # The page is the text exposition format with its version (what Prometheus negotiates).
    with urllib.request.urlopen(f"http://127.0.0.1:{w.port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"] == CONTENT_TYPE_LATEST

    # A second worker joins: the partitions split between the two, and each worker drops
    # the lag series of the partitions it gave away (no stale duplicates across workers).
    w2 = run.worker("w2")

    def split():
        lag1 = series(scrape(w.port), "ddetect_consumer_lag_messages", "topic", "partition")
        lag2 = series(scrape(w2.port), "ddetect_consumer_lag_messages", "topic", "partition")
        ok = lag1 and lag2 and not set(lag1) & set(lag2) and set(lag1) | set(lag2) == want_tps
        # a partition's new owner starts from the last committed offset, so it may report a
        # lag for a moment after the split (true, not stale) until it has caught up
        ok = ok and all(v == 0 for v in [*lag1.values(), *lag2.values()])
        return (lag1, lag2) if ok else None
    lag1, lag2 = wait_until(split, "the two workers to report disjoint lag series covering all partitions, at 0")
    assert all(v == 0 for v in [*lag1.values(), *lag2.values()])
