"""Slack incoming webhook with a Block Kit message: what, where, how bad, since when, runbook, links.

Block Kit limits (header 150 chars, section text 3000, field text 2000) are enforced here, because Slack
answers 400 ``invalid_blocks`` to an over-long block and that would dead-letter the page.
"""
from __future__ import annotations

from alerting import render
from alerting.receivers.base import Notifier

_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_message(alert: dict, dashboard_url: str | None = None, router_url: str | None = None,
                  channel: str | None = None, username: str | None = None) -> dict:
    resolved = render.is_resolved(alert)
    emoji = ":white_check_mark:" if resolved else _EMOJI.get(alert.get("severity"), ":warning:")
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(f"{render.title(alert)}", 150), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(f"{emoji} *{render.what(alert)}*", 3000)}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": _cut(f"*Where*\n{render.where(alert)}", 2000)},
            {"type": "mrkdwn", "text": _cut(f"*How bad*\n{render.how_bad(alert)}", 2000)},
            {"type": "mrkdwn", "text": _cut(f"*Since*\n{render.since(alert)}", 2000)},
            {"type": "mrkdwn", "text": _cut(f"*Category / severity*\n{alert.get('category')} / "
                                            f"{alert.get('severity')}", 2000)},
        ]},
    ]
    reasons = render.top_reasons(alert)
    if reasons:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(
            "*Top reasons*\n" + "\n".join(f"• {r}" for r in reasons), 3000)}})
    steps = render.runbook(alert)
    if steps and not resolved:
        blocks.append({"type": "divider"})
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(
            "*Runbook*\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1)), 3000)}})
    links = render.links(alert, dashboard_url, router_url)
    if links:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": _cut(text, 75)}, "url": url[:3000]}
            for text, url in links[:5]]})
    context = f"dedup_key `{alert.get('dedup_key', '')}`"
    if not resolved and alert.get("severity") == "critical":
        context += f" · ack: `{render.ack_hint(alert, router_url)}`"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(context, 3000)}]})
    message = {"text": _cut(f"{render.title(alert)}: {render.what(alert)}", 3000), "blocks": blocks}
    if channel:
        message["channel"] = channel
    if username:
        message["username"] = username
    return message


class SlackNotifier(Notifier):
    kind = "slack"

    async def notify(self, alert, session, group=None):
        s = self.integration.settings
        body = slack_message(alert, self.ctx.dashboard_url, self.ctx.router_url, s.get("channel"), s.get("username"))
        await self.post_json(session, self.secrets["url"].reveal(), body)
