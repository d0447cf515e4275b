"""PagerDuty Events API v2: ``trigger`` on firing, ``resolve`` on resolved, with our ``dedup_key``.

PagerDuty deduplicates by ``dedup_key`` server-side, so a re-sent trigger after a crash never opens a second
incident. Our severities map onto PD's four (critical, error, warning, info); ``summary`` is capped at 1024.
"""
from __future__ import annotations

from alerting import render
from alerting.labels import alert_labels
from alerting.receivers.base import Notifier

SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}


def pagerduty_event(alert: dict, routing_key: str, source: str = "ddetect", group: str | None = None,
                    client: str | None = None, client_url: str | None = None,
                    dashboard_url: str | None = None, router_url: str | None = None) -> dict:
    event = {"routing_key": routing_key, "dedup_key": str(alert["dedup_key"])[:255]}
    if render.is_resolved(alert):
        event["event_action"] = "resolve"
        return event
    scope = alert.get("scope") or {}
    event["event_action"] = "trigger"
    event["payload"] = {
        "summary": render.what(alert)[:1024],
        "source": str(scope.get("sending_domain") or source),
        "severity": SEVERITY.get(alert.get("severity"), "warning"),
        "timestamp": render.iso(alert.get("detected_at")),
        "component": str(alert.get("metric") or alert.get("rule") or "deliverability"),
        "group": group or str(alert.get("category") or "deliverability"),
        "class": str(alert.get("rule") or "deliverability"),
        "custom_details": {
            "where": render.where(alert), "how_bad": render.how_bad(alert), "since": render.since(alert),
            "labels": alert_labels(alert), "observed": alert.get("observed"), "baseline": alert.get("baseline"),
            "top_reasons": render.top_reasons(alert), "runbook": render.runbook(alert),
            "alert_id": alert.get("alert_id"),
        },
    }
    links = render.links(alert, dashboard_url, router_url)
    if links:
        event["links"] = [{"href": url, "text": text} for text, url in links]
    if client:
        event["client"] = client
    if client_url:
        event["client_url"] = client_url
    return event


class PagerDutyNotifier(Notifier):
    kind = "pagerduty"

    async def notify(self, alert, session, group=None):
        s = self.integration.settings
        body = pagerduty_event(alert, self.secrets["routing_key"].reveal(), self.ctx.source, group,
                               s.get("client"), s.get("client_url"), self.ctx.dashboard_url, self.ctx.router_url)
        await self.post_json(session, s["url"], body)
