"""Against the real broker: POST batches -> events topic (one JSON-array message per
request; count, mapping, no duplicates); broker stopped -> retry status; broker back + ESP
retry -> nothing lost and nothing written twice."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter

import pytest
from kafka import KafkaConsumer

from ingest.producer import KafkaEventProducer
from streams.codec import decode_events
from tests.kafka_fixture import KafkaBroker, create_topic

from .helpers import AppHarness, make_config

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
JSON = {"Content-Type": "application/json"}


def batch(start: int, n: int, campaign: str) -> bytes:
    kinds = ["delivered", "bounce", "open", "deferred"]
    return json.dumps([{"event": kinds[i % 4], "email": f"user{i}@{'gmail.com' if i % 2 else 'yahoo.com'}",
                        "timestamp": 1700000000 + i, "sg_event_id": f"{campaign}-{i}", "category": campaign,
                        "reason": f"550 5.1.1 <user{i}@gmail.com> unknown", "status": "5.1.1"}
                       for i in range(start, start + n)]).encode()


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000)
    records = []
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            for msg in consumer:
                records.append(msg)
            if len(records) >= expected:
                # one more short poll to catch anything beyond the expected count
                for msg in consumer:
                    records.append(msg)
                break
    finally:
        consumer.close()
    return records


def decode(records) -> list[dict]:
    """Events of the topic, through the detection worker's own decoder."""
    events = []
    for r in records:
        good, bad = decode_events(r.value)
        assert not bad, bad
        events.extend(good)
    return events


def topics(bootstrap: str) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    events, dlq = f"deliverability-events-{suffix}", f"deliverability-events-dlq-{suffix}"
    for t in (events, dlq):
        create_topic(bootstrap, t, partitions=3)
    return events, dlq


def config_for(bootstrap: str, events: str, dlq: str, timeout: float = 5.0):
    cfg = make_config(sendgrid={"unauthenticated": True})
    cfg.bootstrap_servers, cfg.events_topic, cfg.dlq_topic = bootstrap, events, dlq
    cfg.produce_timeout_seconds = timeout
    return cfg


def test_batches_reach_the_events_topic_once_with_mapping(kafka_bootstrap):
    events_topic, dlq_topic = topics(kafka_bootstrap)
    cfg = config_for(kafka_bootstrap, events_topic, dlq_topic)

    async def go():
        producer = KafkaEventProducer(cfg.bootstrap_servers, events_topic, dlq_topic, timeout=10)
        await producer.start()
        try:
            async with AppHarness(cfg, producer) as h:
                for i, campaign in enumerate(["spring", "summer", "autumn"]):
                    r = await h.client.post("/webhooks/sendgrid", data=batch(i * 200, 200, campaign), headers=JSON)
                    assert r.status == 200, await r.text()
                # SendGrid redelivers the first batch: nothing new
                r = await h.client.post("/webhooks/sendgrid", data=batch(0, 200, "spring"), headers=JSON)
                assert (await r.json())["duplicates"] == 200
                r = await h.client.post("/webhooks/sendgrid", data=b"[{", headers=JSON)
                assert r.status == 400
                assert (await h.client.get("/readyz")).status == 200
        finally:
            await producer.stop()
    asyncio.run(go())

    records = read_topic(kafka_bootstrap, events_topic, 3)
    # one message per accepted request, each a JSON array, no key (spread over partitions)
    assert len(records) == 3
    assert all(r.key is None and r.value[:1] == b"[" for r in records)
    assert sorted(len(json.loads(r.value)) for r in records) == [200, 200, 200]
    values = decode(records)
    assert len(values) == 600
    ids = Counter(v["event_id"] for v in values)
    assert max(ids.values()) == 1
    for r in records:  # a request's events stay together, in order
        campaigns = {v["campaign"] for v in json.loads(r.value)}
        assert len(campaigns) == 1
    for v in values:
        assert "@" not in json.dumps({k: x for k, x in v.items() if k != "message_id"})
    by_type = Counter((v["type"], v["bounce_class"]) for v in values)
    assert by_type == {("delivered", None): 150, ("bounced", "hard"): 150, ("opened", None): 150,
                       ("deferred", None): 150}
    assert {v["mailbox_provider"] for v in values} == {"gmail", "yahoo"}
    dlq = read_topic(kafka_bootstrap, dlq_topic, 1)
    assert len(dlq) == 1 and json.loads(dlq[0].value)["body"] == "[{"


