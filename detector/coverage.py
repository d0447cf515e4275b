"""Which rules can run on a stream: no rule may go silently blind.

A rule reads event types (its metric's numerator and denominator) in scopes built from event
fields. An ESP that never posts an event type, or whose events do not carry a scope field,
leaves the rule with nothing to judge; an ESP whose field is present on some event types only
(Postmark names the sender on a Bounce, not on a Delivery) splits one scope in two, and a
scope that sees only bounces has a 100% bounce rate. :class:`Coverage` counts, per ESP, the
event types and the fields each type carries; :func:`assess` says per ESP and rule whether it
runs, runs on a stand-in (delivery attempts for sends, :mod:`detector.sends`), or why not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .counts import SCOPE_FIELDS, EventBatch
from .event import EVENT_TYPES
from .rates import METRICS
from .rules import Rule, RuleSet

#: Events an ESP must have posted before a missing type or field is reported (a quiet hour
#: of a small account is not evidence that complaints are never posted).
MIN_EVENTS = 5_000
_ATTEMPT_TYPES = ("delivered", "bounced")
#: A conservative low rate per delivery of each outcome: an ESP whose deliveries would have
#: produced ten of them at this rate, and produced none, does not post that type (or the
#: webhook is not subscribed to it); fewer deliveries only say "not seen yet".
_LOW_RATE = {"complained": 1e-4, "bounced": 1e-3, "deferred": 1e-3, "dropped": 1e-4, "unsubscribed": 1e-4,
             "opened": 1e-2, "clicked": 1e-3, "delivered": 1.0}
_EVIDENCE = 10.0


def metric_types(metric_name: str) -> tuple[set[str], set[str]]:
    """Event types a metric's numerator and denominator read."""
    m = METRICS[metric_name]

    def types(counters):
        out = set()
        for c in counters:
            if c.startswith("bounced"):
                out.add("bounced")
            elif c.startswith("unattributed_"):
                out.add("accepted")
            elif c == "throttled":
                out.add("deferred")
            elif c == "refused":      # block bounces; throttling deferrals only make it sooner
                out.add("bounced")
            elif c == "attempt_trials":
                out.update(_ATTEMPT_TYPES)
            elif c.endswith("_fbl"):
                out.add(c[:-len("_fbl")])
            else:
                out.add(c)
        return out
    return types(m.numerator), types(m.denominator)


@dataclass(frozen=True)
class Verdict:
    esp: str
    rule: str
    status: str    # "runs", "stand-in", "unseen" (not enough traffic to tell), "blind", "split"
    detail: str

    @property
    def reason(self) -> str:
        """A closed label value for metrics."""
        return self.status if self.status != "blind" else ("no_field" if "field" in self.detail else "no_event_type")


class Coverage:
    """Per ESP: events by type, how many of each type carry each scope field, and the deliveries
    and complaints per mailbox provider (which providers report complaints at all)."""

    def __init__(self) -> None:
        self.types: dict[str, np.ndarray] = {}
        self.fields: dict[str, dict[str, np.ndarray]] = {}
        #: per ESP and mailbox provider: [deliveries, complaints]
        self.providers: dict[str, dict[str, list[int]]] = {}

    def update(self, batch: EventBatch) -> None:
        esp_col = batch.fields["provider"]
        values = batch.vocab["provider"].values
        n_types = len(EVENT_TYPES)
        for code in np.unique(esp_col).tolist():
            if code < 0:
                continue
            rows = esp_col == code
            tc = batch.type_code[rows].astype(np.int64)
            esp = values[code]
            self.types[esp] = self.types.get(esp, 0) + np.bincount(tc, minlength=n_types)
            per = self.fields.setdefault(esp, {})
            for f in SCOPE_FIELDS:
                has = batch.fields[f][rows] >= 0
                per[f] = per.get(f, 0) + np.bincount(tc[has], minlength=n_types)
            mbp = batch.fields["mailbox_provider"][rows]
            names = batch.vocab["mailbox_provider"].values
            mine = self.providers.setdefault(esp, {})
            for k, t in enumerate((_DELIVERED, _COMPLAINED)):
                codes, counts = np.unique(mbp[(tc == t) & (mbp >= 0)], return_counts=True)
                for c, m in zip(codes.tolist(), counts.tolist()):
                    mine.setdefault(names[c], [0, 0])[k] += m

    def events(self, esp: str) -> int:
        return int(self.types[esp].sum())


