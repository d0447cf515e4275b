"""The alert value: what fired, where, how bad, since when, the evidence and what to do.

Times are event time (Unix seconds), never wall-clock, so replaying the same events
gives byte-identical alerts. A resolved alert reuses the firing alert's ``alert_id``.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Mapping

from .rates import METRICS
from .rules import Rule
from .runbooks import runbook

TOP_REASONS = 5


def dedup_key(rule: Rule, scope: Mapping[str, str]) -> str:
    return rule.name + "|" + "|".join(f"{k}={scope[k]}" for k in rule.scope)


def alert_id(key: str, fired_window_start: float) -> str:
    return "a:" + hashlib.sha256(f"{key}|{fired_window_start!r}".encode()).hexdigest()[:20]


def top_reasons(reasons: Mapping[str, int], numerator: tuple[str, ...], limit: int = TOP_REASONS) -> list[dict]:
    """Most frequent (SMTP code, reason) among the events the metric counts."""
    rows = []
    for key, count in reasons.items():
        kind, code, reason = key.split("|", 2)
        if not any(kind == c or kind.startswith(c + "_") for c in numerator):
            continue
        rows.append({"kind": kind, "smtp_code": int(code) if code else None, "reason": reason or None,
                     "count": count})
    rows.sort(key=lambda r: (-r["count"], r["kind"], r["smtp_code"] or 0, r["reason"] or ""))
    return rows[:limit]


def _json_safe(v: Any) -> Any:
    """JSON has no infinity: an infinite dispersion (no overdispersion) becomes null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _pct(v: float) -> str:
    return f"{100 * v:.3g}%"


def summary(rule: Rule, status: str, scope: Mapping[str, str], observed: Mapping[str, Any],
            baseline: float | None) -> str:
    where = " ".join(f"{k}={v}" for k, v in scope.items())
    metric = METRICS[rule.metric]
    if metric.is_volume:
        what = f"{rule.metric} {observed['events']} per window"
        if baseline is not None:
            what += f" vs expected {baseline:.3g}"
    else:
        rate = observed.get("rate")
        what = f"{rule.metric} {_pct(rate) if rate is not None else 'n/a'} ({observed['events']}/{observed['total']})"
        if rule.test == "policy":
            what += f" above policy {_pct(rule.rate)}"
        elif baseline is not None:
            what += f" vs baseline {_pct(baseline)}"
    prefix = "RESOLVED " if status == "resolved" else ""
    return f"{prefix}[{rule.severity}] {rule.name}: {what} on {where}"


def build_alert(*, rule: Rule, status: str, scope: Mapping[str, str], the_alert_id: str, window: tuple[float, float],
                x: int, n: int, baseline: float | None, threshold: float | None, p_value: float | None,
                statistic: float | None, reasons: Mapping[str, int], affected: int,
                fired_at: float | None, extra: Mapping[str, Any] | None = None,
                detected_at: float | None = None) -> dict:
    metric = METRICS[rule.metric]
    observed = {"rate": (x / n if n else None) if not metric.is_volume else None, "events": int(x), "total": int(n)}
    alert = {
        "alert_id": the_alert_id,
        "dedup_key": dedup_key(rule, scope),
        "status": status,
        "severity": rule.severity,
        "rule": rule.name,
        "category": rule.category,
        "scope": dict(scope),
        "metric": rule.metric,
        "observed": observed,
        "baseline": baseline,
        "threshold": threshold,
        "test": rule.test,
        "p_value": p_value,
        "statistic": statistic,
        "window": {"start": window[0], "end": window[1]},
        "detected_at": window[1] if detected_at is None else detected_at,
        "fired_at": fired_at,
        "summary": summary(rule, status, scope, observed, baseline),
        "description": rule.description,
        "evidence": {
            "top_reasons": top_reasons(reasons, metric.numerator),
            "affected_recipients": int(affected),
            **{k: _json_safe(v) for k, v in (extra or {}).items()},
        },
        "runbook": runbook(rule.category),
    }
    return alert
