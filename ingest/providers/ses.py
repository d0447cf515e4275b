"""Amazon SES events through an SNS HTTPS subscription (§4).

The body is an SNS envelope whose ``Message`` is the SES JSON as a string. Both SES
event publishing (``eventType``) and identity notifications (``notificationType``) are
accepted; a bare SES event (raw message delivery, or a docs sample fed to ``ddetect
normalize``) is accepted too, but the server only lets it through when SES
authentication is explicitly disabled, since without the envelope there is no signature.
SubscriptionConfirmation / UnsubscribeConfirmation carry no events (the server handles
them in :mod:`ingest.auth.sns`).
"""
from __future__ import annotations

import json

from ..campaign import lookup
from ..smtp import classify, parse_smtp
from ..timeparse import to_unix_seconds
from .common import Context, ParseResult, PayloadError, Skip, check_content_type, load_json, run_each, strict

NAME = "ses"
CONTENT_TYPES = ("text/plain", "application/json")
DEFAULT_CAMPAIGN_FIELDS = ("mail.tags.campaign", "mail.tags.ses:configuration-set")
OUTAGE_STATUS = 503  # SNS retries only 5xx/timeouts; any 4xx counts as delivered

#: Configuration set event destination types (SNS) -> canonical types they post.
SUBSCRIPTIONS = {
    "Sends": ("accepted",), "Deliveries": ("delivered",), "Hard bounces": ("bounced", "dropped"),
    "Complaints": ("complained",), "Delivery delays": ("deferred",), "Rejects": ("dropped",),
    "Rendering failures": ("dropped",), "Opens": ("opened",), "Clicks": ("clicked",),
    "Subscriptions": ("unsubscribed",),
}
SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_DROPPED_SUBTYPES = {"Suppressed", "OnAccountSuppressionList"}
_BLOCK_SUBTYPES = {"ContentRejected", "AttachmentRejected"}


def ses_event_from_envelope(doc: dict) -> tuple[dict | None, str | None]:
    """(SES event, SNS MessageId) from a parsed body; (None, None) for handshake messages."""
    if "Type" in doc:
        kind = doc.get("Type")
        if kind not in SNS_TYPES:
            raise PayloadError("Type: not an SNS message type")
        if kind != "Notification":
            return None, None
        message = doc.get("Message")
        if not isinstance(message, str):
            raise PayloadError("Message: missing")
        try:
            event = json.loads(message)
        except ValueError:
            raise PayloadError("Message: not SES event JSON") from None
        if not isinstance(event, dict):
            raise PayloadError("Message: not an SES event object")
        mid = doc.get("MessageId")
        return event, mid if isinstance(mid, str) else None
    if "eventType" in doc or "notificationType" in doc:
        return doc, None
    raise PayloadError("body is neither an SNS message nor an SES event")


def _recipients(obj: dict, key: str, where: str) -> list[dict]:
    items = obj.get(key)
    if not isinstance(items, list) or not items:
        raise PayloadError(f"{where}: missing recipients")
    return [it if isinstance(it, dict) else {"emailAddress": it} for it in items]


