"""Provider blocks on tuning-set variants: which scopes are slow, and why (issue #11, item 3).

Runs ``provider_block`` with variants of the tuning scenario (never the held-out set): a block
at Yahoo on the marketing domain at two onsets, and blocks on sparse transactional domains,
and prints each run's provider_block delay in minutes and in messages of the scope. The slow
runs are scopes whose earlier bulk send is still retrying: its late deliveries dilute the
block rate the chart sees (more deliveries than sends after onset).

Run: python bench/bench_block_variants.py [--seeds 1,2,3] [--profile sends]
"""
from __future__ import annotations

import argparse

from ddetect.evaluate import evaluate_run
from detector.rules import default_rules_path

VARIANTS = (
    {"provider": "yahoo", "rate": 0.5, "throttle": 0.4, "span": (0.3, 0.45)},
    {"provider": "yahoo", "rate": 0.5, "throttle": 0.4, "span": (0.8, 0.95)},
    {"provider": "microsoft", "sending_domain": "mail.fabrikam-home.com", "rate": 0.5, "throttle": 0.4},
    {"provider": "gmail", "sending_domain": "notify.northwind-outdoor.com", "rate": 0.4, "throttle": 0.4},
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--profile", default="sends")
    p.add_argument("--rules", default=str(default_rules_path()))
    args = p.parse_args()
    for params in VARIANTS:
        for seed in (int(s) for s in args.seeds.split(",")):
            run = evaluate_run("provider_block", seed, scale=0.5, duration=6 * 3600, rules_path=args.rules,
                               profile=args.profile, params=params)
            for d in run["detections"]:
                if d.get("rule") == "provider_block":
                    delay = f"{d['delay_s'] / 60:.1f} min, {d['delay_msgs']} msgs" if d.get("detected") else "missed"
                    print(f"{params}  seed {seed}: {delay}")


if __name__ == "__main__":
    main()
