"""``ddetect evaluate``: how good is detection on labelled simulated traffic?

For every scenario x seed the simulator's events go, in webhook-arrival order and in
batches exactly as ``ddetect replay`` sends them, through the same :class:`Engine` the
pipeline runs. The alerts are then matched against the scenario's ground-truth labels.

Matching (one firing alert, one label):
  * rule: the alert's rule is named in the label's ``rule_hint``, or its metric belongs to
    the label metric's family (:data:`METRIC_FAMILY`: a Gmail block also shows up as a
    block-driven bounce-rate or deferral-rate rise);
  * scope: the alert's scope is the label's scope, a sub-scope (all its traffic lies inside
    the label's, e.g. ``{campaign, mailbox_provider}`` under ``{campaign}``), a super-scope
    (it contains all the label's traffic, e.g. the campaign's ``{sending_domain}``) or an
    overlapping scope (no field disagrees and they share traffic, e.g. the campaign's
    sending domain at one provider). What "lies inside" means is read off the simulated
    traffic: a scope is extended with every field that is constant over its messages (a
    campaign has one sending domain, IP pool and ESP) before the key/value sets are
    compared (:func:`scope_relation`);
  * time: ``label.start <= detected_at <= label.end + grace``, where the grace is
    ``--grace`` plus three times the label's ``signal_lag_s`` (complaints arrive hours
    after delivery).
A firing alert that matches no label is a false alarm. Precision = matched firing alerts /
all firing alerts; recall = labels with at least one matched alert / all labels.

Delays: seconds from onset to ``detected_at`` (for a CUSUM rule, the newest event time the
chart had seen when it crossed its threshold, message by message; for window tests, the
event-time end of the window that fired), and messages of the labelled scope accepted in
between. For a CUSUM rule on the label's metric the delay is also measured as *chart trials*: the events the rate counts
as trials (its denominator, e.g. delivered + bounced) in the alert's scope with event time
in ``[onset, detected_at)``, i.e. what the chart had seen when it fired. They are compared
with the bound ``delay_bound(p0, p1, arl0)`` at the *true* baseline: p0 = the label's
expected rate without the incident (unfloored, not the rule's learned or clamped
baseline), p1 = the label's incident rate, arl0 = the rule's. What the bound is, exactly:
the zero-state ARL1 (mean number of Bernoulli trials from a change at the first trial to
the alarm, statistic starting at 0) of Page's CUSUM tuned to the true pair (p0, p1) with
its threshold calibrated by the exact Markov chain so that its ARL0 equals arl0. By
Lorden (1971) and Moustakides (1986) that chart minimises the worst-case conditional
expected delay (Lorden's criterion: worst case over change points and pre-change
histories) among all procedures with ARL0 >= arl0, and for the CUSUM that worst case is
its zero-state ARL1. So it is the least worst-case mean delay in trials any detector with
the rule's false-alarm rate can guarantee; a particular stream can be caught sooner, but
no detector can promise less on average at that false-alarm rate. ratio = chart trials / bound, averaged over
seeds. ``bound (rule p0)`` is the same bound at the rule's own baseline (learned, or the
label's baseline raised to ``baseline_floor`` when it missed): what the engine's frozen
baseline makes reachable; a rule whose floor sits far above the true baseline is slow
against the true bound even when it is fast against its own. ``bound@window`` is the
true bound rounded up to the end of the window in which the bound-th trial falls (what
an engine that only decides at window close could at best do; the CUSUM charts here move
per message and are not held to it), and ``chart ARL1`` the exact delay of the rule's own
chart, tuned to its ``shift`` x its own p0 rather than to the actual shift. Labels of kind ``step`` with a CUSUM hint rule are held to the delay goal (against the true bound).

Scope-days (false-alarm exposure): a *series* is one (rule, scope value) pair, the unit
that can alarm. A series counts once the engine has evaluated the rule on that scope at
least one closed window (its rule state exists), whether or not it is past warm-up.
scope-days = series x simulated days, summed over runs. The headline exposure is the
stricter *armed series-days*: the time each series spent past warm-up (for policy rules,
since its span first held min_volume; for peer threshold rules, since its span first held
min_total), because a series still warming up cannot alarm and would dilute the rate. The
false-alarm goal is judged per 1,000 armed series-days, with the one-sided 95% Poisson
(Garwood) upper bound printed next to it; per 1,000 scope-days is still reported.

Goals (:func:`check_goals`, one PASS/FAIL line each; N/A when nothing in the run can show it):
every labelled incident detected; step changes within 1.5x the bound above; at most 1 false
alarm per 1,000 armed series-days on the clean runs; per incident kind (:data:`DELAY_GOALS`,
by the label's ``incident`` name) the first matching alert within 15 min of the onset for an
old list (the onset is the start of the stale send), 30 min for a provider block (step; a
throttle is one of its matching families) and 30 min for a silent flow; a runaway has no delay
goal. Complaint spikes (wrong segment) and ramps (reputation decay), whose evidence arrives
slowly, are held to 1.5x the delay of an *oracle* on the same stream (:mod:`ddetect.oracle`):
a CUSUM over the label scope's trials that is given the true baseline and incident rates and
the true complaint lag distribution, counts each trial's evidence when it becomes observable,
and has its threshold set by the exact Brook-Evans chain to the ARL0 of the rule it is compared
with (the first matching CUSUM alert's, else the pack's false-alarm budget per scope-day at the
scope's trials per day). 0 alerts before onset: no firing alert of an incident run before the
onset of its first label (any rule, any scope: each is a false alarm on the clean stretch
before the incident); 0 alerts after the input ends: no firing alert of any run detected after
the newest event time of its stream. Median delay at most a quarter of the best peer's: per
peer, both medians over the incidents both caught; a peer is judged only on at least 3 such
incidents, and the goal must hold against every judged peer (so against the best).

Profiles and sets: ``--profile`` filters each simulated stream to the event types its ESP
really posts (:mod:`sim.profiles`: ``sends``, ``outcome-only``, ``esp-mix``, one ESP);
``--set heldout`` runs the frozen held-out variants and seeds (:mod:`sim.heldout`) instead
of the tuning scenarios and seeds. ``--peers`` also runs peer rule sets
(:mod:`ddetect.peers`) on the very same streams and reports them side by side.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from detector import cusum
from detector.counts import COUNTER_INDEX, FBL_SLOT, N_COUNTERS
from detector.engine import Engine
from detector.rates import METRICS
from detector.rules import RuleSet, default_rules_path, load_rules

DAY = 86400.0
DEFAULT_SEEDS = (1, 2, 3)
DEFAULT_SCALE = 0.5
DEFAULT_DURATION = 6 * 3600.0
DEFAULT_GRACE = 3600.0
BATCH = 20_000                      # events per Engine.process call, as ddetect replay
BATCH_ARRIVAL_S = 60.0              # and at most this much arrival time per call (the pipeline's are seconds)
GOAL_DELAY_RATIO = 1.5
GOAL_FA_PER_1000 = 1.0
GOAL_ORACLE_RATIO = 1.5
GOAL_PEER_FRACTION = 0.25
#: A peer is held to the median-delay goal only on at least this many incidents caught by both.
PEER_MIN_COMMON = 3


@dataclass(frozen=True)
class DelayGoal:
    """One incident kind's delay goal: ``limit`` seconds after the onset (``kind`` "absolute") or
    ``limit`` x the oracle's delay on the same incident (``kind`` "oracle", :mod:`ddetect.oracle`)."""

    kind: str
    limit: float
    name: str
    short: str = ""


#: The issue's delay goals by label ``incident`` name (sim/scenarios.py; the held-out variants and
#: the demo reuse the same names). The onset of an old list is the start of its send. A runaway
#: flow (volume surge) has no delay goal in the issue: it is held to being detected only.
DELAY_GOALS: dict[str, DelayGoal | None] = {
    "old-list": DelayGoal("absolute", 15 * 60.0, "old list within 15 min of the send starting", "old list"),
    "provider-block": DelayGoal("absolute", 30 * 60.0, "provider throttle/block within 30 min", "block"),
    "silent-stop": DelayGoal("absolute", 30 * 60.0, "silent flow within 30 min", "silence"),
    "wrong-segment": DelayGoal("oracle", GOAL_ORACLE_RATIO, "complaint spikes and ramps within "
                               f"{GOAL_ORACLE_RATIO:g}x the oracle's delay", "oracle"),
    "reputation-decay": DelayGoal("oracle", GOAL_ORACLE_RATIO, "complaint spikes and ramps within "
                                  f"{GOAL_ORACLE_RATIO:g}x the oracle's delay", "oracle"),
    "runaway": None,
    "webhook-outage": None,
}

#: Alert metrics that count as detecting a label of the key's metric (besides the rule hint).
METRIC_FAMILY: dict[str, frozenset[str]] = {
    "block_rate": frozenset({"block_rate", "refusal_rate", "bounce_rate", "deferral_rate", "throttle_rate"}),
    "hard_bounce_rate": frozenset({"hard_bounce_rate", "bounce_rate"}),
    "complaint_rate": frozenset({"complaint_rate", "complaint_rate_all"}),
    "volume": frozenset({"volume", "delivery_volume"}),
}


# ============================================================================ matching (pure)

def hint_rules(label: Mapping) -> tuple[str, ...]:
    hint = label.get("rule_hint") or ()
    if isinstance(hint, str):
        hint = hint.split(",")
    return tuple(h.strip() for h in hint if h.strip())


def rule_matches(alert: Mapping, label: Mapping) -> bool:
    if alert["rule"] in hint_rules(label):
        return True
    family = METRIC_FAMILY.get(label["metric"], frozenset({label["metric"]}))
    return alert.get("metric") in family


def _contains(big: Mapping[str, str], small: Mapping[str, str]) -> bool:
    return all(big.get(k) == v for k, v in small.items())


