"""The thin Kafka layer: read ``deliverability-alerts``, hand each value to the dispatcher, commit after.

Offsets are committed per message only once :meth:`Dispatcher.handle` has returned, i.e. every receiver was
delivered or dead-lettered (and the DLQ write acknowledged). A crash before that re-reads the message, and the
ledger turns the re-read into "send what is still missing". Messages are handled one at a time in offset order,
so a slow receiver delays later alerts but never reorders firing/resolved of one dedup_key (same partition).
"""
from __future__ import annotations

import asyncio
import json
import logging

from alerting.deadletter import dead_letter_record
from alerting.dispatcher import Dispatcher

log = logging.getLogger("alerting.consumer")
ALERTS_TOPIC = "deliverability-alerts"


async def process_record(dispatcher: Dispatcher, value: bytes | None) -> None:
    try:
        alert = json.loads(value) if value is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = f"not JSON: {exc}"
        await dispatcher.dead_letters.send("", dead_letter_record(None, reason, None, None, 0, dispatcher.clock(),
                                                                  value))
        dispatcher._count_dead("alerts")
        return
    await dispatcher.handle(alert, raw=value)


async def consume(consumer, dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    """Loop until ``stop`` is set; the message in hand is always finished (and committed) first."""
    from aiokafka import TopicPartition  # noqa: F401  (import here keeps the module importable without Kafka)

    while not stop.is_set():
        batch = await consumer.getmany(timeout_ms=500, max_records=50)
        for tp, messages in batch.items():
            for msg in messages:
                await process_record(dispatcher, msg.value)
                await consumer.commit({tp: msg.offset + 1})
                if stop.is_set():
                    return
