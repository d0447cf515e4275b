"""The ``ddetect ingest`` HTTP server: ``POST /webhooks/{provider}`` -> Kafka.

Per request: 404 unknown/disabled provider; 413 over the size limit; 415 wrong content
type; raw body read once (signatures cover bytes); 401/403 authentication failures (JSON
reason, counted, never written to the DLQ so strangers cannot fill it); 400 for a body
that cannot be normalised (raw payload + reason to the DLQ); otherwise events are
de-duplicated, produced with acks=all as one JSON-array message (``producer.py``), and
only then answered 200. Events of a batch that fail individually go to the DLQ one by one
while the rest are produced, because ESPs resend whole batches on any non-2xx. When the
broker (events or DLQ) does not acknowledge, the answer is the provider's retry status
(503, Brevo 429) with ``Retry-After``; never Mailgun's 406 or a 4xx for SNS, which both
mean "drop it".

Redeliveries. Produced event ids go into a bounded, expiring filter (``dedup.py``). While
a produce is unsettled its event ids are "in flight" (``_State.inflight``, bounded the
same way): a concurrent redelivery, or the ESP's retry after a produce that timed out
while its message stayed queued in the client, waits for that send (up to
``produce_timeout_seconds``, then "retry later") instead of writing a second copy, and
produces only the events whose send failed. Within one ingest process that makes a
broker outage cost no duplicates (tests/ingest/test_kafka_integration.py). Delivery is
still at-least-once overall: the filter is in memory and per process, so a redelivery
that reaches another replica, arrives after a restart, or after the dedup window, is
written again with the same ``event_id``. A consumer can dedupe on that id; note that the
detection worker (``streams/``) does not today, so such a duplicate counts twice there.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import signal
import time
import traceback
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ddetect.metrics import Metrics, default_metrics

from .auth import AuthRequest, TransientAuthError, build_authenticator
from .auth.sns import Fetcher
from .config import PROVIDER_NAMES, IngestConfig
from .dedup import ExpiringSet
from .errors import AuthError, PayloadError, UnsupportedMediaType
from .privacy import redact
from .producer import BrokerUnavailable, EventProducer, KafkaEventProducer, dead_letter_record
from .providers import PROVIDERS
from .providers.common import check_content_type

log = logging.getLogger("ddetect.ingest")

# Statuses each provider treats as final ("do not retry"): never usable for an outage.
_NO_RETRY = {
    "mailgun": {406},
    "ses": set(range(400, 500)),
    "postmark": set(range(400, 500)) - {408, 429},
    "brevo": (set(range(400, 600)) - {429}),
}
APP_KEY_STATE = web.AppKey("ingest_state", object)


def outage_status(provider: str, config: IngestConfig) -> int:
    configured = config.provider(provider).outage_status
    status = configured or PROVIDERS[provider].OUTAGE_STATUS
    if status in _NO_RETRY.get(provider, ()) or not 400 <= status <= 599:
        raise ValueError(f"providers.{provider}.outage_status: {status} would make {provider} drop the events")
    return status


class _State:
    def __init__(self, config, producer, metrics, fetcher, clock):
        self.config = config
        self.producer = producer
        self.metrics = metrics
        self.clock = clock
        self.dedup = ExpiringSet(config.dedup_window_seconds, config.dedup_max_entries)
        self.inflight: dict[str, asyncio.Future] = {}  # event_id -> unsettled produce holding it
        self.future_logged: dict[str, tuple[float, int]] = {}  # provider -> (last log, count since)
        self.auth = {}
        self.retry_status = {}
        for name in PROVIDER_NAMES:
            self.auth[name] = build_authenticator(name, config, fetcher)
            self.retry_status[name] = outage_status(name, config)
            if self.auth[name].problem and config.provider(name).enabled:
                log.warning("provider %s: authentication not configured (%s); its endpoint answers 403",
                            name, self.auth[name].problem)


def _json(http_status: int, /, **payload) -> web.Response:
    return web.json_response(payload, status=http_status)


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _track_sends(state: "_State", events: list[dict], sends: list) -> None:
    """After a failed produce: events of acknowledged messages are seen; events of
    messages still queued in the client stay in flight until their send settles (the
    ESP's retry then waits for it instead of writing a second copy); events of failed
    messages are forgotten, so the retry produces them again."""
    for (start, stop), future in sends:
        ids = [ev["event_id"] for ev in events[start:stop]]
        if not future.done():
            held = _hold(state, ids, future)
            future.add_done_callback(lambda fut, held=held, ids=ids: _release(state, held, fut, ids))
        elif _succeeded(future):
            state.dedup.add_many(ids)


def _succeeded(future: asyncio.Future) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _hold(state: "_State", ids: list[str], future: asyncio.Future) -> list[str]:
    """Mark ``ids`` in flight on ``future`` (bounded like the dedup filter); the held ids."""
    inflight = state.inflight
    room = max(state.config.dedup_max_entries - len(inflight), 0)
    held = ids if len(ids) <= room else ids[:room]
    for eid in held:
        inflight[eid] = future
    return held


def _release(state: "_State", held: list[str], future: asyncio.Future, ids: list[str]) -> None:
    """``future`` settled: its events leave the in-flight map, and are seen if it succeeded."""
    inflight = state.inflight
    for eid in held:
        if inflight.get(eid) is future:
            del inflight[eid]
    if _succeeded(future):
        state.dedup.add_many(ids)


def _classify(state: "_State", events: list[dict]) -> tuple[list[dict], int, set]:
    """(events to produce, duplicates, futures of earlier sends still holding some).

    A settled future still in the map (its release callback not run yet) is read
    directly: success = duplicate, failure = produce again."""
    fresh, in_request, duplicates, waiting = [], set(), 0, set()
    dedup, inflight = state.dedup, state.inflight
    seen = dedup.snapshot()
    for ev in events:
        eid = ev["event_id"]
        if eid in in_request or eid in seen:
            duplicates += 1
            continue
        in_request.add(eid)
        future = inflight.get(eid) if inflight else None
        if future is not None:
            if not future.done():
                waiting.add(future)
                continue
            if _succeeded(future):
                duplicates += 1
                continue
        fresh.append(ev)
    return fresh, duplicates, waiting


async def _dead_letter(state: _State, provider: str, record: dict) -> None:
    await state.producer.send_dead_letter(record)
    state.metrics.dead_letters.labels("ingest").inc()


async def _process(state: _State, request: web.Request, provider: str) -> web.Response:
    config = state.config
    if provider not in PROVIDERS or not config.provider(provider).enabled:
        return _json(404, error="unknown or disabled provider")
    module = PROVIDERS[provider]
    retry = state.retry_status[provider]

    def retry_later(why: str) -> web.Response:
        log.warning("provider %s: answering %d so the ESP retries (%s)", provider, retry, why)
        return web.json_response({"error": "temporarily unavailable, retry later"}, status=retry,
                                 headers={"Retry-After": "30"})

    if request.content_length is not None and request.content_length > config.max_body_bytes:
        return _json(413, error=f"body larger than {config.max_body_bytes} bytes")
    content_type = request.headers.get("Content-Type", "")
    try:
        check_content_type(content_type, module.CONTENT_TYPES)
    except UnsupportedMediaType as exc:
        return _json(415, error=str(exc))
    body = await _read_body(request, config.max_body_bytes)
    if body is None:
        return _json(413, error=f"body larger than {config.max_body_bytes} bytes")

    # --- authentication ---------------------------------------------------------------
    authenticator = state.auth[provider]
    try:
        sns_msg = await authenticator.authenticate(
            AuthRequest(provider, body, request.headers, str(request.url), state.clock()))
    except AuthError as exc:
        state.metrics.webhook_auth_failures.labels(provider, exc.reason).inc()
        log.info("provider %s: authentication failed (%s)", provider, exc.reason)
        return _json(exc.status, error=exc.message, reason=exc.reason)
    except TransientAuthError as exc:
        return retry_later(str(exc))
    if sns_msg is not None and sns_msg.get("Type") == "SubscriptionConfirmation":
        try:
            await authenticator.sns.confirm_subscription(sns_msg)
        except AuthError as exc:
            state.metrics.webhook_auth_failures.labels(provider, exc.reason).inc()
            return _json(exc.status, error=exc.message, reason=exc.reason)
        except TransientAuthError as exc:
            return retry_later(str(exc))
        log.info("SNS subscription confirmed for an allowed topic")
        return _json(200, status="subscription confirmed")
    if sns_msg is not None and sns_msg.get("Type") == "UnsubscribeConfirmation":
        return _json(200, status="unsubscribe noted")

    # --- normalisation ----------------------------------------------------------------
    try:
        result = module.normalize(body, content_type, config)
    except UnsupportedMediaType as exc:
        return _json(415, error=str(exc))
    except Exception as exc:
        if isinstance(exc, PayloadError):
            reason = redact(str(exc))
        else:  # a bug of ours: keep the payload for replay; log frames, not data
            reason = f"internal normalisation error ({type(exc).__name__})"
            log.error("provider %s: %s\n%s", provider, reason, "".join(traceback.format_tb(exc.__traceback__)))
        try:
            await _dead_letter(state, provider, dead_letter_record(provider, reason, body, content_type))
        except BrokerUnavailable as bexc:
            return retry_later(f"dead-letter produce failed: {bexc}")
        state.metrics.ingest_events.labels(provider, "rejected").inc()
        return _json(400, error=reason)

    # --- dedup + produce (2xx only after the broker acked) -------------------------------
    # Events another request is still producing (a concurrent redelivery, or a send that
    # timed out and is still queued in the client) are waited for, not written twice.
    deadline = time.monotonic() + config.produce_timeout_seconds
    while True:
        fresh, duplicates, waiting = _classify(state, result.events)
        if not waiting:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return retry_later("an earlier produce of these events is still unacknowledged")
        await asyncio.wait(waiting, timeout=remaining)  # settle callbacks update dedup/inflight
    if fresh:
        mine = asyncio.get_running_loop().create_future()
        ids = [ev["event_id"] for ev in fresh]
        held = _hold(state, ids, mine)   # concurrent redeliveries wait for this request
        try:
            await state.producer.send_events(fresh)
        except BaseException as exc:
            # Waiters re-classify: held by a still-queued send, seen (acked), or fresh.
            mine.set_exception(exc if isinstance(exc, BrokerUnavailable) else BrokerUnavailable(type(exc).__name__))
            mine.exception()  # retrieved: no "never retrieved" warning
            if isinstance(exc, BrokerUnavailable):
                _track_sends(state, fresh, exc.sends)
            _release(state, held, mine, ids)
            if not isinstance(exc, BrokerUnavailable):
                raise    # cancelled (client went away) or a bug: handled by the caller
            return retry_later(f"events produce failed: {exc}")
        mine.set_result(None)
        _release(state, held, mine, ids)   # now in the dedup filter
    for rejected in result.rejected:
        record = dead_letter_record(provider, rejected.reason, body, content_type, rejected.index, rejected.raw)
        try:
            await _dead_letter(state, provider, record)
        except BrokerUnavailable as exc:
            # Produced events are remembered by the dedup filter, so the ESP's retry
            # only re-sends these rejected ones to the DLQ.
            return retry_later(f"dead-letter produce failed: {exc}")
    if fresh:
        _note_future(state, provider, fresh)
    m = state.metrics.ingest_events
    for outcome, count in (("accepted", len(fresh)), ("duplicate", duplicates),
                           ("skipped", result.skipped), ("rejected", len(result.rejected))):
        if count:
            m.labels(provider, outcome).inc(count)
    errors = [{"index": r.index, "error": r.reason} for r in result.rejected]
    return _json(200, accepted=len(fresh), duplicates=duplicates, skipped=result.skipped,
                 rejected=len(errors), errors=errors[:20])


#: At most one "stamped in the future" log line per provider per this many seconds.
FUTURE_LOG_INTERVAL = 600.0


def _note_future(state: "_State", provider: str, events: list[dict]) -> None:
    """Count accepted events stamped more than ``max_future_skew_seconds`` past our clock.

    They are still accepted (the ESP's clock or field mapping is wrong, not the request);
    the worker does not count them (it dead-letters them). Logged once per provider per
    ``FUTURE_LOG_INTERVAL``, with the count since the last line, so a broken clock cannot
    flood the log.
    """
    now = state.clock()
    limit = now + state.config.max_future_skew_seconds
    ahead = [ev["timestamp"] for ev in events if ev["timestamp"] > limit]
    if not ahead:
        return
    state.metrics.ingest_events_future.labels(provider).inc(len(ahead))
    last, pending = state.future_logged.get(provider, (-math.inf, 0))
    pending += len(ahead)
    mono = time.monotonic()
    if mono - last >= FUTURE_LOG_INTERVAL:
        log.warning("provider %s: %d event(s) stamped more than %g s in the future (up to %.0f s ahead); "
                    "accepted, the worker will not count them: check the ESP's clock or timestamp field",
                    provider, pending, state.config.max_future_skew_seconds, max(ahead) - now)
        state.future_logged[provider] = (mono, 0)
    else:
        state.future_logged[provider] = (last, pending)


async def _webhook(request: web.Request) -> web.Response:
    state: _State = request.app[APP_KEY_STATE]
    provider = request.match_info["provider"]
    label = provider if provider in PROVIDERS else "unknown"
    started = time.perf_counter()
    try:
        response = await _process(state, request, provider)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # last resort: never a traceback with data to the client
        log.error("provider %s: unexpected %s\n%s", label, type(exc).__name__,
                  "".join(traceback.format_tb(exc.__traceback__)))
        response = web.json_response({"error": "temporarily unavailable, retry later"},
                                     status=state.retry_status.get(provider, 503))
    state.metrics.webhook_requests.labels(label, str(response.status)).inc()
    state.metrics.webhook_request_duration.labels(label).observe(time.perf_counter() - started)
    return response


async def _head(request: web.Request) -> web.Response:
    """Mandrill validates a webhook URL with an unsigned HEAD before saving it."""
    state: _State = request.app[APP_KEY_STATE]
    provider = request.match_info["provider"]
    ok = provider in PROVIDERS and state.config.provider(provider).enabled
    return web.Response(status=200 if ok else 404)


async def _healthz(request: web.Request) -> web.Response:
    return _json(200, status="ok")


async def _readyz(request: web.Request) -> web.Response:
    state: _State = request.app[APP_KEY_STATE]
    if await state.producer.ping():
        return _json(200, status="ready")
    return _json(503, status="broker unreachable")


async def _metrics(request: web.Request) -> web.Response:
    state: _State = request.app[APP_KEY_STATE]
    return web.Response(body=generate_latest(state.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(config: IngestConfig, producer: EventProducer, *, metrics: Metrics | None = None,
              fetcher: Fetcher | None = None, clock: Callable[[], float] = time.time) -> web.Application:
    """The aiohttp application. ``fetcher`` (SNS certificate / SubscribeURL GETs) and
    ``clock`` (signature timestamps) are injectable for tests."""
    app = web.Application(client_max_size=config.max_body_bytes + 1)
    app[APP_KEY_STATE] = _State(config, producer, metrics or default_metrics(), fetcher, clock)
    app.router.add_post("/webhooks/{provider}", _webhook)
    app.router.add_route("HEAD", "/webhooks/{provider}", _head)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


async def serve(config: IngestConfig, *, metrics: Metrics | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT). The broker may be down at start:
    the server comes up anyway, /readyz says 503 and webhooks get the retry status."""
    metrics = metrics or default_metrics()
    producer = KafkaEventProducer(config.bootstrap_servers, config.events_topic, config.dlq_topic,
                                  timeout=config.produce_timeout_seconds, metrics=metrics,
                                  max_events_per_message=config.max_events_per_message,
                                  max_message_bytes=config.max_message_bytes)
    producer.start_in_background()
    app = build_app(config, producer, metrics=metrics)
    runner = web.AppRunner(app, access_log=None)  # access logs would carry no PII, but are noise
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    log.info("ingest listening on %s:%d", config.host, config.port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        await runner.cleanup()   # stops accepting, finishes in-flight requests
        await producer.stop()


def run_ingest(config: IngestConfig) -> None:
    """Blocking entry point for ``ddetect ingest``."""
    asyncio.run(serve(config))
