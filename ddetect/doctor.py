"""``ddetect doctor``: which rules can run on your stream, per ESP.

Reads a sample of canonical events (JSONL, as ``ddetect replay`` takes; ``ddetect normalize``
turns raw ESP payloads into them) and prints, per ESP: the event types it posts, how many
events carry each scope field, and for every rule whether it runs, runs on a stand-in (no
send events: delivery attempts count as sends), is split (a scope field present on some
event types only) or is blind (an event type or field it needs never appears), with the fix.
Exit status 1 when a rule is blind or split, 0 otherwise.
"""
from __future__ import annotations

import argparse
import sys
from itertools import islice
from typing import IO, Sequence

from detector.counts import SCOPE_FIELDS, EventBatch
from detector.coverage import Coverage, assess, feedback_gaps
from detector.event import EVENT_TYPES
from detector.rules import RuleError, default_rules_path, load_rules

from .replay import read_events

_MARK = {"runs": "ok", "stand-in": "ok*", "unseen": "?", "split": "SPLIT", "blind": "BLIND"}


def diagnose(path: str, rules_path: str, sample: int, min_events: int, out: IO[str], errors: IO[str]) -> int:
    ruleset = load_rules(rules_path)
    cov = Coverage()
    vocab = None
    with (sys.stdin.buffer if path == "-" else open(path, "rb")) as stream:
        events = read_events(stream, errors, path)
        n = 0
        while n < sample:
            chunk = list(islice(events, min(20_000, sample - n)))
            if not chunk:
                break
            batch = EventBatch.from_events(chunk, vocab)
            vocab = batch.vocab
            cov.update(batch)
            n += len(chunk)
    print(f"{n:,} events read from {path}; rules {rules_path}", file=out)
    verdicts = assess(cov, ruleset, min_events=1)
    gaps = {g.esp: g for g in feedback_gaps(cov, ruleset.feedback_loops)}
    bad = 0
    for esp in sorted(cov.types):
        total = cov.events(esp)
        types = ", ".join(f"{t} {int(c):,}" for t, c in zip(EVENT_TYPES, cov.types[esp]) if c)
        print(f"\n{esp}: {total:,} events ({types})", file=out)
        carried = {f: int(cov.fields[esp][f].sum()) for f in SCOPE_FIELDS}
        print("  fields: " + ", ".join(f"{f} {100 * c / total:.0f}%" for f, c in carried.items()), file=out)
        if total < min_events:
            print(f"  (fewer than {min_events:,} events: a missing type may only be rare so far)", file=out)
        gap = gaps.get(esp)
        if gap is not None and gap.unseen:
            print(f"  complaints: {100 * gap.unseen_share:.0f}% of deliveries go to providers without a "
                  f"per-message feedback loop ({', '.join(gap.unseen[:6])}); complaint rules judge the rest",
                  file=out)
        if gap is not None and gap.unlisted:
            names = ", ".join(f"{p} ({c:,})" for p, c in gap.unlisted)
            print(f"  complaints from providers outside the feedback_loops table are not counted: {names}; "
                  f"add them to the rule file's feedback_loops list", file=out)
        for v in verdicts:
            if v.esp != esp:
                continue
            bad += v.status in ("blind", "split")
            detail = f"  {v.detail}" if v.detail else ""
            print(f"  {_MARK[v.status]:<6}{v.rule}{detail}", file=out)
    if not cov.types:
        print("no events with a provider", file=out)
    print(f"\n{bad} rule(s) blind or split (ok* = runs on delivery attempts, no send events; "
          f"? = an event type not seen yet)", file=out)
    return 1 if bad else 0


def main_doctor(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ddetect doctor", description=__doc__.split("\n\n")[0])
    p.add_argument("file", help="JSONL file of canonical events, '-' for stdin")
    p.add_argument("--rules", default=str(default_rules_path()), help="rule file (default: the shipped pack)")
    p.add_argument("--sample", type=int, default=500_000, help="events to read (default 500,000)")
    p.add_argument("--min-events", type=int, default=5_000,
                   help="below this many events of an ESP, say that a missing type may only be rare (default 5,000)")
    args = p.parse_args(argv)
    try:
        return diagnose(args.file, args.rules, args.sample, args.min_events, sys.stdout, sys.stderr)
    except FileNotFoundError as exc:
        print(f"ddetect doctor: {exc.filename}: no such file", file=sys.stderr)
        return 2
    except RuleError as exc:
        print(exc, file=sys.stderr)
        return 2
