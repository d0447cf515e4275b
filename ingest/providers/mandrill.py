"""Mandrill (Mailchimp Transactional): form-encoded ``mandrill_events`` = JSON array (§6).

No event id: the id is ``msg._id`` + event + ``ts`` (stable across Mandrill's retries).
``bounce_description`` refines the class (spam_related/policy_related -> block,
mailbox_full -> soft, bad_mailbox/invalid_domain -> hard). Sync (allow/deny-list) and
inbound events are skipped.
"""
from __future__ import annotations

import json
from urllib.parse import parse_qs

from ..smtp import parse_smtp
from ..timeparse import to_unix_seconds
from .common import Context, ParseResult, PayloadError, Skip, check_content_type, run_each, strict

NAME = "mandrill"
CONTENT_TYPES = ("application/x-www-form-urlencoded",)
DEFAULT_CAMPAIGN_FIELDS = ("msg.metadata.campaign", "msg.tags")
OUTAGE_STATUS = 503

TYPES = {"send": "accepted", "deferral": "deferred", "hard_bounce": "bounced", "soft_bounce": "bounced",
         "delivered": "delivered", "open": "opened", "click": "clicked", "spam": "complained",
         "unsub": "unsubscribed", "reject": "dropped"}
#: Webhook triggers (Settings -> Webhooks) -> canonical types they post.
SUBSCRIPTIONS = {
    "Message Is Sent (send)": ("accepted",), "Message Is Delivered (delivered)": ("delivered",),
    "Message Is Bounced (hard_bounce)": ("bounced",), "Message Is Soft-Bounced (soft_bounce)": ("bounced",),
    "Message Is Marked As Spam (spam)": ("complained",), "Message Is Delayed (deferral)": ("deferred",),
    "Message Is Rejected (reject)": ("dropped",), "Message Is Opened (open)": ("opened",),
    "Message Is Clicked (click)": ("clicked",), "Message Recipient Unsubscribes (unsub)": ("unsubscribed",),
}
SKIPPED = {"inbound", "whitelist", "blacklist", "sync"}
_DESCRIPTION = {"spam_related": "block", "policy_related": "block", "mailbox_full": "soft",
                "bad_mailbox": "hard", "invalid_domain": "hard", "no_mx": "hard"}


def form_params(body: bytes) -> dict[str, list[str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("body is not UTF-8 text") from None
    try:
        return parse_qs(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        raise PayloadError("body is not valid form encoding") from None


def events_from_form(params: dict[str, list[str]]) -> list:
    values = params.get("mandrill_events")
    if not values:
        raise PayloadError("mandrill_events: missing form field")
    try:
        doc = json.loads(values[0])
    except ValueError:
        raise PayloadError("mandrill_events: not valid JSON") from None
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        raise PayloadError("mandrill_events: must be a JSON array")
    return doc


def _one(ctx: Context, raw: dict) -> list[dict]:
    kind = raw.get("event")
    if kind in SKIPPED or (kind is None and raw.get("type") in SKIPPED | {"whitelist", "blacklist"}):
        raise Skip(str(kind))
    if kind not in TYPES:
        raise PayloadError("event: unknown Mandrill event type" if isinstance(kind, str) else "event: missing")
    msg = raw.get("msg")
    if not isinstance(msg, dict):
        raise PayloadError("msg: missing")
    etype, bclass = TYPES[kind], None
    diag = msg.get("diag") if isinstance(msg.get("diag"), str) else None
    code = parse_smtp(diag)[0]
    if etype == "bounced":
        bclass = _DESCRIPTION.get(msg.get("bounce_description"),
                                  "hard" if kind == "hard_bounce" else "soft")
    ts = to_unix_seconds(raw.get("ts") if raw.get("ts") is not None else msg.get("ts"), "ts")
    mid = msg.get("_id")
    return [ctx.event(
        raw_for_campaign=raw, recipient=msg.get("email"), recipient_field="msg.email", type=etype,
        timestamp=ts, provider_id=f"{mid}:{kind}:{ts}" if mid else None, bounce_class=bclass,
        smtp_code=code, reason=diag if etype in ("bounced", "deferred", "dropped") else None,
        message_id=mid, sending_domain=msg.get("sender"),
    )]


def normalize(body: bytes, content_type: str, config) -> ParseResult:
    check_content_type(content_type, CONTENT_TYPES)
    ctx = Context(NAME, config, DEFAULT_CAMPAIGN_FIELDS)
    return run_each(events_from_form(form_params(body)), lambda raw: _one(ctx, raw))


def parse(body: bytes, content_type: str, config) -> list[dict]:
    return strict(normalize(body, content_type, config))
