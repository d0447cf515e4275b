"""Mailjet event API: an array with "group events", else one bare object (§8).

Mailjet ``sent`` means the receiving MTA accepted the message, so it maps to delivered.
``bounce``: ``hard_bounce`` true -> hard, false -> soft (greylisting is retried), spam or
blocklist errors -> block. ``blocked`` (Mailjet refused to send) -> dropped.
"""
from __future__ import annotations

from ..smtp import parse_smtp
from ..timeparse import to_unix_seconds
from .common import Context, ParseResult, PayloadError, Skip, as_list, check_content_type, load_json, run_each, strict

NAME = "mailjet"
CONTENT_TYPES = ("application/json",)
DEFAULT_CAMPAIGN_FIELDS = ("customcampaign", "mj_campaign_id")
OUTAGE_STATUS = 503

TYPES = {"sent": "delivered", "open": "opened", "click": "clicked", "bounce": "bounced",
         "blocked": "dropped", "spam": "complained", "unsub": "unsubscribed"}
#: Event tracking (Account -> Event tracking) -> canonical types they post. Mailjet's "sent"
#: is the receiving MTA's acceptance (delivered); Mailjet posts no send event.
SUBSCRIPTIONS = {
    "sent": ("delivered",), "bounce": ("bounced",), "spam": ("complained",), "blocked": ("dropped",),
    "open": ("opened",), "click": ("clicked",), "unsub": ("unsubscribed",),
}
_BLOCK_WORDS = ("spam", "blacklist", "blocklist", "policy", "reputation")


def _one(ctx: Context, raw: dict) -> list[dict]:
    kind = raw.get("event")
    if kind not in TYPES:
        if isinstance(kind, str):
            raise Skip(kind)
        raise PayloadError("event: missing")
    etype, bclass, reason = TYPES[kind], None, None
    code = None
    if etype == "bounced":
        error = raw.get("error") if isinstance(raw.get("error"), str) else ""
        related = raw.get("error_related_to") if isinstance(raw.get("error_related_to"), str) else ""
        reason = " ".join(p for p in (related, error) if p) or None
        if related == "spam" or any(w in error.lower() for w in _BLOCK_WORDS):
            bclass = "block"
        else:
            bclass = "hard" if raw.get("hard_bounce") is True else "soft"
    elif etype == "dropped":
        reason = raw.get("error") if isinstance(raw.get("error"), str) else None
    elif etype == "delivered":
        code = parse_smtp(raw.get("smtp_reply"))[0]
    ts = to_unix_seconds(raw.get("time"), "time")
    mid = raw.get("MessageID") or raw.get("mj_message_id")
    return [ctx.event(
        raw_for_campaign=raw, recipient=raw.get("email"), recipient_field="email", type=etype,
        timestamp=ts, provider_id=f"{mid}:{kind}:{ts}" if mid else None, bounce_class=bclass,
        smtp_code=code, reason=reason, message_id=mid,
    )]


def normalize(body: bytes, content_type: str, config) -> ParseResult:
    check_content_type(content_type, CONTENT_TYPES)
    ctx = Context(NAME, config, DEFAULT_CAMPAIGN_FIELDS)
    return run_each(as_list(load_json(body), "event or array of events"), lambda raw: _one(ctx, raw))


def parse(body: bytes, content_type: str, config) -> list[dict]:
    return strict(normalize(body, content_type, config))
