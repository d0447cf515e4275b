"""Microsoft Teams via a Workflows (Power Automate) webhook: a message whose attachment is an Adaptive Card.

The legacy Office 365 connector "MessageCard" format is retired; workflow webhooks expect
``{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", ...}]}``.
"""
from __future__ import annotations

from alerting import render
from alerting.receivers.base import Notifier

_COLOR = {"critical": "Attention", "warning": "Warning", "info": "Accent"}


def teams_message(alert: dict, dashboard_url: str | None = None, router_url: str | None = None) -> dict:
    resolved = render.is_resolved(alert)
    body = [
        {"type": "TextBlock", "text": render.title(alert), "weight": "Bolder", "size": "Large", "wrap": True,
         "color": "Good" if resolved else _COLOR.get(alert.get("severity"), "Default")},
        {"type": "TextBlock", "text": render.what(alert), "wrap": True},
        {"type": "FactSet", "facts": [
            {"title": "Where", "value": render.where(alert)},
            {"title": "How bad", "value": render.how_bad(alert)},
            {"title": "Since", "value": render.since(alert)},
            {"title": "Category", "value": str(alert.get("category"))},
            {"title": "Dedup key", "value": str(alert.get("dedup_key"))},
        ]},
    ]
    steps = render.runbook(alert)
    if steps and not resolved:
        body.append({"type": "TextBlock", "text": "Runbook", "weight": "Bolder", "wrap": True})
        body += [{"type": "TextBlock", "text": f"{i}. {s}", "wrap": True, "spacing": "None"}
                 for i, s in enumerate(steps, 1)]
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4", "body": body}
    links = render.links(alert, dashboard_url, router_url)
    if links:
        card["actions"] = [{"type": "Action.OpenUrl", "title": text, "url": url} for text, url in links]
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


class TeamsNotifier(Notifier):
    kind = "msteams"

    async def notify(self, alert, session, group=None):
        await self.post_json(session, self.secrets["url"].reveal(),
                             teams_message(alert, self.ctx.dashboard_url, self.ctx.router_url))
