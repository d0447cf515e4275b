"""The retry path after a produce that did not complete in time (server logic; the real
broker version is test_kafka_integration.py::test_broker_outage_answers_retry_and_loses_nothing).

The producer here hands back send futures that the test settles by hand, which is what
aiokafka does when the broker is away: the send stays queued and completes, or fails, later.
"""
from __future__ import annotations

import asyncio
import json

from ingest.producer import BrokerUnavailable

from .helpers import AppHarness, make_config, run

JSON = {"Content-Type": "application/json"}


def batch(n: int, prefix: str = "e") -> bytes:
    return json.dumps([{"event": "delivered", "email": f"user{i}@gmail.com", "timestamp": 1700000000 + i,
                        "sg_event_id": f"{prefix}{i}", "category": "spring"} for i in range(n)]).encode()


class StallingProducer:
    """Each call queues its events in ``chunk``-sized messages whose futures the test
    settles; with ``stall`` the call gives up at once (as on a produce timeout)."""

    def __init__(self, chunk: int = 1000):
        self.chunk = chunk
        self.calls: list[list[str]] = []
        self.futures: list[asyncio.Future] = []
        self.stall = True
        self.release = None  # an asyncio.Event: when set, non-stalling calls wait for it

    async def send_events(self, events):
        self.calls.append([ev["event_id"] for ev in events])
        loop = asyncio.get_running_loop()
        sends = []
        for start in range(0, len(events), self.chunk):
            fut = loop.create_future()
            self.futures.append(fut)
            sends.append(((start, min(start + self.chunk, len(events))), fut))
        if self.stall:
            raise BrokerUnavailable("no acknowledgement within 0 s", sends)
        if self.release is not None:
            await self.release.wait()
        for _, fut in sends:
            fut.set_result(None)

    async def send_dead_letter(self, record):
        pass

    async def ping(self):
        return True


def config(timeout: float = 2.0):
    cfg = make_config(sendgrid={"unauthenticated": True})
    cfg.produce_timeout_seconds = timeout
    return cfg


async def post(h, body):
    r = await h.client.post("/webhooks/sendgrid", data=body, headers=JSON)
    return r.status, (await r.json())


def test_queued_send_that_completes_is_not_written_again_by_the_retry():
    producer = StallingProducer()

    async def go():
        async with AppHarness(config(), producer) as h:
            assert (await post(h, batch(50)))[0] == 503
            producer.futures[0].set_result(None)  # the broker came back and took it
            producer.stall = False
            status, body = await post(h, batch(50))
            assert status == 200 and body["accepted"] == 0 and body["duplicates"] == 50
            assert len(producer.calls) == 1           # the retry produced nothing
    run(go())


def test_queued_send_that_fails_is_produced_by_the_retry():
    producer = StallingProducer()

    async def go():
        async with AppHarness(config(), producer) as h:
            assert (await post(h, batch(50)))[0] == 503
            producer.futures[0].set_exception(RuntimeError("expired"))
            producer.stall = False
            status, body = await post(h, batch(50))
            assert status == 200 and body["accepted"] == 50 and body["duplicates"] == 0
            assert producer.calls[1] == producer.calls[0]
    run(go())


def test_retry_waits_for_a_queued_send_then_answers_retry_if_it_is_still_unsettled():
    producer = StallingProducer()

    async def go():
        async with AppHarness(config(timeout=0.2), producer) as h:
            assert (await post(h, batch(20)))[0] == 503
            producer.stall = False
            status, body = await post(h, batch(20))   # still queued: retry later, produce nothing
            assert status == 503 and len(producer.calls) == 1
            # settled while a retry waits: it wakes up and counts the events as seen
            retry = asyncio.ensure_future(post(h, batch(20)))
            await asyncio.sleep(0.05)
            producer.futures[0].set_result(None)
            status, body = await retry
            assert status == 200 and body["duplicates"] == 20 and len(producer.calls) == 1
    run(go())


def test_only_the_failed_message_of_a_split_request_is_produced_again():
    producer = StallingProducer(chunk=10)

    async def go():
        async with AppHarness(config(), producer) as h:
            assert (await post(h, batch(30)))[0] == 503
            first, second, third = producer.futures
            first.set_result(None)
            second.set_exception(RuntimeError("failed"))
            third.set_result(None)
            await asyncio.sleep(0)                     # let the settle callbacks run
            producer.stall = False
            status, body = await post(h, batch(30))
            assert status == 200 and body == {**body, "accepted": 10, "duplicates": 20}
            assert producer.calls[1] == [f"sendgrid:e{i}" for i in range(10, 20)]
    run(go())


def test_concurrent_redelivery_waits_for_the_first_request_instead_of_writing_twice():
    producer = StallingProducer()
    producer.stall = False

    async def go():
        producer.release = asyncio.Event()
        async with AppHarness(config(), producer) as h:
            first = asyncio.ensure_future(post(h, batch(40)))
            await asyncio.sleep(0.05)
            second = asyncio.ensure_future(post(h, batch(40)))   # the ESP's impatient retry
            await asyncio.sleep(0.05)
            assert not first.done() and not second.done()
            producer.release.set()
            (s1, b1), (s2, b2) = await first, await second
            assert (s1, b1["accepted"]) == (200, 40)
            assert (s2, b2["accepted"], b2["duplicates"]) == (200, 0, 40)
            assert len(producer.calls) == 1
    run(go())


def test_concurrent_redelivery_produces_when_the_first_request_fails():
    producer = StallingProducer()

    async def go():
        gate = asyncio.Event()
        original = producer.send_events

        async def slow_then_stall(events):
            await gate.wait()
            await original(events)
        producer.send_events = slow_then_stall
        async with AppHarness(config(), producer) as h:
            first = asyncio.ensure_future(post(h, batch(5)))
            await asyncio.sleep(0.05)
            second = asyncio.ensure_future(post(h, batch(5)))
            await asyncio.sleep(0.05)
            producer.futures.clear()
            gate.set()                                  # first gives up; its send is still queued
            assert (await first)[0] == 503
            await asyncio.sleep(0.05)
            assert not second.done()                    # ... so the redelivery waits for that send
            producer.futures[0].set_exception(RuntimeError("failed"))
            producer.stall = False
            status, body = await second                 # which failed: it produces the events itself
            assert status == 200 and body["accepted"] == 5 and len(producer.calls) == 2
    run(go())
