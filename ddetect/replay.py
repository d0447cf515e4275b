"""``ddetect replay``: run a JSONL file of canonical events through the detection engine.

Events are processed in file order, which is arrival order, as the streaming pipeline
would see them (late arrivals within the allowed lateness are counted in their window;
later ones are dropped, exactly as in the pipeline). ``--sort`` processes them in
timestamp order instead. Alerts go to stdout as JSON lines; errors and progress to stderr.

There is no wall clock in a replay, so an event stamped implausibly far ahead (more than
``max_future_skew`` past both the newest event counted so far and the median of the events
around it, :func:`detector.skew.future_outliers`) is an outlier: it is not counted, and the
outliers are reported on stderr with their count. A gap where the whole stream moves ahead
is followed. The last events of each batch are judged with the next batch, so a gap that
starts near a batch end is seen with the events after it.
"""
from __future__ import annotations

import json
import os
import sys
from typing import IO, Iterator

import numpy as np

from detector.counts import EventBatch
from detector.coverage import BlindRules
from detector.engine import Engine
from detector.event import EventError, parse_line
from detector.rules import RuleSet
from detector.skew import DEFAULT_CONTEXT, DEFAULT_MAX_FUTURE_SKEW, future_outliers

BATCH = 20_000


def read_events(stream: IO[bytes], errors: IO[str], source: str = "-") -> Iterator[dict]:
    """Validated events from JSON lines; a bad line is reported (file:line: field: reason) and skipped."""
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            yield parse_line(line)
        except EventError as exc:
            print(f"{source}:{lineno}: {exc}", file=errors)


def run_replay(path: str, ruleset: RuleSet, out: IO[str], errors: IO[str], sort: bool = False,
               progress: bool | None = None, max_future_skew: float = DEFAULT_MAX_FUTURE_SKEW) -> dict:
    """Replay ``path`` ('-' for stdin); return counts (events counted, alerts, late, invalid,
    future: outliers not counted, windows: windows evaluated, windows_skipped: empty
    windows the clock jumped over)."""
    stream = sys.stdin.buffer if path == "-" else open(path, "rb")
    size = 0 if path == "-" else os.path.getsize(path)
    if progress is None:
        progress = size > 20_000_000
    counter = _ErrorCounter(errors)
    events: Iterator[dict] = read_events(stream, counter, path)
    if sort:
        events = iter(sorted(events, key=lambda e: e["timestamp"]))
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=size or None, unit="B", unit_scale=True, file=errors, desc="replay")
    engine = Engine(ruleset)
    blind = BlindRules(ruleset)
    n_events = n_alerts = 0
    batch: list[dict] = []
    held: list[dict] = []   # the previous batch's last events, judged with this batch
    future: list[dict] = []

    def emit(alerts: list[dict]) -> None:
        nonlocal n_alerts
        for a in alerts:
            out.write(json.dumps(a, sort_keys=True) + "\n")
        n_alerts += len(alerts)

    def count(batch: list[dict], final: bool) -> None:
        nonlocal n_events, held
        evs = held + batch
        outliers = future_outliers(np.fromiter((e["timestamp"] for e in evs), np.float64, len(evs)),
                                   max_future_skew, newest=engine.meta.get("newest"))
        decided = len(evs) if final else max(len(evs) - DEFAULT_CONTEXT, 0)
        held = evs[decided:]
        good = [e for e, bad in zip(evs[:decided], outliers[:decided].tolist()) if not bad]
        if len(good) < decided:
            future.extend(e for e, bad in zip(evs[:decided], outliers[:decided].tolist()) if bad)
        emit(_process(engine, blind, good, errors))
        n_events += len(good)

    try:
        for ev in events:
            batch.append(ev)
            if len(batch) >= BATCH:
                count(batch, final=False)
                batch = []
                if bar is not None and path != "-":
                    bar.n = stream.tell()
                    bar.refresh()
        count(batch, final=True)
        emit(engine.flush())
    finally:
        if bar is not None:
            bar.close()
        if stream is not sys.stdin.buffer:
            stream.close()
    if future:
        first = future[0]
        print(f"{path}: {len(future)} event(s) stamped more than {max_future_skew:g} s ahead of the stream "
              f"were not counted (first: event_id {first['event_id']}, timestamp {first['timestamp']:.0f})",
              file=errors)
    return {"events": n_events, "alerts": n_alerts, "late": engine.late_events, "invalid": counter.count,
            "future": len(future), "blind_rules": len(blind.reported), "windows": engine.windows_evaluated, "windows_skipped": engine.windows_skipped}


def _process(engine: Engine, blind: BlindRules, events: list[dict], errors: IO[str]) -> list[dict]:
    """One batch through the engine; say once per ESP and rule when the stream leaves a rule blind."""
    if not events:
        return []
    batch = EventBatch.from_events(events, engine.vocab, engine.retries)
    for v in blind.update(batch):
        print(f"ddetect: rule {v.rule} cannot run on {v.esp} traffic ({v.status}): {v.detail} "
              f"(see `ddetect doctor`)", file=errors)
    return engine.process_batch(batch)


class _ErrorCounter:
    """Pass-through stderr writer that counts reported lines."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.count = 0

    def write(self, text: str) -> int:
        if text.strip():
            self.count += 1
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()
