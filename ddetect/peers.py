"""Peer rule sets: the fixed-threshold alerting other tools ship, run on the same streams.

A peer file (``rules/peers/*.yaml``) lists plain threshold rules: a ratio of one of
ddetect's metrics (:data:`detector.rates.METRICS`) on one scope, summed over a rolling
``span`` and compared with ``above`` every ``every``, once the span holds at least
``min_total`` trials and ``min_events`` events; ``for`` is Prometheus' pending duration
(the condition must hold that long before the alert fires). One alert per episode: it
fires on the first evaluation that meets the condition (after ``for``) and resolves on
the first that does not.

Why not ddetect's own rule language: it has no plain fixed-threshold test. Its ``policy``
test fires when a one-sided confidence *bound* of the rate exceeds the line, which needs
more evidence than the point ratio these tools compare; writing a peer as a policy rule
would make it quieter and slower than the real thing and flatter it on false alarms. So
the peers are evaluated here, in the evaluation code, and the engine is not changed.

What the evaluator sees: every event of the stream by event time (de-duplicated by event
id, as ingest does), counted with the engine's counters. It is not held to the engine's
allowed lateness, which slightly favours the peers. Alerts come out in the engine's alert
shape, so :func:`ddetect.evaluate.match_alerts` matches them and false alarms are counted
the same way. A series (rule x scope value) exists once its scope has any trial in the
rule's metric and is *armed* from the first evaluation that reaches ``min_total``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import yaml

from detector.counts import COUNTER_INDEX, N_COUNTERS, SCOPE_FIELDS
from detector.rates import METRICS
from detector.rules import parse_duration

PEERS_DIR = Path(__file__).resolve().parent.parent / "rules" / "peers"
#: The peers the benchmark compares with ddetect's default pack, in print order.
DEFAULT_PEERS = ("posthog", "sparkpost", "grafana")
_KEYS = {"name", "description", "metric", "scope", "above", "span", "every", "for", "min_total", "min_events"}


@dataclass(frozen=True)
class ThresholdRule:
    name: str
    metric: str
    scope: tuple[str, ...]
    above: float
    span: float                # seconds summed per evaluation
    every: float               # seconds between evaluations
    pending: float = 0.0       # Prometheus ``for``
    min_total: int = 0
    min_events: int = 0
    description: str = ""


@dataclass
class Peer:
    name: str
    rules: list[ThresholdRule]
    description: str = ""
    source: str = ""
    path: str = ""
    assumptions: list[str] = field(default_factory=list)


def _rule(raw: Mapping, where: str) -> ThresholdRule:
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("name", "metric", "scope", "above", "span", "every"):
        if key not in raw:
            raise ValueError(f"{where}: missing {key!r}")
    metric = raw["metric"]
    if metric not in METRICS or METRICS[metric].is_volume:
        raise ValueError(f"{where}: {metric!r} is not a rate metric")
    scope = tuple([raw["scope"]] if isinstance(raw["scope"], str) else raw["scope"])
    bad = [f for f in scope if f not in SCOPE_FIELDS]
    if bad or not scope:
        raise ValueError(f"{where}: bad scope {scope!r}")
    span, every = parse_duration(raw["span"]), parse_duration(raw["every"])
    pending = parse_duration(raw["for"]) if raw.get("for") else 0.0
    for what, value in (("span", span), ("for", pending)):
        if abs(value / every - round(value / every)) > 1e-9:
            raise ValueError(f"{where}: {what} must be a whole number of 'every' steps")
    above = float(raw["above"])
    if not 0 < above < 1:
        raise ValueError(f"{where}: above must be a fraction in (0, 1)")
    return ThresholdRule(name=str(raw["name"]), metric=metric, scope=scope, above=above, span=span, every=every,
                         pending=pending, min_total=int(raw.get("min_total", 0)),
                         min_events=int(raw.get("min_events", 0)), description=str(raw.get("description", "")))


def load_peer(name_or_path: str | Path) -> Peer:
    """A peer by name (``rules/peers/NAME.yaml``) or path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PEERS_DIR / f"{name_or_path}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise ValueError(f"{path}: a peer file is a mapping with a 'rules' list")
    rules = [_rule(r, f"{path}: rule {i + 1}") for i, r in enumerate(data["rules"])]
    return Peer(name=str(data.get("peer", path.stem)), rules=rules, description=str(data.get("description", "")),
                source=str(data.get("source", "")), path=str(path), assumptions=list(data.get("assumptions", [])))


# ============================================================================ evaluation

def _group_codes(index, fields: tuple[str, ...]) -> tuple[np.ndarray, list[dict[str, str]]]:
    """Per message: the id of its scope value for ``fields``; and each id's scope dict."""
    cols, names = [], []
    for f in fields:
        values, idx = index.fields[f]
        uniq, inv = np.unique(np.asarray(values, dtype=str), return_inverse=True)
        cols.append(inv[idx])
        names.append(uniq)
    if not len(index.t):
        return np.empty(0, dtype=np.int64), []
    key = np.ravel_multi_index(cols, [len(u) for u in names])
    uniq_key, group = np.unique(key, return_inverse=True)
    scopes = []
    for k in uniq_key.tolist():
        parts = np.unravel_index(k, [len(u) for u in names])
        scopes.append({f: str(names[i][p]) for i, (f, p) in enumerate(zip(fields, parts))})
    return group, scopes


