"""Test helpers: a recording HTTP server standing in for SaaS endpoints, sample alerts, a manual clock.

Only third-party SaaS endpoints (Slack, PagerDuty, Opsgenie, Teams, webhooks) are faked, as a real local HTTP
server that records each request and answers from a per-path script of responses.
"""
from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field

from aiohttp import web

ALERT = {
    "alert_id": "a:3f2c0001", "dedup_key": "bounce_rate_cusum|campaign=spring|mailbox_provider=gmail",
    "status": "firing", "severity": "critical", "rule": "bounce_rate_cusum", "category": "technical",
    "scope": {"campaign": "spring", "mailbox_provider": "gmail", "sending_domain": "news.example.com"},
    "metric": "bounce_rate", "observed": {"rate": 0.081, "events": 41, "total": 506}, "baseline": 0.01,
    "threshold": 10.9, "test": "cusum", "p_value": None, "statistic": 12.3,
    "window": {"start": 1700000000.0, "end": 1700000300.0}, "detected_at": 1700000300.0,
    "summary": "bounce_rate 8.1% vs baseline 1.0% on campaign=spring mailbox_provider=gmail",
    "evidence": {"top_reasons": [{"smtp_code": 550, "reason": "5.1.1 user unknown", "count": 12}],
                 "affected_recipients": 41},
    "runbook": ["Stop the fire: pause campaign spring", "Measure the blast radius: 41 recipients",
                "Watch bounces and complaints on the next sends"],
}


def make_alert(**overrides) -> dict:
    alert = copy.deepcopy(ALERT)
    alert.update(overrides)
    return alert


def resolved(alert: dict, detected_at: float | None = None) -> dict:
    return {**copy.deepcopy(alert), "status": "resolved",
            "detected_at": detected_at or alert["detected_at"] + 600}


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Recorder:
    """Records every request; ``script[path]`` is a list of (status, headers) answered in order, then 200."""

    script: dict[str, list[tuple[int, dict]]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    hold: dict[str, asyncio.Event] = field(default_factory=dict)  # path -> block until set
    runner: web.AppRunner | None = None
    port: int = 0

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Request(request.method, request.path, request.query_string,
                                     dict(request.headers), body))
        if request.path in self.hold:
            await self.hold[request.path].wait()
        queue = self.script.get(request.path) or []
        status, headers = queue.pop(0) if queue else (200, {})
        return web.json_response({"status": "recorded"}, status=status, headers=headers)

    async def start(self) -> "Recorder":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for ev in self.hold.values():
            ev.set()
        await self.runner.cleanup()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]


class Clock:
    """Manual clock for escalation/repeat tests: no real waiting, no timed assertions."""

    def __init__(self, now: float = 1700000400.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingSleep:
    """Stands in for asyncio.sleep in retry tests: records the requested delays, yields without waiting."""

    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def routing_yaml(receivers: str, routes: str = "", root_receiver: str = "ops", extra: str = "") -> str:
    return f"""
route:
  receiver: {root_receiver}
  group_by: [category, rule]
  repeat_interval: 4h
{routes}
receivers:
{receivers}
{extra}
"""