def scope_relation(alert_scope: Mapping[str, str], label_scope: Mapping[str, str],
                   closure: Callable[[Mapping[str, str]], Mapping[str, str]] | None = None,
                   overlaps: Callable[[Mapping[str, str], Mapping[str, str]], bool] | None = None) -> str | None:
    """'same', 'sub' (alert traffic inside the label's), 'super' (contains it), 'overlap' or None.

    ``closure(scope)`` extends a scope with the fields constant over its traffic; without
    one the comparison is on the literal key/value sets. 'overlap': neither contains the
    other but no field disagrees (e.g. {sending_domain, mailbox_provider} against the
    {campaign} sent from that domain: their intersection is the campaign at that provider);
    ``overlaps(a, b)``, when given, must also confirm that the two share traffic.
    """
    close = closure or (lambda s: s)
    ca, cl = close(alert_scope), close(label_scope)
    sub = _contains(ca, label_scope)
    sup = _contains(cl, alert_scope)
    if sub and sup:
        return "same"
    if sub or sup:
        return "sub" if sub else "super"
    if any(k in cl and cl[k] != v for k, v in ca.items()):
        return None
    if overlaps is not None and not overlaps(alert_scope, label_scope):
        return None
    return "overlap"


def grace_for(label: Mapping, grace: float) -> float:
    return grace + 3.0 * float(label.get("signal_lag_s") or 0.0)


def alert_matches(alert: Mapping, label: Mapping, grace: float,
                  closure: Callable[[Mapping[str, str]], Mapping[str, str]] | None = None,
                  overlaps: Callable[[Mapping[str, str], Mapping[str, str]], bool] | None = None) -> bool:
    if alert["status"] != "firing" or not rule_matches(alert, label):
        return False
    t = float(alert["detected_at"])
    if not label["start"] <= t <= label["end"] + grace_for(label, grace):
        return False
    return scope_relation(alert["scope"], label["scope"], closure, overlaps) is not None


@dataclass
class Matching:
    """Which firing alerts (indices into the alert list) explain which label."""

    by_label: list[list[int]]
    false_alarms: list[int]
    firing: int

    @property
    def detected(self) -> list[bool]:
        return [bool(m) for m in self.by_label]


def match_alerts(alerts: Sequence[Mapping], labels: Sequence[Mapping], grace: float = DEFAULT_GRACE,
                 closure: Callable[[Mapping[str, str]], Mapping[str, str]] | None = None,
                 overlaps: Callable[[Mapping[str, str], Mapping[str, str]], bool] | None = None) -> Matching:
    """Match every firing alert against every label; unmatched firing alerts are false alarms."""
    by_label: list[list[int]] = [[] for _ in labels]
    false_alarms: list[int] = []
    firing = 0
    for i, alert in enumerate(alerts):
        if alert["status"] != "firing":
            continue
        firing += 1
        hit = False
        for j, label in enumerate(labels):
            if alert_matches(alert, label, grace, closure, overlaps):
                by_label[j].append(i)
                hit = True
        if not hit:
            false_alarms.append(i)
    return Matching(by_label, false_alarms, firing)


def scope_days(series: int, duration_s: float) -> float:
    """Series (rule x scope value pairs evaluated) times simulated days."""
    return series * duration_s / DAY


def fa_per_1000(false_alarms: int, exposure_days: float) -> float:
    return math.inf if exposure_days <= 0 else 1000.0 * false_alarms / exposure_days


def fa_upper_per_1000(false_alarms: int, exposure_days: float, level: float = 0.95) -> float:
    """One-sided Poisson upper confidence bound of the false-alarm rate (Garwood)."""
    from scipy.stats import chi2

    if exposure_days <= 0:
        return math.inf
    return 1000.0 * float(chi2.ppf(level, 2 * (false_alarms + 1))) / 2.0 / exposure_days


# ============================================================================ traffic index

