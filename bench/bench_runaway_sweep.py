"""Tuning-set runaway sweep: volume_surge delay per steady flow x surge factor x seed.

The held-out set (sim/heldout.py) is not used here: these are the tuning set's runaway scenario
with other campaigns, factors and onsets. ``--span 0.507,0.607`` starts the surge 2.5 minutes
into a 5-minute window (a partial onset window); ``--trace`` prints the rule's windows around
the onset (count, run expected, window expected, run length, p, dispersion, fire, calm, firing).

    PYTHONPATH=. python bench/bench_runaway_sweep.py --factors 2,3,5 --seeds 1,2 \
        --flows welcome-series,password-reset,order-confirmation [--span 0.507,0.607] [--trace]
"""
import sys, json, math, argparse, time
from ddetect import evaluate as ev
from detector import detectors

ap = argparse.ArgumentParser()
ap.add_argument("--flows", default="welcome-series,password-reset,order-confirmation")
ap.add_argument("--factors", default="2,3,5")
ap.add_argument("--seeds", default="1,2,3")
ap.add_argument("--span", default="0.5,0.6")
ap.add_argument("--profile", default="sends")
ap.add_argument("--rules", default="rules/default.yaml")
ap.add_argument("--trace", action="store_true")
ap.add_argument("--out", default=None)
a = ap.parse_args()
span = tuple(float(x) for x in a.span.split(","))

trace = []
if a.trace:
    orig = detectors.eval_volume
    def wrapped(rule, st, sid, w, count, window):
        f = orig(rule, st, sid, w, count, window)
        if rule.name == "volume_surge" and f is not None and CUR in sid:
            trace.append((w, count, round(f.expected, 1), f.extra.get("window_expected"), f.extra.get("run_windows"), "%.2g" % f.p_value, None if f.extra.get("dispersion") is None else round(f.extra.get("dispersion")), f.fire, f.calm, st.get("firing")))
        return f
    detectors.eval_volume = wrapped
    import detector.engine as eng
    eng.detectors.eval_volume = wrapped

rows = []
for flow in a.flows.split(","):
    for fac in [float(x) for x in a.factors.split(",")]:
        for seed in [int(s) for s in a.seeds.split(",")]:
            CUR = flow
            trace.clear()
            t0 = time.time()
            r = ev.evaluate_run("runaway", seed, scale=ev.DEFAULT_SCALE, duration=ev.DEFAULT_DURATION,
                                rules_path=a.rules, profile=a.profile,
                                params={"campaign": flow, "factor": fac, "span": span})
            lab = r["labels"][0]
            d = [x for x in r["detections"] if x["rule"] == "volume_surge"]
            delay = d[0].get("delay_s") if d else None
            others = sorted({x["rule"] for x in r["detections"] if x["detected"] and x["rule"] != "volume_surge"})
            fa = len(r["false_alarms"])
            row = dict(flow=flow, factor=fac, seed=seed, delay_min=None if delay is None else round(delay / 60, 1), pages=d[0]["alerts"] if d else 0,
                       dur_min=round((lab["end"] - lab["start"]) / 60), fa=fa, other=others,
                       armed_days=round(r["armed_days"], 1), secs=round(time.time() - t0))
            rows.append(row)
            print(json.dumps(row), flush=True)
            if a.trace:
                for t in trace:
                    if lab["start"] - 1800 <= t[0] <= lab["end"] + 600:
                        print("   ", round((t[0] - lab["start"]) / 60), *t[1:], flush=True)
if a.out:
    json.dump(rows, open(a.out, "w"))
