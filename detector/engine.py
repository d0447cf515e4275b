"""The detection engine: window counts in, firing/resolved alerts out, in event time.

The engine is a deterministic function of the events it has seen. It keeps, per scope,
the counters of the windows still open and one small state dict per rule; a window
closes when the watermark (newest event time minus the allowed lateness) passes its
end, and then the rules are evaluated. CUSUM charts are the exception that makes paging
fast: they move message by message as each delta is applied (in arrival order) and raise
their alarm at once; their window close only judges whether the incident is over. Late
events for a closed window are counted and dropped. Replay and the streaming pipeline both drive this class (the pipeline
through :meth:`apply_delta` and :meth:`advance`), so they emit the same alerts.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Mapping, MutableMapping, Sequence

import numpy as np

from . import clock, detectors, sends
from .alert import alert_id, build_alert, dedup_key
from .event import EVENT_TYPES
from .counts import (N_COUNTERS, EventBatch, ScopeDelta, Vocabulary, SCOPE_FIELDS, aggregate,
                     sequence_type_mask)
from .gcpause import gc_paused
from .mailbox import register_domains
from .rates import METRICS
from .retries import RetryMemory
from .rules import Rule, RuleSet

_EVALUATORS = {
    "binomial": detectors.eval_window,
    "betabinomial": detectors.eval_window,
    "policy": detectors.eval_policy,
}


#: A window is charted message by message only while the scope sends at least this many
#: messages per trial it hears back about (see :func:`detector.sends.sending`).
SENDING_RATIO = 0.8


def wkey(start: float) -> str:
    """Text key of a window start (JSON object keys must be strings)."""
    return repr(float(start))


class Engine:
    """Evaluates a :class:`RuleSet` over canonical events.

    ``states`` may be any mutable mapping of scope id -> scope state dict (a Faust table
    in the pipeline); values are re-assigned after every change so such tables see the
    write. ``meta`` holds the clock (watermark, closed windows).
    """

    def __init__(self, ruleset: RuleSet, states: MutableMapping[str, dict] | None = None,
                 meta: MutableMapping[str, float] | None = None):
        self.ruleset = ruleset
        self.window = ruleset.settings.window
        self.lateness = ruleset.settings.allowed_lateness
        self.ttl = ruleset.settings.scope_ttl
        self.states: MutableMapping[str, dict] = {} if states is None else states
        self.meta: MutableMapping[str, float] = {} if meta is None else meta
        self.vocab = {f: Vocabulary() for f in SCOPE_FIELDS}
        self.scope_defs = ruleset.scopes()
        self.feedback_loops = ruleset.feedback_loops
        self.rules_by_scope: dict[tuple[str, ...], list[Rule]] = defaultdict(list)
        for rule in ruleset.rules:
            self.rules_by_scope[rule.scope].append(rule)
        self.late_events = 0
        self.retries = RetryMemory()     # first attempts where the ESP does not number them
        self._pending: list[dict] = []   # alarms raised while deltas were applied
        self.sequences, self._trial_slots, self._charts = _chart_plan(ruleset)
        for provider, domains in ruleset.mailbox_providers.items():
            register_domains(provider, domains)

    # --- input -------------------------------------------------------------------
    @property
    def closed_until(self) -> float | None:
        """Windows starting before this are closed (None before the first close)."""
        return self.meta.get("closed_until")

    def process(self, events: Sequence[Mapping]) -> list[dict]:
        """Count a list of validated canonical events and return the alerts they cause."""
        if not events:
            return []
        return self.process_batch(EventBatch.from_events(events, self.vocab, self.retries))

    def process_batch(self, batch: EventBatch) -> list[dict]:
        if len(batch) == 0:
            return []
        with gc_paused():
            for delta in aggregate(batch, self.scope_defs, self.window, self.sequences,
                                   self.feedback_loops).values():
                self.apply_delta(delta)
            return self.advance(float(batch.timestamp.max()))

    def apply_delta(self, delta: ScopeDelta) -> int:
        """Add one scope's window counts; return how many events were too late.

        Lateness is counted on the first scope definition only, so an event that is
        late in every scope it belongs to counts once.
        """
        closed = self.closed_until
        st = self.states.get(delta.scope_id)
        if st is None:
            st = {"scope": delta.scope, "windows": {}, "reasons": {}, "rules": {}, "first": None, "last_seen": None}
        late = 0
        first_open = self.meta.get("first_open")
        for start, counts in delta.windows.items():
            if closed is not None and start < closed:
                late += sum(counts[:len(EVENT_TYPES)])
                continue
            sends.observe(st, counts)
            key = wkey(start)
            prev = st["windows"].get(key)
            if prev is not None and len(prev) < len(counts):  # stored by a version with fewer counters
                prev = prev + [0] * (len(counts) - len(prev))
            st["windows"][key] = [a + b for a, b in zip(prev, counts)] if prev is not None else list(counts)
            if st["first"] is None or start < st["first"]:
                st["first"] = start
            if st["last_seen"] is None or start > st["last_seen"]:
                st["last_seen"] = start
            if first_open is None or start < first_open:
                first_open = self.meta["first_open"] = start
        for start, reasons in delta.reasons.items():
            if closed is not None and start < closed:
                continue
            bucket = st["reasons"].setdefault(wkey(start), {})
            for k, v in reasons.items():
                bucket[k] = bucket.get(k, 0) + v
        fields = tuple(delta.scope)
        if fields in self._charts:
            self._chart_sequence(delta, fields, st, closed)
        self.states[delta.scope_id] = st
        if tuple(delta.scope) != self.scope_defs[0]:
            late = 0
        self.late_events += late
        return late

    def _chart_sequence(self, delta: ScopeDelta, fields: tuple[str, ...], st: dict, closed: float | None) -> None:
        """Feed CUSUM charts message by message; an alarm is raised right away."""
        charts, trial_slots = self._charts[fields], self._trial_slots[fields]
        seq = delta.seq
        starts = sorted(delta.windows) if len(delta.windows) > 1 else list(delta.windows)
        cov, first = sends.coverage(st), sends.numbered(st)
        for rule, roles, delivered_counts in charts:
            rst = st["rules"].get(rule.name)
            if rst is None:
                rst = st["rules"][rule.name] = detectors.new_state()
            chart = rst if rst["phase"] == "armed" else detectors.provisional_chart(rule, rst)
            if chart is None:
                continue
            bank = detectors.charts(chart)
            for start in starts:
                marks = seq.get(start)
                if marks is None:  # deliveries only
                    if all(c["s"] == 0.0 for c in bank):
                        continue  # the charts are at zero and stay there
                    counts = delta.windows[start]
                    n = (counts[trial_slots[0]] + counts[trial_slots[1]] if len(trial_slots) == 2
                         else sum([counts[i] for i in trial_slots]))
                    if not n:
                        continue
                    marks = [n]
                if closed is not None and start < closed:
                    continue
                key = wkey(start)
                if rule.min_sends > 0 and not sends.sending(st["windows"].get(key), cov, SENDING_RATIO, first):
                    continue  # outcomes trailing a finished send: not a fair sample, not charted
                crossings = [(crossing, c) for c in bank
                             for crossing in detectors.cusum_sequence(rule, c, marks, roles, delivered_counts)]
                if len(crossings) > 1:
                    crossings.sort(key=lambda cc: cc[0][0])   # the first chart to cross names the alarm
                for crossing, c in crossings:
                    finding = detectors.sequential_finding(rule, c, delta.scope_id, start, crossing)
                    alert = self._transition(rule, rst, st, finding, st["reasons"].get(key, {}))
                    if alert:
                        self._pending.append(alert)

    # --- clock -------------------------------------------------------------------
    def advance(self, newest_event_time: float) -> list[dict]:
        """Move the watermark to ``newest_event_time - lateness`` and close due windows."""
        newest = max(newest_event_time, self.meta.get("newest", -math.inf))
        self.meta["newest"] = newest
        closed = self._close_until(math.floor((newest - self.lateness) / self.window) * self.window)
        alerts, self._pending = self._pending, []
        return alerts + closed

    def flush(self) -> list[dict]:
        """End of the input (a replay): close every window the input covers entirely.

        No event can arrive any more, so the windows still held open for late events are
        closed. The window holding the newest event is only partly covered by the input
        and stays open, as it would in the pipeline: judging it would make the volume rules
        see a window cut short (a steady flow "goes silent", a surge "calms down"). Its
        CUSUM alarms were raised as its messages were applied.
        """
        newest = self.meta.get("newest")
        closed = [] if newest is None else self._close_until(math.floor(newest / self.window) * self.window)
        alerts, self._pending = self._pending, []
        return alerts + closed

    #: Windows evaluated (closed one by one) and skipped in empty stretches, by this Engine object.
    windows_evaluated = 0
    windows_skipped = 0

    def _close_until(self, until: float) -> list[dict]:
        """Close the windows before ``until``; long stretches without data are skipped
        after the empty windows the rules can still use (:mod:`detector.clock`).

        If closing a window raises, ``closed_until`` is that window's start and the alerts
        of the windows closed before it wait in ``_pending`` for the next call (the
        pipeline skips the failed window, :func:`detector.clock.skip_window`, and goes on).
        """
        start = self.closed_until
        if start is None:
            start = self.meta.get("first_open")
            if start is None:
                return []
        if start >= until:
            return []
        alerts: list[dict] = []
        closed = 0
        try:
            for w in clock.windows_to_close(self.states, start, until, self.window,
                                            clock.empty_run_bound(self.ruleset), self.closed_until):
                self.meta["closed_until"] = w
                alerts.extend(self.close_window(w))
                closed += 1
                self.meta["closed_until"] = w + self.window
        except Exception:
            self._pending.extend(alerts)
            self.windows_evaluated += closed
            raise
        self.meta["closed_until"] = until
        self.windows_evaluated += closed
        self.windows_skipped += round((until - start) / self.window) - closed
        return alerts

    # --- evaluation ----------------------------------------------------------------
    def close_window(self, start: float) -> list[dict]:
        """Evaluate every rule on every known scope for the window starting at ``start``."""
        key = wkey(start)
        alerts: list[tuple[int, str, dict]] = []
        rounds: dict[str, list[tuple[detectors.Finding, str, dict]]] = defaultdict(list)
        zeros = [0] * N_COUNTERS
        expired = []
        for sid in list(self.states):
            st = self.states[sid]
            if st["first"] is None or start < st["first"]:
                continue
            counts = st["windows"].pop(key, zeros)
            if len(counts) < N_COUNTERS:  # stored by a version with fewer counters
                counts = counts + zeros[len(counts):]
            reasons = st["reasons"].pop(key, {})
            fields = tuple(st["scope"])
            cov, first = sends.coverage(st), sends.numbered(st)
            sent = sends.sends(counts, cov, first)
            for rule in self.rules_by_scope.get(fields, ()):
                rst = st["rules"].get(rule.name) or detectors.new_state()
                st["rules"][rule.name] = rst
                metric = METRICS[rule.metric]
                if metric.is_send_volume:
                    x = n = sends.volume(rule.metric, counts, cov, first)
                elif metric.per_send:
                    x, n = metric.pair(counts)[0], sent
                else:
                    x, n = metric.pair(counts)
                if (rst["firing"] and not metric.is_volume and rule.resolve_idle_windows and rule.test != "drift"
                        and start >= rst.get("fired_window", start)):
                    rst["idle"] = 0 if n or _span_holds_evidence(rule, rst) else rst.get("idle", 0) + 1
                    if rst["idle"] >= rule.resolve_idle_windows:
                        alerts.append((self._rule_order(rule), sid, self._resolve_idle(rule, rst, st, start)))
                        continue
                if rule.test in ("surge", "silence"):
                    finding = detectors.eval_volume(rule, rst, sid, start, x, self.window)
                elif rule.test == "drift":
                    finding = detectors.eval_drift(rule, rst, sid, start, x, n, self.window)
                elif rule.test == "cusum":
                    finding = detectors.close_cusum(rule, rst, sid, start, x, n, sent, self.window)
                else:
                    pooled = (x, n) if rule.test == "policy" else \
                        detectors.pool(rule, rst, x, n, sent)
                    if pooled is None:
                        finding = None
                    elif rule.test == "policy":
                        finding = detectors.eval_policy(rule, rst, sid, start, *pooled, window=self.window)
                    else:
                        finding = _EVALUATORS[rule.test](rule, rst, sid, start, *pooled)
                if finding is None:
                    continue
                if finding.fire is None:
                    rounds[rule.name].append((finding, sid, reasons))
                    continue
                alert = self._transition(rule, rst, st, finding, reasons)
                if alert:
                    alerts.append((self._rule_order(rule), sid, alert))
            if st["last_seen"] is not None and start - st["last_seen"] > self.ttl:
                for rule in self.rules_by_scope.get(fields, ()):
                    rst = st["rules"].get(rule.name)
                    if rst and rst.get("firing") and rule.test == "silence":  # a retired flow
                        alerts.append((self._rule_order(rule), sid, self._resolve_idle(
                            rule, rst, st, start, by="expired: the flow sent nothing for the scope TTL")))
            if (st["last_seen"] is not None and start - st["last_seen"] > self.ttl
                    and not any(r.get("firing") for r in st["rules"].values())):
                expired.append(sid)
            else:
                self.states[sid] = st
        for name, items in rounds.items():
            detectors.decide_round([f for f, _, _ in items])
            for finding, sid, reasons in items:
                st = self.states[sid]
                rule = finding.rule
                alert = self._transition(rule, st["rules"][rule.name], st, finding, reasons)
                self.states[sid] = st
                if alert:
                    alerts.append((self._rule_order(rule), sid, alert))
        for sid in expired:
            del self.states[sid]
        alerts.sort(key=lambda t: (t[0], t[1]))
        return [a for _, _, a in alerts]

    def _rule_order(self, rule: Rule) -> int:
        return self.ruleset.rules.index(rule)

    def _transition(self, rule: Rule, rst: dict, st: dict, f: detectors.Finding, reasons: Mapping) -> dict | None:
        """Apply one finding to the rule's firing state: one firing and one resolved per incident."""
        scope = st["scope"]
        window = (f.window_start, f.window_start + self.window)
        at = f.detected_at if f.detected_at is not None else window[1]
        affected = int(f.extra.get("incident_events", f.x)) if not METRICS[rule.metric].is_volume else 0
        common = dict(rule=rule, scope=scope, window=window, x=f.x, n=f.n, baseline=f.baseline,
                      threshold=f.threshold, p_value=f.p_value, statistic=f.statistic, reasons=reasons,
                      affected=affected, extra=f.extra)
        if f.fire:
            rst["quiet"] = 0
            if rst["firing"]:
                return None
            key = dedup_key(rule, scope)
            rst.update(firing=True, fired_at=at, fired_window=f.window_start, alert_id=alert_id(key, f.window_start))
            return build_alert(status="firing", the_alert_id=rst["alert_id"], fired_at=rst["fired_at"],
                               detected_at=at, **common)
        if not rst["firing"]:
            return None
        if f.window_start < rst.get("fired_window", f.window_start):
            return None  # a window older than a mid-window alarm says nothing about recovery
        if not f.calm:
            rst["quiet"] = 0
            return None
        rst["quiet"] += 1
        if rst["quiet"] < rule.resolve_windows:
            return None
        alert = build_alert(status="resolved", the_alert_id=rst["alert_id"], fired_at=rst["fired_at"], **common)
        rst.update(firing=False, quiet=0, alert_id=None, fired_at=None, fired_window=None)
        if rule.test == "cusum":
            detectors.relearn(rst)
        return alert

    def _resolve_idle(self, rule: Rule, rst: dict, st: dict, start: float, by: str = "no traffic") -> dict:
        """Resolve an alert whose scope stopped sending: a finished bulk send has no calm windows."""
        alert = build_alert(rule=rule, status="resolved", scope=st["scope"], the_alert_id=rst["alert_id"],
                            window=(start, start + self.window), x=0, n=0, baseline=rst.get("p0"),
                            threshold=None, p_value=None, statistic=None, reasons={}, affected=0,
                            fired_at=rst["fired_at"], extra={"resolved_by": by,
                                                             "idle_windows": rst.get("idle", 0)})
        rst.update(firing=False, quiet=0, idle=0, alert_id=None, fired_at=None, fired_window=None)
        return alert

    # --- introspection ----------------------------------------------------------------
    def firing(self) -> list[str]:
        """Dedup keys of alerts currently firing."""
        out = []
        for st in self.states.values():
            for name, rst in st["rules"].items():
                if rst.get("firing"):
                    rule = next(r for r in self.ruleset.rules if r.name == name)
                    out.append(dedup_key(rule, st["scope"]))
        return sorted(out)


