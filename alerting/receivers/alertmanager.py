"""Prometheus Alertmanager API v2 (``POST /api/v2/alerts``) so teams reuse their routing, silences, inhibition.

Alertmanager identifies an alert by its label set, so firing and resolved must carry identical labels; a
resolved alert is an alert whose ``endsAt`` is in the past. Label names must match ``[a-zA-Z_][a-zA-Z0-9_]*``.
"""
from __future__ import annotations

import time

from alerting import render
from alerting.labels import alert_labels
from alerting.receivers.base import Notifier


def alertmanager_alerts(alert: dict, generator_url: str | None = None, now: float | None = None) -> list[dict]:
    labels = {"alertname": str(alert.get("rule") or "deliverability"), **alert_labels(alert),
              "dedup_key": str(alert.get("dedup_key"))}
    window = alert.get("window") or {}
    starts = window.get("start", alert.get("detected_at"))
    item = {
        "labels": labels,
        "annotations": {"summary": render.what(alert), "description": render.how_bad(alert),
                        "where": render.where(alert), "runbook": "\n".join(render.runbook(alert)),
                        "alert_id": str(alert.get("alert_id"))},
        "startsAt": render.iso(starts),
    }
    if render.is_resolved(alert):
        end = alert.get("detected_at") or (time.time() if now is None else now)
        end = min(float(end), time.time() if now is None else now)
        item["endsAt"] = render.iso(max(end, float(starts or end)))
    if generator_url:
        item["generatorURL"] = generator_url
    return [item]


class AlertmanagerNotifier(Notifier):
    kind = "alertmanager"

    async def notify(self, alert, session, group=None):
        headers = {}
        if "bearer_token" in self.secrets:
            headers["Authorization"] = f"Bearer {self.secrets['bearer_token'].reveal()}"
        links = render.links(alert, self.ctx.dashboard_url, self.ctx.router_url)
        url = self.integration.settings["url"].rstrip("/") + "/api/v2/alerts"
        await self.post_json(session, url, alertmanager_alerts(alert, links[0][1] if links else None), headers)
