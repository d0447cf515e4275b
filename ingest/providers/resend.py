"""Resend webhooks (sent through Svix): ``{type, created_at, data{email_id, to[], ...}}`` (§8).

One event per recipient in ``data.to``. A bounce whose message says the address is on
Resend's suppression list is ``dropped`` (Resend refused to send; it does not count
toward the bounce rate); otherwise ``bounce.type`` Permanent/Transient when present,
else hard. Contact and domain events are skipped.
"""
from __future__ import annotations

from ..smtp import parse_smtp
from ..timeparse import to_unix_seconds
from .common import Context, ParseResult, PayloadError, Skip, check_content_type, load_json, run_each, strict

NAME = "resend"
CONTENT_TYPES = ("application/json",)
DEFAULT_CAMPAIGN_FIELDS = ("data.tags.campaign", "data.tags.category")
OUTAGE_STATUS = 503  # Svix retries any non-2xx over ~28 h

TYPES = {"email.sent": "accepted", "email.delivered": "delivered", "email.delivery_delayed": "deferred",
         "email.bounced": "bounced", "email.complained": "complained", "email.opened": "opened",
         "email.clicked": "clicked", "email.failed": "dropped"}

#: Webhook events (Webhooks -> Add endpoint) -> canonical types they post.
SUBSCRIPTIONS = {
    "email.sent": ("accepted",), "email.delivered": ("delivered",), "email.bounced": ("bounced", "dropped"),
    "email.complained": ("complained",), "email.delivery_delayed": ("deferred",),
    "email.failed": ("dropped",), "email.opened": ("opened",), "email.clicked": ("clicked",),
}


def _one(ctx: Context, raw: dict) -> list[dict]:
    kind = raw.get("type")
    if isinstance(kind, str) and not kind.startswith("email."):
        raise Skip(kind)
    if kind not in TYPES:
        if isinstance(kind, str):
            raise Skip(kind)  # newer email.* types without a canonical meaning (e.g. scheduled)
        raise PayloadError("type: missing")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise PayloadError("data: missing")
    etype, bclass, reason, code = TYPES[kind], None, None, None
    if etype == "bounced":
        bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
        reason = bounce.get("message") if isinstance(bounce.get("message"), str) else None
        # The message is prose ("...impact on your reputation"), so only an explicit
        # x.7.x enhanced code means block; keyword guessing would misfire.
        code, enhanced = parse_smtp(reason)
        policy = bool(enhanced) and enhanced.split(".")[1] == "7"
        if reason and "suppress" in reason.lower():
            etype = "dropped"
        elif policy:
            bclass = "block"
        else:
            bclass = "soft" if bounce.get("type") == "Transient" else "hard"
    to = data.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to:
        raise PayloadError("data.to: missing recipients")
    ts = to_unix_seconds(raw.get("created_at") or data.get("created_at"), "created_at")
    eid = data.get("email_id")
    return [ctx.event(
        raw_for_campaign=raw, recipient=addr, recipient_field=f"data.to[{i}]", type=etype, timestamp=ts,
        provider_id=f"{eid}:{kind}:{ts}:{i}" if eid else None, bounce_class=bclass, smtp_code=code,
        reason=reason, message_id=eid, sending_domain=data.get("from"),
    ) for i, addr in enumerate(to)]


def normalize(body: bytes, content_type: str, config) -> ParseResult:
    check_content_type(content_type, CONTENT_TYPES)
    ctx = Context(NAME, config, DEFAULT_CAMPAIGN_FIELDS)
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise PayloadError("body must be one JSON object (Resend sends one event per request)")
    return run_each([doc], lambda raw: _one(ctx, raw))


def parse(body: bytes, content_type: str, config) -> list[dict]:
    return strict(normalize(body, content_type, config))
