"""Worker settings, from the command line or ``DDETECT_*`` environment variables.

| setting            | env                          | default                     |
|--------------------|------------------------------|-----------------------------|
| broker             | KAFKA_BOOTSTRAP_SERVERS      | 127.0.0.1:9092              |
| rules              | DDETECT_RULES                | rules/default.yaml          |
| data_dir           | DDETECT_DATA_DIR             | ./ddetect-data              |
| store              | DDETECT_STORE                | rocksdb:// (memory:// too)  |
| web_port           | DDETECT_WEB_PORT             | 6066                        |
| partitions         | DDETECT_PARTITIONS           | 8 (scope-deltas + tables)   |
| events_topic       | DDETECT_EVENTS_TOPIC         | deliverability-events       |
| dlq_topic          | DDETECT_DLQ_TOPIC            | deliverability-events-dlq   |
| alerts_topic       | DDETECT_ALERTS_TOPIC         | deliverability-alerts       |
| app_id             | DDETECT_APP_ID               | ddetect                     |
| batch_size         | DDETECT_BATCH_SIZE           | 500 messages per take()     |
| batch_wait         | DDETECT_BATCH_WAIT           | 0.2 s                       |
| max_future_skew    | DDETECT_MAX_FUTURE_SKEW      | 3600 s                      |

``max_future_skew``: an event stamped more than this many seconds after the worker's wall
clock is not counted (it would move the watermark and make on-time events late); it goes
to the dead-letter topic with the reason and is counted in ``ddetect_events_future_total``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields


def _env(name: str, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return type(default)(value)


@dataclass
class WorkerConfig:
    broker: str = field(default_factory=lambda: _env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    rules: str = field(default_factory=lambda: _env("DDETECT_RULES", ""))
    data_dir: str = field(default_factory=lambda: _env("DDETECT_DATA_DIR", "ddetect-data"))
    store: str = field(default_factory=lambda: _env("DDETECT_STORE", "rocksdb://"))
    web_port: int = field(default_factory=lambda: _env("DDETECT_WEB_PORT", 6066))
    partitions: int = field(default_factory=lambda: _env("DDETECT_PARTITIONS", 8))
    events_topic: str = field(default_factory=lambda: _env("DDETECT_EVENTS_TOPIC", "deliverability-events"))
    dlq_topic: str = field(default_factory=lambda: _env("DDETECT_DLQ_TOPIC", "deliverability-events-dlq"))
    alerts_topic: str = field(default_factory=lambda: _env("DDETECT_ALERTS_TOPIC", "deliverability-alerts"))
    app_id: str = field(default_factory=lambda: _env("DDETECT_APP_ID", "ddetect"))
    batch_size: int = field(default_factory=lambda: _env("DDETECT_BATCH_SIZE", 500))
    batch_wait: float = field(default_factory=lambda: _env("DDETECT_BATCH_WAIT", 0.2))
    max_future_skew: float = field(default_factory=lambda: _env("DDETECT_MAX_FUTURE_SKEW", 3600.0))

    def export_env(self) -> dict[str, str]:
        """The environment that reproduces this config in a child process."""
        names = {"broker": "KAFKA_BOOTSTRAP_SERVERS", "rules": "DDETECT_RULES", "data_dir": "DDETECT_DATA_DIR",
                 "store": "DDETECT_STORE", "web_port": "DDETECT_WEB_PORT", "partitions": "DDETECT_PARTITIONS",
                 "events_topic": "DDETECT_EVENTS_TOPIC", "dlq_topic": "DDETECT_DLQ_TOPIC",
                 "alerts_topic": "DDETECT_ALERTS_TOPIC", "app_id": "DDETECT_APP_ID",
                 "batch_size": "DDETECT_BATCH_SIZE", "batch_wait": "DDETECT_BATCH_WAIT",
                 "max_future_skew": "DDETECT_MAX_FUTURE_SKEW"}
        return {names[f.name]: str(getattr(self, f.name)) for f in fields(self)}
