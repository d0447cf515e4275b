"""The Faust application: topics, tables and the two agents (see the package docstring)."""
from __future__ import annotations

import json
import logging
import time
import weakref
from collections import defaultdict
from datetime import timedelta
from typing import Any, Iterator, MutableMapping

import faust
import numpy as np

from ddetect.metrics import Metrics, default_metrics, observe_many
from ddetect.metrics_http import metrics_response
from ddetect.rates_collector import CampaignRatesCollector
from detector.counts import BOUNCE_CLASSES, SCOPE_FIELDS, EventBatch, Vocabulary, aggregate
from detector.coverage import BlindRules
from detector.lag import ComplaintLags, valid_summary
from detector.retries import RetryMemory
from detector.engine import Engine, sequence_types
from detector.event import EVENT_TYPES
from detector.gcpause import gc_paused
from detector.rules import RuleSet, default_rules_path, load_rules
from detector.clock import skip_window
from detector.skew import future_outliers

from .codec import dead_letter, decode_events, delta_from_json, delta_to_json
from .compat import patch_faust_aiokafka
from .config import WorkerConfig
from .partitioning import Partitioner

log = logging.getLogger("ddetect.worker")

#: Label bounds of the deliverability counters. Vocabulary codes are handed out in
#: first-seen order, so "code < N" keeps the first N distinct values a worker saw; later
#: ones share the label "other", and a null field is "none".
MAX_SENDING_DOMAIN_LABELS = 50
MAX_MAILBOX_PROVIDER_LABELS = 50
#: Windows one deltas message may fail to close (each is skipped) before the rest waits for the next message.
MAX_FAILED_WINDOWS = 3


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
    for line in ruleset.warnings:
        log.warning("%s", line)
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
    sequences = sequence_types(ruleset)
    blind = BlindRules(ruleset)
    # First attempts where the ESP does not number them: per worker, so a message whose
    # deferral and outcome land on partitions of different workers counts its outcome as new.
    retries = RetryMemory()
    # Complaint lags, learned from the deliveries and complaints this worker reads (detector/lag.py);
    # the fit travels with every deltas message into each partition's clock, where the engine reads it.
    lags = (ComplaintLags(ruleset.feedback_loops)
            if any(r.lag_median and r.lag_learn for r in ruleset.rules) else None)
    lag_summary: list = [None]

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
        if events:
            events = await _park_future(events)
        if not events:
            return
        try:
            await _count_batch(events)
        except Exception as exc:  # a bug must not stop the agent: park the batch, keep going
            log.exception("counting a batch of %d events failed", len(events))
            metrics.dead_letters.labels("events").inc()
            await dlq_topic.send(value=dead_letter(events, f"internal error: {exc!r}", config.events_topic))

    async def _park_future(events: list[dict]) -> list[dict]:
        """Events stamped beyond the max future skew past the wall clock would move the
        watermark (and make on-time events late): dead-letter them with the reason."""
        ts = np.fromiter((e["timestamp"] for e in events), np.float64, len(events))
        now = time.time()
        ahead = future_outliers(ts, config.max_future_skew, now=now)
        if not ahead.any():
            return events
        n = int(ahead.sum())
        metrics.events_future.inc(n)
        metrics.dead_letters.labels("events").inc(n)
        log.warning("%d event(s) stamped more than %g s after the wall clock were dead-lettered (max_future_skew)",
                    n, config.max_future_skew)
        for i in np.flatnonzero(ahead).tolist():
            reason = (f"timestamp: {ts[i]:.0f} is {ts[i] - now:.0f} s after the wall clock, beyond "
                      f"max_future_skew {config.max_future_skew:g} s (not counted)")
            await dlq_topic.send(value=dead_letter(events[i], reason, config.events_topic))
        return [e for e, bad in zip(events, ahead.tolist()) if not bad]

    campaigns = campaign_collector(metrics.registry)

    async def _count_batch(events: list[dict]) -> None:
        per_partition: dict[int, list[dict]] = defaultdict(list)
        with gc_paused():  # synchronous: no other coroutine runs while the collector waits
            batch = EventBatch.from_events(events, vocab, retries)
            _observe_batch(metrics, batch, campaigns)
            for v in blind.update(batch):  # once per ESP and rule
                log.warning("rule %s cannot run on %s traffic (%s): %s (see `ddetect doctor`)",
                            v.rule, v.esp, v.status, v.detail)
                metrics.rules_blind.labels(v.rule, v.esp, v.reason).set(1)
            for delta in aggregate(batch, scope_defs, window, sequences, ruleset.feedback_loops).values():
                per_partition[partitioner(delta.scope.keys(), delta.scope_id)].append(delta_to_json(delta))
        newest = float(batch.timestamp.max())
        if lags is not None:
            lags.observe(events)
            lags.expire(newest)
            if lags.refit(newest):
                lag_summary[0] = lags.summary()
        extra = {"lag": lag_summary[0]} if lag_summary[0] else {}
        # Every partition hears the newest event time, so its windows close on time
        # even when none of its scopes were in this batch.
        for p in range(config.partitions):
            await deltas_topic.send(key=f"p{p}".encode(), partition=p,
                                    value={"newest": newest, "deltas": per_partition.get(p, []), **extra})

    clock_high = [0.0]  # newest closed-window bound over this worker's partitions

    @app.agent(deltas_topic)
    async def detect(stream):
        async for event in stream.events():
            p, offset = event.message.partition, event.message.offset
            try:
                alerts, failures = _detect_message(p, offset, event.value)
            except Exception as exc:  # outside the engine (state store, a malformed message)
                log.exception("detection step failed on partition %s at offset %s", p, offset)
                alerts, failures = [], [f"internal error: {exc!r}"]
                try:  # the offset is saved, so the message is not retried for ever
                    clocks[f"p{p}"] = {**dict(clocks.get(f"p{p}") or {}), "offset": offset}
                except Exception:
                    log.exception("could not save the clock of partition %s", p)
            if failures:
                metrics.detection_failures.inc(len(failures))
                metrics.dead_letters.labels("scope-deltas").inc()
                try:
                    await dlq_topic.send(value=dead_letter(event.value, "detection: " + "; ".join(failures),
                                                           deltas_topic.get_topic_name()))
                except Exception:
                    log.exception("could not dead-letter the deltas message at offset %s", offset)
            for alert in alerts:
                metrics.alerts.labels(alert["rule"], alert["severity"], alert["category"], alert["status"]).inc()
                gauge = metrics.alerts_active.labels(alert["rule"], alert["severity"], alert["category"])
                gauge.inc() if alert["status"] == "firing" else gauge.dec()
                await alerts_topic.send(key=alert["dedup_key"].encode(), value=alert)

    def _detect_message(p: int, offset: int, value: dict) -> tuple[list[dict], list[str]]:
        """Apply one deltas message and advance the partition's clock: (alerts, failures).

        Never leaves the partition stuck: a failure while applying deltas keeps what was
        applied; a window whose evaluation raises is skipped (its counts dropped, up to
        ``MAX_FAILED_WINDOWS`` per message); the clock and offset are saved either way.
        """
        meta = dict(clocks.get(f"p{p}") or {})
        # The offset is stored with the clock, in the same changelog as the scope
        # states, so a message redelivered after a handover is recognised and skipped.
        if offset <= meta.get("offset", -1):
            return [], []
        meta["offset"] = offset
        if isinstance(value, dict) and valid_summary(value.get("lag")):
            meta["lag"] = value["lag"]
        view = PartitionView(scope_state, dict(clocks.get(f"index:p{p}") or {}))
        engine = Engine(ruleset, states=view, meta=meta)
        failures: list[str] = []
        alerts: list[dict] = []
        late = 0
        newest = None
        closed_before = meta.get("closed_until")
        with gc_paused():
            try:
                newest = float(value["newest"])
                for d in value["deltas"]:
                    late += engine.apply_delta(delta_from_json(d))
            except Exception as exc:
                log.exception("applying a deltas message failed on partition %s at offset %s", p, offset)
                failures.append(f"applying deltas: {exc!r}")
            started = time.perf_counter()
            for attempt in range(MAX_FAILED_WINDOWS + 1 if newest is not None else 0):
                try:
                    alerts = engine.advance(newest)
                    break
                except Exception as exc:
                    skipped = skip_window(view, engine.meta, window)
                    log.exception("evaluating window %s failed on partition %s at offset %s; window skipped",
                                  skipped, p, offset)
                    failures.append(f"window {skipped}: {exc!r}")
            else:
                alerts, engine._pending = engine._pending, []  # closed before the failures
        if late:
            metrics.events_late.inc(late)
        if engine.meta.get("closed_until") != closed_before:  # windows closed: rules ran
            metrics.evaluation_duration.observe(time.perf_counter() - started)
        clocks[f"p{p}"] = dict(engine.meta)
        if view.dirty:
            clocks[f"index:p{p}"] = view.index
        clock_high[0] = max(clock_high[0], engine.meta.get("closed_until") or 0)
        metrics.watermark.set(clock_high[0])
        return alerts, failures

    @app.timer(5.0)
    async def report_scopes():
        indexes = [clocks.get(f"index:p{p}") or {} for p in range(config.partitions)]
        metrics.scopes_tracked.set(sum(len(i) for i in indexes))

    lag_series: set[tuple[str, str]] = set()  # consumer_lag label sets this worker exports

    @app.timer(5.0)
    async def report_consumer_lag():
        # A metrics timer must never take the worker down: errors (a rebalance in
        # progress, a broker hiccup) skip one report.
        try:
            await _report_consumer_lag()
        except Exception as exc:
            log.debug("consumer lag not reported this round: %r", exc)

    async def _report_consumer_lag() -> None:
        consumer = app.consumer
        watched = {events_topic.get_topic_name(), deltas_topic.get_topic_name()}
        tps = sorted(tp for tp in consumer.assignment() if tp.topic in watched)
        ends = dict(await consumer.highwaters(*tps)) if tps else {}
        # Faust records the offsets it committed (the next offset to read). Nothing
        # committed yet means the group starts at the log start (auto_offset_reset=earliest).
        committed = {tp: consumer._committed_offset.get(tp) for tp in tps}
        missing = [tp for tp in tps if committed[tp] is None]
        starts = dict(await consumer.earliest_offsets(*missing)) if missing else {}
        lags = partition_lags(tps, ends, committed, starts)
        set_lag_gauges(metrics, lags, lag_series)

    @app.page("/metrics")
    async def metrics_page(web, request):
        body, content_type = metrics_response(metrics.registry)
        # The full header (text/plain; version=0.0.4; charset=utf-8): aiohttp's
        # content_type= argument refuses parameters.
        return web.bytes(body, headers={"Content-Type": content_type})

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


