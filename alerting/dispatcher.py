"""Delivery core: route one alert, deliver it to each integration once, retry, dead-letter, arm escalation.

Kafka-free on purpose: the consumer loop only calls :meth:`Dispatcher.handle` and commits when it returns, so
every guarantee here is testable against local HTTP servers. Semantics for a streaming router:

* ``repeat_interval``: a still-firing alert (same alert_id re-emitted, or a new alert_id for a dedup_key whose
  earlier incident has not resolved) is re-sent to a receiver at most once per ``repeat_interval``.
* ``group_wait``: the first notification of a firing alert is held until ``detected_at + group_wait``.
  (The consumer holds the message meanwhile; keep it short. The shipped default is 0s.)
* ``group_by``: names the notification group (sent as PagerDuty ``group``). Alerts are not batched into one
  message, so ``group_interval`` is validated but has no effect: one alert = one notification.
* resolved alerts go to every integration that received the firing one (including escalation targets).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

from alerting.config import Route, RoutingConfig
from alerting.deadletter import DeadLetterSink, dead_letter_record
from alerting.labels import alert_labels, group_key
from alerting.ledger import Ledger
from alerting.receivers.base import DeliveryError, Notifier
from alerting.retry import RetryPolicy
from alerting.routing import matching_routes
from alerting.validate import alert_problems

log = logging.getLogger("alerting.dispatcher")


@dataclass(frozen=True)
class Outcome:
    receiver: str  # integration id
    outcome: str  # delivered | duplicate | suppressed | dead_letter | not_sent_resolved
    attempts: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class Target:
    notifier: Notifier
    route: Route | None


class Dispatcher:
    def __init__(self, config: RoutingConfig, notifiers: dict[str, list[Notifier]], ledger: Ledger,
                 dead_letters: DeadLetterSink, session, metrics=None, policy: RetryPolicy = RetryPolicy(),
                 rng: random.Random | None = None, clock=time.time, sleep=asyncio.sleep, pause_hook=None):
        self.config = config
        self.notifiers = notifiers
        self.ledger = ledger
        self.dead_letters = dead_letters
        self.session = session
        self.metrics = metrics
        self.policy = policy
        self.rng = rng or random.Random()
        self.clock = clock
        self.sleep = sleep
        self.pause_hook = pause_hook

    async def handle(self, alert, raw: bytes | None = None) -> list[Outcome]:
        """Deliver one alert to every receiver it routes to; returns when each is delivered or dead-lettered."""
        problems = alert_problems(alert)
        if problems:
            reason = "invalid alert: " + "; ".join(problems)
            log.warning("dead-lettering %s", reason)
            key = alert.get("dedup_key", "") if isinstance(alert, dict) else ""
            await self.dead_letters.send(str(key), dead_letter_record(alert, reason, None, None, 0, self.clock(), raw))
            self._count_dead("alerts")
            return [Outcome("-", "dead_letter", 0, reason)]
        labels = alert_labels(alert)
        routes = matching_routes(self.config.route, labels)
        targets = self._targets(alert, routes)
        if alert["status"] == "firing":
            await self._group_wait(alert, routes)
        outcomes = await asyncio.gather(*(self.deliver(t.notifier, alert, t.route, labels) for t in targets))
        now = self.clock()
        if alert["status"] == "resolved":
            self.ledger.resolve(alert["dedup_key"], now)
        elif alert["severity"] == "critical":
            self._arm_escalations(alert, routes, now)
            if self.pause_hook is not None:
                await self.pause_hook.maybe_pause(alert, labels)
        return list(outcomes)

    def _targets(self, alert: dict, routes: list[Route]) -> list[Target]:
        seen: dict[str, Target] = {}
        for route in routes:
            for n in self.notifiers.get(route.receiver, []):
                seen.setdefault(n.id, Target(n, route))
        if alert["status"] == "resolved":
            by_id = {n.id: n for ns in self.notifiers.values() for n in ns}
            for rid in self.ledger.firing_receivers(alert["dedup_key"], alert["alert_id"]):
                if rid in by_id:
                    seen.setdefault(rid, Target(by_id[rid], None))
        return list(seen.values())

    async def _group_wait(self, alert: dict, routes: list[Route]) -> None:
        wait = max((r.group_wait for r in routes), default=0.0)
        detected = alert.get("detected_at")
        if wait > 0 and isinstance(detected, (int, float)):
            delay = min(wait, detected + wait - self.clock())
            if delay > 0:
                await self.sleep(delay)

    def _arm_escalations(self, alert: dict, routes: list[Route], now: float) -> None:
        for route in routes:
            receiver = self.config.receivers.get(route.receiver)
            target, after = route.escalate_to, route.escalate_after
            if target is None and receiver is not None:
                target, after = receiver.escalate_to, receiver.escalate_after
            if target is not None and after is not None:
                if self.ledger.arm(alert, route.receiver, target, now + after, now):
                    log.info("escalation armed for %s: %s -> %s in %.0fs", alert["dedup_key"], route.receiver,
                             target, after)

    async def deliver(self, notifier: Notifier, alert: dict, route: Route | None,
                      labels: dict[str, str] | None = None) -> Outcome:
        """Deliver to one integration, consulting and updating the ledger (idempotent across restarts)."""
        key = (notifier.id, alert["dedup_key"], alert["status"], alert["alert_id"])
        now = self.clock()
        row = self.ledger.get(*key)
        repeat = route.repeat_interval if route is not None else self.config.route.repeat_interval
        if alert["status"] == "resolved" and not notifier.integration.send_resolved:
            return Outcome(notifier.id, "not_sent_resolved")
        if row is not None and row.state == "dead":
            return Outcome(notifier.id, "duplicate", 0, "already dead-lettered")
        if row is not None and row.state == "delivered":
            if alert["status"] == "resolved" or row.sent_at is None or now - row.sent_at < repeat:
                return Outcome(notifier.id, "duplicate")
            log.info("repeat_interval elapsed, re-sending %s to %s", alert["dedup_key"], notifier.id)
        elif alert["status"] == "firing":
            previous = self.ledger.open_incident_sent_at(notifier.id, alert["dedup_key"], alert["alert_id"])
            if previous is not None and now - previous < repeat:
                self.ledger.mark(*key, "suppressed", now, reason="repeat_interval")
                return Outcome(notifier.id, "suppressed", 0, "open incident notified within repeat_interval")
        group = group_key(route.group_by, labels or alert_labels(alert), alert["dedup_key"]) if route else None
        return await self._attempt(notifier, alert, key, group)

    async def _attempt(self, notifier: Notifier, alert: dict, key: tuple, group: str | None) -> Outcome:
        attempt, reason = 0, ""
        while True:
            attempt += 1
            self.ledger.mark(*key, "sending", self.clock(), attempts=1)
            started = time.perf_counter()
            try:
                await notifier.notify(alert, self.session, group=group)
            except DeliveryError as exc:
                self._observe(notifier.kind, "retryable" if exc.retryable else "permanent", started)
                reason = str(exc)
                if not exc.retryable or attempt >= self.policy.max_attempts:
                    why = reason if not exc.retryable else f"retries exhausted after {attempt} attempts: {reason}"
                    return await self._dead_letter(notifier, alert, key, attempt, why)
                delay = self.policy.delay(attempt, self.rng, exc.retry_after)
                log.info("delivery to %s failed (%s); retry %d in %.2fs", notifier.id, reason, attempt, delay)
                await self.sleep(delay)
                continue
            except Exception as exc:  # a bug in a notifier must not kill the router: dead-letter with the reason
                self._observe(notifier.kind, "error", started)
                log.exception("notifier %s crashed", notifier.id)
                return await self._dead_letter(notifier, alert, key, attempt, f"{type(exc).__name__}: {exc}")
            self._observe(notifier.kind, "ok", started)
            self.ledger.mark(*key, "delivered", self.clock())
            return Outcome(notifier.id, "delivered", attempt)

    async def _dead_letter(self, notifier: Notifier, alert: dict, key: tuple, attempts: int, reason: str) -> Outcome:
        log.warning("dead-lettering %s for %s: %s", alert["dedup_key"], notifier.id, reason)
        record = dead_letter_record(alert, reason, notifier.id, notifier.kind, attempts, self.clock())
        await self.dead_letters.send(alert["dedup_key"], record)
        self.ledger.mark(*key, "dead", self.clock(), reason=reason)
        self._count_dead("alert-delivery")
        return Outcome(notifier.id, "dead_letter", attempts, reason)

    def _observe(self, kind: str, outcome: str, started: float) -> None:
        if self.metrics is not None:
            self.metrics.delivery_attempts.labels(receiver=kind, outcome=outcome).inc()
            self.metrics.delivery_duration.labels(receiver=kind).observe(time.perf_counter() - started)

    def _count_dead(self, source: str) -> None:
        if self.metrics is not None:
            self.metrics.dead_letters.labels(source=source).inc()
