"""Postmark webhooks: one JSON object per POST, discriminated by ``RecordType`` (§3).

Bounce ``TypeCode`` follows the official SDK enum (the reference notes a conflicting
docs table): hard 1/100000; soft 2/256/4096/16384; undetermined 2048; block
100006 (Blocked)/100009 (DMARCPolicy)/512 (SpamNotification)/8192 (VirusNotification);
Postmark-side suppressions -> dropped; auto-replies and (un)subscribe notices -> skipped.
Legacy payloads without ``RecordType`` are recognised by their timestamp field.
"""
from __future__ import annotations

from ..smtp import parse_smtp
from ..timeparse import to_unix_seconds
from .common import Context, ParseResult, PayloadError, Skip, check_content_type, load_json, run_each, strict

NAME = "postmark"
CONTENT_TYPES = ("application/json",)
DEFAULT_CAMPAIGN_FIELDS = ("Metadata.campaign", "Tag", "MessageStream")
OUTAGE_STATUS = 503  # 5xx/408/429 are retried; other 4xx drop the event

HARD = {1, 100000}
SOFT = {2, 256, 4096, 16384}
UNDETERMINED = {2048}
BLOCK = {100006, 100009, 512, 8192}
DROPPED = {100001, 100002, 100003, 100007, 100010}
SKIP = {16, 32, 64, 128, 1024, 100008}
#: Webhooks (Server -> Stream -> Webhooks) -> canonical types they post.
SUBSCRIPTIONS = {
    "Delivery": ("delivered",), "Bounce": ("bounced", "dropped"), "Spam Complaint": ("complained",),
    "Open": ("opened",), "Click": ("clicked",), "Subscription Change": ("unsubscribed",),
}
_TIME_FIELD = {"Bounce": "BouncedAt", "SpamComplaint": "BouncedAt", "Delivery": "DeliveredAt",
               "Open": "ReceivedAt", "Click": "ReceivedAt", "SubscriptionChange": "ChangedAt"}


def _record_type(raw: dict) -> str:
    rt = raw.get("RecordType")
    if isinstance(rt, str):
        return rt
    if raw.get("Type") == "SpamComplaint":
        return "SpamComplaint"
    if "BouncedAt" in raw:
        return "Bounce"
    if "DeliveredAt" in raw:
        return "Delivery"
    raise PayloadError("RecordType: missing and not recognisable from the fields")


def _one(ctx: Context, raw: dict) -> list[dict]:
    rt = _record_type(raw)
    if rt not in _TIME_FIELD:
        raise PayloadError("RecordType: unknown Postmark record type")
    bclass = None
    details = raw.get("Details") if isinstance(raw.get("Details"), str) else None
    code = parse_smtp(details)[0] if details else None
    if rt == "Bounce":
        tc = raw.get("TypeCode")
        if not isinstance(tc, int) or isinstance(tc, bool):
            raise PayloadError("TypeCode: missing or not an integer")
        if tc in SKIP:
            raise Skip(rt)
        if tc in DROPPED:
            etype = "dropped"
        else:
            etype = "bounced"
            bclass = ("hard" if tc in HARD else "soft" if tc in SOFT else "block" if tc in BLOCK
                      else "undetermined")
    elif rt == "SubscriptionChange":
        if raw.get("SuppressSending") is not True:
            raise Skip(rt)  # a re-subscription
        etype = "unsubscribed"
    else:
        etype = {"SpamComplaint": "complained", "Delivery": "delivered",
                 "Open": "opened", "Click": "clicked"}[rt]
    tfield = _TIME_FIELD[rt]
    ts = to_unix_seconds(raw.get(tfield), tfield)
    ident = raw.get("ID") if raw.get("ID") is not None else raw.get("MessageID")
    recipient_field = "Email" if "Email" in raw else "Recipient"
    return [ctx.event(
        raw_for_campaign=raw, recipient=raw.get(recipient_field), recipient_field=recipient_field,
        type=etype, timestamp=ts, provider_id=f"{rt}:{ident}:{ts}" if ident is not None else None,
        bounce_class=bclass, smtp_code=code, reason=details if etype != "delivered" else None,
        # No default sending_domain: ``From`` is on Bounce and SpamComplaint, not on Delivery,
        # which would split one domain into a deliveries scope and a bounces-only scope.
        message_id=raw.get("MessageID"),
    )]


def normalize(body: bytes, content_type: str, config) -> ParseResult:
    check_content_type(content_type, CONTENT_TYPES)
    ctx = Context(NAME, config, DEFAULT_CAMPAIGN_FIELDS)
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise PayloadError("body must be one JSON object (Postmark sends one record per request)")
    return run_each([doc], lambda raw: _one(ctx, raw))


def parse(body: bytes, content_type: str, config) -> list[dict]:
    return strict(normalize(body, content_type, config))
