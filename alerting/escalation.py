"""Time-based escalation: a critical alert nobody acknowledged within ``escalate_after`` goes one level up.

Escalations are rows in the ledger (armed by the dispatcher, stopped by an ack or a resolve), so a restart
neither forgets a pending escalation nor pages twice: the escalated delivery goes through the same ledger keys.
"""
from __future__ import annotations

import asyncio
import logging

from alerting.dispatcher import Dispatcher, Outcome

log = logging.getLogger("alerting.escalation")


class Escalator:
    def __init__(self, dispatcher: Dispatcher, interval: float = 5.0):
        self.dispatcher = dispatcher
        self.interval = interval

    async def tick(self, now: float | None = None) -> list[Outcome]:
        """Fire every due escalation once; returns the delivery outcomes."""
        d = self.dispatcher
        now = d.clock() if now is None else now
        outcomes: list[Outcome] = []
        for esc in d.ledger.due(now):
            log.warning("escalating %s (level %d) to %s: not acknowledged", esc.dedup_key, esc.level, esc.target)
            alert = {**esc.alert, "escalation_level": esc.level}
            for notifier in d.notifiers.get(esc.target, []):
                outcomes.append(await d.deliver(notifier, alert, None))
            nxt = d.config.receivers.get(esc.target)
            if nxt is not None and nxt.escalate_to is not None:
                d.ledger.advance(esc, nxt.escalate_to, now + nxt.escalate_after, now)
            else:
                d.ledger.advance(esc, None, None, now)
        return outcomes

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:  # keep escalating other alerts even if one delivery path is broken
                log.exception("escalation tick failed")
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