class TrafficIndex:
    """Scope fields of one simulated run, per message and per event: masks, closures, counts."""

    def __init__(self, table):
        from sim.catalog import DOMAINS
        from sim.traffic import BOUNCE_NAMES, TYPE_NAMES

        camp, dom = np.asarray(table.m_camp), np.asarray(table.m_dom)
        self.t = np.asarray(table.m_t)
        self.fields: dict[str, tuple[np.ndarray, np.ndarray]] = {
            "campaign": (np.array(table.campaigns, dtype=object), camp),
            "sending_domain": (np.array(table.camp_sdom, dtype=object), camp),
            "ip_pool": (np.array(table.camp_pool, dtype=object), camp),
            "provider": (np.array(table.camp_esp, dtype=object), camp),
            "mailbox_provider": (np.array(DOMAINS.provider, dtype=object), dom),
            "recipient_domain": (np.array(DOMAINS.names, dtype=object), dom),
        }
        # Per event: message row, event time and its two engine counters (type, bounce class or -1).
        self.ev_msg = np.asarray(table.msg)
        self.ev_ts = np.asarray(table.ts)
        self.ev_seq = np.asarray(table.seq)
        type_counter = np.array([COUNTER_INDEX[name] for name in TYPE_NAMES])
        bounce_counter = np.array([COUNTER_INDEX[f"bounced_{b}"] for b in BOUNCE_NAMES] + [-1])
        self.ev_type = type_counter[np.asarray(table.type)]
        self.ev_bounce = bounce_counter[np.asarray(table.bclass)]  # bclass -1 -> last entry, -1
        # Deliveries and complaints at feedback-loop providers count a third time (complaint_rate's terms).
        at_loop = DOMAINS.fbl[dom][self.ev_msg]
        self.ev_fbl = np.where(at_loop, FBL_SLOT[self.ev_type], -1)  # event-type counters = type codes
        self._closures: dict[tuple, dict] = {}
        self._table = table
        self._first: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def first_attempts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per message that was attempted: (message row, time of its first attempt, was it refused).

        The ground truth of ``refusal_rate`` (each message's first delivery attempt, refused if
        a block bounce or a deferral with the provider's throttling reply), from every event the
        simulator drew, including those its ESP's webhooks do not post (the message's fate is
        the same)."""
        if self._first is None:
            from detector.smtp_codes import is_throttle
            from sim.catalog import DOMAINS
            table = self._table
            attempt = np.isin(self.ev_type, [COUNTER_INDEX[t] for t in ("delivered", "bounced", "deferred")])
            rows = np.flatnonzero(attempt)
            order = rows[np.lexsort((self.ev_ts[rows], self.ev_msg[rows]))]
            msg = self.ev_msg[order]
            head = np.r_[True, msg[1:] != msg[:-1]]
            first = order[head]
            refused = self.ev_bounce[first] == COUNTER_INDEX["bounced_block"]
            deferred = np.flatnonzero(self.ev_type[first] == COUNTER_INDEX["deferred"])
            providers = np.asarray(DOMAINS.provider, dtype=object)[np.asarray(table.m_dom)[self.ev_msg[first[deferred]]]]
            codes = np.asarray(table.code)[first[deferred]].tolist()
            texts = [table.reasons[r] if r >= 0 else None for r in np.asarray(table.reason)[first[deferred]].tolist()]
            refused[deferred] = [is_throttle(p, c or None, t) for p, c, t in zip(providers.tolist(), codes, texts)]
            self._first = (self.ev_msg[first], self.ev_ts[first], refused)
        return self._first

    def refusal_trials(self, scope: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
        """First attempts of ``scope``'s messages in time order: (times, refused)."""
        msg, ts, refused = self.first_attempts()
        keep = self.mask(scope)[msg]
        order = np.argsort(ts[keep], kind="stable")
        return ts[keep][order], refused[keep][order]

    def mask(self, scope: Mapping[str, str]) -> np.ndarray:
        """Messages in ``scope``."""
        m = np.ones(len(self.t), dtype=bool)
        for key, value in scope.items():
            values, idx = self.fields[key]
            m &= (values == value)[idx]
        return m

    def closure(self, scope: Mapping[str, str]) -> dict[str, str]:
        """``scope`` plus every field that has a single value over its messages."""
        key = tuple(sorted(scope.items()))
        if key not in self._closures:
            out = dict(scope)
            m = self.mask(scope)
            if m.any():
                for name, (values, idx) in self.fields.items():
                    if name not in out:
                        seen = set(values[np.unique(idx[m])].tolist())
                        if len(seen) == 1:
                            out[name] = seen.pop()
            self._closures[key] = out
        return self._closures[key]

    def overlaps(self, a: Mapping[str, str], b: Mapping[str, str]) -> bool:
        """Do the two scopes share at least one message?"""
        return bool((self.mask(a) & self.mask(b)).any())

    def messages(self, scope: Mapping[str, str], t0: float, t1: float) -> int:
        """Messages of ``scope`` accepted in ``[t0, t1)``."""
        return int((self.mask(scope) & (self.t >= t0) & (self.t < t1)).sum())

    def counter_matrix(self, scope: Mapping[str, str], t0: float, t1: float, window: float) -> np.ndarray:
        """Engine counters of ``scope`` per window of ``[t0, t1)`` by event time (windows x counters)."""
        rows = self.mask(scope)[self.ev_msg] & (self.ev_ts >= t0) & (self.ev_ts < t1)
        n_win = max(1, math.ceil((t1 - t0) / window))
        w = ((self.ev_ts[rows] - t0) // window).astype(np.int64)
        counts = np.zeros((n_win, N_COUNTERS), dtype=np.int64)
        np.add.at(counts, (w, self.ev_type[rows]), 1)
        for extra in (self.ev_bounce[rows], self.ev_fbl[rows]):
            np.add.at(counts, (w[extra >= 0], extra[extra >= 0]), 1)
        return counts

    def trial_times(self, scope: Mapping[str, str], metric: str, t0: float) -> np.ndarray:
        """Sorted event times from ``t0`` on of the events a rate metric counts as trials (its denominator)."""
        denominator = METRICS[metric].denominator or METRICS[metric].numerator
        wanted = np.zeros(N_COUNTERS, dtype=bool)
        wanted[[COUNTER_INDEX[c] for c in denominator]] = True
        wanted = np.r_[wanted, False]                       # index -1: no third counter
        rows = (self.mask(scope)[self.ev_msg] & (self.ev_ts >= t0)
                & (wanted[self.ev_type] | wanted[self.ev_fbl]))
        return np.sort(self.ev_ts[rows])


def refusal_rates(times: np.ndarray, refused: np.ndarray, label: Mapping) -> dict:
    """A block label's rates as a first-attempt chart sees them: the scope's share of refused
    first attempts before the onset (its baseline) and inside the incident. The simulator draws
    blocks and throttling per message, not a refusal probability, so these are measured over
    every message of the scope, not only over what the chart had seen when it fired."""
    before = times < label["start"]
    inside = (times >= label["start"]) & (times < label["end"])
    out = {}
    if before.sum():
        out["refusal_baseline_rate"] = float(refused[before].mean())
    if inside.sum():
        out["refusal_rate"] = float(refused[inside].mean())
    return out


def chart_trials(times: np.ndarray, t1: float) -> int:
    """Trials (from ``trial_times``) before ``t1``: what the chart had seen when it fired."""
    return int(np.searchsorted(times, t1, side="left"))


def window_bound(times: np.ndarray, k: float, window: float) -> int | None:
    """Trials up to the end of the window holding the k-th trial: the fewest a window engine can need."""
    k = max(1, math.ceil(k))
    if len(times) < k:
        return None
    end = math.floor(times[k - 1] / window) * window + window
    return chart_trials(times, end)


def seen_rate(index: "TrafficIndex", scope: Mapping[str, str], metric: str, t0: float, t1: float) -> float | None:
    """The metric over the trials the chart saw between onset and alarm (event time).

    The bound assumes every trial after the onset already shows the incident rate; when the
    ESP reports an outcome only after retries (a 421 block bounces after the first retry),
    the stream the detector can see ramps up instead, and this says by how much."""
    if t1 <= t0:
        return None
    x, n = METRICS[metric].pair(index.counter_matrix(scope, t0, t1, t1 - t0)[0])
    return x / n if n else None


def window_series(index: TrafficIndex, scope: Mapping[str, str], metric: str, t0: float, t1: float,
                  window: float) -> dict:
    """Per-window (x, n) of ``metric`` on ``scope`` by event time, as the engine counts them."""
    counts = index.counter_matrix(scope, t0, t1, window)
    pairs = [METRICS[metric].pair(c) for c in counts]
    return {"scope": dict(scope), "metric": metric, "start": [t0 + i * window for i in range(len(counts))],
            "x": [p[0] for p in pairs], "n": [p[1] for p in pairs], "window": window}


# ============================================================================ one run

class _RecordingStates(dict):
    """Engine scope-state mapping that remembers every (rule, scope) series ever evaluated
    and since when each was armed (expired scopes are deleted by the engine; this keeps them)."""

    def __init__(self, ruleset: RuleSet):
        super().__init__()
        self.rules = {r.name: r for r in ruleset.rules}
        self.series: set[tuple[str, str]] = set()
        self.armed_since: dict[tuple[str, str], float] = {}
        self.meta: Mapping[str, float] = {}

    def __setitem__(self, sid, st):
        super().__setitem__(sid, st)
        now = self.meta.get("closed_until", self.meta.get("first_open"))
        for name, rst in st["rules"].items():
            key = (name, sid)
            self.series.add(key)
            if key in self.armed_since or now is None:
                continue
            rule = self.rules[name]
            if rule.test == "policy":
                armed = sum(r[1] for r in rst.get("recent", ())) >= max(rule.min_volume, 1)
            else:
                armed = rst.get("phase") == "armed"
            if armed:
                self.armed_since[key] = float(now)


def run_engine(events: Iterable[Mapping], ruleset: RuleSet) -> tuple[list[dict], _RecordingStates]:
    """Events in arrival order -> alerts, batched like ``ddetect replay`` (then a final flush).

    A simulated table is also cut every :data:`BATCH_ARRIVAL_S` of arrival time, as the live
    pipeline reads its events seconds after they arrive: a batch holding a quarter of an hour
    of arrivals would count an event that arrived later than the allowed lateness as on time
    (a webhook backlog re-posted after an outage, a late webhook)."""
    states = _RecordingStates(ruleset)
    engine = Engine(ruleset, states=states)
    states.meta = engine.meta
    alerts: list[dict] = []
    batch: list[Mapping] = []
    if hasattr(events, "iter_timed"):
        cut = -math.inf
        for arrival, ev in events.iter_timed():
            if arrival >= cut and batch:
                alerts.extend(engine.process(batch))
                batch = []
            if not batch:
                cut = arrival + BATCH_ARRIVAL_S
            batch.append(ev)
            if len(batch) >= BATCH:
                alerts.extend(engine.process(batch))
                batch = []
    else:
        for ev in events:
            batch.append(ev)
            if len(batch) >= BATCH:
                alerts.extend(engine.process(batch))
                batch = []
    if batch:
        alerts.extend(engine.process(batch))
    alerts.extend(engine.flush())
    return alerts, states


_ALERT_KEYS = ("alert_id", "rule", "status", "scope", "metric", "test", "detected_at", "window", "observed",
               "baseline", "threshold")


def _trim(alert: Mapping) -> dict:
    out = {k: alert.get(k) for k in _ALERT_KEYS}
    out["p1"] = (alert.get("evidence") or {}).get("p1")
    out["arl0"] = (alert.get("evidence") or {}).get("arl0")
    return out


def cusum_numbers(rule, label: Mapping, alert: Mapping | None) -> dict:
    """Bounds and the rule's own chart ARL1, for a CUSUM rule on the label's metric.

    ``bound``: zero-state ARL1 of the optimal CUSUM at the label's *true* baseline
    (``p0_true``) and incident rate, at the rule's arl0 (see the module docstring).
    ``bound_rule``: the same at the rule's own p0 (``p0``: the alert's learned baseline, or
    the label's baseline raised to the rule's floor when the rule missed)."""
    if rule is None or rule.test != "cusum":
        return {}
    if rule.metric == label["metric"]:
        p1 = label.get("incident_rate")
        p0_true = label.get("baseline_rate")
    elif rule.metric == "refusal_rate" and label["metric"] == "block_rate" and "refusal_rate" in label:
        p1, p0_true = label["refusal_rate"], label.get("refusal_baseline_rate")
    else:
        return {}
    if alert is not None and alert.get("baseline"):
        p0 = float(alert["baseline"])
    elif p0_true is not None:
        p0 = max(float(p0_true), rule.baseline_floor)
    else:
        return {}
    out: dict = {"p0": p0, "p1": p1, "p0_true": p0_true}
    if p1 is None or not 0 < p0 < p1 < 1:
        return out
    arl0 = float(alert["arl0"]) if alert is not None and alert.get("arl0") else rule.arl0
    out["bound_rule"] = cusum.delay_bound(p0, p1, arl0)
    if p0_true is not None and 0 < float(p0_true) < p1:
        out["bound"] = cusum.delay_bound(float(p0_true), p1, arl0)
    else:
        out["bound"] = out["bound_rule"]
    chart_p1 = alert.get("p1") if alert is not None and alert.get("p1") else min(p0 * rule.shift, 0.99)
    h = alert["threshold"] if alert is not None and alert.get("threshold") else cusum.calibrate_h(p0, chart_p1, arl0)
    try:
        out["chart_arl1"] = cusum.arl(p1, p0, chart_p1, h)
    except ValueError:
        pass
    return out


# ============================================================================ oracle (slow evidence)

def oracle_trials(index: "TrafficIndex", scope: Mapping[str, str], metric: str,
                  lag_median: Sequence[float] | None = None, lag_sigma: float | None = None):
    """The trials of ``metric`` in ``scope`` as :mod:`ddetect.oracle` sees them (one per message).

    A rate whose numerator event is one of its trials (``block_rate``: a block bounce is a
    delivery attempt) is in reported mode: trial clock = the message's accepted time, outcome
    known at the attempt event's time. Otherwise (``complaint_rate``) lagged mode: trial clock =
    the delivery, a complaint known when it arrives, no news otherwise, with the log-normal lag
    of each message's campaign (``lag_median`` per campaign index, ``lag_sigma``)."""
    from .oracle import OracleTrials, lognormal_cdf
    from sim.traffic import COMPLAINT_DELAY_MEDIAN, COMPLAINT_DELAY_SIGMA

    m = METRICS[metric]
    den = [COUNTER_INDEX[c] for c in (m.denominator or ())]
    num = [COUNTER_INDEX[c] for c in m.numerator]
    if not den:
        return None
    _, first = np.unique(index.ev_seq, return_index=True)      # webhook duplicates repeat their seq
    rows = np.zeros(len(index.ev_seq), dtype=bool)
    rows[first] = True
    rows &= index.mask(scope)[index.ev_msg]

    def counted(counters):
        return rows & (np.isin(index.ev_type, counters) | np.isin(index.ev_bounce, counters)
                       | np.isin(index.ev_fbl, counters))

    trial_rows, pos_rows = counted(den), counted(num)
    reported = all(c in m.denominator or c.split("_")[0] in m.denominator for c in m.numerator)
    order = np.lexsort((index.ev_ts[trial_rows], index.ev_msg[trial_rows]))
    t_msg, t_ts = index.ev_msg[trial_rows][order], index.ev_ts[trial_rows][order]
    msgs, at = np.unique(t_msg, return_index=True)                # first trial event per message
    t_ts = t_ts[at]
    if reported:
        is_pos = np.zeros(len(index.ev_seq), dtype=bool)
        is_pos[pos_rows] = True
        pos = is_pos[trial_rows][order][at]
        return OracleTrials(send=index.t[msgs], obs=t_ts, positive=pos)
    p_msg = index.ev_msg[pos_rows]
    p_ts = index.ev_ts[pos_rows]
    porder = np.lexsort((p_ts, p_msg))
    pm, pat = np.unique(p_msg[porder], return_index=True)
    obs = np.full(len(msgs), np.inf)
    where = np.searchsorted(msgs, pm)
    ok = (where < len(msgs)) & (msgs[np.minimum(where, len(msgs) - 1)] == pm)
    obs[where[ok]] = p_ts[porder][pat][ok]
    camp = index.fields["campaign"][1][msgs]
    medians = (np.asarray(lag_median, dtype=float)[camp] if lag_median is not None
               else np.full(len(msgs), COMPLAINT_DELAY_MEDIAN))
    sigma = COMPLAINT_DELAY_SIGMA if lag_sigma is None else float(lag_sigma)
    values, counts = np.unique(medians, return_counts=True)
    weights = counts / max(1, counts.sum())

    def cdf(u, values=values, weights=weights, sigma=sigma):
        return sum(w * lognormal_cdf(u, med, sigma) for med, w in zip(values, weights))

    return OracleTrials(send=t_ts, obs=obs, positive=np.isfinite(obs), lag_cdf=cdf)


def fa_budget(rules: Mapping[str, object], label: Mapping) -> float:
    """The pack's false-alarm budget per scope-day for the label: its hint rule's
    ``false_alarms_per_scope_day``, else the smallest one in the pack, else the FA goal's."""
    for name in hint_rules(label):
        budget = getattr(rules.get(name), "fa_per_scope_day", None)
        if budget:
            return float(budget)
    budgets = [r.fa_per_scope_day for r in rules.values() if getattr(r, "fa_per_scope_day", None)]
    return float(min(budgets)) if budgets else GOAL_FA_PER_1000 / 1000.0


def oracle_arl0(first: Mapping | None, label: Mapping, budget: float, trials_per_day: float) -> tuple[float, str]:
    """ARL0 (trials) of the rule the oracle is compared with, and where it comes from.

    The first matching alert's own ARL0 when it is a CUSUM alert on the label's metric (the
    chart the engine ran); otherwise (a policy or window rule, or a miss) the engine's rule for
    CUSUM scopes applied to the pack's budget: max(trials per day / budget, 1e4)."""
    if first is not None and first.get("test") == "cusum" and first.get("metric") == label["metric"] \
            and first.get("arl0"):
        return float(first["arl0"]), f"ARL0 of {first['rule']}'s chart"
    arl0 = max(trials_per_day / budget, 1e4)
    return arl0, f"budget {budget:g}/scope-day at {trials_per_day:,.0f} trials/day"


def oracle_rates(label: Mapping) -> tuple[float | None, float | None]:
    """(p0, p1) the oracle is tuned to: the label's true baseline and its incident rate (a ramp:
    the mean rate over the ramp, not the rate it reaches at the end)."""
    p1 = label.get("mean_incident_rate") if label["kind"] == "ramp" else label.get("incident_rate")
    return label.get("baseline_rate"), p1


def run_oracle(index: "TrafficIndex", label: Mapping, first: Mapping | None, ddetect_delay: float | None, *,
               rules: Mapping[str, object], run_start: float, run_end: float, grace: float,
               lag_median: Sequence[float] | None = None) -> dict:
    """The oracle's delay on one label next to ddetect's (see :mod:`ddetect.oracle`)."""
    from .oracle import ORACLE_LEAD, oracle_delay

    p0, p1 = oracle_rates(label)
    out: dict = {"ddetect_delay_s": ddetect_delay, "p0": p0, "p1": p1}
    if p0 is None or p1 is None or not 0 < p0 < p1 < 1:
        out["error"] = f"no (p0, p1) pair to tune to: p0={p0}, p1={p1}"
        return out
    trials = oracle_trials(index, label["scope"], label["metric"], lag_median)
    if trials is None or not len(trials.send):
        out["error"] = "no trials in the label's scope"
        return out
    per_day = len(trials.send) / max((run_end - run_start) / DAY, 1e-9)
    arl0, source = oracle_arl0(first, label, fa_budget(rules, label), per_day)
    onset = float(label["start"])
    t_start = max(run_start, onset - ORACLE_LEAD)
    t_end = min(run_end, float(label["end"]) + grace_for(label, grace))
    out.update(oracle_delay(trials, float(p0), float(p1), arl0, onset, t_start, t_end))
    out.update(arl0_source=source, trials_per_day=per_day,
               mode="reported" if trials.lag_cdf is None else "lagged")
    od = out["delay_s"]
    if ddetect_delay is not None and od is not None:
        out["ratio"] = ddetect_delay / od if od > 0 else math.inf
    return out


#: Scenarios whose rules judge steady flows only (volume_surge, campaign_silence arm after a
#: day of traffic): they run with this much simulated history before the scored period.
HISTORY: dict[str, float] = {"silent-stop": 26 * 3600.0, "runaway": 26 * 3600.0, "demo": 26 * 3600.0,
                             "wrong-segment": 26 * 3600.0, "webhook-outage": 26 * 3600.0}


def evaluate_run(scenario: str, seed: int, *, scale: float, duration: float, rules_path: str,
                 grace: float = DEFAULT_GRACE, series: bool = False, profile: str = "sends",
                 params: Mapping | None = None, variant: str | None = None,
                 peers: Sequence[str] = ()) -> dict:
    """Simulate one scenario x seed, run the engine, match, measure delays. Plain data out.

    ``profile``: which event types each ESP posts (:mod:`sim.profiles`); ``params`` and
    ``variant``: a held-out scenario variant (:mod:`sim.heldout`); ``peers``: peer rule sets
    (:mod:`ddetect.peers`) run on the same stream, matched against the same labels."""
    from sim import DEFAULT_START, simulate

    ruleset = load_rules(rules_path)
    rules = {r.name: r for r in ruleset.rules}
    window = ruleset.settings.window
    t_sim = time.perf_counter()
    history = HISTORY.get(scenario, 0.0)
    table, labels = simulate(scenario, seed=seed, start=DEFAULT_START, duration=duration, scale=scale,
                             profile=profile, params=dict(params) if params else None, history=history)
    t_eng = time.perf_counter()
    alerts, states = run_engine(table, ruleset)
    t_done = time.perf_counter()
    index = TrafficIndex(table)
    match = match_alerts(alerts, labels, grace, index.closure, index.overlaps)
    end = DEFAULT_START + duration

    resolved_at = {a["alert_id"]: a["detected_at"] for a in alerts if a["status"] == "resolved"}
    detections = []
    for j, label in enumerate(labels):
        matched = [alerts[i] for i in match.by_label[j]]
        names = list(hint_rules(label)) + sorted({a["rule"] for a in matched} - set(hint_rules(label)))
        for name in names:
            mine = sorted((a for a in matched if a["rule"] == name), key=lambda a: a["detected_at"])
            first = mine[0] if mine else None
            row = {"label": j, "incident": label["incident"], "kind": label["kind"], "rule": name,
                   "hinted": name in hint_rules(label), "detected": first is not None,
                   "alerts": len(mine), "test": rules[name].test if name in rules else None}
            if first is not None:
                t = float(first["detected_at"])
                row.update(scope=first["scope"], relation=scope_relation(first["scope"], label["scope"], index.closure, index.overlaps),
                           delay_s=t - label["start"], delay_msgs=index.messages(label["scope"], label["start"], t),
                           resolved_at=resolved_at.get(first["alert_id"]))
            rule = rules.get(name)
            refusals = rule is not None and rule.metric == "refusal_rate" and label["metric"] == "block_rate"
            if refusals:  # a first-attempt chart: its trials and rates are the messages' first attempts
                times, refused = index.refusal_trials(first["scope"] if first else label["scope"])
                label = dict(label, **refusal_rates(times, refused, label))
                times = times[times >= label["start"]]
            nums = cusum_numbers(rule, label, first)
            row.update(nums)
            if "bound" in nums:
                if not refusals:
                    times = index.trial_times(first["scope"] if first else label["scope"], label["metric"],
                                              label["start"])
                row["bound_window"] = window_bound(times, nums["bound"], window)
                if first is not None:
                    row["trials"] = chart_trials(times, float(first["detected_at"]))
                    row["ratio"] = row["trials"] / nums["bound"]
                    row["ratio_rule"] = row["trials"] / nums["bound_rule"]
                    row["seen_rate"] = (float(np.mean(refused[-len(times):][:row["trials"]])) if refusals
                                        and row["trials"] else seen_rate(index, first["scope"], label["metric"],
                                                                         label["start"], float(first["detected_at"])))
            detections.append(row)

    armed_days = sum(max(0.0, end - since) for since in states.armed_since.values()) / DAY
    peer_results = {}
    for name in peers:
        from .peers import evaluate_peer, load_peer

        p_alerts, book = evaluate_peer(load_peer(name), index, DEFAULT_START, end)
        p_match = match_alerts(p_alerts, labels, grace, index.closure, index.overlaps)
        p_delays = []
        for j, label in enumerate(labels):
            hits = sorted(float(p_alerts[i]["detected_at"]) for i in p_match.by_label[j])
            p_delays.append(hits[0] - label["start"] if hits else None)
        peer_results[name] = {
            "alerts": [_trim(a) for a in p_alerts], "matched": p_match.by_label, "false_alarms": p_match.false_alarms,
            "firing": p_match.firing, "delays": p_delays, "series": len(book["series"]),
            "armed_series": len(book["armed_since"]),
            "armed_days": sum(max(0.0, end - t) for t in book["armed_since"].values()) / DAY}
    first_delays = []
    for j, label in enumerate(labels):
        hits = sorted(float(alerts[i]["detected_at"]) for i in match.by_label[j])
        first_delays.append(hits[0] - label["start"] if hits else None)
    run_start = DEFAULT_START - history
    oracle: list[dict | None] = [None] * len(labels)
    lag_median = None
    for j, label in enumerate(labels):
        goal = DELAY_GOALS.get(label["incident"])
        if goal is None or goal.kind != "oracle":
            continue
        if lag_median is None:
            from sim.profiles import behaviour
            from sim.traffic import COMPLAINT_DELAY_MEDIAN, RETRY_GAPS

            lag_median = behaviour(profile, list(table.camp_esp), RETRY_GAPS, COMPLAINT_DELAY_MEDIAN).complaint_median
        first = min((alerts[i] for i in match.by_label[j]), key=lambda a: a["detected_at"], default=None)
        first = _trim(first) if first is not None else None
        oracle[j] = run_oracle(index, label, first, first_delays[j], rules=rules, run_start=run_start,
                               run_end=end, grace=grace, lag_median=lag_median)
    onsets = [float(lb["start"]) for lb in labels]
    early = [i for i, a in enumerate(alerts) if onsets and a["status"] == "firing"
             and float(a["detected_at"]) < min(onsets)]
    related = [i for i in early if any(scope_relation(alerts[i]["scope"], lb["scope"], index.closure, index.overlaps)
                                       for lb in labels)]
    result = {
        "scenario": variant or scenario, "base_scenario": scenario, "variant": variant, "profile": profile,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in (params or {}).items()},
        "first_delays": first_delays, "peers": peer_results, "oracle": oracle,
        "last_event_ts": float(index.ev_ts.max()) if len(index.ev_ts) else None, "run_start": run_start,
        "early_related": related,
        "seed": seed, "scale": scale, "duration": duration, "start": DEFAULT_START,
        "window": window, "events": len(table), "labels": labels,
        "alerts": [_trim(a) for a in alerts], "matched": match.by_label, "false_alarms": match.false_alarms,
        "firing": match.firing, "detections": detections,
        "series": len(states.series), "armed_series": len(states.armed_since), "armed_days": armed_days,
        "seconds": {"simulate": t_eng - t_sim, "engine": t_done - t_eng, "total": time.perf_counter() - t_sim},
    }
    if series:
        result["plots"] = {
            "labels": [window_series(index, lb["scope"], lb["metric"], DEFAULT_START, end, window)
                       for lb in labels],
            "false_alarms": [window_series(index, alerts[i]["scope"], alerts[i]["metric"], DEFAULT_START,
                                           end, window) for i in match.false_alarms[:6]],
        }
    return result


