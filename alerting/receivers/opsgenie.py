"""Opsgenie Alert API: create with ``alias = dedup_key`` on firing, close by alias on resolved.

Opsgenie deduplicates open alerts by alias, so a retried create is harmless. Field limits from the API docs:
message 130 chars, alias 512, description 15000; priority P1 (critical) .. P5 (info).
"""
from __future__ import annotations

from urllib.parse import quote

from alerting import render
from alerting.receivers.base import Notifier

PRIORITY = {"critical": "P1", "warning": "P3", "info": "P5"}


def opsgenie_create(alert: dict, source: str = "ddetect", team: str | None = None,
                    tags: list[str] | None = None) -> dict:
    scope = alert.get("scope") or {}
    body = {
        "message": render.what(alert)[:130],
        "alias": str(alert["dedup_key"])[:512],
        "description": render.plain_text(alert)[:15000],
        "priority": PRIORITY.get(alert.get("severity"), "P3"),
        "source": source,
        "entity": render.where(alert)[:512],
        "tags": [t for t in [alert.get("category"), alert.get("severity"), alert.get("rule"), *(tags or [])] if t],
        "details": {k: str(v) for k, v in {**scope, "rule": alert.get("rule"), "alert_id": alert.get("alert_id"),
                                           "how_bad": render.how_bad(alert)}.items() if v is not None},
    }
    if team:
        body["responders"] = [{"type": "team", "name": team}]
    return body


class OpsgenieNotifier(Notifier):
    kind = "opsgenie"

    async def notify(self, alert, session, group=None):
        s = self.integration.settings
        base = s["api_url"].rstrip("/")
        headers = {"Authorization": f"GenieKey {self.secrets['api_key'].reveal()}"}
        if render.is_resolved(alert):
            url = f"{base}/v2/alerts/{quote(str(alert['dedup_key']), safe='')}/close?identifierType=alias"
            await self.post_json(session, url, {"source": self.ctx.source, "note": render.what(alert)}, headers)
        else:
            await self.post_json(session, f"{base}/v2/alerts",
                                 opsgenie_create(alert, self.ctx.source, s.get("team"), s.get("tags")), headers)
