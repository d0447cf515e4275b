"""Dead-letter sinks: where an alert goes when a receiver refuses it for good or retries run out.

The record keeps the whole alert plus the reason, so an operator can replay it once the receiver is fixed.
Kafka (``deliverability-alerts-dlq``) in production; a JSON-lines file for local runs without a broker.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Protocol

DLQ_TOPIC = "deliverability-alerts-dlq"


class DeadLetterSink(Protocol):
    async def send(self, key: str, record: dict) -> None: ...


def dead_letter_record(alert, reason: str, receiver: str | None, receiver_type: str | None, attempts: int,
                       failed_at: float, raw: bytes | None = None) -> dict:
    record = {"reason": reason, "receiver": receiver, "receiver_type": receiver_type, "attempts": attempts,
              "failed_at": failed_at, "alert": alert}
    if raw is not None:
        record["raw"] = raw.decode("utf-8", errors="replace")[:65536]
    return record


class KafkaDeadLetterSink:
    """Writes to the DLQ topic with acks=all and waits, so the offset is committed only after the DLQ has it."""

    def __init__(self, producer, topic: str = DLQ_TOPIC):
        self.producer = producer
        self.topic = topic

    async def send(self, key: str, record: dict) -> None:
        await self.producer.send_and_wait(self.topic, json.dumps(record, sort_keys=True).encode(),
                                          key=key.encode() if key else None)


class FileDeadLetterSink:
    """Appends one JSON record per line and fsyncs; for runs without Kafka."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _append(self, line: str) -> None:
        import os
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    async def send(self, key: str, record: dict) -> None:
        await asyncio.to_thread(self._append, json.dumps({"key": key, **record}, sort_keys=True))

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