def _evaluate_job(kwargs: dict) -> dict:
    return evaluate_run(**kwargs)


def run_all(scenarios: Sequence[str], seeds: Sequence[int], *, scale: float, duration: float, rules_path: str,
            grace: float = DEFAULT_GRACE, jobs: int = 1, plots: bool = True,
            progress: Callable[[dict], None] | None = None,
            clean_seeds: Sequence[int] | None = None, clean_duration: float | None = None,
            profile: str = "sends", heldout: bool = False, peers: Sequence[str] = ()) -> list[dict]:
    """Every scenario x seed (in parallel with ``jobs`` processes); series for plots on the first seed.

    ``clean_seeds`` and ``clean_duration`` replace ``seeds`` and ``duration`` for the clean
    scenario: false-alarm rates need far more exposure than detection delays do. With
    ``heldout`` the frozen held-out variants of ``scenarios`` (:mod:`sim.heldout`) run
    instead of the scenarios' defaults; pass the held-out seeds as ``seeds`` and
    ``clean_seeds`` (the benchmark and the CLI do)."""
    from sim.heldout import heldout_variants

    todo = []
    if heldout:
        jobs_for = [(v.scenario, v.key if v.scenario != "clean" else None, dict(v.params))
                    for v in heldout_variants(list(scenarios))]
    else:
        jobs_for = [(s, None, None) for s in scenarios]
    for s, variant, params in jobs_for:
        mine = list(clean_seeds) if s == "clean" and clean_seeds else list(seeds)
        span = clean_duration if s == "clean" and clean_duration else duration
        todo += [dict(scenario=s, seed=seed, scale=scale, duration=span, rules_path=rules_path, grace=grace,
                      series=plots and seed == mine[0], profile=profile, params=params, variant=variant,
                      peers=tuple(peers)) for seed in mine]
    results: list[dict] = []
    if jobs <= 1 or len(todo) == 1:
        for kw in todo:
            results.append(_evaluate_job(kw))
            if progress:
                progress(results[-1])
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for res in pool.map(_evaluate_job, todo):
                results.append(res)
                if progress:
                    progress(res)
    return results


