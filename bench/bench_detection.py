"""Detection quality against the issue's goals, on the tuning set and the frozen held-out set, per ESP profile.

Runs ``ddetect evaluate``'s evaluation (the shipped rules, the same engine as the pipeline)
for each set x profile and prints, side by side:

  * the goals, one PASS/FAIL line each, with the numbers behind them:
      1. every labelled incident detected (matching rule, scope and time, see ddetect/evaluate.py);
      2. step changes: chart trials within 1.5x the exact CUSUM bound at the *true* baseline
         (the zero-state ARL1 of the optimal CUSUM for the true (p0, p1) at the rule's ARL0,
         i.e. Lorden's minimax delay), mean over seeds, per scenario and hint rule;
      3. at most 1 false alarm per 1,000 armed series-days on clean traffic (95% upper bound printed);
      4. per incident kind (ddetect/evaluate.py DELAY_GOALS): old list within 15 min of the send
         starting, provider throttle/block within 30 min, silent flow within 30 min (the incidents
         that are too late or missed are listed);
      5. complaint spikes and ramps (wrong segment, reputation decay) within 1.5x the delay of an
         oracle on the same stream (ddetect/oracle.py: the true baseline, incident rate and
         complaint lag; threshold at the compared rule's ARL0 by the exact Brook-Evans chain),
         oracle and ddetect delays side by side per incident;
      6. 0 alerts before onset (incident runs, before their first label's onset) and 0 alerts after
         the input ends (any run, after its newest event);
      7. median delay at most a quarter of the best peer's, on the incidents caught by both (a peer
         with fewer than 3 such incidents is shown, not judged);
  * ddetect's default pack next to the peer rule sets (rules/peers/: PostHog auto-pause, SparkPost
    block-rate alert, the static Grafana/Prometheus backstop) on the very same streams: incidents
    caught, median delay, false alarms per 1,000 armed series-days with the 95% upper bound.

Sets: ``tuning`` = the scenarios' default parameters on seeds the defaults were tuned on;
``heldout`` = the frozen variants and seeds of sim/heldout.py (do not tune on them).
Profiles (sim/profiles.py): ``sends`` (every stream carries accepted events, what the defaults
were tuned on), ``outcome-only`` (no accepted events), ``esp-mix`` (each campaign's events
filtered to what its ESP really posts). Clean runs span --clean-duration (default 7 days:
weekdays, a weekend and the diurnal cycle).

Nothing here is a stored result; every number comes from this run. Wall time is printed.

Run: python bench/bench_detection.py [--sets tuning,heldout] [--profiles sends,outcome-only,esp-mix]
     [--seeds 1,2] [--clean-seeds 1-2] [--heldout-seeds ...] [--heldout-clean-seeds ...]
     [--clean-duration 7d] [--scale 0.5] [--duration 6h] [--peers posthog,sparkpost,grafana] [--jobs 2] [--out DIR]
Exit status 1 when a goal fails on any set x profile (so `make bench` shows it), 0 when all pass.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ddetect.evaluate import (DEFAULT_GRACE, DEFAULT_SCALE, format_peers, format_table, goal_shorts, peer_summary,
                              resolve_scenarios, run_all, summarize, write_report)
from ddetect.peers import DEFAULT_PEERS
from detector.rules import default_rules_path
from sim.cli import parse_duration
from sim.heldout import HELDOUT_CLEAN_SEEDS, HELDOUT_SEEDS
from sim.profiles import BENCH_PROFILES, profile_name


def _seed_list(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            out += range(int(lo), int(hi) + 1)
        elif part:
            out.append(int(part))
    return out


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _fmt_delay(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="tuning,heldout", help="tuning, heldout or both (default both)")
    ap.add_argument("--profiles", default=",".join(BENCH_PROFILES),
                    help=f"comma-separated ESP profiles (default {','.join(BENCH_PROFILES)})")
    ap.add_argument("--seeds", default="1,2", help="tuning-set seeds (default 1,2)")
    ap.add_argument("--clean-seeds", default="1-2", help="tuning-set clean seeds, 'a-b' or comma-separated "
                                                        "(default 1-2)")
    ap.add_argument("--heldout-seeds", default=",".join(map(str, HELDOUT_SEEDS[:2])),
                    help="held-out seeds (a subset of sim/heldout.py's; default its first two)")
    ap.add_argument("--heldout-clean-seeds", default=",".join(map(str, HELDOUT_CLEAN_SEEDS[:2])),
                    help="held-out clean seeds (default the first two of sim/heldout.py's)")
    ap.add_argument("--clean-duration", type=parse_duration, default=7 * 86400.0,
                    help="simulated period of each clean run (default 7d: weekdays, a weekend, the diurnal cycle)")
    ap.add_argument("--scenarios", default="all")
    ap.add_argument("--scale", type=float, default=DEFAULT_SCALE)
    ap.add_argument("--duration", type=parse_duration, default=6 * 3600.0)
    ap.add_argument("--rules", default=str(default_rules_path()))
    ap.add_argument("--peers", default=",".join(DEFAULT_PEERS), help="peer rule sets ('' for none)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", default=None, help="also write a Markdown report and plots per set x profile here")
    args = ap.parse_args(argv)
    sets = _names(args.sets)
    for s in sets:
        if s not in ("tuning", "heldout"):
            ap.error(f"unknown set {s!r} (tuning, heldout)")
    profiles = [profile_name(p) for p in _names(args.profiles)]
    peers = _names(args.peers)
    scenarios = resolve_scenarios(args.scenarios)

    t0 = time.perf_counter()
    print(f"detection quality: sets {', '.join(sets)} x profiles {', '.join(profiles)}; scale {args.scale:g}, "
          f"{args.duration / 3600:g} h per incident run, clean runs {args.clean_duration / 86400:g} d; "
          f"rules {os.path.relpath(args.rules)}; peers {', '.join(peers) or 'none'}")
    print("held-out set: sim/heldout.py (frozen: do not tune on it)")
    overview: list[list[str]] = []
    all_pass = True
    for set_name in sets:
        heldout = set_name == "heldout"
        seeds = _seed_list(args.heldout_seeds if heldout else args.seeds)
        clean_seeds = _seed_list(args.heldout_clean_seeds if heldout else args.clean_seeds)
        for profile in profiles:
            t1 = time.perf_counter()
            runs = run_all(scenarios, seeds, scale=args.scale, duration=args.duration, rules_path=args.rules,
                           grace=DEFAULT_GRACE, jobs=max(1, args.jobs), plots=args.out is not None,
                           clean_seeds=clean_seeds, clean_duration=args.clean_duration, profile=profile,
                           heldout=heldout, peers=peers)
            wall = time.perf_counter() - t1
            summary = summarize(runs)
            events = sum(r["events"] for r in runs)
            print()
            print(f"=== {set_name} set, profile {profile}: seeds {seeds}, clean seeds {clean_seeds}; "
                  f"{len(runs)} runs, {events:,} events, {wall:.1f}s wall")
            print(format_table(summary))
            if peers:
                print()
                print(format_peers(runs, peers))
            for g in summary.goals:
                all_pass &= bool(g.passed)
            verdicts = " ".join(g.verdict for g in summary.goals)
            for name in (None, *peers):
                p = peer_summary(runs, name)
                c = p["clean"]
                overview.append([set_name, profile, name or "ddetect", f"{p['caught']}/{p['labels']}",
                                 _fmt_delay(p["median_delay_s"]),
                                 f"{c['false_alarms']} / {c['armed_days']:.0f}" if c["runs"] else "-",
                                 (f"{c['per_1000_armed']:.2f} ({c['upper95_per_1000_armed']:.2f})"
                                  if c["runs"] else "-"),
                                 verdicts if name is None else ""])
            if args.out:
                settings = {"set": set_name, "profile": profile, "scenarios": ",".join(scenarios),
                            "seeds": ",".join(map(str, seeds)), "clean-seeds": ",".join(map(str, clean_seeds)),
                            "clean-duration": f"{args.clean_duration / 3600:g}h", "scale": f"{args.scale:g}",
                            "duration": f"{args.duration / 3600:g}h", "rules": os.path.relpath(args.rules),
                            "peers": ",".join(peers)}
                write_report(summary, Path(args.out) / f"{set_name}-{profile}", settings=settings)

    header = ["set", "profile", "rule set", "caught", "median delay", "clean FA / armed series-days",
              "FA per 1,000 armed series-days (95% upper)", f"goals ({', '.join(goal_shorts())})"]
    rows = [header] + overview
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print()
    print("=== side by side")
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    print("\n".join(lines))
    print(f"\nwall time {time.perf_counter() - t0:.1f}s")
    return 0 if all_pass else 1   # N/A (a scenario subset) is not a pass


if __name__ == "__main__":
    sys.exit(main())
