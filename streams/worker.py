"""Start a worker: ``ddetect worker [options]`` or ``python -m streams worker``.

Options become ``DDETECT_*`` environment variables (see :mod:`streams.config`), then
Faust's own command line runs the app, so every Faust worker flag still works.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .config import WorkerConfig


def main_worker(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="ddetect worker", description="run a detection worker (Faust)")
    p.add_argument("--broker", help="Kafka bootstrap servers host:port (env KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--rules", help="rule file (env DDETECT_RULES; default rules/default.yaml)")
    p.add_argument("--data-dir", help="state directory for RocksDB tables (env DDETECT_DATA_DIR)")
    p.add_argument("--store", help="table store: rocksdb:// (default) or memory://")
    p.add_argument("--web-port", type=int, help="port for /metrics, /healthz, /readyz (default 6066)")
    p.add_argument("--partitions", type=int, help="partitions of the internal topics and tables (default 8)")
    p.add_argument("--max-future-skew", type=float, metavar="SECONDS",
                   help="events stamped further than this past the wall clock are dead-lettered, not counted "
                        "(env DDETECT_MAX_FUTURE_SKEW; default 3600)")
    p.add_argument("-l", "--loglevel", default="info", choices=("crit", "error", "warn", "info", "debug"),
                   help="log level (default info)")
    args = p.parse_args(argv)
    overrides = {"KAFKA_BOOTSTRAP_SERVERS": args.broker, "DDETECT_RULES": args.rules,
                 "DDETECT_DATA_DIR": args.data_dir, "DDETECT_STORE": args.store,
                 "DDETECT_WEB_PORT": args.web_port, "DDETECT_PARTITIONS": args.partitions,
                 "DDETECT_MAX_FUTURE_SKEW": args.max_future_skew}
    for k, v in overrides.items():
        if v is not None:
            os.environ[k] = str(v)
    cfg = WorkerConfig()
    sys.argv = ["ddetect-worker", "worker", "-l", args.loglevel, "--web-port", str(cfg.web_port),
                "--web-host", "127.0.0.1"]
    main()
    return 0


def main() -> None:
    from .app import create_app
    from .topics import ensure_topics

    config = WorkerConfig()
    compact = {"cleanup.policy": "compact"}
    ensure_topics(config.broker, {
        f"{config.app_id}-scope-deltas": (config.partitions, {}),
        f"{config.app_id}-scope-state-changelog": (config.partitions, compact),
        f"{config.app_id}-clock-changelog": (config.partitions, compact),
    })
    app = create_app(config)
    app.main()
