"""Kafka output: canonical events (key = campaign) and dead letters, acks=all.

The server answers 2xx only after :meth:`KafkaEventProducer.send_events` returned, i.e.
after every event of the request was acknowledged by all in-sync replicas. Any failure
or timeout raises :class:`BrokerUnavailable`, which the server turns into the status
that makes the ESP retry. A timed-out produce may still complete later, so delivery is
at-least-once: downstream stages dedupe on ``event_id``.

The dead-letter topic holds the raw payload (with recipient addresses) by design: it is
the only place raw input is kept, for replay after a fix. Treat it as sensitive
(restricted ACLs, short retention).
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Protocol

from detector.event import dumps

log = logging.getLogger("ddetect.ingest.producer")


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time (message names no payload data).

    ``pending`` holds (index, future) for sends still queued in the client: they may
    complete later, and the server then marks those events as seen so the ESP's retry
    does not produce them twice."""

    def __init__(self, message: str, pending: list | None = None):
        super().__init__(message)
        self.pending = pending or []


class EventProducer(Protocol):
    async def send_events(self, events: list[dict]) -> None: ...
    async def send_dead_letter(self, record: dict) -> None: ...
    async def ping(self) -> bool: ...


def dead_letter_record(provider: str, reason: str, body: bytes, content_type: str,
                       index: int | None = None, raw_event: object = None) -> dict:
    """The DLQ message: enough to replay (raw bytes, or the one raw event of a batch)."""
    record = {"provider": provider, "reason": reason, "received_at": time.time(),
              "content_type": content_type, "event_index": index}
    if raw_event is not None:
        record["raw_event"] = raw_event
    else:
        try:
            record["body"], record["body_encoding"] = body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            record["body"], record["body_encoding"] = base64.b64encode(body).decode(), "base64"
    return record


class KafkaEventProducer:
    """aiokafka producer with acks=all and idempotence (no duplicates from its own retries)."""

    def __init__(self, bootstrap_servers: str, events_topic: str, dlq_topic: str,
                 timeout: float = 5.0, metrics=None, **producer_options):
        self.bootstrap_servers = bootstrap_servers
        self.events_topic = events_topic
        self.dlq_topic = dlq_topic
        self.timeout = timeout
        self.metrics = metrics
        self.options = dict(acks="all", enable_idempotence=True, linger_ms=2,
                            max_batch_size=256 * 1024, request_timeout_ms=int(max(timeout, 1) * 1000) + 5000,
                            retry_backoff_ms=200)
        self.options.update(producer_options)
        self._producer = None
        self._starting: asyncio.Task | None = None

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """One attempt to connect; raises on failure (see :meth:`start_in_background`)."""
        from aiokafka import AIOKafkaProducer
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, **self.options)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    def start_in_background(self, retry_every: float = 2.0) -> asyncio.Task:
        """Keep trying to connect so the server can come up (and answer "retry") while
        the broker is down."""
        async def loop():
            while self._producer is None:
                try:
                    await self.start()
                    log.info("connected to Kafka at %s", self.bootstrap_servers)
                except Exception as exc:
                    log.warning("Kafka not reachable (%s); retrying in %.0f s", type(exc).__name__, retry_every)
                    await asyncio.sleep(retry_every)
        self._starting = asyncio.ensure_future(loop())
        return self._starting

    async def stop(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def _produce(self, topic: str, items: list[tuple[bytes | None, bytes]]) -> None:
        if self._producer is None:
            raise BrokerUnavailable("producer not connected")
        started = time.perf_counter()

        futures: list = []

        async def all_acked():
            for key, value in items:
                futures.append(await self._producer.send(topic, value=value, key=key))
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(all_acked(), self.timeout)
        except asyncio.TimeoutError:
            pending = [(i, f) for i, f in enumerate(futures) if not f.done()]
            raise BrokerUnavailable(f"no acknowledgement within {self.timeout:g} s", pending) from None
        except Exception as exc:  # KafkaError and friends
            raise BrokerUnavailable(type(exc).__name__) from None
        if self.metrics is not None:
            self.metrics.produce_duration.labels(topic).observe(time.perf_counter() - started)

    async def send_events(self, events: list[dict]) -> None:
        await self._produce(self.events_topic,
                            [(ev["campaign"].encode("utf-8"), dumps(ev).encode("utf-8")) for ev in events])

    async def send_dead_letter(self, record: dict) -> None:
        value = json.dumps(record, separators=(",", ":"), default=str).encode("utf-8")
        await self._produce(self.dlq_topic, [(str(record.get("provider", "")).encode(), value)])

    async def ping(self) -> bool:
        if self._producer is None:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), 2.0)
            return True
        except Exception:
            return False
