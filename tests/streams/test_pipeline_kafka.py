"""The Faust pipeline against the real Apache Kafka broker started by the suite.

Each test runs real worker processes (``python -m streams worker``), produces canonical
events with kafka-python and reads the alert and dead-letter topics. The reference for
"the right alerts" is the offline engine on the same events: the pipeline must publish
exactly the alerts of the windows its watermark closed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from detector.engine import Engine
from detector.event import validate_event
from detector.rules import load_rules_text
from tests.kafka_fixture import create_topic, free_port
from tests.streamgen import stream

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0
RULES = """
settings: {window: 60s, allowed_lateness: 30s}
rules:
  - name: hard_bounce_spike
    test: cusum
    metric: hard_bounce_rate
    scope: [campaign, mailbox_provider]
    category: technical
    severity: critical
    shift: 3
    arl0: 1.0e+7
    baseline_floor: 0.002
    min_volume: 20
    warmup: {messages: 1000, windows: 3}
    resolve: {windows: 3}
  - name: bounce_outlier
    test: binomial
    metric: hard_bounce_rate
    scope: [campaign]
    category: technical
    severity: warning
    q: 0.001
    min_effect: 2
    min_volume: 100
    warmup: {messages: 2000, windows: 3}
"""
INCIDENT = {"campaign": "spring", "provider": "gmail", "start": T0 + 3600, "end": T0 + 5400, "hard": 0.10}


def make_events(hours=2.5, seed=11, incident=INCIDENT):
    return [validate_event(e) for e in stream(seed=seed, start=T0, hours=hours, rate_per_s=3,
                                               campaigns=("spring", "autumn"), incident=incident)]


def expected_alerts(events):
    """What the offline engine emits for windows the watermark closes (no final flush)."""
    engine = Engine(load_rules_text(RULES))
    out = []
    for i in range(0, len(events), 500):
        out += engine.process(events[i:i + 500])
    return out, engine.meta["closed_until"]


def key(alert):
    return (alert["status"], alert["alert_id"], alert["dedup_key"], alert["window"]["start"])


class Worker:
    """One ``python -m streams worker`` subprocess with its own web port."""

    def __init__(self, env: dict, tmp: Path, name: str):
        self.port = free_port()
        self.log = tmp / f"{name}.log"
        self.env = {**env, "DDETECT_WEB_PORT": str(self.port), "DDETECT_DATA_DIR": str(tmp / f"data-{name}")}
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "streams", "worker", "-l", "warn",
                                      "--web-port", str(self.port), "--web-host", "127.0.0.1"],
                                     cwd=REPO, env=self.env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        pytest.fail(f"worker not ready in 90 s:\n{self.log.read_text()[-3000:]}")

    def metric(self, name: str) -> float | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def pipeline(kafka_bootstrap, tmp_path):
    run = uuid.uuid4().hex[:8]
    topics = {"DDETECT_EVENTS_TOPIC": f"ev-{run}", "DDETECT_DLQ_TOPIC": f"dlq-{run}",
              "DDETECT_ALERTS_TOPIC": f"al-{run}"}
    # One events partition keeps arrival order equal to file order, so "same alerts as replay"
    # is exact; with several partitions, consumers interleave them and the allowed lateness
    # has to absorb that skew (events beyond it are dropped and counted, in replay too).
    create_topic(kafka_bootstrap, topics["DDETECT_EVENTS_TOPIC"], partitions=1)
    create_topic(kafka_bootstrap, topics["DDETECT_DLQ_TOPIC"])
    create_topic(kafka_bootstrap, topics["DDETECT_ALERTS_TOPIC"])
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = {**os.environ, **topics, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DDETECT_RULES": str(rules),
           "DDETECT_APP_ID": f"ddetect-{run}", "DDETECT_PARTITIONS": "4", "DDETECT_STORE": "memory://"}
    workers: list[Worker] = []

    class Ctx:
        bootstrap = kafka_bootstrap

        @staticmethod
        def worker(name="w1", **extra):
            w = Worker({**env, **extra}, tmp_path, name)
            workers.append(w)
            return w.start()

        @staticmethod
        def produce(events, batch=500, raw_messages=()):
            p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
            for raw in raw_messages:
                p.send(topics["DDETECT_EVENTS_TOPIC"], raw)
            for i in range(0, len(events), batch):
                p.send(topics["DDETECT_EVENTS_TOPIC"], json.dumps(events[i:i + batch]).encode())
            p.flush()
            p.close()

        @staticmethod
        def consume(topic_env, until, timeout=60.0):
            """Read a topic from the start until ``until(records)`` is true or timeout."""
            c = KafkaConsumer(topics[topic_env], bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                              enable_auto_commit=False, consumer_timeout_ms=500)
            records, deadline = [], time.time() + timeout
            try:
                while time.time() < deadline:
                    for msg in c:
                        records.append(json.loads(msg.value))
                    if until(records):
                        break
            finally:
                c.close()
            return records

        @staticmethod
        def wait_watermark(worker_list, closed_until, timeout=60.0):
            deadline = time.time() + timeout
            while time.time() < deadline:
                marks = [w.metric("ddetect_watermark_timestamp_seconds") or 0 for w in worker_list]
                if max(marks) >= closed_until:
                    return
                time.sleep(0.5)
            dump = urllib.request.urlopen(f"http://127.0.0.1:{worker_list[0].port}/metrics").read().decode()
            pytest.fail(f"watermark never reached {closed_until}: {marks}\n" +
                        "\n".join(l for l in dump.splitlines() if l.startswith("ddetect_") and "bucket" not in l))

    yield Ctx
    for w in workers:
        w.stop()


def test_incident_alert_arrives_and_matches_replay(pipeline):
    events = make_events()
    expected, _ = expected_alerts(events)
    assert any(a["rule"] == "hard_bounce_spike" and a["status"] == "firing" for a in expected)
    worker = pipeline.worker()
    produced_at = time.time()
    pipeline.produce(events)
    got = pipeline.consume("DDETECT_ALERTS_TOPIC", lambda r: len(r) >= len(expected), timeout=60)
    assert sorted(map(key, got)) == sorted(map(key, expected)), [a["summary"] for a in got]
    assert time.time() - produced_at < 60
    fired = next(a for a in got if a["rule"] == "hard_bounce_spike")
    assert fired["scope"] == {"campaign": "spring", "mailbox_provider": "gmail"}
    assert worker.metric("ddetect_events_processed_total") is None  # labelled series only
    assert "@" not in json.dumps(got)


def test_clean_traffic_yields_no_alert_and_malformed_input_goes_to_dlq(pipeline):
    events = make_events(hours=1.5, seed=12, incident=None)
    expected, closed_until = expected_alerts(events)
    assert expected == []
    worker = pipeline.worker()
    garbage = [b"{not json", json.dumps({"type": "delivered"}).encode(),
               json.dumps([{**events[0], "type": "exploded"}, events[1]]).encode()]
    pipeline.produce(events, raw_messages=garbage)
    dlq = pipeline.consume("DDETECT_DLQ_TOPIC", lambda r: len(r) >= 3, timeout=60)
    reasons = sorted(r["reason"].split(":")[0] for r in dlq)
    assert reasons == ["event", "event_id", "type"], dlq
    pipeline.wait_watermark([worker], closed_until)
    assert pipeline.consume("DDETECT_ALERTS_TOPIC", lambda r: False, timeout=3) == []
    assert worker.proc.poll() is None  # bad input did not stop the worker


def test_restart_recovers_state_without_refiring(pipeline):
    events = make_events(seed=13)
    expected, _ = expected_alerts(events)
    cut = next(i for i, e in enumerate(events) if e["timestamp"] > INCIDENT["start"] + 900)
    env = {"DDETECT_STORE": "rocksdb://"}
    w = pipeline.worker("w1", **env)
    pipeline.produce(events[:cut])
    first = pipeline.consume("DDETECT_ALERTS_TOPIC", lambda r: any(a["status"] == "firing" for a in r), timeout=90)
    assert any(a["status"] == "firing" for a in first)
    time.sleep(2)
    w.stop()
    w.start()
    pipeline.produce(events[cut:])
    got = pipeline.consume("DDETECT_ALERTS_TOPIC", lambda r: len(r) >= len(expected), timeout=90)
    time.sleep(2)
    got = pipeline.consume("DDETECT_ALERTS_TOPIC", lambda r: False, timeout=3)
    assert sorted(map(key, got)) == sorted(map(key, expected)), "lost or duplicated alerts across restart"


@pytest.mark.xfail(strict=False, reason=(
    "issue #13, open: the count stage recounts the batches since its last offset commit when a worker "
    "leaves and its partitions move, so an alert can fire late or twice; failed 2 of 5 runs on 2026-12-02 "
    "(also on c4c2a74, before that day's changes). Reported as xfailed/xpassed, never as passed."))
def test_two_workers_split_partitions_and_survive_one_stopping(pipeline):
    events = make_events(seed=14)
    expected, _ = expected_alerts(events)
    w1 = pipeline.worker("w1")
    w2 = pipeline.worker("w2")
    half = len(events) // 3
    pipeline.produce(events[:half])
    time.sleep(3)
    w2.stop()
    pipeline.produce(events[half:])
    got = pipeline.consume("DDETECT_ALERTS_TOPIC", lambda r: len(r) >= len(expected), timeout=120)
    time.sleep(2)
    got = pipeline.consume("DDETECT_ALERTS_TOPIC", lambda r: False, timeout=3)
    counts = {}
    for a in got:
        counts[key(a)] = counts.get(key(a), 0) + 1
    assert all(v == 1 for v in counts.values()), counts
    assert sorted(counts) == sorted(map(key, expected))
    assert w1.proc.poll() is None
