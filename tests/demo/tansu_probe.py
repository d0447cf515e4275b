"""Exercise a Kafka-protocol broker the way the demo's processes do; print the outcome as JSON.

Run as a subprocess (``python -m tests.demo.tansu_probe BOOTSTRAP [--patch]``) because the
aiokafka patch is process-wide and must not leak into other tests' clients."""
from __future__ import annotations

import asyncio
import json
import sys


async def probe(bootstrap: str) -> dict:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from ddetect.embedded_broker import ensure_topics

    out: dict = {}
    out["created"] = await ensure_topics(bootstrap, {"probe": 3, "probe-1p": 1})
    out["created_again"] = await ensure_topics(bootstrap, {"probe": 3})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    try:
        await producer.start()
    except Exception as exc:  # the unpatched case: report what the broker answered
        out["init_producer_id"] = type(exc).__name__
        await producer.stop()
        return out
    out["init_producer_id"] = "ok"
    try:
        out["partitions"] = sorted(await producer.partitions_for("probe"))
        for i in range(30):
            await producer.send("probe", f"v{i}".encode(), key=f"k{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()

    async def read(expect: int) -> list[str]:
        consumer = AIOKafkaConsumer("probe", bootstrap_servers=bootstrap, group_id="probe-group",
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    session_timeout_ms=6000, heartbeat_interval_ms=1000)
        await consumer.start()
        got: list[str] = []
        try:
            for _ in range(20):
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    got.extend(m.value.decode() for m in messages)
                if len(got) >= expect and expect:
                    break
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    first = await read(30)
    again = await read(0)
    out["consumed"] = sorted(first, key=lambda v: int(v[1:]))
    out["consumed_after_commit"] = again
    return out


def main(argv: list[str]) -> int:
    bootstrap = argv[0]
    if "--patch" in argv:
        from ddetect.embedded_broker import patch_aiokafka_for_tansu

        patch_aiokafka_for_tansu()
    print(json.dumps(asyncio.run(probe(bootstrap))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