_PLANS: dict[int, tuple] = {}


def _chart_plan(ruleset: RuleSet) -> tuple[dict, dict, dict]:
    """Per scope definition: the sequenced event types, their counter slots, and the CUSUM
    rules with their slot roles. Computed once per rule set (the pipeline builds an Engine
    per delta message)."""
    cached = _PLANS.get(id(ruleset))
    if cached is not None and cached[0] is ruleset:
        return cached[1]
    sequences = sequence_types(ruleset)
    trial_slots = {f: [int(i) for i in np.flatnonzero(mask)] for f, mask in sequences.items()}
    charts: dict[tuple[str, ...], list] = {}  # per scope: (rule, slot roles, delivered counts as trials?)
    for r in ruleset.rules:
        if r.test == "cusum":
            charts.setdefault(r.scope, []).append((r, detectors.slot_roles(r.metric),
                                                   "delivered" in METRICS[r.metric].denominator))
    plan = (sequences, trial_slots, charts)
    _PLANS[id(ruleset)] = (ruleset, plan)
    return plan


def _span_holds_evidence(rule: Rule, rst: dict) -> bool:
    """Does a policy rule's span still hold enough trials to be judged?

    Complaints keep arriving for hours after a bulk send's last delivery: windows without
    deliveries are not "no traffic" while the span still carries the send, so the alert is
    decided by the span (resolved once its rate is back under the line), not by idleness;
    resolving on idleness and firing again on the next complaint made one incident page
    three times.
    """
    if rule.test != "policy":
        return False
    held = rst.get("exposure") if rule.lag_median else sum(r[1] for r in rst.get("recent", ()))
    return (held or 0) >= max(1, rule.min_volume)


def sequence_types(ruleset: RuleSet) -> dict[tuple[str, ...], np.ndarray]:
    """Scope definitions whose CUSUM rules chart message by message, and the event types they read."""
    types: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for rule in ruleset.rules:
        if rule.test == "cusum":
            metric = METRICS[rule.metric]
            for counter in metric.numerator + metric.denominator:
                types[rule.scope].add("bounced" if counter.startswith("bounced") else counter)
    return {scope: sequence_type_mask(names) for scope, names in types.items()}


def replay(events: Iterable[Mapping], ruleset: RuleSet, batch_size: int = 50_000) -> Iterable[dict]:
    """Run events (already in timestamp order) through a fresh engine, yielding alerts."""
    engine = Engine(ruleset)
    batch: list[Mapping] = []
    for ev in events:
        batch.append(ev)
        if len(batch) >= batch_size:
            yield from engine.process(batch)
            batch = []
    if batch:
        yield from engine.process(batch)
    yield from engine.flush()
