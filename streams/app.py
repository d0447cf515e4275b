"""The Faust application: topics, tables and the two agents (see the package docstring)."""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any, Iterator, MutableMapping

import faust
import numpy as np

from ddetect.metrics import Metrics, default_metrics
from detector.counts import BOUNCE_CLASSES, SCOPE_FIELDS, EventBatch, Vocabulary, aggregate
from detector.engine import Engine
from detector.event import EVENT_TYPES
from detector.rules import RuleSet, default_rules_path, load_rules

from .codec import dead_letter, decode_events, delta_from_json, delta_to_json
from .compat import patch_faust_aiokafka
from .config import WorkerConfig
from .partitioning import Partitioner

log = logging.getLogger("ddetect.worker")


class PartitionView(MutableMapping):
    """The scope states of one partition, seen through the (all-partition) Faust table.

    Iteration uses an index of the partition's scope ids kept next to its clock, not a
    scan of the table: RocksDB-backed tables only iterate partitions the assignor lists as
    active for the changelog, and a scan would cost O(all scopes) per closed window anyway.
    The index is written back only when a scope is added or removed.
    """

    def __init__(self, table: Any, index: dict[str, int]):
        self.table, self.index, self.dirty = table, index, False

    def __getitem__(self, key: str) -> dict:
        return self.table[key]

    def get(self, key: str, default=None):
        return self.table.get(key, default)

    def __setitem__(self, key: str, value: dict) -> None:
        self.table[key] = value
        if key not in self.index:
            self.index[key] = 1
            self.dirty = True

    def __delitem__(self, key: str) -> None:
        del self.table[key]
        self.index.pop(key, None)
        self.dirty = True

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.index))

    def __len__(self) -> int:
        return len(self.index)