# ============================================================================ summary

@dataclass
class Goal:
    name: str
    passed: bool | None      # None: not evaluated (no scenario in this run to check it on)
    detail: str
    short: str = ""          # a word for side-by-side overviews (bench/bench_detection.py)

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "N/A"}[self.passed]


@dataclass
class Summary:
    runs: list[dict]
    rows: list[dict]                        # per scenario x incident x rule, aggregated over seeds
    false_alarms: list[dict]                # every unmatched firing alert, with its run
    clean: dict                             # false alarms on the clean scenario
    overall: dict                           # over all runs
    goals: list[Goal] = field(default_factory=list)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def summarize(runs: Sequence[dict]) -> Summary:
    groups: dict[tuple, list[tuple[dict, dict]]] = {}
    order: list[tuple] = []
    for run in runs:
        for d in run["detections"]:
            key = (run["scenario"], d["label"], d["incident"], d["rule"])
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append((run, d))
    rows = []
    for key in order:
        items = groups[key]
        ds = [d for _, d in items]
        n_runs = sum(1 for r in runs if r["scenario"] == key[0])
        det = [d for d in ds if d["detected"]]
        rows.append({
            "scenario": key[0], "incident": key[2], "rule": key[3], "kind": ds[0]["kind"],
            "hinted": ds[0]["hinted"], "test": ds[0]["test"], "runs": n_runs, "detected": len(det),
            "delay_s": _median([d["delay_s"] for d in det]),
            "delay_msgs": _median([d["delay_msgs"] for d in det]),
            "trials": _median([d["trials"] for d in det if d.get("trials") is not None]),
            "bound": _median([d["bound"] for d in ds if d.get("bound") is not None]),
            "bound_rule": _median([d["bound_rule"] for d in ds if d.get("bound_rule") is not None]),
            "ratio_rule": _mean([d["ratio_rule"] for d in det if d.get("ratio_rule") is not None]),
            "bound_window": _median([d["bound_window"] for d in ds if d.get("bound_window") is not None]),
            "chart_arl1": _median([d["chart_arl1"] for d in ds if d.get("chart_arl1") is not None]),
            "ratio": _mean([d["ratio"] for d in det if d.get("ratio") is not None]),
            "ratio_max": max((d["ratio"] for d in det if d.get("ratio") is not None), default=None),
            "seen_rate": _median([d["seen_rate"] for d in det if d.get("seen_rate") is not None]),
            "incident_rate": _median([d["p1"] if d.get("p1") is not None else run["labels"][d["label"]].get("incident_rate")
                                      for run, d in items if d.get("p1") is not None
                                      or run["labels"][d["label"]].get("incident_rate") is not None]),
            "scopes": sorted({_scope_text(d["scope"]) for d in det}),
        })

    false_alarms = []
    for run in runs:
        for i in run["false_alarms"]:
            a = run["alerts"][i]
            false_alarms.append({"scenario": run["scenario"], "seed": run["seed"], "rule": a["rule"],
                                 "scope": a["scope"], "at_h": (a["detected_at"] - run["start"]) / 3600.0,
                                 "observed": a.get("observed"), "baseline": a.get("baseline")})

    clean = fa_stats([r for r in runs if _is_clean(r)])
    overall = fa_stats(list(runs))
    firing = sum(r["firing"] for r in runs)
    matched = firing - overall["false_alarms"]
    n_labels = sum(len(r["labels"]) for r in runs)
    n_detected = sum(sum(1 for m in r["matched"] if m) for r in runs)
    overall.update(firing=firing, matched=matched, precision=matched / firing if firing else None,
                   labels=n_labels, detected=n_detected, recall=n_detected / n_labels if n_labels else None)
    summary = Summary(list(runs), rows, false_alarms, clean, overall)
    summary.goals = check_goals(summary)
    return summary


def _is_clean(run: Mapping) -> bool:
    return run.get("base_scenario", run["scenario"]) == "clean"


def fa_stats(sel: Sequence[Mapping]) -> dict:
    """False alarms of some runs (or of one peer's part of them) against their exposure."""
    fa = sum(len(r["false_alarms"]) for r in sel)
    sd = sum(scope_days(r["series"], r["duration"]) for r in sel)
    armed = sum(r["armed_days"] for r in sel)
    return {"runs": len(sel), "false_alarms": fa, "series": sum(r["series"] for r in sel),
            "armed_series": sum(r.get("armed_series", 0) for r in sel),
            "scope_days": sd, "per_1000": fa_per_1000(fa, sd) if sel else None,
            "upper95_per_1000": fa_upper_per_1000(fa, sd) if sel else None,
            "armed_days": armed, "per_1000_armed": fa_per_1000(fa, armed) if sel else None,
            "upper95_per_1000_armed": fa_upper_per_1000(fa, armed) if sel else None}


def peer_summary(runs: Sequence[Mapping], peer: str | None = None) -> dict:
    """Incidents caught, median delay to the first matching alert, false alarms on clean runs
    per 1,000 armed series-days (with the 95% upper bound): for ddetect (``peer`` None) or a peer."""
    parts = [r if peer is None else dict(r["peers"][peer], scenario=r["scenario"], duration=r["duration"],
                                             base_scenario=r.get("base_scenario"))
             for r in runs if peer is None or peer in r.get("peers", {})]
    labels = caught = 0
    delays: list[float] = []
    for r, part in zip([r for r in runs if peer is None or peer in r.get("peers", {})], parts):
        labels += len(r["labels"])
        caught += sum(1 for m in part["matched"] if m)
        ds = r.get("first_delays") if peer is None else part.get("delays")
        delays += [d for d in (ds or []) if d is not None]
    clean = fa_stats([p for p in parts if _is_clean(p)])
    return {"labels": labels, "caught": caught, "median_delay_s": _median(delays), "clean": clean,
            "false_alarms_all": sum(len(p["false_alarms"]) for p in parts),
            "firing_all": sum(p["firing"] for p in parts)}


