"""Brevo (ex-Sendinblue) transactional webhooks: one object, or an array when batched (§7).

No event id: the id is ``message-id`` + event + event time. ``invalid_email`` -> hard;
``blocked`` and ``error`` -> dropped (Brevo refused to send).
"""
from __future__ import annotations

from ..smtp import classify_text
from ..timeparse import to_unix_seconds
from .common import Context, ParseResult, PayloadError, Skip, as_list, check_content_type, load_json, run_each, strict

NAME = "brevo"
CONTENT_TYPES = ("application/json",)
DEFAULT_CAMPAIGN_FIELDS = ("tags", "tag")
OUTAGE_STATUS = 429  # Brevo retries only 429 and timeouts; other 4xx and all 5xx discard

TYPES = {"request": "accepted", "sent": "accepted", "delivered": "delivered", "hard_bounce": "bounced",
         "invalid_email": "bounced", "soft_bounce": "bounced", "blocked": "dropped", "error": "dropped",
         "spam": "complained", "complaint": "complained", "deferred": "deferred",
         "opened": "opened", "unique_opened": "opened", "proxy_open": "opened",
         "unique_proxy_open": "opened", "click": "clicked", "unsubscribe": "unsubscribed",
         "unsubscribed": "unsubscribed"}
#: Transactional webhook events (Transactional -> Settings -> Webhooks) -> canonical types.
SUBSCRIPTIONS = {
    "Sent": ("accepted",), "Delivered": ("delivered",), "Hard Bounced": ("bounced",),
    "Soft Bounced": ("bounced",), "Invalid Email": ("bounced",), "Spam": ("complained",),
    "Deferred": ("deferred",), "Blocked": ("dropped",), "Error": ("dropped",), "Opened": ("opened",),
    "Clicked": ("clicked",), "Unsubscribed": ("unsubscribed",),
}
SKIPPED = {"list_addition", "contact_updated", "contact_deleted"}


def _one(ctx: Context, raw: dict) -> list[dict]:
    kind = raw.get("event")
    if kind in SKIPPED:
        raise Skip(kind)
    if kind not in TYPES:
        raise PayloadError("event: unknown Brevo event type" if isinstance(kind, str) else "event: missing")
    etype, bclass = TYPES[kind], None
    reason = raw.get("reason") if isinstance(raw.get("reason"), str) else None
    guess, code = classify_text(reason)
    if etype == "bounced":
        if kind in ("hard_bounce", "invalid_email"):
            bclass = "block" if guess == "block" else "hard"
        else:
            bclass = "block" if guess == "block" else "soft"
    for key in ("ts_epoch", "ts_event", "ts"):
        if raw.get(key) is not None:
            ts = to_unix_seconds(raw[key], key)
            break
    else:
        raise PayloadError("ts_epoch/ts_event/ts: missing")
    mid = raw.get("message-id")
    return [ctx.event(
        raw_for_campaign=raw, recipient=raw.get("email"), recipient_field="email", type=etype,
        timestamp=ts, provider_id=f"{mid}:{kind}:{ts}" if mid else None, bounce_class=bclass,
        smtp_code=code, reason=reason if etype in ("bounced", "deferred", "dropped") else None,
        message_id=mid,
    )]


def normalize(body: bytes, content_type: str, config) -> ParseResult:
    check_content_type(content_type, CONTENT_TYPES)
    ctx = Context(NAME, config, DEFAULT_CAMPAIGN_FIELDS)
    return run_each(as_list(load_json(body), "event or array of events"), lambda raw: _one(ctx, raw))


def parse(body: bytes, content_type: str, config) -> list[dict]:
    return strict(normalize(body, content_type, config))
