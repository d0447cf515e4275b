"""The router's HTTP side: ``/healthz``, ``/metrics`` (Prometheus text), ``POST /ack/{dedup_key}``,
``GET /alerts/{dedup_key}`` (deliveries, escalations and acks of one incident).

Ack is POST only: chat clients and mail scanners prefetch GET links, which must never acknowledge a page.
"""
from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from alerting.ledger import Ledger


def make_app(ledger: Ledger, registry, clock=time.time, health=lambda: True) -> web.Application:
    async def healthz(request):
        ok = health()
        return web.json_response({"status": "ok" if ok else "unhealthy"}, status=200 if ok else 503)

    async def metrics(request):
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ack(request):
        key = request.match_info["dedup_key"]
        by = "unknown"
        if request.can_read_body:
            try:
                by = str((await request.json()).get("by", by))[:200]
            except Exception:
                return web.json_response({"error": "body must be JSON like {\"by\": \"name\"}"}, status=400)
        stopped = ledger.ack(key, by, clock())
        known = stopped > 0 or bool(ledger.deliveries(key)) or bool(ledger.escalations(key))
        if not known:
            return web.json_response({"dedup_key": key, "error": "unknown dedup_key"}, status=404)
        return web.json_response({"dedup_key": key, "acknowledged": True, "escalations_stopped": stopped})

    async def status(request):
        key = request.match_info["dedup_key"]
        return web.json_response({
            "dedup_key": key, "deliveries": ledger.deliveries(key),
            "escalations": [{"origin": e.origin, "target": e.target, "level": e.level, "due_at": e.due_at,
                             "state": e.state} for e in ledger.escalations(key)],
            "acks": [{"at": at, "by": by} for at, by in ledger.acks(key)]})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/ack/{dedup_key}", ack)
    app.router.add_get("/alerts/{dedup_key}", status)
    return app
