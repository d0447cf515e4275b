"""Minimal shape check of an alert value before routing; a bad one is dead-lettered, never crashes the router."""
from __future__ import annotations

STATUSES = ("firing", "resolved")
SEVERITIES = ("critical", "warning", "info")


def alert_problems(alert) -> list[str]:
    if not isinstance(alert, dict):
        return [f"alert must be a JSON object, got {type(alert).__name__}"]
    problems = []
    for key in ("alert_id", "dedup_key", "rule", "category"):
        if not isinstance(alert.get(key), str) or not alert.get(key):
            problems.append(f"{key} must be a non-empty string")
    if alert.get("status") not in STATUSES:
        problems.append(f"status must be one of {', '.join(STATUSES)}")
    if alert.get("severity") not in SEVERITIES:
        problems.append(f"severity must be one of {', '.join(SEVERITIES)}")
    if alert.get("scope") is not None and not isinstance(alert.get("scope"), dict):
        problems.append("scope must be an object")
    if alert.get("detected_at") is not None and not isinstance(alert.get("detected_at"), (int, float)):
        problems.append("detected_at must be a number (Unix seconds)")
    return problems