_campaign_collectors: "weakref.WeakKeyDictionary[Any, CampaignRatesCollector]" = weakref.WeakKeyDictionary()


def campaign_collector(registry) -> CampaignRatesCollector:
    """The top-N campaign collector of ``registry``, registered on first use.

    One per registry, not per app: a second app in the same process (tests, the demo)
    shares the default registry, and registering a second collector there would fail.
    """
    collector = _campaign_collectors.get(registry)
    if collector is None:
        collector = _campaign_collectors[registry] = CampaignRatesCollector(registry=registry)
    return collector


def _bounded(codes: np.ndarray, values: list[str], limit: int) -> tuple[np.ndarray, list[str]]:
    """Label index per row, and the label names: first ``limit`` values, then other, none."""
    named = min(len(values), limit)
    idx = np.where(codes < 0, named + 1, np.minimum(codes.astype(np.int64), named))
    return idx, list(values[:named]) + ["other", "none"]


def _observe_batch(metrics: Metrics, batch: EventBatch,
                   campaigns: CampaignRatesCollector | None = None) -> None:
    """Counters from the batch's code columns: bincounts over label combinations, so the
    Python work is per label set present in the batch, never per event."""
    n_types, n_bounce = len(EVENT_TYPES), len(BOUNCE_CLASSES) + 1
    tcode = batch.type_code.astype(np.int64)
    bcode = batch.bounce_code.astype(np.int64) + 1  # -1 (none) -> 0
    bounce_names = ("none",) + BOUNCE_CLASSES
    combo = np.bincount(tcode * n_bounce + bcode, minlength=n_types * n_bounce)
    for idx in np.flatnonzero(combo):
        t, b = divmod(int(idx), n_bounce)
        metrics.events_processed.labels(EVENT_TYPES[t], bounce_names[b]).inc(int(combo[idx]))

    prov, prov_names = _bounded(batch.fields["mailbox_provider"], batch.vocab["mailbox_provider"].values,
                                MAX_MAILBOX_PROVIDER_LABELS)
    combo = np.bincount((prov * n_types + tcode) * n_bounce + bcode, minlength=len(prov_names) * n_types * n_bounce)
    for idx in np.flatnonzero(combo):
        rest, b = divmod(int(idx), n_bounce)
        p, t = divmod(rest, n_types)
        metrics.deliverability_events.labels(prov_names[p], EVENT_TYPES[t], bounce_names[b]).inc(int(combo[idx]))

    dom, dom_names = _bounded(batch.fields["sending_domain"], batch.vocab["sending_domain"].values,
                              MAX_SENDING_DOMAIN_LABELS)
    combo = np.bincount(dom * n_types + tcode, minlength=len(dom_names) * n_types)
    for idx in np.flatnonzero(combo):
        d, t = divmod(int(idx), n_types)
        metrics.domain_events.labels(dom_names[d], EVENT_TYPES[t]).inc(int(combo[idx]))

    if campaigns is not None:
        observe_campaigns(campaigns, batch)

    newest = float(batch.timestamp.max())
    metrics.last_event_timestamp.set(newest)
    lateness = time.time() - batch.timestamp
    observe_many(metrics.event_lateness, lateness[lateness >= 0])  # one sample per event