def _weights(index, counters: tuple[str, ...]) -> np.ndarray:
    wanted = np.zeros(N_COUNTERS + 1, dtype=np.int64)       # last slot: "no bounce counter" (-1)
    wanted[[COUNTER_INDEX[c] for c in counters]] = 1
    return wanted[index.ev_type] + wanted[index.ev_bounce] + wanted[index.ev_fbl]


def evaluate_rule(rule: ThresholdRule, index, t0: float, t1: float, *, peer: str = "") -> tuple[list[dict], dict]:
    """Alerts of one threshold rule over ``[t0, t1)``, and its series/armed bookkeeping."""
    n_steps = max(1, int(math.ceil((t1 - t0) / rule.every)))
    rname = f"{peer}:{rule.name}" if peer else rule.name
    k = int(round(rule.span / rule.every))
    group, scopes = _group_codes(index, rule.scope)
    _, first = np.unique(index.ev_seq, return_index=True)      # one row per event id (no duplicates)
    rows = first[(index.ev_ts[first] >= t0) & (index.ev_ts[first] < t1)]
    metric = METRICS[rule.metric]
    xw, nw = _weights(index, metric.numerator), _weights(index, metric.denominator)
    g = group[index.ev_msg[rows]]
    step = ((index.ev_ts[rows] - t0) // rule.every).astype(np.int64)
    x = np.zeros((len(scopes), n_steps), dtype=np.int64)
    n = np.zeros((len(scopes), n_steps), dtype=np.int64)
    np.add.at(x, (g, step), xw[rows])
    np.add.at(n, (g, step), nw[rows])
    # Rolling sums: evaluation j (at t0 + (j+1) * every) sees steps j-k+1 .. j.
    cx = np.concatenate([np.zeros((len(scopes), 1), dtype=np.int64), np.cumsum(x, axis=1)], axis=1)
    cn = np.concatenate([np.zeros((len(scopes), 1), dtype=np.int64), np.cumsum(n, axis=1)], axis=1)
    hi = np.arange(1, n_steps + 1)
    lo = np.maximum(hi - k, 0)
    sx, sn = cx[:, hi] - cx[:, lo], cn[:, hi] - cn[:, lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = (sn >= max(rule.min_total, 1)) & (sx >= rule.min_events) & (sx > rule.above * sn)
    wait = int(round(rule.pending / rule.every))
    alerts: list[dict] = []
    series = np.nonzero(sn.max(axis=1, initial=0) > 0)[0] if len(scopes) else np.empty(0, dtype=int)
    armed = {}
    reach = sn >= max(rule.min_total, 1)
    for gi in series.tolist():
        scope_text = ",".join(f"{f}={v}" for f, v in scopes[gi].items())
        hits = np.nonzero(reach[gi])[0]
        if len(hits):
            armed[(rname, scope_text)] = t0 + (hits[0] + 1) * rule.every
        c = cond[gi]
        if not c.any():
            continue
        padded = np.concatenate([[False], c, [False]])
        starts = np.nonzero(~padded[:-1] & padded[1:])[0]
        ends = np.nonzero(padded[:-1] & ~padded[1:])[0]         # first evaluation after the run
        for s, e in zip(starts.tolist(), ends.tolist()):
            if e - s <= wait:
                continue                                         # never held for the pending duration
            j = s + wait
            at = t0 + (j + 1) * rule.every
            base = {"rule": rname, "scope": dict(scopes[gi]),
                    "metric": rule.metric, "test": "threshold", "window": {"span_s": rule.span},
                    "baseline": None, "threshold": rule.above, "p1": None}
            aid = f"{base['rule']}|{scope_text}|{j}"
            alerts.append(dict(base, alert_id=aid, status="firing", detected_at=at,
                               observed={"rate": float(sx[gi, j] / sn[gi, j]), "events": int(sx[gi, j]),
                                         "total": int(sn[gi, j])}))
            if e < n_steps:
                alerts.append(dict(base, alert_id=aid, status="resolved", detected_at=t0 + (e + 1) * rule.every,
                                   observed={"rate": float(sx[gi, e] / sn[gi, e]) if sn[gi, e] else None,
                                             "events": int(sx[gi, e]), "total": int(sn[gi, e])}))
    keys = {(rname, ",".join(f"{f}={v}" for f, v in scopes[gi].items())) for gi in series.tolist()}
    return alerts, {"series": keys, "armed_since": armed}


def evaluate_peer(peer: Peer, index, t0: float, t1: float) -> tuple[list[dict], dict]:
    """All alerts of a peer (sorted by time) and its series / armed-since bookkeeping."""
    alerts: list[dict] = []
    series: set = set()
    armed: dict = {}
    for rule in peer.rules:
        a, book = evaluate_rule(rule, index, t0, t1, peer=peer.name)
        alerts += a
        series |= book["series"]
        armed.update(book["armed_since"])
    alerts.sort(key=lambda a: (a["detected_at"], a["status"] != "firing", a["alert_id"]))
    return alerts, {"series": series, "armed_since": armed}
