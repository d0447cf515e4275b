"""The ``ddetect`` command line.

Each subcommand imports its module lazily, so ``ddetect rules check`` works without
touching Kafka or Faust.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from detector.rules import RuleError, default_rules_path, load_rules
from detector.skew import DEFAULT_MAX_FUTURE_SKEW


def _load_ruleset(path: str | None):
    rs = load_rules(path or default_rules_path())
    for line in rs.warnings:
        print(line, file=sys.stderr)
    return rs


def cmd_rules_check(args: argparse.Namespace) -> int:
    status = 0
    for path in args.paths:
        try:
            rs = load_rules(path)
        except RuleError as exc:
            for line in exc.errors:
                print(line, file=sys.stderr)
            status = 1
            continue
        for line in rs.warnings:
            print(line, file=sys.stderr)
        print(f"{path}: OK, {len(rs.rules)} rules, window {rs.settings.window:g}s, "
              f"allowed lateness {rs.settings.allowed_lateness:g}s"
              + (f", {len(rs.warnings)} warning(s)" if rs.warnings else ""))
    return status


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import run_replay

    try:
        rs = _load_ruleset(args.rules)
    except RuleError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return 2
    stats = run_replay(args.file, rs, sys.stdout, sys.stderr, sort=args.sort,
                       progress=True if args.progress else None, max_future_skew=args.max_future_skew)
    print(json.dumps({"replay": stats}), file=sys.stderr)
    return 0


def _passthrough(module: str, func: str):
    """Subcommands implemented elsewhere take their own argv (argparse REMAINDER)."""
    def run(args: argparse.Namespace) -> int:
        import importlib

        return importlib.import_module(module).__getattribute__(func)(args.rest)
    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ddetect", description="Streaming deliverability anomaly detector")
    sub = p.add_subparsers(dest="command", required=True)

    rules = sub.add_parser("rules", help="rule file tools")
    rsub = rules.add_subparsers(dest="rules_command", required=True)
    check = rsub.add_parser("check", help="validate rule files; exit 1 on errors")
    check.add_argument("paths", nargs="+")
    check.set_defaults(func=cmd_rules_check)

    rp = sub.add_parser("replay", help="run canonical events (JSONL) through the detector, alerts to stdout")
    rp.add_argument("file", help="JSONL file of canonical events, '-' for stdin")
    rp.add_argument("--rules", help="rule file (default: the shipped rules/default.yaml)")
    rp.add_argument("--sort", action="store_true", help="process in timestamp order, not file (arrival) order")
    rp.add_argument("--progress", action="store_true", help="always show the progress bar")
    rp.add_argument("--max-future-skew", type=float, default=DEFAULT_MAX_FUTURE_SKEW, metavar="SECONDS",
                    help="an event more than this far ahead of both the newest event so far and the events "
                         "around it is an outlier: reported, not counted (default %(default)g; inf: off)")
    rp.set_defaults(func=cmd_replay)

    for name, module, func, help_text in _EXTERNAL:
        sp = sub.add_parser(name, help=help_text, add_help=False)
        sp.add_argument("rest", nargs=argparse.REMAINDER)
        sp.set_defaults(func=_passthrough(module, func))
    return p


#: (subcommand, module, function(argv) -> int, help)
_EXTERNAL: list[tuple[str, str, str, str]] = [
    ("worker", "streams.worker", "main_worker", "run a detection worker (Faust agents on Kafka)"),
    ("evaluate", "ddetect.evaluate", "main_evaluate",
     "detection quality on labelled simulated traffic: delays vs the exact CUSUM bound, false alarms, "
     "precision/recall; Markdown report + plots"),
    ("simulate", "sim", "main_simulate", "simulate labelled ESP traffic: JSONL events + ground-truth labels"),
    ("doctor", "ddetect.doctor", "main_doctor",
     "which rules can run on a sample of your events, per ESP (blind rules, split scopes, missing send events)"),
    ("normalize", "ddetect.cli", "main_normalize", "print the canonical events a raw ESP payload file produces"),
    ("ingest", "ddetect.cli", "main_ingest", "run the webhook ingest server (ESP webhooks -> Kafka)"),
    ("route", "ddetect.cli", "main_route", "routing tools: `route test label=value ...` prints receivers"),
    ("ack", "alerting.ack_cli", "main_ack", "acknowledge an alert (stops escalation): ack DEDUP_KEY --router URL"),
    ("router", "ddetect.cli", "main_router", "run the alert router (alert topic -> on-call receivers)"),
]


def main_route(argv: Sequence[str]) -> int:
    if not argv or argv[0] != "test":
        print("usage: ddetect route test [--config PATH] [--verify.receivers=a,b] label=value ...", file=sys.stderr)
        return 2
    from alerting.route_test import main_route_test

    return main_route_test(list(argv[1:]))


def main_normalize(argv: Sequence[str]) -> int:
    from ingest import normalize

    p = argparse.ArgumentParser(prog="ddetect normalize",
                                description="print canonical events (JSON lines) for a raw ESP payload file")
    normalize.add_arguments(p)
    return normalize.run(p.parse_args(argv))


def main_ingest(argv: Sequence[str]) -> int:
    from ingest.config import load_config
    from ingest.server import run_ingest

    p = argparse.ArgumentParser(prog="ddetect ingest", description="webhook ingest server (see ingest/config.py)")
    p.add_argument("--config", help="YAML config file; DDETECT_* environment variables override it")
    args = p.parse_args(argv)
    run_ingest(load_config(args.config))
    return 0


def main_router(argv: Sequence[str]) -> int:
    from alerting.service import RouterSettings, run_router

    if argv and argv[0] in ("-h", "--help"):
        print("ddetect router: configured by KAFKA_BOOTSTRAP_SERVERS and DDETECT_ROUTER_* variables "
              "(TOPIC, DLQ_TOPIC, GROUP_ID, ROUTING_PATH, DATA_DIR, HTTP_HOST, HTTP_PORT)")
        return 0
    return run_router(RouterSettings.from_env())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Subcommands with their own parsers get their argv untouched (argparse's REMAINDER
    # would swallow a leading --option).
    for name, module, func, _ in _EXTERNAL:
        if argv[:1] == [name]:
            import importlib

            return getattr(importlib.import_module(module), func)(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
