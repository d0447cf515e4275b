"""Shared test helpers: config factory, an in-memory producer, running the app in-process."""
from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from ddetect.metrics import Metrics
from ingest.config import IngestConfig, load_config
from ingest.producer import BrokerUnavailable
from ingest.server import build_app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "esp"
HASH_KEY = b"test-recipient-hash-key"
ADDRESS_RE = re.compile(r"[A-Za-z0-9._%+\-']+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}|[A-Za-z0-9._%+\-]+@invalid\b")


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str):
    return json.loads(fixture_bytes(name))


def make_config(**provider_settings) -> IngestConfig:
    """Config with the hash key set; ``provider_settings`` = {name: {field: value}}."""
    cfg = load_config(env={"DDETECT_RECIPIENT_HASH_KEY": HASH_KEY.decode()})
    for name, settings in provider_settings.items():
        for key, value in settings.items():
            setattr(cfg.provider(name), key, value)
    return cfg


def recipient_addresses(raw: bytes) -> set[str]:
    """Every address-looking string in a raw payload (recipients, senders, ids)."""
    return {m.lower() for m in ADDRESS_RE.findall(raw.decode("utf-8", "replace"))}


class MemoryProducer:
    """A working producer that keeps what it was given (the HTTP layer is under test)."""

    def __init__(self):
        self.events: list[dict] = []
        self.dead_letters: list[dict] = []
        self.fail = False

    async def send_events(self, events):
        if self.fail:
            raise BrokerUnavailable("test outage")
        self.events.extend(events)

    async def send_dead_letter(self, record):
        if self.fail:
            raise BrokerUnavailable("test outage")
        json.dumps(record, default=str)  # must be serialisable
        self.dead_letters.append(record)

    async def ping(self):
        return not self.fail


def fresh_metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def run(coro):
    return asyncio.run(coro)


class AppHarness:
    """``async with AppHarness(cfg) as h: resp = await h.client.post(...)``."""

    def __init__(self, config, producer=None, **build_kwargs):
        self.config = config
        self.producer = producer or MemoryProducer()
        self.metrics = build_kwargs.pop("metrics", None) or fresh_metrics()
        self.build_kwargs = build_kwargs

    async def __aenter__(self):
        app = build_app(self.config, self.producer, metrics=self.metrics, **self.build_kwargs)
        self.client = TestClient(TestServer(app))
        await self.client.start_server()
        return self

    async def __aexit__(self, *exc):
        await self.client.close()

    def sample(self, name: str, **labels) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0
