"""Every Prometheus metric this project exports, declared in one place.

Naming follows Prometheus conventions: namespace ``ddetect``, base units (seconds,
bytes), ``_total`` for counters. Labels are closed sets only (provider, event type,
bounce class, rule, severity, category, status, receiver): never a recipient, a
message id or a raw campaign id. Campaign-level rates go through the bounded top-N
collector in :mod:`ddetect.rates_collector` instead.
"""
from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

NAMESPACE = "ddetect"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_LATENESS_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


class Metrics:
    """The metric objects, bound to one registry (tests pass a fresh CollectorRegistry)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self.registry = registry
        ns = NAMESPACE

        def counter(name, doc, labels=()):
            return Counter(name, doc, labels, namespace=ns, registry=registry)

        def gauge(name, doc, labels=()):
            return Gauge(name, doc, labels, namespace=ns, registry=registry)

        def histogram(name, doc, labels=(), buckets=_LATENCY_BUCKETS):
            return Histogram(name, doc, labels, namespace=ns, registry=registry, buckets=buckets)

        # --- ingestion -------------------------------------------------------------
        self.webhook_requests = counter(
            "webhook_requests_total", "Webhook HTTP requests by ESP provider and HTTP status code.",
            ("provider", "status"))
        self.webhook_auth_failures = counter(
            "webhook_auth_failures_total", "Webhook requests rejected by authentication, by reason.",
            ("provider", "reason"))
        self.ingest_events = counter(
            "ingest_events_total",
            "Events seen at the edge by outcome (accepted, rejected, deduplicated).",
            ("provider", "outcome"))
        self.ingest_events_future = counter(
            "ingest_events_future_total",
            "Events stamped more than the max future skew after the ingest wall clock (accepted; "
            "the worker dead-letters them).", ("provider",))
        self.webhook_request_duration = histogram(
            "webhook_request_duration_seconds", "Webhook request handling time, receive to response.",
            ("provider",))
        self.produce_duration = histogram(
            "kafka_produce_duration_seconds", "Time for the broker to acknowledge a produce (acks=all).",
            ("topic",))

        # --- pipeline --------------------------------------------------------------
        self.events_processed = counter(
            "events_processed_total", "Canonical events processed by the detection pipeline.",
            ("type", "bounce_class"))
        self.events_invalid = counter(
            "events_invalid_total", "Messages on the events topic that failed validation (sent to the DLQ).")
        self.rules_blind = gauge(
            "rules_blind", "1 for each rule an ESP's stream leaves unable to run: reason no_event_type "
            "(the ESP posts no event of a type the rule reads), no_field (no event carries a scope field) or "
            "split (a scope field missing on some event types); see `ddetect doctor`.",
            ("rule", "provider", "reason"))
        self.events_late = counter(
            "events_late_total", "Events that arrived after their window closed (past allowed lateness).")
        self.events_future = counter(
            "events_future_total",
            "Events stamped more than the max future skew after the worker's wall clock: not counted, "
            "sent to the DLQ.")
        self.detection_failures = counter(
            "detection_failures_total",
            "Detection steps that raised on a scope-deltas message (the message is dead-lettered, "
            "a failed window skipped, and the partition moves on).")
        self.event_lateness = histogram(
            "event_lateness_seconds", "Processing time minus event time.", buckets=_LATENESS_BUCKETS)
        self.evaluation_duration = histogram(
            "evaluation_duration_seconds", "Time to evaluate all rules when a window closes.")
        self.consumer_lag = gauge(
            "consumer_lag_messages", "Consumer lag per topic partition (end offset minus position).",
            ("topic", "partition"))
        self.scopes_tracked = gauge(
            "scopes_tracked", "Scopes (campaign, provider, domain, pool combinations) held in state.")
        self.last_event_timestamp = gauge(
            "last_event_timestamp_seconds", "Event time of the newest event processed (Unix seconds).")
        self.watermark = gauge(
            "watermark_timestamp_seconds", "Event-time watermark: windows ending before it are closed.")

        # --- alerts ----------------------------------------------------------------
        self.alerts = counter(
            "alerts_total", "Alerts emitted by rule, severity, category and status (firing/resolved).",
            ("rule", "severity", "category", "status"))
        self.alerts_active = gauge(
            "alerts_active", "Alerts currently firing.", ("rule", "severity", "category"))
        self.delivery_attempts = counter(
            "alert_delivery_attempts_total", "Alert delivery attempts by receiver type and outcome.",
            ("receiver", "outcome"))
        self.delivery_duration = histogram(
            "alert_delivery_duration_seconds", "Time for one delivery attempt to a receiver.", ("receiver",))
        self.dead_letters = counter(
            "dead_letters_total", "Messages written to a dead-letter topic, by source.", ("source",))

        # --- deliverability rates (bounded label sets) -------------------------------
        self.deliverability_events = counter(
            "deliverability_events_total",
            "Deliverability events by mailbox provider, event type and bounce class.",
            ("mailbox_provider", "type", "bounce_class"))
        self.domain_events = counter(
            "sending_domain_events_total",
            "Deliverability events by sending domain (first N domains, then 'other') and type.",
            ("sending_domain", "type"))


_default: Metrics | None = None


def default_metrics() -> Metrics:
    """The process-wide metrics on the default registry (created once)."""
    global _default
    if _default is None:
        _default = Metrics(REGISTRY)
    return _default


def observe_many(histogram: Histogram, values) -> None:
    """``histogram.observe(v)`` for every value, counted per bucket in one numpy pass.

    A batch of thousands of events would otherwise cost one Python call each. This adds to
    the histogram's per-bucket counters and sum the way ``observe`` does (prometheus_client
    0.2x keeps them as ``_buckets`` / ``_sum`` next to ``_upper_bounds``); if that layout is
    ever missing it falls back to ``observe``. tests/observability checks both agree.
    """
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for v in values.tolist():
            histogram.observe(v)
        return
    slot = np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left")  # first bound >= v
    for i, count in enumerate(np.bincount(slot, minlength=len(bounds)).tolist()):
        if count:
            buckets[i].inc(count)
    total.inc(float(values.sum()))
