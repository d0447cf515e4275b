"""The router end to end on a real Kafka broker: consume, deliver, dead-letter to the DLQ topic, commit only
after delivery, and a crash mid-delivery followed by a restart that neither loses nor re-pages."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from alerting.service import RouterSettings, serve_router
from ddetect.metrics import Metrics
from tests.alerting.helpers import Recorder, make_alert
from tests.kafka_fixture import create_topic, free_port, kafka_bootstrap  # noqa: F401  (session fixture)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROUTING = """
route:
  receiver: ops
  routes:
    - receiver: legal
      matchers: ['category="compliance"']
receivers:
  - name: ops
    slack_configs:
      - url_env: X
    pagerduty_configs:
      - routing_key_env: PD_KEY
        url: "{base}/pd"
  - name: legal
    msteams_configs:
      - url_env: TEAMS_URL
"""


async def _until(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def _committed(bootstrap, group, topic) -> int:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        return await c.committed(TopicPartition(topic, 0)) or 0
    finally:
        await c.stop()


def test_router_on_kafka_delivers_dead_letters_commits_and_restarts_without_repage(kafka_bootstrap, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    topic, dlq, group = f"alerts-{suffix}", f"alerts-dlq-{suffix}", f"router-{suffix}"
    create_topic(kafka_bootstrap, topic)
    create_topic(kafka_bootstrap, dlq)

    async def go():
        rec = await Recorder(script={"/teams": [(400, {})]}).start()
        base = rec.url("").rstrip("/")
        routing = tmp_path / "routing.yaml"
        routing.write_text(ROUTING.format(base=base))
        env = {"X": f"{base}/slack", "PD_KEY": "pd-key", "TEAMS_URL": f"{base}/teams"}

        def settings():
            return RouterSettings(bootstrap_servers=kafka_bootstrap, topic=topic, dlq_topic=dlq, group_id=group,
                                  routing_path=str(routing), data_dir=str(tmp_path / "data"),
                                  http_host="127.0.0.1", http_port=free_port(), escalation_interval=0.2,
                                  max_attempts=3, base_delay=0.05, max_delay=0.2)

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()

        async def produce(alert):
            await producer.send_and_wait(topic, json.dumps(alert).encode(), key=alert["dedup_key"].encode())

        a = make_alert(alert_id="a:1", dedup_key="tech|campaign=spring")
        b = make_alert(alert_id="b:1", dedup_key="comp|campaign=spring", category="compliance",
                       severity="warning")
        await produce(a)
        await produce(b)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(serve_router(settings(), stop, Metrics(CollectorRegistry()), env, ready))
        await _until(lambda: len(rec.at("/pd")) == 1 and len(rec.at("/teams")) == 1 and len(rec.at("/slack")) == 1,
                     what="first deliveries")
        # offsets are committed only after both messages were fully handled
        for _ in range(100):
            if await _committed(kafka_bootstrap, group, topic) == 2:
                break
            await asyncio.sleep(0.2)
        committed_first = await _committed(kafka_bootstrap, group, topic)

        # crash mid-delivery: PagerDuty paged, Slack hanging
        rec.hold["/slack"] = asyncio.Event()
        c = make_alert(alert_id="c:1", dedup_key="tech|campaign=autumn")
        await produce(c)
        await _until(lambda: len(rec.at("/pd")) == 2 and len(rec.at("/slack")) == 2, what="c in flight")
        from alerting.ledger import Ledger
        probe = Ledger(tmp_path / "data" / "router-ledger.sqlite3")
        await _until(lambda: getattr(probe.get("ops/pagerduty/0", c["dedup_key"], "firing", "c:1"), "state", None)
                     == "delivered", what="PagerDuty delivery recorded")
        probe.close()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        committed_after_crash = await _committed(kafka_bootstrap, group, topic)
        rec.hold.pop("/slack").set()

        stop2 = asyncio.Event()
        task2 = asyncio.create_task(serve_router(settings(), stop2, Metrics(CollectorRegistry()), env))
        for _ in range(300):
            if await _committed(kafka_bootstrap, group, topic) == 3:
                break
            await asyncio.sleep(0.2)
        committed_final = await _committed(kafka_bootstrap, group, topic)
        stop2.set()
        await task2

        dlq_consumer = AIOKafkaConsumer(dlq, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                                        enable_auto_commit=False, group_id=None)
        await dlq_consumer.start()
        batch = await dlq_consumer.getmany(timeout_ms=5000)
        await dlq_consumer.stop()
        await producer.stop()
        await rec.stop()
        dead = [json.loads(m.value) for msgs in batch.values() for m in msgs]
        return rec, committed_first, committed_after_crash, committed_final, dead

    rec, committed_first, committed_after_crash, committed_final, dead = asyncio.run(go())
    assert committed_first == 2
    assert committed_after_crash == 2  # c was not committed: it was still being delivered
    assert committed_final == 3
    pd_keys = [r.json()["dedup_key"] for r in rec.at("/pd")]
    assert pd_keys == ["tech|campaign=spring", "tech|campaign=autumn"]  # no second page for c after restart
    slack_ids = [r.json()["text"] for r in rec.at("/slack")]
    assert len(slack_ids) == 3  # a, c (lost in the crash), c again: nothing lost
    assert len(dead) == 1 and dead[0]["receiver"] == "legal/msteams/0" and "HTTP 400" in dead[0]["reason"]
    assert dead[0]["alert"]["alert_id"] == "b:1"