def observe_campaigns(collector: CampaignRatesCollector, batch: EventBatch) -> None:
    """Feed per-campaign, per-type counts of a batch to the top-N collector (one call per campaign)."""
    codes = batch.fields["campaign"]
    rows = codes >= 0
    if not rows.any():
        return
    n_types = len(EVENT_TYPES)
    uniq, inverse = np.unique(codes[rows], return_inverse=True)
    counts = np.bincount(inverse.reshape(-1) * n_types + batch.type_code[rows].astype(np.int64),
                         minlength=uniq.size * n_types).reshape(uniq.size, n_types)
    names = batch.vocab["campaign"].values
    for code, row in zip(uniq.tolist(), counts.tolist()):
        collector.observe(names[code], {EVENT_TYPES[t]: n for t, n in enumerate(row) if n})


def partition_lags(tps, ends: dict, committed: dict, starts: dict) -> dict[tuple[str, str], int]:
    """Lag per (topic, partition label): end offset minus committed offset (or log start
    when nothing is committed). Partitions without a known end offset are left out."""
    out = {}
    for tp in tps:
        end = ends.get(tp)
        if end is None:
            continue
        done = committed.get(tp)
        if done is None:
            done = starts.get(tp, 0)
        out[(tp.topic, str(tp.partition))] = max(int(end) - int(done), 0)
    return out


def set_lag_gauges(metrics: Metrics, lags: dict[tuple[str, str], int], exported: set[tuple[str, str]]) -> None:
    """Set the lag gauges and drop the series of partitions no longer assigned here, so
    a partition that moved to another worker is not reported twice (stale and live)."""
    for labels, lag in lags.items():
        metrics.consumer_lag.labels(*labels).set(lag)
    for labels in exported - set(lags):
        try:
            metrics.consumer_lag.remove(*labels)
        except KeyError:
            pass
    exported.clear()
    exported.update(lags)
