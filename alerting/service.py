"""``ddetect router``: the alert router process (Kafka consumer + escalation timer + HTTP server).

``run_router(settings)`` blocks until SIGTERM/SIGINT; ``serve_router`` is the same as a coroutine for tests.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("alerting.service")


@dataclass
class RouterSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "deliverability-alerts"
    dlq_topic: str = "deliverability-alerts-dlq"
    group_id: str = "ddetect-router"
    routing_path: str = "rules/routing.yaml"
    data_dir: str = "data"
    http_host: str = "0.0.0.0"
    http_port: int = 9095
    escalation_interval: float = 5.0
    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 60.0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "RouterSettings":
        """Settings from DDETECT_* environment variables (KAFKA_BOOTSTRAP_SERVERS too), then overrides."""
        env = os.environ if environ is None else environ
        s = cls()
        s.bootstrap_servers = env.get("KAFKA_BOOTSTRAP_SERVERS", s.bootstrap_servers)
        for name, conv in (("topic", str), ("dlq_topic", str), ("group_id", str), ("routing_path", str),
                           ("data_dir", str), ("http_host", str), ("http_port", int),
                           ("escalation_interval", float), ("max_attempts", int)):
            key = f"DDETECT_ROUTER_{name.upper()}"
            if key in env:
                setattr(s, name, conv(env[key]))
        for key, value in overrides.items():
            if value is not None:
                setattr(s, key, value)
        return s

    @property
    def ledger_path(self) -> Path:
        return Path(self.data_dir) / "router-ledger.sqlite3"


async def serve_router(settings: RouterSettings, stop: asyncio.Event | None = None, metrics=None,
                       environ=None, ready: asyncio.Event | None = None) -> None:
    import aiohttp
    from aiohttp import web
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from alerting.config import load_routing
    from alerting.consumer import consume
    from alerting.deadletter import KafkaDeadLetterSink
    from alerting.dispatcher import Dispatcher
    from alerting.escalation import Escalator
    from alerting.ledger import Ledger
    from alerting.pause import PauseHook
    from alerting.receivers.registry import build_notifiers
    from alerting.retry import RetryPolicy
    from alerting.web import make_app

    if metrics is None:
        from ddetect.metrics import default_metrics
        metrics = default_metrics()
    stop = stop or asyncio.Event()
    config = load_routing(settings.routing_path)  # raises ConfigErrors with every problem
    notifiers = build_notifiers(config, environ)  # raises SecretError naming missing secrets
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    ledger = Ledger(settings.ledger_path)
    session = aiohttp.ClientSession()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(settings.topic, bootstrap_servers=settings.bootstrap_servers,
                                group_id=settings.group_id, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    runner = None
    try:
        await producer.start()
        await consumer.start()
        pause = PauseHook(config.stop_the_fire, ledger, session, environ) if config.stop_the_fire else None
        dispatcher = Dispatcher(config, notifiers, ledger, KafkaDeadLetterSink(producer, settings.dlq_topic),
                                session, metrics, RetryPolicy(settings.max_attempts, settings.base_delay,
                                                              settings.max_delay), pause_hook=pause)
        runner = web.AppRunner(make_app(ledger, metrics.registry))
        await runner.setup()
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        log.info("router up: topic=%s group=%s http=%s:%d", settings.topic, settings.group_id,
                 settings.http_host, settings.http_port)
        if ready is not None:
            ready.set()
        tasks = [asyncio.create_task(consume(consumer, dispatcher, stop), name="consume"),
                 asyncio.create_task(Escalator(dispatcher, settings.escalation_interval).run(stop), name="escalate")]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        stop.set()
        await asyncio.gather(*tasks)  # re-raises a crash of either task
    finally:
        if runner is not None:
            await runner.cleanup()
        await consumer.stop()
        await producer.stop()
        await session.close()
        ledger.close()


def run_router(settings: RouterSettings | None = None) -> int:
    """Blocking entry point for ``ddetect router``; returns the process exit code."""
    settings = settings or RouterSettings.from_env()

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_router(settings, stop)

    from alerting.secrets import SecretError
    from alerting.yamlcheck import ConfigErrors
    try:
        asyncio.run(main())
    except (ConfigErrors, SecretError) as exc:
        print(exc, file=__import__("sys").stderr)
        return 2
    return 0
