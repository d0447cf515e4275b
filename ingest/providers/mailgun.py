"""Mailgun webhooks: ``{"signature": {...}, "event-data": {...}}``, one event per POST (§2).

``failed`` splits on severity: permanent -> dropped for ``suppress-*`` reasons, block for
``espblock``/``blacklisted`` or policy SMTP codes, else Mailgun's ``bounce-type`` (hard or
soft), else the SMTP class, else hard; temporary -> deferred (a per-attempt signal, Mailgun
keeps retrying); internal -> dropped.
"""
from __future__ import annotations

from ..smtp import classify, parse_smtp
from ..timeparse import to_unix_seconds
from .common import Context, ParseResult, PayloadError, Skip, check_content_type, load_json, run_each, strict

NAME = "mailgun"
CONTENT_TYPES = ("application/json",)
DEFAULT_CAMPAIGN_FIELDS = ("user-variables.campaign", "campaigns.0.name", "campaigns.0.id", "tags")
OUTAGE_STATUS = 503  # anything but 200/406 is retried for 8 h; 406 = "do not retry"

TYPES = {"accepted": "accepted", "delivered": "delivered", "opened": "opened", "clicked": "clicked",
         "unsubscribed": "unsubscribed", "complained": "complained", "rejected": "dropped"}
#: Webhook kinds (Sending -> Webhooks) -> canonical types they post.
SUBSCRIPTIONS = {
    "accepted": ("accepted",), "delivered": ("delivered",), "permanent_fail": ("bounced", "dropped"),
    "complained": ("complained",), "temporary_fail": ("deferred",), "opened": ("opened",),
    "clicked": ("clicked",), "unsubscribed": ("unsubscribed",),
}
_ATTEMPT_TYPES = ("delivered", "bounced", "deferred")
SKIPPED = {"stored", "list_member_uploaded", "list_member_upload_error", "list_uploaded"}


def event_data(doc) -> dict:
    """The event object of a POST body (or a bare event-data object, as in the docs)."""
    if isinstance(doc, dict) and isinstance(doc.get("event-data"), dict):
        return doc["event-data"]
    if isinstance(doc, dict) and "event" in doc:
        return doc
    raise PayloadError("body must be a JSON object with an 'event-data' object")


def _failed(raw: dict) -> tuple[str, str | None, int | None, str | None]:
    status = raw.get("delivery-status") if isinstance(raw.get("delivery-status"), dict) else {}
    message = status.get("message") or status.get("description")
    message = message if isinstance(message, str) else None
    code = status.get("code") if isinstance(status.get("code"), int) else parse_smtp(message)[0]
    enhanced = status.get("enhanced-code") if isinstance(status.get("enhanced-code"), str) else parse_smtp(message)[1]
    severity, reason = raw.get("severity"), raw.get("reason") or ""
    if severity == "temporary":
        return "deferred", None, code, message
    if severity == "internal" or (isinstance(reason, str) and reason.startswith("suppress-")):
        return "dropped", None, code, message
    if reason in ("espblock", "blacklisted"):
        return "bounced", "block", code, message
    guessed = classify(code, enhanced, message)
    if guessed == "block":
        return "bounced", "block", code, message
    bounce_type = status.get("bounce-type")
    if bounce_type in ("hard", "soft"):  # Mailgun's own verdict (a full mailbox is a permanent soft bounce)
        return "bounced", bounce_type, code, message
    if severity == "permanent":
        return "bounced", guessed if guessed in ("hard", "soft") else "hard", code, message
    return "bounced", guessed, code, message


def _one(ctx: Context, raw: dict) -> list[dict]:
    kind = raw.get("event")
    if kind in SKIPPED:
        raise Skip(kind)
    bclass, code, reason = None, None, None
    if kind == "failed":
        etype, bclass, code, reason = _failed(raw)
    elif kind in TYPES:
        etype = TYPES[kind]
        if etype == "delivered" and isinstance(raw.get("delivery-status"), dict):
            code = raw["delivery-status"].get("code") if isinstance(raw["delivery-status"].get("code"), int) else None
    else:
        raise PayloadError("event: unknown Mailgun event type" if isinstance(kind, str) else "event: missing")
    headers = (raw.get("message") or {}).get("headers") or {}
    domain = raw.get("domain") if isinstance(raw.get("domain"), dict) else {}
    envelope = raw.get("envelope") if isinstance(raw.get("envelope"), dict) else {}
    eid = raw.get("id")
    status = raw.get("delivery-status") if isinstance(raw.get("delivery-status"), dict) else {}
    return [ctx.event(
        raw_for_campaign=raw, recipient=raw.get("recipient"), recipient_field="event-data.recipient",
        type=etype, timestamp=to_unix_seconds(raw.get("timestamp"), "event-data.timestamp"),
        provider_id=eid if isinstance(eid, str) and eid else None, bounce_class=bclass,
        smtp_code=code, reason=reason, message_id=headers.get("message-id"),
        sending_domain=domain.get("name") or envelope.get("sender"),
        # The sending IP is on every delivery attempt's outcome (delivered, failed, complained);
        # Mailgun names no pool in its events.
        ip_pool=envelope.get("sending-ip"),
        attempt=status.get("attempt-no") if etype in _ATTEMPT_TYPES else None,
    )]


def normalize(body: bytes, content_type: str, config) -> ParseResult:
    check_content_type(content_type, CONTENT_TYPES)
    ctx = Context(NAME, config, DEFAULT_CAMPAIGN_FIELDS)
    return run_each([event_data(load_json(body))], lambda raw: _one(ctx, raw))


def parse(body: bytes, content_type: str, config) -> list[dict]:
    return strict(normalize(body, content_type, config))
