"""``ddetect simulate``: write a scenario's events (JSONL) and ground-truth labels (JSON)."""
from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time

from .api import DEFAULT_START, scenario_name, simulate, sort_by_timestamp, write_jsonl, write_labels
from .profiles import PROFILES, profile_name
from .profiles import describe as describe_profiles
from .scenarios import describe

#: The demo compresses several incidents into a short period; the rest default to 6 h.
DEFAULT_DURATION = {"demo": "3h"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``6h``, ``1d``, ``1h30m`` -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 90s, 15m, 6h, 1h30m)")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("duration must be positive")
    return seconds


def parse_start(text: str) -> float:
    """Unix seconds, ISO-8601 (``2024-06-04T08:00:00Z``) or ``now``."""
    if text == "now":
        return float(int(time.time()))
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (Unix seconds, ISO-8601 or 'now')") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _profile(text: str) -> str:
    try:
        return profile_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ddetect simulate",
                                description="Simulate ESP traffic with a labelled incident scenario.")
    p.add_argument("--list", action="store_true", help="list scenarios and exit")
    p.add_argument("--scenario", help="scenario name (see --list)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=parse_start, default=DEFAULT_START,
                   help="start of the period: Unix seconds, ISO-8601 or 'now' (default 2024-06-04T08:00Z)")
    p.add_argument("--duration", type=parse_duration, default=None, help="e.g. 6h (demo: 3h)")
    p.add_argument("--scale", type=_positive, default=1.0, help="volume multiplier (1 = ~1M events per 6 h)")
    p.add_argument("--order", choices=("arrival", "timestamp"), default="arrival",
                   help="arrival: as webhooks arrive (late/duplicate deliveries out of order); "
                        "timestamp: sorted by event time")
    p.add_argument("--profile", default="sends", type=_profile,
                   help="which event types each campaign's ESP posts: sends (all, default), outcome-only "
                        "(no accepted events), esp-mix (each campaign its own ESP's set), or one ESP's set for "
                        f"every campaign ({', '.join(PROFILES[3:])}); --list shows them")
    p.add_argument("--out", help="events JSONL path ('-' for stdout)")
    p.add_argument("--labels", help="labels JSON path")
    return p


def main_simulate(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for name, text in describe().items():
            print(f"{name:18} {text}")
        print("\nprofiles (--profile):")
        for name, text in describe_profiles().items():
            print(f"{name:18} {text}")
        return 0
    if not args.scenario or not args.out:
        parser.error("--scenario and --out are required (or use --list)")
    try:
        name = scenario_name(args.scenario)
    except ValueError as exc:
        parser.error(str(exc))
    duration = args.duration or parse_duration(DEFAULT_DURATION.get(name, "6h"))
    t0 = time.perf_counter()
    events, labels = simulate(name, seed=args.seed, start=args.start, duration=duration, scale=args.scale,
                              profile=args.profile)
    if args.order == "timestamp":
        events = sort_by_timestamp(events)
    t1 = time.perf_counter()
    try:
        n = write_jsonl(events, sys.stdout if args.out == "-" else args.out)
    except BrokenPipeError:  # `... --out - | head`: the reader left, nothing to report
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    t2 = time.perf_counter()
    if args.labels:
        write_labels(labels, args.labels)
    print(f"simulate {name} ({args.profile}): {n} events, {len(labels)} labels; generated in {t1 - t0:.2f}s, "
          f"written in {t2 - t1:.2f}s ({n / max(t2 - t0, 1e-9):,.0f} events/s overall)", file=sys.stderr)
    return 0
