"""Kafka output: canonical events as JSON-array messages, and dead letters, acks=all.

Message shape: each accepted webhook request becomes ONE message on the events topic whose
value is a JSON array of canonical events (compact JSON), split into a few messages only
when it exceeds ``max_events_per_message`` (default 1,000) or ``max_message_bytes``
(default 900 KB, under the broker's 1 MB ``message.max.bytes`` default). The detection
worker (``streams/codec.py`` ``decode_events``) accepts an object or an array; arrays keep
Faust's per-message overhead off its hot path, and one produce per request keeps the
client's per-message overhead off ours (1,000 sends cost more than normalising 1,000
events).

Key: none, so the client spreads messages over the partitions. The worker aggregates
whatever partition it reads and re-keys per scope itself (``scope-deltas``), so nothing
needs a campaign or a provider on one partition; a provider key would pin a single-ESP
deployment (the usual case) to one partition, i.e. one worker, and a campaign key no longer
describes a message that mixes campaigns. Order across requests carries no meaning anyway
(ESPs retry and reorder; windows use event time).

The server answers 2xx only after :meth:`KafkaEventProducer.send_events` returned, i.e.
after every message of the request was acknowledged by all in-sync replicas. Any failure
or timeout raises :class:`BrokerUnavailable`, which the server turns into the status that
makes the ESP retry. A send that timed out is NOT cancelled (cancelling an aiokafka future
does not stop the send, it only hides the outcome): the exception hands the sends to the
server, which marks acknowledged ones as seen and waits for queued ones instead of writing
a second copy when the ESP retries (``server.py``). The producer is idempotent, so its own
retries across a broker restart write each message once.

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

from . import fastjson

log = logging.getLogger("ddetect.ingest.producer")

DEFAULT_MAX_EVENTS_PER_MESSAGE = 1000
DEFAULT_MAX_MESSAGE_BYTES = 900 * 1024


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time (message names no payload data).

    ``sends`` holds ((start, stop), future) for each message that reached the client,
    carrying events[start:stop] of the request. A future not yet done may still complete
    (the client keeps retrying); a successful one was written. The server uses them so
    that the ESP's retry does not write those events twice."""

    def __init__(self, message: str, sends: list | None = None):
        super().__init__(message)
        self.sends = sends or []


def encode_event_messages(events: list[dict], max_events: int = DEFAULT_MAX_EVENTS_PER_MESSAGE,
                          max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[tuple[int, int], bytes]]:
    """Chunk ``events`` into JSON-array message values: [((start, stop), value)].

    Common case (a request within both limits): one encoding of the whole list. An event
    that alone exceeds ``max_bytes`` still gets its own message (the client refuses it if
    it is over ``max_request_size`` too, and the server answers "retry").
    """
    if not events:
        return []
    if len(events) <= max_events:
        value = fastjson.dumps_compact(events)
        if len(value) <= max_bytes:
            return [((0, len(events)), value)]
    parts = [fastjson.dumps_compact(ev) for ev in events]
    out, start, size = [], 0, 2
    for i, part in enumerate(parts):
        if i > start and (i - start >= max_events or size + len(part) + 1 > max_bytes):
            out.append(((start, i), b"[" + b",".join(parts[start:i]) + b"]"))
            start, size = i, 2
        size += len(part) + 1
    out.append(((start, len(parts)), b"[" + b",".join(parts[start:]) + b"]"))
    return out


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
                 timeout: float = 5.0, metrics=None,
                 max_events_per_message: int = DEFAULT_MAX_EVENTS_PER_MESSAGE,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, **producer_options):
        if max_events_per_message < 1 or max_message_bytes < 1024:
            raise ValueError("max_events_per_message must be >= 1 and max_message_bytes >= 1024")
        self.bootstrap_servers = bootstrap_servers
        self.events_topic = events_topic
        self.dlq_topic = dlq_topic
        self.timeout = timeout
        self.metrics = metrics
        self.max_events_per_message = max_events_per_message
        self.max_message_bytes = max_message_bytes
        room = max(max_message_bytes + 64 * 1024, 1024 * 1024)  # one request's message fits a batch
        self.options = dict(acks="all", enable_idempotence=True, linger_ms=2,
                            max_batch_size=room, max_request_size=room,
                            request_timeout_ms=int(max(timeout, 1) * 1000) + 5000, retry_backoff_ms=200)
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

    async def _produce(self, topic: str, items: list[tuple[tuple[int, int], bytes | None, bytes]]) -> None:
        """Send every (span, key, value); return when all are acknowledged.

        Never cancels a send whose future exists: on timeout or error those futures go to
        the caller in :attr:`BrokerUnavailable.sends`. Cancelling ``send()`` itself while it
        waits for metadata or buffer space is safe: the message is then not queued."""
        if not items:
            return
        if self._producer is None:
            raise BrokerUnavailable("producer not connected")
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        deadline = loop.time() + self.timeout
        sends: list = []
        try:
            for span, key, value in items:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise asyncio.TimeoutError
                future = await asyncio.wait_for(self._producer.send(topic, value=value, key=key), remaining)
                sends.append((span, future))
            remaining = deadline - loop.time()
            if remaining > 0:
                await asyncio.wait([f for _, f in sends], timeout=remaining)  # cancels nothing
        except asyncio.TimeoutError:
            pass
        except Exception as exc:  # KafkaError and friends, e.g. a message too large
            raise BrokerUnavailable(type(exc).__name__, sends) from None
        if len(sends) < len(items) or not all(f.done() for _, f in sends):
            raise BrokerUnavailable(f"no acknowledgement within {self.timeout:g} s", sends)
        for _, future in sends:
            if future.cancelled() or future.exception() is not None:
                reason = "cancelled" if future.cancelled() else type(future.exception()).__name__
                raise BrokerUnavailable(reason, sends)
        if self.metrics is not None:
            self.metrics.produce_duration.labels(topic).observe(time.perf_counter() - started)

    async def send_events(self, events: list[dict]) -> None:
        """The request's events as one JSON-array message (or a few), acks=all."""
        chunks = encode_event_messages(events, self.max_events_per_message, self.max_message_bytes)
        await self._produce(self.events_topic, [(span, None, value) for span, value in chunks])

    async def send_dead_letter(self, record: dict) -> None:
        value = json.dumps(record, separators=(",", ":"), default=str).encode("utf-8")
        await self._produce(self.dlq_topic, [((0, 1), str(record.get("provider", "")).encode(), value)])

    async def ping(self) -> bool:
        if self._producer is None:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), 2.0)
            return True
        except Exception:
            return False
