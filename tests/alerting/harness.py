"""Builds a Dispatcher wired to a recording server, a real SQLite ledger and a JSON-lines dead-letter file."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from alerting.config import parse_routing
from alerting.deadletter import FileDeadLetterSink
from alerting.dispatcher import Dispatcher
from alerting.escalation import Escalator
from alerting.ledger import Ledger
from alerting.pause import PauseHook
from alerting.receivers.registry import build_notifiers
from alerting.retry import RetryPolicy
from ddetect.metrics import Metrics
from tests.alerting.helpers import Clock, RecordingSleep, Recorder

ROUTING = """
route:
  receiver: ops
  group_by: [category, rule]
  repeat_interval: 4h
  routes:
    - receiver: ops
      matchers: ['category="technical"']
      escalate_after: 15m
      escalate_to: pager
receivers:
  - name: ops
    slack_configs:
      - url_env: SLACK_URL
    pagerduty_configs:
      - routing_key_env: PD_KEY
        url: "{base}/pd/enqueue"
  - name: pager
    pagerduty_configs:
      - routing_key_env: PD_KEY
        url: "{base}/pager/enqueue"
    escalate_after: 30m
    escalate_to: boss
  - name: boss
    webhook_configs:
      - url: "{base}/boss"
        secret_env: HOOK_SECRET
{extra}
"""


@dataclass
class Harness:
    dispatcher: Dispatcher
    escalator: Escalator
    ledger: Ledger
    dlq: FileDeadLetterSink
    metrics: Metrics
    clock: Clock
    sleep: RecordingSleep
    session: aiohttp.ClientSession

    async def close(self):
        await self.session.close()
        self.ledger.close()

    def sample(self, name: str, **labels) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


async def build(tmp_path: Path, rec: Recorder, clock: Clock | None = None, extra: str = "",
                slack_url: str | None = None, max_attempts: int = 4, registry=None) -> Harness:
    base = rec.url("").rstrip("/")
    config = parse_routing(ROUTING.format(base=base, extra=extra.format(base=base)), "test-routing.yaml")
    env = {"SLACK_URL": slack_url or f"{base}/slack/T1/B1/secret", "PD_KEY": "pd-routing-key-0000000000000000",
           "HOOK_SECRET": "hook-secret", "PAUSE_SECRET": "pause-secret"}
    clock = clock or Clock()
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    dlq = FileDeadLetterSink(tmp_path / "dlq.jsonl")
    metrics = Metrics(registry or CollectorRegistry())
    sleep = RecordingSleep()
    session = aiohttp.ClientSession()
    pause = PauseHook(config.stop_the_fire, ledger, session, env, clock) if config.stop_the_fire else None
    d = Dispatcher(config, build_notifiers(config, env), ledger, dlq, session, metrics,
                   RetryPolicy(max_attempts=max_attempts, base_delay=0.5, max_delay=8.0), random.Random(7),
                   clock=clock, sleep=sleep, pause_hook=pause)
    return Harness(d, Escalator(d), ledger, dlq, metrics, clock, sleep, session)