def _events(ctx: Context, ev: dict, sns_id: str | None) -> list[dict]:
    kind = ev.get("eventType") or ev.get("notificationType")
    mail = ev.get("mail")
    if not isinstance(mail, dict):
        raise PayloadError("mail: missing")
    # mail.source is on every event type (publishing and notifications); the ses:from-domain
    # tag is not on DeliveryDelay, so preferring it would split a domain by event type.
    sending_domain = mail.get("source")
    # The configuration set (every event-publishing event carries it) is the pool identity:
    # SES assigns a dedicated IP pool per configuration set. ses:outgoing-ip is on Delivery only.
    ip_pool = lookup(mail, "tags.ses:configuration-set")
    base_id = sns_id or mail.get("messageId")
    rows: list[tuple[dict, str, str | None, int | None, str | None, float]] = []

    def ts_of(obj: dict | None, where: str) -> float:
        value = obj.get("timestamp") if isinstance(obj, dict) else None
        return to_unix_seconds(value if value is not None else mail.get("timestamp"), where)

    destination = [{"emailAddress": a} for a in mail.get("destination") or []]
    if kind == "Bounce":
        b = ev.get("bounce") or {}
        btype, sub = b.get("bounceType"), b.get("bounceSubType")
        ts = ts_of(b, "bounce.timestamp")
        for r in _recipients(b, "bouncedRecipients", "bounce.bouncedRecipients"):
            diag = r.get("diagnosticCode") if isinstance(r.get("diagnosticCode"), str) else None
            code, enhanced = parse_smtp(diag)
            enhanced = r.get("status") if isinstance(r.get("status"), str) and r["status"][:1] in "45" else enhanced
            guess = classify(code, enhanced, diag)
            if btype == "Permanent" and sub in _DROPPED_SUBTYPES:
                rows.append((r, "dropped", None, code, diag, ts))
                continue
            if btype == "Permanent":
                bclass = "block" if guess == "block" else "hard"
            elif btype == "Transient":
                bclass = "block" if sub in _BLOCK_SUBTYPES or guess == "block" else "soft"
            else:
                bclass = "undetermined"
            rows.append((r, "bounced", bclass, code, diag, ts))
    elif kind == "Complaint":
        c = ev.get("complaint") or {}
        if c.get("complaintFeedbackType") == "not-spam":
            raise Skip(kind)
        ts = ts_of(c, "complaint.timestamp")
        rows = [(r, "complained", None, None, None, ts)
                for r in _recipients(c, "complainedRecipients", "complaint.complainedRecipients")]
    elif kind == "Delivery":
        d = ev.get("delivery") or {}
        resp = d.get("smtpResponse") if isinstance(d.get("smtpResponse"), str) else None
        ts = ts_of(d, "delivery.timestamp")
        rows = [(r, "delivered", None, parse_smtp(resp)[0], None, ts)
                for r in _recipients(d, "recipients", "delivery.recipients")]
    elif kind == "DeliveryDelay":
        d = ev.get("deliveryDelay") or {}
        ts = ts_of(d, "deliveryDelay.timestamp")
        for r in _recipients(d, "delayedRecipients", "deliveryDelay.delayedRecipients"):
            diag = r.get("diagnosticCode") if isinstance(r.get("diagnosticCode"), str) else None
            rows.append((r, "deferred", None, parse_smtp(diag)[0], diag, ts))
    elif kind in ("Send", "Reject", "Open", "Click", "Rendering Failure", "Subscription"):
        etype = {"Send": "accepted", "Reject": "dropped", "Open": "opened", "Click": "clicked",
                 "Rendering Failure": "dropped", "Subscription": "unsubscribed"}[kind]
        detail = ev.get({"Open": "open", "Click": "click", "Subscription": "subscription",
                         "Reject": "reject"}.get(kind, "send")) or {}
        if kind == "Subscription":
            prefs = detail.get("newTopicPreferences") or {}
            opted_out = prefs.get("unsubscribeAll") is True or any(
                isinstance(t, dict) and t.get("subscriptionStatus") == "OptOut"
                for t in prefs.get("topicSubscriptionStatus") or [])
            if not opted_out:
                raise Skip(kind)
        reason = detail.get("reason") if kind == "Reject" else None
        ts = ts_of(detail if kind in ("Open", "Click", "Subscription") else None, f"{kind}.timestamp")
        if not destination:
            raise PayloadError("mail.destination: missing recipients")
        rows = [(r, etype, None, None, reason, ts) for r in destination]
    else:
        raise PayloadError("eventType: unknown SES event type" if isinstance(kind, str)
                           else "eventType/notificationType: missing")

    out = []
    for i, (r, etype, bclass, code, reason, ts) in enumerate(rows):
        out.append(ctx.event(
            raw_for_campaign=ev, recipient=r.get("emailAddress"), recipient_field=f"{kind}.recipient[{i}]",
            type=etype, timestamp=ts, provider_id=f"{base_id}:{kind}:{i}" if base_id else None,
            bounce_class=bclass, smtp_code=code, reason=reason, message_id=mail.get("messageId"),
            sending_domain=sending_domain if isinstance(sending_domain, str) else None,
            ip_pool=ip_pool,
        ))
    return out


def normalize(body: bytes, content_type: str, config) -> ParseResult:
    check_content_type(content_type, CONTENT_TYPES)
    ctx = Context(NAME, config, DEFAULT_CAMPAIGN_FIELDS)
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise PayloadError("body must be one JSON object (an SNS message)")
    event, sns_id = ses_event_from_envelope(doc)
    if event is None:
        return ParseResult()
    return run_each([event], lambda ev: _events(ctx, ev, sns_id))


def parse(body: bytes, content_type: str, config) -> list[dict]:
    return strict(normalize(body, content_type, config))
