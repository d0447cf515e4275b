"""SparkPost (Bird) webhooks: JSON array batch of ``{"msys": {"<class>": {...}}}`` (§5).

``bounce_class`` categories (SparkPost support docs): Hard 10/30/90, Soft 20-24/40/60/70/100,
Block 50-54, Undetermined 1, Admin 25/80 (SparkPost's own policy) -> dropped. An empty
``msys`` is the validation ping. Relay and A/B-test events are skipped.
"""
from __future__ import annotations

from ..smtp import classify_text
from ..timeparse import to_unix_seconds
from .common import (Context, ParseResult, PayloadError, Skip, as_list, attempt_number, check_content_type,
                     load_json, run_each, strict)

NAME = "sparkpost"
CONTENT_TYPES = ("application/json",)
DEFAULT_CAMPAIGN_FIELDS = ("campaign_id", "rcpt_meta.campaign", "rcpt_tags")
OUTAGE_STATUS = 503  # any non-200 batch is retried for 8 h

TYPES = {
    "injection": "accepted", "delivery": "delivered", "bounce": "bounced", "out_of_band": "bounced",
    "delay": "deferred", "policy_rejection": "dropped", "spam_complaint": "complained",
    "generation_failure": "dropped", "generation_rejection": "dropped",
    "open": "opened", "initial_open": "opened", "amp_open": "opened", "amp_initial_open": "opened",
    "click": "clicked", "amp_click": "clicked",
    "list_unsubscribe": "unsubscribed", "link_unsubscribe": "unsubscribed",
}
#: Webhook events (Configuration -> Webhooks) -> canonical types they post.
SUBSCRIPTIONS = {
    "Injection": ("accepted",), "Delivery": ("delivered",), "Bounce": ("bounced", "dropped"),
    "Out of Band": ("bounced",), "Spam Complaint": ("complained",), "Delay": ("deferred",),
    "Policy Rejection": ("dropped",), "Generation Failure": ("dropped",),
    "Generation Rejection": ("dropped",), "Open": ("opened",), "Initial Open": ("opened",),
    "Click": ("clicked",), "List Unsubscribe": ("unsubscribed",), "Link Unsubscribe": ("unsubscribed",),
}
SKIPPED_CLASSES = {"relay_event", "ab_test_event"}
SKIPPED_TYPES = {"sms_status", "amp_initial_open_old"}
HARD, BLOCK, UNDETERMINED, ADMIN = {10, 30, 90}, {50, 51, 52, 53, 54}, {1}, {25, 80}
SOFT = {20, 21, 22, 23, 24, 40, 60, 70, 100}


def _attempt(raw: dict) -> int | None:
    """``num_retries`` counts the failed attempts before this one."""
    retries = attempt_number(raw.get("num_retries"))
    if raw.get("num_retries") in (0, "0"):
        return 1
    return retries + 1 if retries is not None else None


def _bounce(raw: dict) -> tuple[str, str | None, int | None]:
    text = raw.get("reason") if isinstance(raw.get("reason"), str) else None
    guess, code = classify_text(text)
    try:
        cls = int(raw.get("bounce_class"))
    except (TypeError, ValueError):
        return "bounced", guess, code
    if cls in ADMIN:
        return "dropped", None, code
    bclass = ("hard" if cls in HARD else "soft" if cls in SOFT else "block" if cls in BLOCK
              else "undetermined" if cls in UNDETERMINED else guess)
    return "bounced", bclass, code


def _one(ctx: Context, item: dict) -> list[dict]:
    msys = item.get("msys")
    if not isinstance(msys, dict):
        raise PayloadError("msys: missing")
    if not msys:
        raise Skip("ping")
    (klass, raw), = list(msys.items())[:1]
    if klass in SKIPPED_CLASSES:
        raise Skip(klass)
    if not isinstance(raw, dict):
        raise PayloadError(f"msys.{klass}: must be an object")
    kind = raw.get("type")
    if kind in SKIPPED_TYPES:
        raise Skip(kind)
    if kind not in TYPES:
        raise PayloadError("type: unknown SparkPost event type" if isinstance(kind, str) else "type: missing")
    etype, bclass, code = TYPES[kind], None, None
    if kind in ("bounce", "out_of_band", "policy_rejection"):
        etype_b, bclass, code = _bounce(raw)
        etype = etype_b if kind != "policy_rejection" else "dropped"
        if etype != "bounced":
            bclass = None
    try:
        code = int(raw["error_code"]) if raw.get("error_code") not in (None, "") else code
    except (TypeError, ValueError):
        pass
    eid = raw.get("event_id")
    return [ctx.event(
        raw_for_campaign=raw, recipient=raw.get("rcpt_to") or raw.get("raw_rcpt_to"),
        recipient_field=f"msys.{klass}.rcpt_to", type=etype,
        timestamp=to_unix_seconds(raw.get("timestamp"), f"msys.{klass}.timestamp"),
        provider_id=str(eid) if eid not in (None, "") else None, bounce_class=bclass, smtp_code=code,
        reason=raw.get("reason") if etype in ("bounced", "deferred", "dropped") else None,
        # Every message event names the pool and both senders. friendly_from is the From header
        # (the domain mailbox providers judge); msg_from is the envelope sender, often
        # SparkPost's own bounce domain.
        message_id=raw.get("message_id"), ip_pool=raw.get("ip_pool"),
        sending_domain=raw.get("friendly_from") or raw.get("msg_from"),
        attempt=_attempt(raw) if etype in ("delivered", "bounced", "deferred") else None,
    )]


def normalize(body: bytes, content_type: str, config) -> ParseResult:
    check_content_type(content_type, CONTENT_TYPES)
    ctx = Context(NAME, config, DEFAULT_CAMPAIGN_FIELDS)
    result = run_each(as_list(load_json(body), "array of msys events"), lambda raw: _one(ctx, raw))
    return result


def parse(body: bytes, content_type: str, config) -> list[dict]:
    return strict(normalize(body, content_type, config))