def check_goals(s: Summary) -> list[Goal]:
    """The issue's "Done when" goals, one PASS/FAIL/N/A line each with the numbers behind it:
    every scenario detected; step delay <= 1.5x the exact CUSUM bound; <= 1 FA per 1,000 armed
    series-days; the absolute delay goals per incident kind and the oracle goal
    (:data:`DELAY_GOALS`); 0 alerts before onset and after the input ends; median delay at most
    a quarter of the best peer's."""
    goals = []
    missed = []
    for run in s.runs:
        for label, m in zip(run["labels"], run["matched"]):
            if not m:
                missed.append(f"{run['scenario']}/{label['incident']} seed {run['seed']}")
    n_labels = s.overall["labels"]
    unknown = sorted({lb["incident"] for run in s.runs for lb in run["labels"]} - set(DELAY_GOALS))
    goals.append(Goal("every scenario detected", not missed and n_labels > 0,
                      f"{n_labels - len(missed)}/{n_labels} labelled incidents detected"
                      + (f"; missed: {', '.join(missed)}" if missed else "")
                      + (f"; no delay goal in DELAY_GOALS for: {', '.join(unknown)}" if unknown else "")))
    bad, checked, unchecked = [], [], []
    for row in s.rows:
        if row["kind"] != "step" or not row["hinted"]:
            continue
        if row["test"] != "cusum" or row["bound"] is None:
            unchecked.append(f"{row['scenario']}/{row['rule']} ({row['test']} test, no CUSUM bound)")
            continue
        what = f"{row['scenario']}/{row['rule']}"
        if row["detected"] < row["runs"] or row["ratio"] is None:
            bad.append(f"{what} missed in {row['runs'] - row['detected']}/{row['runs']} runs")
        elif row["ratio"] > GOAL_DELAY_RATIO:
            seen = (f" (rate seen between onset and alarm {row['seen_rate']:.3g} vs incident rate "
                    f"{row['incident_rate']:.3g})" if row.get("seen_rate") is not None
                    and row.get("incident_rate") is not None else "")
            bad.append(f"{what} {row['ratio']:.2f}x{seen}")
        else:
            checked.append(f"{what} {row['ratio']:.2f}x")
    goals.append(Goal(f"step-change delay <= {GOAL_DELAY_RATIO}x exact CUSUM bound (at the true baseline)",
                      (not bad) if (bad or checked) else None,
                      "; ".join(bad + checked) + ("; not checked: " + ", ".join(unchecked) if unchecked else "")
                      or "not evaluated: no step scenario with a CUSUM bound was run"))
    c = s.clean
    name = f"<= {GOAL_FA_PER_1000:g} false alarm per 1,000 armed series-days (clean)"
    if c["runs"]:
        weak = (f"; too little exposure to show the goal with confidence (a 95% upper bound <= "
                f"{GOAL_FA_PER_1000:g} needs >= {1000 * fa_upper_per_1000(0, 1000.0) / GOAL_FA_PER_1000:,.0f} "
                f"armed series-days without an alarm: run more --clean-seeds or a longer --clean-duration)"
                if c["upper95_per_1000_armed"] > GOAL_FA_PER_1000 and c["per_1000_armed"] <= GOAL_FA_PER_1000
                else "")
        goals.append(Goal(name, c["per_1000_armed"] <= GOAL_FA_PER_1000,
                          f"{c['false_alarms']} false alarms in {c['armed_days']:.1f} armed series-days = "
                          f"{_fmt(c['per_1000_armed'], '.2f')} per 1,000 (95% upper bound "
                          f"{_fmt(c['upper95_per_1000_armed'], '.2f')}; {c['scope_days']:.1f} scope-days incl. "
                          f"warm-up){weak}"))
    else:
        goals.append(Goal(name, None, "not evaluated: the clean scenario was not run"))
    goals += delay_goals(s.runs)
    goals += oracle_goal(s.runs)
    goals += onset_and_end_goals(s.runs)
    goals.append(peer_goal(s.runs))
    for g, short in zip(goals, goal_shorts()):
        g.short = short
    return goals


def _goal_names(kind: str) -> list[DelayGoal]:
    return list({g.name: g for g in DELAY_GOALS.values() if g is not None and g.kind == kind}.values())


def goal_shorts() -> list[str]:
    """One word per line of :func:`check_goals`, in its order."""
    return (["detected", "bound", "FA"] + [g.short for g in _goal_names("absolute")]
            + [g.short for g in _goal_names("oracle")] + ["before onset", "after end", "peers"])


def _incident(run: Mapping, j: int) -> str:
    return f"{run['scenario']}/{run['labels'][j]['incident']} seed {run['seed']}"


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def delay_goals(runs: Sequence[Mapping]) -> list[Goal]:
    """One line per absolute delay goal of :data:`DELAY_GOALS`: the first matching alert of every
    labelled incident of that kind within the limit of its onset (a miss fails)."""
    goals = []
    for dg in _goal_names("absolute"):
        name, limit = dg.name, dg.limit
        ok, late, missed, delays = [], [], [], []
        for run in runs:
            for j, label in enumerate(run["labels"]):
                goal = DELAY_GOALS.get(label["incident"])
                if goal is None or goal.name != name:
                    continue
                d = (run.get("first_delays") or [None] * len(run["labels"]))[j]
                if d is None:
                    missed.append(_incident(run, j))
                    continue
                delays.append(d)
                (ok if d <= limit else late).append(f"{_incident(run, j)} {_minutes(d)}")
        n = len(ok) + len(late) + len(missed)
        if not n:
            goals.append(Goal(name, None, "not evaluated: no such incident was run", dg.short))
            continue
        detail = (f"{len(ok)}/{n} within {_minutes(limit)} (median {_minutes(_median(delays))}, "
                  f"max {_minutes(max(delays, default=None))})")
        if late:
            detail += "; too late: " + ", ".join(late)
        if missed:
            detail += "; missed: " + ", ".join(missed)
        goals.append(Goal(name, not late and not missed, detail, dg.short))
    return goals


def oracle_goal(runs: Sequence[Mapping]) -> list[Goal]:
    """Incidents whose evidence arrives slowly (:data:`DELAY_GOALS` kind "oracle"): ddetect's first
    matching alert within the limit x the oracle's delay on the same incident (:mod:`ddetect.oracle`),
    side by side. A miss fails; an incident the oracle did not catch within the matching horizon
    but ddetect did passes; an oracle that could not run (no rate pair, no trials) fails the line."""
    items: dict[str, list[str]] = {}
    verdicts: dict[str, list[bool]] = {}
    for run in runs:
        for j, label in enumerate(run["labels"]):
            goal = DELAY_GOALS.get(label["incident"])
            if goal is None or goal.kind != "oracle":
                continue
            o = (run.get("oracle") or [None] * len(run["labels"]))[j] or {}
            dd = (run.get("first_delays") or [None] * len(run["labels"]))[j]
            what = _incident(run, j)
            if o.get("error") or not o:
                text, good = f"{what}: oracle not run ({o.get('error', 'no result')})", False
            elif dd is None:
                text, good = f"{what}: oracle {_minutes(o.get('delay_s'))}, ddetect MISSED", False
            elif o.get("delay_s") is None:
                text, good = f"{what}: oracle no alarm by the horizon, ddetect {_minutes(dd)}", True
            else:
                ratio = o.get("ratio", dd / o["delay_s"] if o["delay_s"] > 0 else math.inf)
                text, good = (f"{what}: oracle {_minutes(o['delay_s'])}, ddetect {_minutes(dd)}, "
                              f"{_fmt(ratio, '.2f')}x", ratio <= goal.limit)
            if o.get("pre_onset_alarms"):
                text += f" (oracle alarmed {o['pre_onset_alarms']}x before the onset)"
            items.setdefault(goal.name, []).append(("" if good else "FAIL ") + text)
            verdicts.setdefault(goal.name, []).append(good)
    out = []
    for dg in _goal_names("oracle"):
        name = dg.name
        if name not in items:
            out.append(Goal(name, None, "not evaluated: no complaint or ramp incident was run", dg.short))
            continue
        v = verdicts[name]
        out.append(Goal(name, all(v), f"{sum(v)}/{len(v)} within; " + "; ".join(items[name]), dg.short))
    return out


def onset_and_end_goals(runs: Sequence[Mapping]) -> list[Goal]:
    """0 alerts before onset: firing alerts of an incident run (one with labels) detected before the
    onset of its earliest label. Every such alert is a false alarm on the clean stretch that
    precedes the incident (matching needs detected_at >= onset), whatever its scope; the detail
    says how many were on a scope related to an incident's (an early page there would hint at
    a leak of the future or an incident that began before its label) and how many elsewhere.
    Alerts before a later label's onset, after the first incident began, are not counted here
    (matched, or counted as false alarms). 0 alerts after the input ends: firing alerts of any
    run (incident or clean) detected after the newest event timestamp of the stream."""
    early, related, incident_runs = [], 0, 0
    for run in runs:
        if not run["labels"]:
            continue
        incident_runs += 1
        first = min(float(lb["start"]) for lb in run["labels"])
        mine = [i for i, a in enumerate(run["alerts"]) if a["status"] == "firing" and float(a["detected_at"]) < first]
        related += len(set(mine) & set(run.get("early_related", ())))
        early += [(run, run["alerts"][i], first) for i in mine]
    if incident_runs:
        detail = f"{len(early)} firing alerts before the first onset in {incident_runs} incident runs"
        if early:
            detail += (f" ({related} on a scope related to the run's incident, {len(early) - related} elsewhere): "
                       + ", ".join(f"{r['scenario']} seed {r['seed']} {a['rule']} "
                                   f"{(first - float(a['detected_at'])) / 60:.0f} min before"
                                   for r, a, first in early[:8]) + (" ..." if len(early) > 8 else ""))
        before = Goal("0 alerts before onset", not early, detail)
    else:
        before = Goal("0 alerts before onset", None, "not evaluated: no incident run")
    after, resolved, checked = [], 0, 0
    for run in runs:
        last = run.get("last_event_ts")
        if last is None:
            continue
        checked += 1
        for a in run["alerts"]:
            if float(a["detected_at"]) > float(last):
                if a["status"] == "firing":
                    after.append((run, a, float(a["detected_at"]) - float(last)))
                else:
                    resolved += 1
    if checked:
        detail = (f"{len(after)} firing alerts after the newest event in {checked} runs"
                  + (": " + ", ".join(f"{r['scenario']} seed {r['seed']} {a['rule']} +{d:.0f} s"
                                     for r, a, d in after[:8]) if after else "")
                  + f" ({resolved} resolved alerts after it)")
        end = Goal("0 alerts after the input ends", not after, detail)
    else:
        end = Goal("0 alerts after the input ends", None, "not evaluated: runs carry no last event time")
    return [before, end]


def peer_comparison(runs: Sequence[Mapping], peer: str) -> dict:
    """ddetect's and one peer's median delay on the incidents both caught (first matching alert)."""
    mine, theirs, n = [], [], 0
    for run in runs:
        part = run.get("peers", {}).get(peer)
        if part is None:
            continue
        for j in range(len(run["labels"])):
            n += 1
            d, p = run["first_delays"][j], part["delays"][j]
            if d is not None and p is not None:
                mine.append(d)
                theirs.append(p)
    return {"peer": peer, "labels": n, "common": len(mine), "ddetect_median_s": _median(mine),
            "peer_median_s": _median(theirs)}


