"""The routing labels of an alert: category, severity, rule, status, and the scope keys that are present.

Routing only ever sees these labels, so ``route test`` with the same label=value pairs reproduces a live decision.
"""
from __future__ import annotations

SCOPE_KEYS = ("campaign", "mailbox_provider", "sending_domain", "ip_pool", "recipient_domain")


def alert_labels(alert: dict) -> dict[str, str]:
    labels = {key: str(alert[key]) for key in ("category", "severity", "rule") if alert.get(key) is not None}
    scope = alert.get("scope") or {}
    for key in SCOPE_KEYS:
        if scope.get(key) not in (None, ""):
            labels[key] = str(scope[key])
    return labels


def group_key(group_by: tuple[str, ...], labels: dict[str, str], dedup_key: str) -> str:
    """The notification group of an alert: its ``group_by`` label values (``...`` = every label = the alert)."""
    if not group_by or "..." in group_by:
        return dedup_key
    return ",".join(f"{name}={labels.get(name, '')}" for name in group_by)