def test_broker_outage_answers_retry_and_loses_nothing(tmp_path):
    broker = KafkaBroker(data_dir=tmp_path / "kafka")
    broker.start()
    try:
        events_topic, dlq_topic = topics(broker.bootstrap)
        cfg = config_for(broker.bootstrap, events_topic, dlq_topic, timeout=3.0)
        statuses: list[int] = []
        answers: list[dict] = []

        async def go():
            producer = KafkaEventProducer(cfg.bootstrap_servers, events_topic, dlq_topic, timeout=3.0,
                                          request_timeout_ms=4000, retry_backoff_ms=200)
            await producer.start()
            try:
                async with AppHarness(cfg, producer) as h:
                    r = await h.client.post("/webhooks/sendgrid", data=batch(0, 100, "before"), headers=JSON)
                    assert r.status == 200
                    broker.stop()  # blocking on purpose: main thread (see KafkaBroker)
                    r = await h.client.post("/webhooks/sendgrid", data=batch(0, 100, "during"), headers=JSON)
                    statuses.append(r.status)
                    assert (await h.client.get("/readyz")).status == 503
                    broker.start()  # from the main thread: the JVM dies with its parent thread
                    # the ESP retries the failed batch until it gets a 2xx
                    for _ in range(60):
                        r = await h.client.post("/webhooks/sendgrid", data=batch(0, 100, "during"), headers=JSON)
                        statuses.append(r.status)
                        if r.status == 200:
                            body = await r.json()
                            answers.append({"accepted": body["accepted"], "duplicates": body["duplicates"]})
                            break
                        await asyncio.sleep(1)
                    r = await h.client.post("/webhooks/sendgrid", data=batch(0, 100, "after"), headers=JSON)
                    assert r.status == 200
            finally:
                await producer.stop()
        asyncio.run(go())

        print(f"\nstatuses {statuses}, retry answers {answers}")
        assert statuses[0] == 503 and statuses[-1] == 200
        records = read_topic(broker.bootstrap, events_topic, 3)
        ids = Counter(ev["event_id"] for ev in decode(records))
        print(f"outage test: {len(records)} messages, duplicates {sum(ids.values()) - len(ids)}")
        expected = {f"sendgrid:{c}-{i}" for c in ("before", "during", "after") for i in range(100)}
        assert set(ids) == expected            # nothing lost
        # ... and nothing written twice: the send that timed out during the outage stayed
        # queued in the (idempotent) client and was written once after recovery; the ESP's
        # retry waited for it instead of producing a second copy.
        assert max(ids.values()) == 1
        assert len(records) == 3
        # the successful retry says what happened to the outage batch: either the queued send
        # made it (all duplicates) or it failed for good and the retry wrote it (all accepted)
        assert answers[-1] in ({"accepted": 0, "duplicates": 100}, {"accepted": 100, "duplicates": 0})
    finally:
        broker.cleanup()


def test_large_requests_are_split_by_event_count_and_bytes(kafka_bootstrap):
    events_topic, dlq_topic = topics(kafka_bootstrap)
    cfg = config_for(kafka_bootstrap, events_topic, dlq_topic)

    async def go():
        producer = KafkaEventProducer(cfg.bootstrap_servers, events_topic, dlq_topic, timeout=10,
                                      max_events_per_message=64, max_message_bytes=20_000)
        await producer.start()
        try:
            async with AppHarness(cfg, producer) as h:
                r = await h.client.post("/webhooks/sendgrid", data=batch(0, 200, "big"), headers=JSON)
                assert r.status == 200 and (await r.json())["accepted"] == 200
        finally:
            await producer.stop()
    asyncio.run(go())

    records = read_topic(kafka_bootstrap, events_topic, 4)
    sizes = [len(json.loads(r.value)) for r in records]
    assert sum(sizes) == 200 and max(sizes) <= 64 and len(records) >= 4
    assert all(len(r.value) <= 20_000 for r in records)
    events = decode(records)
    assert sorted(int(ev["event_id"].rsplit("-", 1)[1]) for ev in events) == list(range(200))