def peer_goal(runs: Sequence[Mapping]) -> Goal:
    """Median delay at most :data:`GOAL_PEER_FRACTION` of the best peer's, on the same incidents.

    Per peer, the incidents caught by both ddetect and that peer; the medians of both on those.
    A peer is judged only on at least :data:`PEER_MIN_COMMON` such incidents (a median of one or
    two incidents, the few a weak peer catches, says little; it is reported, not judged). The
    goal holds when ddetect's median is within the fraction of every judged peer's, so in
    particular of the best (fastest) one; N/A when no peer ran or none could be judged."""
    name = f"median delay <= {GOAL_PEER_FRACTION:g}x the best peer's (incidents caught by both)"
    peers = sorted({p for r in runs for p in r.get("peers", {})})
    if not peers:
        return Goal(name, None, "not evaluated: no peer rule set was run (--peers)")
    comps = [peer_comparison(runs, p) for p in peers]
    judged = [c for c in comps if c["common"] >= PEER_MIN_COMMON and c["peer_median_s"]]
    parts, bad = [], []
    for c in comps:
        if c in judged:
            ratio = c["ddetect_median_s"] / c["peer_median_s"]
            ok = ratio <= GOAL_PEER_FRACTION
            if not ok:
                bad.append(c["peer"])
            parts.append(f"{c['peer']}: ddetect {_minutes(c['ddetect_median_s'])} vs {_minutes(c['peer_median_s'])} "
                         f"on {c['common']} common = {ratio:.2f}x" + ("" if ok else " FAIL"))
        else:
            parts.append(f"{c['peer']}: {c['common']} common incidents, too few to judge (< {PEER_MIN_COMMON})"
                         + (f"; ddetect {_minutes(c['ddetect_median_s'])} vs {_minutes(c['peer_median_s'])}"
                            if c["common"] else ""))
    if not judged:
        return Goal(name, None, "; ".join(parts))
    best = min(judged, key=lambda c: c["peer_median_s"])
    return Goal(name, not bad, f"best peer {best['peer']}; " + "; ".join(parts))


# ============================================================================ output

def _scope_text(scope: Mapping[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in (scope or {}).items())


def _fmt(v, spec: str = ".0f", none: str = "-") -> str:
    if v is None:
        return none
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, spec)


TABLE_COLUMNS = ("scenario", "incident", "rule", "detected", "delay s", "delay msgs", "chart trials",
                 "bound", "bound@window", "bound (rule p0)", "chart ARL1", "ratio", "ratio (rule p0)")


def table_rows(s: Summary) -> list[list[str]]:
    out = []
    for r in s.rows:
        rule = r["rule"] + ("" if r["hinted"] else " (+)")
        out.append([r["scenario"], r["incident"], rule, f"{r['detected']}/{r['runs']}", _fmt(r["delay_s"]),
                    _fmt(r["delay_msgs"]), _fmt(r["trials"]), _fmt(r["bound"], ".1f"),
                    _fmt(r["bound_window"]), _fmt(r.get("bound_rule"), ".1f"), _fmt(r["chart_arl1"], ".1f"),
                    _fmt(r["ratio"], ".2f") + (f" (max {r['ratio_max']:.2f})"
                                                if r["ratio_max"] is not None and r["detected"] > 1 else ""),
                    _fmt(r.get("ratio_rule"), ".2f")])
    return out


def format_table(s: Summary) -> str:
    rows = [list(TABLE_COLUMNS)] + table_rows(s)
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.extend(_fa_lines(s))
    lines.append("")
    for g in s.goals:
        lines.append(f"{g.verdict:<4}  {g.name}: {g.detail}")
    return "\n".join(lines)


def _fa_lines(s: Summary) -> list[str]:
    c, o = s.clean, s.overall
    lines = []
    if c["runs"]:
        days = next(r["duration"] for r in s.runs if _is_clean(r)) / DAY
        lines.append(f"clean: {c['false_alarms']} false alarms in {c['armed_days']:.1f} armed series-days "
                     f"({c['armed_series']} of {c['series']} series armed, {days:.3g} d x {c['runs']} runs) -> "
                     f"{_fmt(c['per_1000_armed'], '.2f')} per 1,000 armed series-days (95% upper bound "
                     f"{_fmt(c['upper95_per_1000_armed'], '.2f')}); incl. warm-up {c['scope_days']:.1f} scope-days -> "
                     f"{_fmt(c['per_1000'], '.2f')} per 1,000 scope-days (95% upper {_fmt(c['upper95_per_1000'], '.2f')})")
    lines.append(f"all runs: {o['firing']} firing alerts, {o['matched']} matched, {o['false_alarms']} false alarms "
                 f"({_fmt(o['per_1000'], '.2f')} per 1,000 scope-days); precision {_fmt(o['precision'], '.3f')}, "
                 f"recall {_fmt(o['recall'], '.3f')} ({o['detected']}/{o['labels']} incidents)")
    return lines


PEER_COLUMNS = ("rule set", "caught", "median delay", "clean false alarms", "armed series-days",
                "per 1,000 armed series-days (95% upper)", "unmatched alerts, all runs")


def peer_rows(runs: Sequence[Mapping], peers: Sequence[str]) -> list[list[str]]:
    """One row for ddetect's pack and one per peer, on the same runs."""
    rows = []
    for name in (None, *peers):
        p = peer_summary(runs, name)
        c = p["clean"]
        delay = p["median_delay_s"]
        rows.append([name or "ddetect (rules)", f"{p['caught']}/{p['labels']}",
                     "-" if delay is None else (f"{delay / 60:.1f} min" if delay >= 60 else f"{delay:.0f} s"),
                     str(c["false_alarms"]) if c["runs"] else "-", f"{c['armed_days']:.1f}" if c["runs"] else "-",
                     f"{_fmt(c['per_1000_armed'], '.2f')} ({_fmt(c['upper95_per_1000_armed'], '.2f')})"
                     if c["runs"] else "-", f"{p['false_alarms_all']} of {p['firing_all']}"])
    return rows


