"""Human text for an alert, shared by every receiver: what, where, how bad, since when, runbook, links.

Receivers differ in markup (Block Kit, Adaptive Card, plain mail) but must tell the on-call person the same
facts; keeping the wording here keeps them consistent. Runbook steps come from the alert (the engine attaches
them); this module only renders them.
"""
from __future__ import annotations

from datetime import datetime, timezone

from alerting.labels import SCOPE_KEYS


def iso(ts: float | None) -> str:
    """RFC 3339 / ISO 8601 UTC with milliseconds (what PagerDuty and Alertmanager expect)."""
    if ts is None:
        ts = datetime.now(timezone.utc).timestamp()
    return datetime.fromtimestamp(float(ts), timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_resolved(alert: dict) -> bool:
    return alert.get("status") == "resolved"


def title(alert: dict) -> str:
    state = "RESOLVED" if is_resolved(alert) else "FIRING"
    return f"[{state}] [{str(alert.get('severity', '?')).upper()}] {alert.get('rule', 'alert')}"


def what(alert: dict) -> str:
    return str(alert.get("summary") or f"{alert.get('metric', 'metric')} anomaly ({alert.get('rule')})")


def where(alert: dict) -> str:
    scope = alert.get("scope") or {}
    parts = [f"{k}={scope[k]}" for k in SCOPE_KEYS if scope.get(k) not in (None, "")]
    parts += [f"{k}={v}" for k, v in sorted(scope.items()) if k not in SCOPE_KEYS and v not in (None, "")]
    return " ".join(parts) or "all traffic"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def how_bad(alert: dict) -> str:
    observed = alert.get("observed") or {}
    parts = []
    rate = observed.get("rate")
    baseline = alert.get("baseline")
    if rate is not None:
        text = f"{alert.get('metric', 'rate')} {rate:.2%}" if isinstance(rate, (int, float)) else f"rate {rate}"
        if isinstance(baseline, (int, float)):
            text += f" vs baseline {baseline:.2%}"
        parts.append(text)
    if observed.get("events") is not None and observed.get("total") is not None:
        parts.append(f"{observed['events']}/{observed['total']} messages")
    if alert.get("statistic") is not None:
        stat = f"{alert.get('test', 'test')} statistic {_fmt(alert['statistic'])}"
        if alert.get("threshold") is not None:
            stat += f" (threshold {_fmt(alert['threshold'])})"
        parts.append(stat)
    if alert.get("p_value") is not None:
        parts.append(f"p={_fmt(alert['p_value'])}")
    affected = (alert.get("evidence") or {}).get("affected_recipients")
    if affected is not None:
        parts.append(f"{affected} recipients affected")
    return "; ".join(parts) or f"severity {alert.get('severity')}"


def since(alert: dict) -> str:
    window = alert.get("window") or {}
    start = window.get("start", alert.get("detected_at"))
    return f"{iso(start)} (detected {iso(alert.get('detected_at'))})"


def top_reasons(alert: dict, limit: int = 3) -> list[str]:
    reasons = (alert.get("evidence") or {}).get("top_reasons") or []
    out = []
    for r in reasons[:limit]:
        code = r.get("smtp_code")
        out.append(f"{code} {r.get('reason', '')} x{r.get('count', '?')}".strip() if code else
                   f"{r.get('reason', '')} x{r.get('count', '?')}")
    return out


def runbook(alert: dict) -> list[str]:
    steps = alert.get("runbook") or []
    return [str(s) for s in steps] if isinstance(steps, list) else [str(steps)]


class _Default(dict):
    def __missing__(self, key):
        return ""


def links(alert: dict, dashboard_url: str | None = None, router_url: str | None = None) -> list[tuple[str, str]]:
    """(text, url) pairs: the dashboard for this scope and the router's alert page, when configured."""
    out = []
    labels = {**(alert.get("scope") or {}), "rule": alert.get("rule", ""), "category": alert.get("category", ""),
              "severity": alert.get("severity", "")}
    if dashboard_url:
        out.append(("Dashboard", dashboard_url.format_map(_Default({k: str(v) for k, v in labels.items()}))))
    if router_url:
        from urllib.parse import quote
        out.append(("Alert status", f"{router_url.rstrip('/')}/alerts/{quote(str(alert.get('dedup_key', '')), safe='')}"))
    return out


def ack_hint(alert: dict, router_url: str | None) -> str:
    target = router_url or "$DDETECT_ROUTER_URL"
    return f"ddetect ack '{alert.get('dedup_key', '')}' --router {target}"


def plain_text(alert: dict, dashboard_url: str | None = None, router_url: str | None = None) -> str:
    """The full message as plain text (email body, fallbacks)."""
    lines = [title(alert), "", f"What:      {what(alert)}", f"Where:     {where(alert)}",
             f"How bad:   {how_bad(alert)}", f"Since:     {since(alert)}",
             f"Category:  {alert.get('category', '?')}", f"Dedup key: {alert.get('dedup_key', '')}"]
    reasons = top_reasons(alert)
    if reasons:
        lines += ["", "Top reasons:"] + [f"  - {r}" for r in reasons]
    steps = runbook(alert)
    if steps and not is_resolved(alert):
        lines += ["", "Runbook:"] + [f"  {i}. {s}" for i, s in enumerate(steps, 1)]
    for text, url in links(alert, dashboard_url, router_url):
        lines.append(f"{text}: {url}")
    if not is_resolved(alert) and alert.get("severity") == "critical":
        lines += ["", f"Acknowledge (stops escalation): {ack_hint(alert, router_url)}"]
    return "\n".join(lines) + "\n"