_DELIVERED, _COMPLAINED = EVENT_TYPES.index("delivered"), EVENT_TYPES.index("complained")


@dataclass(frozen=True)
class FeedbackGap:
    """What the complaint rate of one ESP's traffic cannot see (:mod:`detector.feedback_loops`)."""

    esp: str
    unseen_share: float                 # deliveries to providers without a feedback loop
    unseen: tuple[str, ...]             # those providers, largest first
    unlisted: tuple[tuple[str, int], ...]   # providers outside the table that posted complaints


def feedback_gaps(cov: Coverage, loops: frozenset[str]) -> list[FeedbackGap]:
    """Per ESP with deliveries: the share of them no complaint rule sees, and the providers
    outside ``loops`` that posted complaints anyway (their complaints are not counted: add them)."""
    out = []
    for esp in sorted(cov.providers):
        per = cov.providers[esp]
        delivered = sum(d for d, _ in per.values())
        if not delivered:
            continue
        unseen = sorted((p for p in per if p not in loops and per[p][0]), key=lambda p: -per[p][0])
        share = sum(per[p][0] for p in unseen) / delivered
        unlisted = tuple(sorted(((p, c) for p, (_, c) in per.items() if c and p not in loops), key=lambda x: -x[1]))
        out.append(FeedbackGap(esp, share, tuple(unseen), unlisted))
    return out


def _type_count(cov: Coverage, esp: str, t: str) -> int:
    return int(cov.types[esp][EVENT_TYPES.index(t)])


def _verdict(cov: Coverage, esp: str, rule: Rule) -> Verdict:
    num, den = metric_types(rule.metric)
    missing = [t for t in sorted(num | den) if t != "accepted" and _type_count(cov, esp, t) == 0]
    base = max(_type_count(cov, esp, "delivered"), cov.events(esp) if not _type_count(cov, esp, "delivered") else 0)
    if missing:
        if all(base * _LOW_RATE.get(t, 1.0) >= _EVIDENCE for t in missing):
            return Verdict(esp, rule.name, "blind", f"no {', '.join(missing)} events posted "
                                                    f"(subscribe the webhook to them)")
        return Verdict(esp, rule.name, "unseen", f"no {', '.join(missing)} events yet "
                                                 f"({base:,} deliveries; too few to tell)")
    for f in rule.scope:
        carried = cov.fields[esp][f]
        if int(carried.sum()) == 0:
            return Verdict(esp, rule.name, "blind", f"no event carries the scope field {f!r}")
        needed = [t for t in sorted(num | den) if t != "accepted"] or list(_ATTEMPT_TYPES)
        partial = [t for t in needed if _type_count(cov, esp, t) and carried[EVENT_TYPES.index(t)] == 0]
        if partial:
            return Verdict(esp, rule.name, "split",
                           f"{f!r} is missing on every {', '.join(partial)} event but present on others: "
                           f"set a constant or field path for it in the ingest settings")
    if "accepted" in num | den and _type_count(cov, esp, "accepted") == 0:
        return Verdict(esp, rule.name, "stand-in", "no send events: delivery attempts stand in for sends")
    if rule.min_sends and _type_count(cov, esp, "accepted") == 0:
        return Verdict(esp, rule.name, "stand-in", "no send events: min_sends counts delivery attempts")
    return Verdict(esp, rule.name, "runs", "")


def assess(cov: Coverage, ruleset: RuleSet, min_events: int = MIN_EVENTS) -> list[Verdict]:
    """One verdict per ESP (with at least ``min_events`` events) and rule."""
    out = []
    for esp in sorted(cov.types):
        if cov.events(esp) < min_events:
            continue
        out.extend(_verdict(cov, esp, rule) for rule in ruleset.rules)
    return out


class BlindRules:
    """Reports each (ESP, rule) that cannot run once, as the stream reveals it."""

    def __init__(self, ruleset: RuleSet, min_events: int = MIN_EVENTS) -> None:
        self.ruleset = ruleset
        self.min_events = min_events
        self.coverage = Coverage()
        self.reported: set[tuple[str, str]] = set()

    def update(self, batch: EventBatch) -> list[Verdict]:
        """Count a batch; return the verdicts of rules newly found blind or split."""
        self.coverage.update(batch)
        new = []
        for v in assess(self.coverage, self.ruleset, self.min_events):
            if v.status in ("blind", "split") and (v.esp, v.rule) not in self.reported:
                self.reported.add((v.esp, v.rule))
                new.append(v)
        return new
