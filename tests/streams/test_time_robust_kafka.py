"""The worker against a real Apache Kafka broker: clocks that lie and messages that fail.

An event stamped far in the future must not move a partition's watermark (it is
dead-lettered with the reason and counted), and a deltas message whose evaluation raises
must not stop the partition: it is dead-lettered, the failed window skipped, the clock and
offset saved, and the messages after it are processed as if it had not been there.
"""
from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaProducer

from tests.streams.test_pipeline_kafka import (INCIDENT, T0, expected_alerts, key, make_events,  # noqa: F401
                                               pipeline)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_an_event_stamped_days_ahead_is_dead_lettered_and_moves_no_watermark(pipeline):
    events = make_events(hours=2.0, seed=31)
    expected, closed_until = expected_alerts(events)
    assert any(a["status"] == "firing" for a in expected)
    future = {**events[len(events) // 3], "event_id": "clock-ahead", "timestamp": time.time() + 2 * 86400}
    worker = pipeline.worker()
    cut = len(events) // 3
    # The future event travels in a message of its own, between on-time messages.
    pipeline.produce(events[:cut])
    pipeline.produce([future])
    pipeline.produce(events[cut:])
    got = pipeline.consume("DDETECT_ALERTS_TOPIC", lambda r: len(r) >= len(expected), timeout=90)
    dlq = pipeline.consume("DDETECT_DLQ_TOPIC", lambda r: len(r) >= 1, timeout=30)
    pipeline.wait_watermark([worker], closed_until)
    # Same alerts as the offline engine without the outlier: no on-time event was made late.
    assert sorted(map(key, got)) == sorted(map(key, expected)), [a["summary"] for a in got]
    assert worker.metric("ddetect_events_late_total") in (None, 0.0)
    assert worker.metric("ddetect_events_future_total") == 1.0
    assert worker.metric("ddetect_watermark_timestamp_seconds") == closed_until  # not two days ahead
    (record,) = dlq
    assert "max_future_skew" in record["reason"] and json.loads(record["payload"])["event_id"] == "clock-ahead"


def test_a_deltas_message_that_fails_evaluation_is_parked_and_the_partition_moves_on(pipeline):
    """A corrupt deltas message (window counts of another counter layout, as an incompatible
    worker version could write) made every later message of its partition fail the same way.
    Short vectors fail where the counts are first read (applying the delta, or evaluating the
    window): either way the message is parked and the partition moves on."""
    events = make_events(hours=2.0, seed=32)
    expected, closed_until = expected_alerts(events)
    assert any(a["status"] == "firing" for a in expected)
    # RocksDB, as in production: a read returns a fresh copy, so a failed evaluation leaves the
    # stored state as it was and (before the fix) failed again on every later message.
    worker = pipeline.worker(DDETECT_STORE="rocksdb://")
    app_id = worker.env["DDETECT_APP_ID"]
    bad_window = T0 - 3600.0  # before all real traffic, so skipping it loses nothing real
    p = KafkaProducer(bootstrap_servers=pipeline.bootstrap, acks="all")
    for part in range(4):  # every partition gets one (scope ids are unique across partitions)
        corrupt = {"newest": bad_window + 10, "deltas": [
            {"id": f"campaign=corrupt{part}|mailbox_provider=gmail",
             "scope": {"campaign": f"corrupt{part}", "mailbox_provider": "gmail"},
             "w": {repr(bad_window): [0, 0, 0]}, "r": {}}]}
        p.send(f"{app_id}-scope-deltas", key=f"p{part}".encode(), partition=part, value=json.dumps(corrupt).encode())
    p.flush()
    p.close()
    pipeline.produce(events)
    got = pipeline.consume("DDETECT_ALERTS_TOPIC", lambda r: len(r) >= len(expected), timeout=90)
    pipeline.wait_watermark([worker], closed_until)
    assert sorted(map(key, got)) == sorted(map(key, expected)), [a["summary"] for a in got]
    dlq = pipeline.consume("DDETECT_DLQ_TOPIC", lambda r: len(r) >= 4, timeout=30)
    assert len(dlq) == 4 and all(r["reason"].startswith("detection: ") for r in dlq), dlq
    assert all(r["source"] == f"{app_id}-scope-deltas" for r in dlq)
    assert worker.metric("ddetect_detection_failures_total") == 4.0
    assert worker.proc.poll() is None