def false_alarms_by_rule(runs: Sequence[Mapping], peer: str | None = None) -> dict[str, int]:
    """Unmatched firing alerts per rule over all runs (ddetect's, or one peer's)."""
    out: dict[str, int] = {}
    for r in runs:
        part = r if peer is None else r.get("peers", {}).get(peer)
        if part is None:
            continue
        for i in part["false_alarms"]:
            name = part["alerts"][i]["rule"]
            out[name] = out.get(name, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def format_peers(runs: Sequence[Mapping], peers: Sequence[str]) -> str:
    rows = [list(PEER_COLUMNS)] + peer_rows(runs, peers)
    widths = [max(len(row[i]) for row in rows) for i in range(len(PEER_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for name in (None, *peers):
        by_rule = false_alarms_by_rule(runs, name)
        if by_rule:
            lines.append(f"unmatched alerts of {name or 'ddetect'} by rule: "
                         + ", ".join(f"{k} {v}" for k, v in by_rule.items()))
    return "\n".join(lines)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(s: Summary, out_dir: str | os.PathLike, *, settings: Mapping, plots: bool = True) -> list[Path]:
    """README.md plus one PNG per scenario (first seed) in ``out_dir``; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    pngs: dict[str, Path] = {}
    if plots:
        for run in s.runs:
            if "plots" in run and run["scenario"] not in pngs:
                path = out / f"{run['scenario']}.png"
                plot_run(run, path)
                pngs[run["scenario"]] = path
                written.append(path)
    md = [
        "# Detection quality on simulated traffic",
        "",
        f"Generated by `ddetect evaluate` ({' '.join(f'--{k} {v}' for k, v in settings.items())}).",
        "Each scenario x seed is simulated, replayed through the detection engine in arrival order (as the",
        "pipeline sees it), and its alerts are matched with the scenario's ground-truth labels.",
        "",
        "## Goals",
        "",
        *[f"- **{g.verdict}** {g.name}: {g.detail}" for g in s.goals],
        "",
        *_oracle_md(s.runs),
        "## Detection per scenario and rule",
        "",
        "Medians over seeds (ratio: mean over seeds). `(+)` marks a rule that is not the label's hint but whose",
        "alerts matched it (same metric family, consistent scope). Chart trials, bounds and ratio are in trials",
        "(the rate's denominator events) of the alert's scope; delay msgs in accepted messages of the label's scope.",
        "",
        _md_table(TABLE_COLUMNS, table_rows(s)),
        "",
        "## False alarms",
        "",
        *[f"- {line}" for line in _fa_lines(s)],
        "",
    ]
    peers = sorted({name for run in s.runs for name in run.get("peers", {})})
    if peers:
        md += ["## Peer rule sets on the same streams", "",
               "Caught: labelled incidents with at least one matching alert; median delay: onset to the first",
               "matching alert; false alarms on the clean runs per 1,000 armed series-days (95% upper bound).",
               "Peers are fixed-threshold rule files (`rules/peers/`), evaluated by `ddetect/peers.py`.", "",
               _md_table(PEER_COLUMNS, peer_rows(s.runs, peers)), ""]
    if s.false_alarms:
        md.append(_md_table(("scenario", "seed", "rule", "scope", "at (h)", "observed", "baseline"), [
            (fa["scenario"], fa["seed"], fa["rule"], _scope_text(fa["scope"]), f"{fa['at_h']:.2f}",
             _observed_text(fa["observed"]), _fmt(fa["baseline"], ".4g")) for fa in s.false_alarms]))
        md.append("")
    md += ["## Per run", "",
           _md_table(("scenario", "seed", "events", "incident", "rule", "detected", "scope", "delay s", "delay msgs",
                      "chart trials", "bound", "ratio", "resolved after (s)"), _run_rows(s.runs)), ""]
    if pngs:
        md += ["## Plots", "",
               "Metric of the labelled scope per window (by event time); incident shaded; firing alerts that",
               "matched the label as red lines, their resolution as green dashed lines; grey: the rate's",
               "denominator per window. On the clean scenario, each false alarm's own scope and metric. A window's",
               "complaint rate can exceed 1: complaints arrive hours after the deliveries they refer to.", ""]
        for name, path in pngs.items():
            md += [f"### {name}", "", f"![{name}]({path.name})", ""]
    md += ["## Definitions", "", *_definitions()]
    readme = out / "README.md"
    readme.write_text("\n".join(md) + "\n", encoding="utf-8")
    written.insert(0, readme)
    return written


ORACLE_COLUMNS = ("scenario", "seed", "incident", "oracle delay", "ddetect delay", "ratio", "p0 (true)", "p1",
                  "mode", "ARL0 (trials)", "h (nats)", "ARL0 from", "oracle alarms before onset")


def oracle_rows(runs: Sequence[Mapping]) -> list[list[str]]:
    """Per incident held to the oracle goal: the oracle's numbers next to ddetect's."""
    rows = []
    for run in runs:
        for j, o in enumerate(run.get("oracle") or ()):
            if not o:
                continue
            rows.append([run["scenario"], str(run["seed"]), run["labels"][j]["incident"], _minutes(o.get("delay_s")),
                         _minutes(o.get("ddetect_delay_s")), _fmt(o.get("ratio"), ".2f"), _fmt(o.get("p0"), ".3g"),
                         _fmt(o.get("p1"), ".3g"), o.get("mode", o.get("error", "-")), _fmt(o.get("arl0"), ".3g"),
                         _fmt(o.get("h"), ".2f"), o.get("arl0_source", "-"), str(o.get("pre_onset_alarms", "-"))])
    return rows


def _oracle_md(runs: Sequence[Mapping]) -> list[str]:
    rows = oracle_rows(runs)
    if not rows:
        return []
    return ["## Oracle on the slow-evidence incidents", "",
            "A CUSUM given the true baseline, the incident rate and the true complaint lag, on the same stream",
            "(`ddetect/oracle.py`); threshold from the exact Brook-Evans chain at the compared rule's ARL0.", "",
            _md_table(ORACLE_COLUMNS, rows), ""]


def _observed_text(obs: Mapping | None) -> str:
    if not obs:
        return "-"
    if obs.get("rate") is None:
        return f"{obs['events']}"
    return f"{obs['rate']:.4g} ({obs['events']}/{obs['total']})"


def _run_rows(runs: Sequence[dict]) -> list[list[str]]:
    rows = []
    for run in runs:
        if not run["detections"]:
            rows.append([run["scenario"], str(run["seed"]), str(run["events"]), "-", "-", "-", "-", "-", "-", "-",
                         "-", "-", "-"])
        for d in run["detections"]:
            res = d.get("resolved_at")
            after = _fmt(res - (run["start"] + d["delay_s"]) if res is not None and d.get("delay_s") is not None
                         else None)
            rows.append([run["scenario"], str(run["seed"]), str(run["events"]), d["incident"], d["rule"],
                         "yes" if d["detected"] else "MISSED",
                         _scope_text(d.get("scope")) + (f" ({d['relation']})" if d.get("relation") else ""),
                         _fmt(d.get("delay_s")),
                         _fmt(d.get("delay_msgs")), _fmt(d.get("trials")), _fmt(d.get("bound"), ".1f"),
                         _fmt(d.get("ratio"), ".2f"), after])
    return rows


def _definitions() -> list[str]:
    doc = (__doc__ or "").split("\n\n", 1)[1]
    return [line for line in doc.splitlines()]


# ============================================================================ plots

def plot_run(run: Mapping, path: str | os.PathLike) -> None:
    """One panel per label (or per false alarm on a clean run): the metric per window with alerts marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for j, (label, series) in enumerate(zip(run["labels"], run["plots"]["labels"])):
        alerts = [run["alerts"][i] for i in run["matched"][j]]
        panels.append((f"{label['incident']}: {label['metric']} on {_scope_text(label['scope'])}", series,
                       [(label["start"], label["end"])], alerts))
    if not panels:
        for i, series in zip(run["false_alarms"], run["plots"]["false_alarms"]):
            a = run["alerts"][i]
            panels.append((f"false alarm {a['rule']}: {a['metric']} on {_scope_text(a['scope'])}", series, [], [a]))
    if not panels:
        panels.append((f"{run['scenario']}: no labels, no false alarms", None, [], []))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.2 * len(panels)), squeeze=False)
    t0 = run["start"]
    for ax, (title, series, spans, alerts) in zip(axes[:, 0], panels):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("hours since start")
        if series is not None:
            x = np.asarray(series["x"], dtype=float)
            n = np.asarray(series["n"], dtype=float)
            hours = (np.asarray(series["start"]) - t0) / 3600.0
            edges = np.append(hours, hours[-1] + series["window"] / 3600.0) if len(hours) else hours
            if METRICS[series["metric"]].is_volume:
                ax.stairs(x, edges, color="tab:blue", label="accepted per window")
                ax.set_ylabel("messages / window")
            else:
                rate = np.divide(x, n, out=np.full_like(x, np.nan), where=n > 0)
                ax.stairs(rate, edges, color="tab:blue", label=series["metric"])
                ax.set_ylabel(series["metric"])
                twin = ax.twinx()
                twin.stairs(n, edges, color="0.75", fill=True, alpha=0.3, label="denominator")
                twin.set_ylabel("messages / window", color="0.5")
                ax.set_zorder(twin.get_zorder() + 1)
                ax.patch.set_visible(False)
        for start, end in spans:
            ax.axvspan((start - t0) / 3600.0, (end - t0) / 3600.0, color="tab:red", alpha=0.12, label="incident")
        ids = {a["alert_id"] for a in alerts}
        for a in alerts:
            h = (a["detected_at"] - t0) / 3600.0
            ax.axvline(h, color="tab:red", lw=1.2)
            ax.annotate(a["rule"], (h, 1.0), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                        va="top", ha="right", color="tab:red")
        for a in run["alerts"]:
            if a["status"] == "resolved" and a["alert_id"] in ids:
                ax.axvline((a["detected_at"] - t0) / 3600.0, color="tab:green", lw=1.2, ls="--")
        ax.set_xlim(0, run["duration"] / 3600.0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=7)
    fig.suptitle(f"{run['scenario']} (seed {run['seed']}, scale {run['scale']:g})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)


# ============================================================================ CLI

def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    return seeds


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return v


def resolve_scenarios(text: str) -> list[str]:
    from sim import SCENARIOS
    from sim.api import scenario_name

    if text.strip() == "all":
        return list(SCENARIOS)
    try:
        return [scenario_name(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from sim.cli import parse_duration

    p = argparse.ArgumentParser(prog="ddetect evaluate",
                                description="Detection quality on labelled simulated traffic: delays vs the exact "
                                            "CUSUM bound, false alarms per 1,000 scope-days, precision, recall.")
    p.add_argument("--scenarios", type=resolve_scenarios, default="all", help="all, or a comma-separated list")
    p.add_argument("--seeds", type=_seeds, default=None, help="comma-separated (default 1,2,3; held-out: its seeds)")
    p.add_argument("--clean-seeds", type=_seeds, default=None,
                   help="seeds for the clean scenario (default: --seeds); more seeds, tighter false-alarm rate")
    p.add_argument("--scale", type=_positive, default=DEFAULT_SCALE,
                   help=f"traffic volume multiplier (1 = ~1M events per 6 h; default {DEFAULT_SCALE:g})")
    p.add_argument("--duration", type=parse_duration, default=DEFAULT_DURATION, help="simulated period (default 6h)")
    p.add_argument("--clean-duration", type=parse_duration, default=None,
                   help="simulated period of the clean scenario (default: --duration)")
    p.add_argument("--rules", default=None, help="rule file (default: the shipped rules/default.yaml)")
    p.add_argument("--grace", type=parse_duration, default=DEFAULT_GRACE,
                   help="how long after a label's end an alert still matches it (default 1h; plus 3x signal lag)")
    p.add_argument("--out", default="report", help="report directory (default report/)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel processes")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--profile", type=_profile, default="sends",
                   help="which event types each ESP posts (sim/profiles.py): sends (default), outcome-only, "
                        "esp-mix, or one ESP's name")
    p.add_argument("--set", dest="eval_set", choices=("tuning", "heldout"), default="tuning",
                   help="tuning: the scenarios' defaults on --seeds; heldout: the frozen held-out variants and "
                        "seeds of sim/heldout.py (do not tune on them; --seeds/--clean-seeds then default to "
                        "the held-out seeds)")
    p.add_argument("--peers", type=_peer_list, default=[],
                   help="comma-separated peer rule sets to run on the same streams (rules/peers/NAME.yaml, "
                        "e.g. posthog,sparkpost,grafana; 'all' for every shipped peer)")
    return p


def _profile(text: str) -> str:
    from sim.profiles import profile_name

    try:
        return profile_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _peer_list(text: str) -> list[str]:
    from .peers import DEFAULT_PEERS, PEERS_DIR, load_peer

    names = list(DEFAULT_PEERS) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        try:
            load_peer(name)
        except (OSError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"peer {name!r}: {exc} (shipped: {sorted(p.stem for p in PEERS_DIR.glob('*.yaml'))})") from None
    return names


def main_evaluate(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    scenarios = resolve_scenarios(args.scenarios) if isinstance(args.scenarios, str) else args.scenarios
    rules_path = str(args.rules or default_rules_path())
    try:
        load_rules(rules_path)
    except Exception as exc:  # RuleError lists every problem; anything else (missing file) too
        print(f"ddetect evaluate: cannot load rules: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()

    def progress(run: dict) -> None:
        found = sum(1 for m in run["matched"] if m)
        print(f"  {run['scenario']:<18} seed {run['seed']:<3} {run['events']:>9,} events  "
              f"{found}/{len(run['labels'])} detected  {len(run['false_alarms'])} false alarms  "
              f"{run['seconds']['total']:.1f}s", file=sys.stderr)

    from sim.heldout import HELDOUT_CLEAN_SEEDS, HELDOUT_SEEDS

    heldout = args.eval_set == "heldout"
    if args.seeds is None:
        args.seeds = list(HELDOUT_SEEDS) if heldout else list(DEFAULT_SEEDS)
    if heldout and args.clean_seeds is None:
        args.clean_seeds = list(HELDOUT_CLEAN_SEEDS)
    runs = run_all(scenarios, args.seeds, scale=args.scale, duration=args.duration, rules_path=rules_path,
                   grace=args.grace, jobs=max(1, args.jobs), plots=not args.no_plots, progress=progress,
                   clean_seeds=args.clean_seeds, clean_duration=args.clean_duration, profile=args.profile,
                   heldout=heldout, peers=args.peers)
    summary = summarize(runs)
    print(f"profile {args.profile}, {args.eval_set} set")
    print(format_table(summary))
    if args.peers:
        print()
        print(format_peers(runs, args.peers))
    settings = {"set": args.eval_set, "profile": args.profile, "scenarios": ",".join(scenarios),
                "seeds": ",".join(map(str, args.seeds))}
    if args.clean_seeds:
        settings["clean-seeds"] = ",".join(map(str, args.clean_seeds))
    if args.clean_duration:
        settings["clean-duration"] = f"{args.clean_duration / 3600:g}h"
    settings |= {"scale": f"{args.scale:g}",
                "duration": f"{args.duration / 3600:g}h", "rules": os.path.relpath(rules_path)}
    if args.peers:
        settings["peers"] = ",".join(args.peers)
    files = write_report(summary, args.out, settings=settings, plots=not args.no_plots)
    print(f"\nreport: {files[0]} ({len(files) - 1} plots) in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main_evaluate())