def create_app(config: WorkerConfig | None = None, ruleset: RuleSet | None = None,
               metrics: Metrics | None = None) -> faust.App:
    patch_faust_aiokafka()
    config = config or WorkerConfig()
    ruleset = ruleset or load_rules(config.rules or default_rules_path())
    metrics = metrics or default_metrics()
    partitioner = Partitioner(ruleset, config.partitions)
    window = ruleset.settings.window

    app = faust.App(
        config.app_id,
        broker="kafka://" + config.broker,
        store=config.store,
        datadir=config.data_dir,
        web_port=config.web_port,
        web_host="127.0.0.1",
        topic_partitions=config.partitions,
        topic_replication_factor=1,
        # Seconds, not Faust's 30+ s defaults: a worker joins and rebalances quickly.
        broker_session_timeout=6,
        broker_rebalance_timeout=6,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        table_standby_replicas=1,  # a second worker keeps a warm copy, so a handover is instant
        producer_acks=-1,
        logging_config=None,
    )
    events_topic = app.topic(config.events_topic, value_serializer="raw")
    dlq_topic = app.topic(config.dlq_topic, value_serializer="raw")
    alerts_topic = app.topic(config.alerts_topic, key_serializer="raw", value_serializer="json")
    deltas_topic = app.topic(f"{config.app_id}-scope-deltas", key_serializer="raw", value_serializer="json",
                             partitions=config.partitions, internal=True)
    # Keys and values are JSON (Faust's table_key_serializer / table_value_serializer defaults).
    scope_state = app.Table("scope-state", partitions=config.partitions)

    clocks = app.Table("clock", partitions=config.partitions)
    vocab = {f: Vocabulary() for f in SCOPE_FIELDS}
    scope_defs = ruleset.scopes()

    @app.agent(events_topic)
    async def count_events(stream):
        # noack_take: a batch's offsets are acknowledged only after its deltas were sent.
        # Plain take() acks in a `finally`, so a worker stopped mid-batch would commit
        # offsets of events it never counted.
        async for batch_events in stream.noack_take(config.batch_size, within=config.batch_wait):
            await _handle_batch([e.value for e in batch_events])
            for ev in batch_events:
                await stream.ack(ev)

    async def _handle_batch(values: list) -> None:
        events: list[dict] = []
        for raw in values:
            good, bad = decode_events(raw)
            events.extend(good)
            for item, reason in bad:
                metrics.events_invalid.inc()
                metrics.dead_letters.labels("events").inc()
                await dlq_topic.send(value=dead_letter(item, reason, config.events_topic))
        if not events:
            return
        try:
            await _count_batch(events)
        except Exception as exc:  # a bug must not stop the agent: park the batch, keep going
            log.exception("counting a batch of %d events failed", len(events))
            metrics.dead_letters.labels("events").inc()
            await dlq_topic.send(value=dead_letter(events, f"internal error: {exc!r}", config.events_topic))

    async def _count_batch(events: list[dict]) -> None:
        batch = EventBatch.from_events(events, vocab)
        _observe_batch(metrics, batch)
        per_partition: dict[int, list[dict]] = defaultdict(list)
        for delta in aggregate(batch, scope_defs, window).values():
            per_partition[partitioner(delta.scope.keys(), delta.scope_id)].append(delta_to_json(delta))
        newest = float(batch.timestamp.max())
        # Every partition hears the newest event time, so its windows close on time
        # even when none of its scopes were in this batch.
        for p in range(config.partitions):
            await deltas_topic.send(key=f"p{p}".encode(), partition=p,
                                    value={"newest": newest, "deltas": per_partition.get(p, [])})

    clock_high = [0.0]  # newest closed-window bound over this worker's partitions

    @app.agent(deltas_topic)
    async def detect(stream):
        async for event in stream.events():
            try:
                p = event.message.partition
                meta = dict(clocks.get(f"p{p}") or {})
                # The offset is stored with the clock, in the same changelog as the scope
                # states, so a message redelivered after a handover is recognised and skipped.
                if event.message.offset <= meta.get("offset", -1):
                    continue
                meta["offset"] = event.message.offset
                view = PartitionView(scope_state, dict(clocks.get(f"index:p{p}") or {}))
                engine = Engine(ruleset, states=view, meta=meta)
                value = event.value
                late = 0
                for d in value["deltas"]:
                    late += engine.apply_delta(delta_from_json(d))
                if late:
                    metrics.events_late.inc(late)
                started = time.perf_counter()
                alerts = engine.advance(value["newest"])
                if engine.meta.get("closed_until") != (clocks.get(f"p{p}") or {}).get("closed_until"):
                    metrics.evaluation_duration.observe(time.perf_counter() - started)
                clocks[f"p{p}"] = dict(engine.meta)
                if view.dirty:
                    clocks[f"index:p{p}"] = view.index
                clock_high[0] = max(clock_high[0], engine.meta.get("closed_until") or 0)
                metrics.watermark.set(clock_high[0])
                for alert in alerts:
                    metrics.alerts.labels(alert["rule"], alert["severity"], alert["category"], alert["status"]).inc()
                    gauge = metrics.alerts_active.labels(alert["rule"], alert["severity"], alert["category"])
                    gauge.inc() if alert["status"] == "firing" else gauge.dec()
                    await alerts_topic.send(key=alert["dedup_key"].encode(), value=alert)
            except Exception:  # keep consuming; the scope's state stays as last written
                log.exception("detection step failed on partition %s", event.message.partition)
                metrics.dead_letters.labels("scope-deltas").inc()


    @app.timer(5.0)
    async def report_scopes():
        indexes = [clocks.get(f"index:p{p}") or {} for p in range(config.partitions)]
        metrics.scopes_tracked.set(sum(len(i) for i in indexes))

    @app.page("/metrics")
    async def metrics_page(web, request):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web, request):
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web, request):
        ready = app.rebalancing is False and app.consumer is not None
        return web.json({"ready": bool(ready)}, status=200 if ready else 503)

    app.ddetect_agents = {"count_events": count_events, "detect": detect}  # for tests
    app.ddetect_tables = {"scope_state": scope_state, "clocks": clocks}
    app.ddetect_topics = {"events": events_topic, "dlq": dlq_topic, "alerts": alerts_topic, "deltas": deltas_topic}
    return app


def _observe_batch(metrics: Metrics, batch: EventBatch) -> None:
    """Per-type counters from the batch's code columns (a bincount, not a loop over events)."""
    bcode = batch.bounce_code.astype(np.int64) + 1  # -1 (none) -> 0
    combo = np.bincount(batch.type_code.astype(np.int64) * (len(BOUNCE_CLASSES) + 1) + bcode,
                        minlength=len(EVENT_TYPES) * (len(BOUNCE_CLASSES) + 1))
    for idx in np.flatnonzero(combo):
        t, b = divmod(int(idx), len(BOUNCE_CLASSES) + 1)
        metrics.events_processed.labels(EVENT_TYPES[t], BOUNCE_CLASSES[b - 1] if b else "none").inc(int(combo[idx]))
    newest = float(batch.timestamp.max())
    metrics.last_event_timestamp.set(newest)
    lateness = time.time() - newest
    if lateness >= 0:
        metrics.event_lateness.observe(lateness)
