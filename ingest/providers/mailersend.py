"""MailerSend webhooks: ``{type: "activity.<x>", data{id, created_at, email{...}, morph{...}}}`` (§8).

Unique open/click variants are skipped (the plain ones are already counted).
"""
from __future__ import annotations

from ..smtp import classify_text
from ..timeparse import to_unix_seconds
from .common import Context, ParseResult, PayloadError, Skip, check_content_type, load_json, run_each, strict

NAME = "mailersend"
CONTENT_TYPES = ("application/json",)
DEFAULT_CAMPAIGN_FIELDS = ("data.email.tags", "data.email.message.campaign")
OUTAGE_STATUS = 503

TYPES = {"sent": "accepted", "delivered": "delivered", "soft_bounced": "bounced", "hard_bounced": "bounced",
         "spam_complaint": "complained", "unsubscribed": "unsubscribed", "opened": "opened",
         "clicked": "clicked"}

#: Webhook events (Domains -> Webhooks) -> canonical types they post.
SUBSCRIPTIONS = {
    "activity.sent": ("accepted",), "activity.delivered": ("delivered",),
    "activity.hard_bounced": ("bounced",), "activity.soft_bounced": ("bounced",),
    "activity.spam_complaint": ("complained",), "activity.opened": ("opened",),
    "activity.clicked": ("clicked",), "activity.unsubscribed": ("unsubscribed",),
}


def _one(ctx: Context, raw: dict) -> list[dict]:
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise PayloadError("type: missing")
    short = kind.removeprefix("activity.")
    if not kind.startswith("activity.") or short not in TYPES:
        raise Skip(kind)
    data = raw.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("email"), dict):
        raise PayloadError("data.email: missing")
    email = data["email"]
    etype, bclass, reason, code = TYPES[short], None, None, None
    morph = data.get("morph") if isinstance(data.get("morph"), dict) else {}
    if etype == "bounced":
        reason = morph.get("reason") if isinstance(morph.get("reason"), str) else None
        guess, code = classify_text(reason)
        bclass = "block" if guess == "block" else ("hard" if short == "hard_bounced" else "soft")
    recipient = (email.get("recipient") or {}).get("email") if isinstance(email.get("recipient"), dict) else None
    message = email.get("message") if isinstance(email.get("message"), dict) else {}
    eid = data.get("id")
    return [ctx.event(
        raw_for_campaign=raw, recipient=recipient, recipient_field="data.email.recipient.email",
        type=etype, timestamp=to_unix_seconds(data.get("created_at"), "data.created_at"),
        provider_id=f"{eid}:{short}" if eid else None, bounce_class=bclass, smtp_code=code,
        reason=reason, message_id=message.get("id"),
    )]


def normalize(body: bytes, content_type: str, config) -> ParseResult:
    check_content_type(content_type, CONTENT_TYPES)
    ctx = Context(NAME, config, DEFAULT_CAMPAIGN_FIELDS)
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise PayloadError("body must be one JSON object (MailerSend sends one event per request)")
    return run_each([doc], lambda raw: _one(ctx, raw))


def parse(body: bytes, content_type: str, config) -> list[dict]:
    return strict(normalize(body, content_type, config))
