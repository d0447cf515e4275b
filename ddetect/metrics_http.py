"""Serving a Prometheus registry over HTTP, shared by every ddetect process.

Ingest and the router mount :func:`make_metrics_handler` on their own aiohttp app; the
worker mounts it on Faust's web server. :func:`start_metrics_app` serves ``/metrics``
alone for a process that has no web server of its own. One implementation keeps the
content type and encoding identical on every scrape target.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

METRICS_PATH = "/metrics"


def metrics_response(registry: CollectorRegistry) -> tuple[bytes, str]:
    """Return ``(body, content_type)`` of the text exposition format for ``registry``."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def make_metrics_handler(
    registry: CollectorRegistry,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp GET handler that renders ``registry`` at scrape time."""

    async def handle_metrics(request: web.Request) -> web.Response:
        body, content_type = metrics_response(registry)
        # aiohttp's content_type= argument refuses parameters (version, charset), so the
        # full header is set directly.
        return web.Response(body=body, headers={"Content-Type": content_type})

    return handle_metrics


def add_metrics_route(app: web.Application, registry: CollectorRegistry,
                      path: str = METRICS_PATH) -> None:
    """Mount the metrics handler on an existing aiohttp application."""
    app.router.add_get(path, make_metrics_handler(registry))


async def start_metrics_app(registry: CollectorRegistry, host: str = "0.0.0.0",
                            port: int = 9108) -> web.AppRunner:
    """Serve ``/metrics`` standalone; the caller awaits ``runner.cleanup()`` to stop.

    ``port=0`` binds a free port; read it back with :func:`bound_port`.
    """
    app = web.Application()
    add_metrics_route(app, registry)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a runner started by :func:`start_metrics_app` listens on."""
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    raise RuntimeError("the metrics app is not listening on a TCP socket")
