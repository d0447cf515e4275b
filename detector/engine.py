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
from dataclasses import replace
from collections import defaultdict
from operator import add
from typing import Iterable, Mapping, MutableMapping, Sequence

import numpy as np

from . import clock, detectors, sends, shrinkage
from .registry import STAT_TESTS, CloseContext
from .alert import alert_id, build_alert, dedup_key
from .event import EVENT_TYPES
from .counts import (COUNTER_INDEX, N_COUNTERS, EventBatch, ScopeDelta, Vocabulary, SCOPE_FIELDS, count_scopes,
                     deltas, scope_id, sequence_type_mask, FIRST_ATTEMPT_BASIS)
from .gcpause import gc_paused
from .mailbox import register_domains
from .rates import METRICS
from .lag import ComplaintLags
from .retries import RetryMemory
from .rules import CHANNEL_SCOPE, Rule, RuleSet

#: A window is charted message by message only while the scope sends at least this many
#: messages per trial it hears back about (see :func:`detector.sends.sending`).
SENDING_RATIO = 0.8
_N_TYPES = len(EVENT_TYPES)
_ACCEPTED, _DELIVERED, _BOUNCED = COUNTER_INDEX["accepted"], COUNTER_INDEX["delivered"], COUNTER_INDEX["bounced"]
_FIRST_ATTEMPTS = COUNTER_INDEX["first_attempts"]


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
        #: complaint lags learned from matched deliveries (policy rules with a lag that learn it),
        #: made by the first :meth:`process`: an engine fed deltas (the pipeline's) reads meta["lag"]
        self.lags: ComplaintLags | None = None
        self._pending: list[dict] = []   # alarms raised while deltas were applied
        self.sequences, self._trial_slots, self._charts = _chart_plan(ruleset)
        self._close_plan, self._rule_index = _close_plan(ruleset)
        self._policy_scopes = {r.scope for r in ruleset.rules if r.test == "policy"}
        self._empty_run_bound = clock.empty_run_bound(ruleset)
        #: silence rules that name the ESP: a window without any event of that ESP is unobserved
        self._channel_silence = CHANNEL_SCOPE in self.scope_defs
        #: window start -> its text key, for the windows still open (dropped as each closes)
        self._wkeys: dict[float, str] = {}
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
        if self.lags is None and any(r.lag_median and r.lag_learn for r in self.ruleset.rules):
            self.lags = ComplaintLags(self.feedback_loops)
        if self.lags is not None:
            self.lags.observe(events)
        return self.process_batch(EventBatch.from_events(events, self.vocab, self.retries))

    def learn_lags(self, now: float) -> None:
        """Refit the complaint lag (:mod:`detector.lag`) and keep what the policy rules use in
        ``meta["lag"]``, where the pipeline's deltas messages also put it."""
        if self.lags is None:
            return
        self.lags.expire(now)
        if self.lags.refit(now):
            self.meta["lag"] = self.lags.summary()

    def process_batch(self, batch: EventBatch) -> list[dict]:
        if len(batch) == 0:
            return []
        with gc_paused():
            counted = count_scopes(batch, self.scope_defs, self.window, self.sequences, self.feedback_loops)
            if all(c.plain for c in counted):
                # scope ids are unique: apply each scope's counts as its delta would be applied
                apply = self._apply
                for c in counted:
                    fields, reasons, seq = c.fields, c.reasons, c.seq
                    for u, (sid, wins) in enumerate(zip(c.sids, c.windows)):
                        apply(sid, fields, None, c.values[u], wins, reasons.get(u), seq.get(u), True)
            else:
                for delta in deltas(counted).values():
                    self.apply_delta(delta)
            del counted  # freed now, not walked by the collector when it resumes
            newest = float(batch.timestamp.max())
            self.learn_lags(newest)
            return self.advance(newest)

    def apply_delta(self, delta: ScopeDelta) -> int:
        """Add one scope's window counts; return how many events were too late.

        Lateness is counted on the first scope definition only, so an event that is
        late in every scope it belongs to counts once.
        """
        return self._apply(delta.scope_id, tuple(delta.scope), delta.scope, None, delta.windows, delta.reasons,
                           delta.seq, False)

    def _apply(self, sid: str, fields: tuple[str, ...], scope: dict | None, values: Sequence[str] | None,
               windows_in: Mapping[float, list], reasons_in: Mapping | None, seq: Mapping | None,
               owned: bool) -> int:
        """:meth:`apply_delta` on a delta's parts (``scope``, or the ``values`` of ``fields``).
        ``owned``: the counter lists are the caller's to give away (stored, not copied)."""
        meta = self.meta
        closed = meta.get("closed_until")
        st = self.states.get(sid)
        if st is None:
            if scope is None:
                scope = dict(zip(fields, values))
            st = {"scope": scope, "windows": {}, "reasons": {}, "rules": {}, "first": None, "last_seen": None}
            if fields == CHANNEL_SCOPE:  # a new ESP stream: remembered with the clock
                self.meta["channels"] = sorted({*self.meta.get("channels", ()), scope["provider"]})
        late = 0
        first_open = meta.get("first_open")
        windows = st["windows"]
        first, last = st["first"], st["last_seen"]
        keys = self._wkeys
        acc = att = fa = 0  # the delta's sends, attempts and first attempts, for the scope's history
        heard = False
        for start, counts in windows_in.items():
            if closed is not None and start < closed:
                late += sum(counts[:_N_TYPES])
                continue
            acc += counts[_ACCEPTED]
            att += counts[_DELIVERED] + counts[_BOUNCED]
            fa += counts[_FIRST_ATTEMPTS]
            heard = True
            key = keys.get(start)
            if key is None:
                key = keys[start] = repr(float(start))  # wkey
            prev = windows.get(key)
            if prev is not None:
                if len(prev) < len(counts):  # stored by a version with fewer counters
                    prev = prev + [0] * (len(counts) - len(prev))
                windows[key] = list(map(add, prev, counts))
            else:
                windows[key] = counts if owned else list(counts)
            if first is None or start < first:
                first = st["first"] = start
            if last is None or start > last:
                last = st["last_seen"] = start
            if first_open is None or start < first_open:
                first_open = meta["first_open"] = start
        if heard:
            sends.observe_totals(st, acc, att, fa)
        if reasons_in:
            st_reasons = st["reasons"]
            for start, reasons in reasons_in.items():
                if closed is not None and start < closed:
                    continue
                bucket = st_reasons.setdefault(wkey(start), {})
                for k, v in reasons.items():
                    bucket[k] = bucket.get(k, 0) + v
        if fields in self._charts:
            self._chart_sequence(sid, windows_in, seq or {}, fields, st, closed)
        if st["first"] is not None or sid in self.states:  # a new scope all of whose events were late: none
            self.states[sid] = st
        if fields != self.scope_defs[0]:
            late = 0
        self.late_events += late
        return late

    def _chart_sequence(self, sid: str, dw: Mapping[float, list], seq: Mapping[float, list], fields: tuple[str, ...],
                        st: dict, closed: float | None) -> None:
        """Feed CUSUM charts message by message; an alarm is raised right away."""
        charts, trial_slots = self._charts[fields], self._trial_slots[fields]
        starts = sorted(dw) if len(dw) > 1 else list(dw)
        two = len(trial_slots) == 2
        cov = first = None  # the scope's send coverage, read once when a gate needs it
        rules = st["rules"]
        for rule, roles, delivered_counts in charts:
            rst = rules.get(rule.name)
            if rst is None:
                rst = rules[rule.name] = detectors.new_state()
            chart = rst if rst["phase"] == "armed" else detectors.provisional_chart(rule, rst)
            if chart is None:
                continue
            bank = detectors.charts(chart)
            for start in starts:
                marks = seq.get(start)
                if marks is None:  # deliveries only
                    if all(c["s"] == 0.0 for c in bank):
                        continue  # the charts are at zero and stay there
                    counts = dw[start]
                    n = (counts[trial_slots[0]] + counts[trial_slots[1]] if two
                         else sum([counts[i] for i in trial_slots]))
                    if not n:
                        continue
                    marks = [n]
                if closed is not None and start < closed:
                    continue
                key = self._wkeys.get(start) or wkey(start)
                if rule.min_sends > 0:
                    if cov is None:
                        cov, first = sends.coverage_numbered(st)
                    if not sends.sending(st["windows"].get(key), cov, SENDING_RATIO, first):
                        continue  # outcomes trailing a finished send: not a fair sample, not charted
                crossings = [(crossing, c) for c in bank
                             for crossing in detectors.cusum_sequence(rule, c, marks, roles, delivered_counts)]
                if len(crossings) > 1:
                    crossings.sort(key=lambda cc: cc[0][0])   # the first chart to cross names the alarm
                for crossing, c in crossings:
                    finding = detectors.sequential_finding(rule, c, sid, start, crossing)
                    alert = self._transition(rule, rst, st, finding, st["reasons"].get(key, {}))
                    if alert:
                        self._pending.append(alert)

    # --- clock -------------------------------------------------------------------
    def advance(self, newest_event_time: float) -> list[dict]:
        """Move the watermark to ``newest_event_time - lateness`` and close due windows."""
        newest = max(newest_event_time, self.meta.get("newest", -math.inf))
        self.meta["newest"] = newest
        # every window is looked at before it closes (in a replay's large batches too)
        early = self._look_ahead(math.floor(newest / self.window) * self.window) if self._policy_scopes else []
        closed = self._close_until(math.floor((newest - self.lateness) / self.window) * self.window)
        alerts, self._pending = self._pending, []
        return alerts + early + closed

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

    def _look_ahead(self, until: float) -> list[dict]:
        """Policy rules look at each window as soon as it ends, before its allowed lateness.

        Only a firing can come of it (:func:`detectors.peek_policy` leaves the rule's state as
        it is), and only where the window brought the rule's numerator (a complaint, a
        throttled attempt): a line is crossed when evidence arrives. The alarm is stamped at
        the window's end, in replay and in the pipeline alike."""
        closed = self.closed_until
        if closed is None:
            closed = self.meta.get("first_open")
            if closed is None:
                return []
        start = max(closed, self.meta.get("looked_until", closed))
        if start >= until:
            return []
        alerts: list[tuple[int, str, dict]] = []
        window, plans = self.window, self._close_plan
        learned = self.meta.get("lag")
        n_windows = round((until - start) / window)
        for sid in list(self.states):
            st = self.states[sid]
            fields = tuple(st["scope"])
            if fields not in self._policy_scopes or st["last_seen"] is None or st["last_seen"] < start:
                continue
            wins = st["windows"]
            cov = first = None
            changed = False
            for k in range(n_windows):
                w = start + k * window
                counts = wins.get(repr(float(w)))
                if counts is None:
                    continue
                for rule, order, test, kind, num, den, _ in plans[fields]:
                    if test != "policy" or not any(counts[i] for i in num):
                        continue
                    rst = st["rules"].get(rule.name)
                    if rst is not None and rst["firing"]:
                        continue
                    if cov is None:
                        cov, first = sends.coverage_numbered(st)
                    pending = []
                    for j in range(round((w - closed) / window) + 1):
                        ws = closed + j * window
                        c = wins.get(repr(float(ws)))
                        if c is not None:
                            pending.append([*_metric_pair(kind, num, den, rule, c, cov, first), ws])
                    finding = detectors.peek_policy(rule, rst or detectors.new_state(), sid, w, pending, window,
                                                    learned)
                    if finding is None or not finding.fire:
                        continue
                    finding.detected_at = w + window
                    if rst is None:
                        rst = st["rules"][rule.name] = detectors.new_state()
                    alert = self._transition(rule, rst, st, finding, st["reasons"].get(repr(float(w)), {}))
                    if alert:
                        alerts.append((order, sid, alert))
                        changed = True
            if changed:
                self.states[sid] = st
        self.meta["looked_until"] = until
        alerts.sort(key=lambda t: (t[0], t[1]))
        return [a for _, _, a in alerts]

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
                                            self._empty_run_bound, self.closed_until):
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
        self._wkeys.pop(start, None)
        alerts: list[tuple[int, str, dict]] = []
        rounds: dict[str, list[tuple[detectors.Finding, str, dict]]] = defaultdict(list)
        zeros = [0] * N_COUNTERS
        expired = []
        states, plans, window, ttl = self.states, self._close_plan, self.window, self.ttl
        new_state = detectors.new_state
        ctx = CloseContext(window=window, learned_lag=self.meta.get("lag"))
        unheard = self._unheard_channels(key, start) if self._channel_silence else ()
        for sid in list(states):
            st = states[sid]
            if st["first"] is None or start < st["first"]:
                continue
            counts = st["windows"].pop(key, zeros)
            if len(counts) < N_COUNTERS:  # stored by a version with fewer counters
                counts = counts + zeros[len(counts):]
            reasons = st["reasons"].pop(key, {})
            fields = tuple(st["scope"])
            cov, first = sends.coverage_numbered(st)
            sent = sends.sends(counts, cov, first)
            rules_st = st["rules"]
            for rule, order, test, kind, num, den, idle_check in plans.get(fields, ()):
                name = rule.name
                rst = rules_st.get(name) or new_state()
                rules_st[name] = rst
                x, n = _metric_pair(kind, num, den, rule, counts, cov, first, sent)
                if rst["firing"] and idle_check and start >= rst.get("fired_window", start):
                    rst["idle"] = 0 if n or _span_holds_evidence(rule, rst) else rst.get("idle", 0) + 1
                    if rst["idle"] >= rule.resolve_idle_windows:
                        alerts.append((order, sid, self._resolve_idle(rule, rst, st, start)))
                        continue
                if unheard and test == "silence" and fields != CHANNEL_SCOPE and st["scope"].get("provider") in unheard:
                    continue  # its ESP posted nothing at all in this window: unobserved, not silent
                if rule.pool_under:
                    finding = self._close_pooled(rule, rst, st, sid, start, x, n, sent, ctx)
                else:
                    finding = STAT_TESTS[test].close(rule, rst, sid, start, x, n, sent, ctx)
                if finding is None:
                    continue
                if finding.fire is None:
                    rounds[name].append((finding, sid, reasons))
                    continue
                alert = self._transition(rule, rst, st, finding, reasons)
                if alert:
                    alerts.append((order, sid, alert))
            last_seen = st["last_seen"]
            if last_seen is not None and start - last_seen > ttl:
                for rule, order, test, *_ in plans.get(fields, ()):
                    rst = rules_st.get(rule.name)
                    if rst and rst.get("firing") and test == "silence":  # a retired flow
                        alerts.append((order, sid, self._resolve_idle(
                            rule, rst, st, start, by="expired: the flow sent nothing for the scope TTL")))
                if not any(r.get("firing") for r in rules_st.values()):
                    expired.append(sid)
                    continue
            states[sid] = st
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

    def _close_pooled(self, rule: Rule, rst: dict, st: dict, sid: str, start: float, x: int, n: int,
                      sent: int, ctx: CloseContext) -> detectors.Finding | None:
        """A CUSUM window close of a rule whose sparse scopes are pooled under a parent: a scope
        still warming up gets its siblings' prior; a baseline it learns joins their pool. The
        pools live in ``meta`` (the partition's clock), and every scope of a parent is on one
        partition (:class:`streams.partitioning.Partitioner`), so replay and pipeline agree."""
        pools = self.meta.get("pools")
        key = shrinkage.parent_key(rule.name, st["scope"], rule.pool_under)
        prior = None
        if rst["phase"] == "warmup" and pools and key in pools:
            prior = shrinkage.SiblingRates(pools[key]).prior(max_strength=max(rule.warmup_messages, 1))
        finding = STAT_TESTS[rule.test].close(rule, rst, sid, start, x, n, sent, replace(ctx, prior=prior))
        learned = rst.pop("learned", None)
        if learned:
            pools = dict(pools or {})
            siblings = shrinkage.SiblingRates(pools.get(key))
            siblings.add(*learned)
            pools[key] = siblings.sums
            self.meta["pools"] = pools
        return finding

    def _unheard_channels(self, key: str, start: float) -> set[str]:
        """ESPs (``provider``) known before ``start`` that posted no event at all in that window."""
        out = set()
        for value in self.meta.get("channels", ()):
            st = self.states.get(scope_id(CHANNEL_SCOPE, (value,)))
            if st is not None and st["first"] is not None and st["first"] < start:
                counts = st["windows"].get(key)
                if counts is None or not any(counts[:_N_TYPES]):
                    out.add(value)
        return out

    def _rule_order(self, rule: Rule) -> int:
        order = self._rule_index.get(id(rule))
        return self.ruleset.rules.index(rule) if order is None else order

    def _transition(self, rule: Rule, rst: dict, st: dict, f: detectors.Finding, reasons: Mapping) -> dict | None:
        """Apply one finding to the rule's firing state: one firing and one resolved per incident."""
        scope = st["scope"]
        window = (f.window_start, f.window_start + self.window)
        at = f.detected_at if f.detected_at is not None else self._close_time(f.window_start)
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
        alert = build_alert(status="resolved", the_alert_id=rst["alert_id"], fired_at=rst["fired_at"], detected_at=at,
                            **common)
        rst.update(firing=False, quiet=0, alert_id=None, fired_at=None, fired_window=None)
        if STAT_TESTS[rule.test].relearns:
            detectors.relearn(rst)
        return alert

    def _close_time(self, start: float) -> float:
        """The event time at which the window starting at ``start`` closes: its end plus the
        allowed lateness (the watermark passed it), or the input's end in a replay's flush.
        Alerts of a close are stamped with it, not with the window's end, which would flatter
        every delay."""
        end = start + self.window
        return max(end, min(end + self.lateness, self.meta.get("newest", end)))

    def _resolve_idle(self, rule: Rule, rst: dict, st: dict, start: float, by: str = "no traffic") -> dict:
        """Resolve an alert whose scope stopped sending: a finished bulk send has no calm windows."""
        alert = build_alert(rule=rule, status="resolved", scope=st["scope"], the_alert_id=rst["alert_id"],
                            detected_at=self._close_time(start),
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
    trial_slots = {f: ([COUNTER_INDEX["attempt_trials"]] if isinstance(basis, str)
                       else [int(i) for i in np.flatnonzero(basis)]) for f, basis in sequences.items()}
    charts: dict[tuple[str, ...], list] = {}  # per scope: (rule, slot roles, unmarked positions are trials?)
    for r in ruleset.rules:
        if STAT_TESTS[r.test].sequential:
            metric = METRICS[r.metric]
            charts.setdefault(r.scope, []).append((r, detectors.slot_roles(r.metric),
                                                   "delivered" in metric.denominator or metric.first_attempt_basis))
    plan = (sequences, trial_slots, charts)
    _PLANS[id(ruleset)] = (ruleset, plan)
    return plan


_SEND_VOLUME, _PER_SEND, _PAIR = 0, 1, 2
_CLOSE_PLANS: dict[int, tuple] = {}


def _close_plan(ruleset: RuleSet) -> tuple[dict, dict]:
    """Per scope definition, what closing a window evaluates, in rule order: (rule, its index
    in the rule set, test, metric kind, numerator slots, denominator slots, idle check?); and
    each rule's index by ``id``. Computed once per rule set."""
    cached = _CLOSE_PLANS.get(id(ruleset))
    if cached is not None and cached[0] is ruleset:
        return cached[1]
    plans: dict[tuple[str, ...], list] = defaultdict(list)
    index: dict[int, int] = {}
    for rule in ruleset.rules:
        order = ruleset.rules.index(rule)
        index[id(rule)] = order
        metric = METRICS[rule.metric]
        kind = _SEND_VOLUME if metric.is_send_volume else _PER_SEND if metric.per_send else _PAIR
        num = tuple(COUNTER_INDEX[c] for c in metric.numerator)
        den = tuple(COUNTER_INDEX[c] for c in metric.denominator)
        idle_check = bool(not metric.is_volume and rule.resolve_idle_windows and rule.test != "drift")
        plans[rule.scope].append((rule, order, rule.test, kind, num, den, idle_check))
    plan = (dict(plans), index)
    _CLOSE_PLANS[id(ruleset)] = (ruleset, plan)
    return plan


def _metric_pair(kind: int, num: tuple, den: tuple, rule: Rule, counts: Sequence, cov, first,
                 sent: int | None = None) -> tuple[int, int]:
    """A window's (x, n) for a rule's metric, as Metric.pair or the send volume."""
    if kind == _SEND_VOLUME:
        x = sends.volume(rule.metric, counts, cov, first)
        return x, x
    x = 0
    for i in num:
        x += counts[i]
    x = int(x)
    if kind == _PER_SEND:
        return x, sends.sends(counts, cov, first) if sent is None else sent
    if den:
        n = 0
        for i in den:
            n += counts[i]
        return x, int(n)
    return x, x


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


def sequence_types(ruleset: RuleSet) -> dict[tuple[str, ...], np.ndarray | str]:
    """Scope definitions whose CUSUM rules chart message by message, and what their trials are:
    the event types they read (a mask), or each message's first attempt (FIRST_ATTEMPT_BASIS;
    the rule loader keeps one basis per scope)."""
    types: dict[tuple[str, ...], set[str]] = defaultdict(set)
    first: set[tuple[str, ...]] = set()
    for rule in ruleset.rules:
        if STAT_TESTS[rule.test].sequential:
            metric = METRICS[rule.metric]
            if metric.first_attempt_basis:
                first.add(rule.scope)
                continue
            for counter in metric.numerator + metric.denominator:
                types[rule.scope].add("bounced" if counter.startswith("bounced") else counter)
    out: dict[tuple[str, ...], np.ndarray | str] = {scope: sequence_type_mask(names) for scope, names in types.items()}
    out.update({scope: FIRST_ATTEMPT_BASIS for scope in first})
    return out


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
