"""/metrics served over a real socket by ddetect.metrics_http, parsed back."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from ddetect.metrics import Metrics
from ddetect.metrics_http import (add_metrics_route, bound_port, metrics_response,
                                  start_metrics_app)
from ddetect.rates_collector import CampaignRatesCollector


def populated_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.webhook_requests.labels(provider="sendgrid", status="200").inc(3)
    m.webhook_request_duration.labels(provider="sendgrid").observe(0.004)
    m.consumer_lag.labels(topic="deliverability-events", partition="0").set(12)
    CampaignRatesCollector(5, registry=registry).observe("c1", {"delivered": 9, "bounced": 1})
    return registry


def samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_response_is_text_exposition():
    body, ctype = metrics_response(populated_registry())
    assert ctype == CONTENT_TYPE_LATEST
    got = samples(body.decode())
    assert got[("ddetect_webhook_requests_total", (("provider", "sendgrid"), ("status", "200")))] == 3
    assert got[("ddetect_campaign_bounce_ratio", (("campaign", "c1"),))] == pytest.approx(0.1)


def test_standalone_app_serves_metrics_on_a_free_port():
    async def scenario():
        runner = await start_metrics_app(populated_registry(), "127.0.0.1", 0)
        try:
            port = bound_port(runner)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
                    text = await resp.text()
                async with session.get(f"http://127.0.0.1:{port}/other") as resp:
                    assert resp.status == 404
        finally:
            await runner.cleanup()
        return text

    got = samples(asyncio.run(scenario()))
    assert got[("ddetect_consumer_lag_messages",
                (("partition", "0"), ("topic", "deliverability-events")))] == 12
    assert got[("ddetect_webhook_request_duration_seconds_count", (("provider", "sendgrid"),))] == 1


def test_route_on_an_existing_app_renders_at_scrape_time():
    registry = CollectorRegistry()
    m = Metrics(registry)

    async def scenario():
        app = web.Application()
        add_metrics_route(app, registry)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = bound_port(runner)
        values = []
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(2):
                    m.dead_letters.labels(source="events").inc()
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                        values.append(samples(await resp.text())[
                            ("ddetect_dead_letters_total", (("source", "events"),))])
        finally:
            await runner.cleanup()
        return values

    assert asyncio.run(scenario()) == [1.0, 2.0]
