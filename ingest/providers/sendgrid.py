"""SendGrid Event Webhook: JSON array of events (reference §1).

Bounce class: ``type`` blocked -> block; ``bounce_classification`` when enabled
(Invalid Address / Mailbox Unavailable -> hard, Reputation / Content / Frequency -> block,
Technical Failure -> soft); otherwise ``type`` bounce = hard unless the SMTP reply is a policy
block (5.7.x, blocklist wording).
"""
from __future__ import annotations

from ..smtp import classify, parse_smtp
from ..timeparse import to_unix_seconds
from .common import Context, ParseResult, PayloadError, Skip, as_list, check_content_type, load_json, run_each

NAME = "sendgrid"
CONTENT_TYPES = ("application/json",)
DEFAULT_CAMPAIGN_FIELDS = ("campaign", "marketing_campaign_name", "singlesend_name", "category")
OUTAGE_STATUS = 503  # any non-2xx is retried for up to 24 h

TYPES = {
    "processed": "accepted", "delivered": "delivered", "deferred": "deferred", "dropped": "dropped",
    "bounce": "bounced", "blocked": "bounced", "open": "opened", "click": "clicked",
    "spamreport": "complained", "unsubscribe": "unsubscribed", "group_unsubscribe": "unsubscribed",
}
SKIPPED = {"group_resubscribe"}
_ATTEMPT_TYPES = ("delivered", "bounced", "deferred")
#: Event Webhook settings (Mail Settings -> Event Webhook) -> canonical types they post.
SUBSCRIPTIONS = {
    "Processed": ("accepted",), "Delivered": ("delivered",), "Bounced (bounce, blocked)": ("bounced",),
    "Spam Reports": ("complained",), "Deferred": ("deferred",), "Dropped": ("dropped",),
    "Opened": ("opened",), "Clicked": ("clicked",), "Unsubscribed": ("unsubscribed",),
    "Group Unsubscribes": ("unsubscribed",),
}
_CLASSIFICATION = {
    "invalid address": "hard", "invalid": "hard", "mailbox unavailable": "hard",
    "reputation": "block", "content": "block", "frequency or volume too high": "block",
    "technical failure": "soft", "unclassified": None,
}


def _bounce_class(raw: dict, smtp_text: str | None) -> tuple[str, int | None]:
    code, enhanced = parse_smtp(smtp_text)
    status_code, status_enh = parse_smtp(raw.get("status"))
    enhanced = status_enh or enhanced
    if raw.get("type") == "blocked" or raw.get("event") == "blocked":
        return "block", code
    label = raw.get("bounce_classification")
    if isinstance(label, str) and _CLASSIFICATION.get(label.strip().lower()):
        return _CLASSIFICATION[label.strip().lower()], code
    # type "bounce" (or absent, older payloads) is SendGrid's hard bounce; only an explicit
    # policy code/wording in the reply turns it into a block.
    return ("block" if classify(code, enhanced, smtp_text) == "block" else "hard"), code


def _one(ctx: Context, raw: dict) -> list[dict]:
    kind = raw.get("event")
    if kind in SKIPPED:
        raise Skip(kind)
    if kind not in TYPES:
        raise PayloadError("event: unknown SendGrid event type" if isinstance(kind, str) else "event: missing")
    etype = TYPES[kind]
    smtp_text = raw.get("reason") if isinstance(raw.get("reason"), str) else raw.get("response")
    smtp_text = smtp_text if isinstance(smtp_text, str) else None
    bclass, code = (None, None)
    if etype == "bounced":
        bclass, code = _bounce_class(raw, smtp_text)
    elif etype in ("delivered", "deferred", "dropped"):
        code = parse_smtp(smtp_text)[0]
    sg_id = raw.get("sg_event_id")
    return [ctx.event(
        raw_for_campaign=raw, recipient=raw.get("email"), recipient_field="email", type=etype,
        timestamp=to_unix_seconds(raw.get("timestamp"), "timestamp"),
        provider_id=sg_id if isinstance(sg_id, str) and sg_id else None,
        bounce_class=bclass, smtp_code=code, reason=smtp_text,
        message_id=raw.get("sg_message_id"),
        # No default ip_pool: ``pool`` is on processed events only, so it would put a pool's
        # sends in one scope and its outcomes in another (configure ip_pool_fields instead).
        attempt=raw.get("attempt") if etype in _ATTEMPT_TYPES else None,
    )]


def normalize(body: bytes, content_type: str, config) -> ParseResult:
    check_content_type(content_type, CONTENT_TYPES)
    ctx = Context(NAME, config, DEFAULT_CAMPAIGN_FIELDS)
    return run_each(as_list(load_json(body), "array of events"), lambda raw: _one(ctx, raw))


def parse(body: bytes, content_type: str, config) -> list[dict]:
    result = normalize(body, content_type, config)
    result.raise_first()
    return result.events
