"""``ddetect route test [--config PATH] [--verify.receivers=a,b] label=value ...`` like ``amtool config routes test``.

Prints the receivers the alert reaches (comma-separated); exit 1 when ``--verify.receivers`` differs (compared
as sets, order-insensitive), 2 on a bad routing file or bad arguments.
"""
from __future__ import annotations

import argparse
import sys

from alerting.config import load_routing
from alerting.matchers import parse_label_args
from alerting.routing import matching_routes, receivers_for
from alerting.yamlcheck import ConfigErrors

DEFAULT_CONFIG = "rules/routing.yaml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ddetect route test", description="Show which receivers an alert reaches.")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"routing file (default {DEFAULT_CONFIG})")
    p.add_argument("--verify.receivers", dest="verify", default=None,
                   help="expected receivers, comma-separated; exit 1 if they differ")
    p.add_argument("--tree", action="store_true", help="also print the matched routes with their settings")
    p.add_argument("labels", nargs="*", help="label=value pairs, e.g. category=technical severity=critical")
    return p


def main_route_test(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        labels = parse_label_args(args.labels)
        config = load_routing(args.config)
    except (ValueError, OSError) as exc:
        print(str(exc) if isinstance(exc, ConfigErrors) else f"error: {exc}", file=sys.stderr)
        return 2
    names = receivers_for(config, labels)
    print(",".join(names))
    if args.tree:
        for route in matching_routes(config.route, labels):
            esc = f" escalate_to={route.escalate_to} after={route.escalate_after:g}s" if route.escalate_to else ""
            print(f"  line {route.line}: receiver={route.receiver} group_by={list(route.group_by)} "
                  f"group_wait={route.group_wait:g}s repeat_interval={route.repeat_interval:g}s{esc}")
    if args.verify is not None:
        expected = [n.strip() for n in args.verify.split(",") if n.strip()]
        if sorted(set(expected)) != sorted(set(names)):
            print(f"WARNING: Expected receivers did not match. Resolved receivers: {','.join(names)}; "
                  f"expected: {','.join(expected)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main_route_test())
