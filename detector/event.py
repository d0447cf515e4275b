"""The canonical event: one schema every ESP webhook is normalised into.

Every later stage (Kafka topics, windows, rules, replay) reads only this shape, so the
validation here is strict: unknown fields and wrong types are rejected with a message
that names the field, never silently coerced.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping

from .mailbox import mailbox_provider

EVENT_TYPES = (
    "accepted",      # the ESP took the message: the send-volume signal
    "delivered",
    "bounced",
    "complained",
    "deferred",
    "dropped",
    "opened",
    "clicked",
    "unsubscribed",
)
BOUNCE_CLASSES = ("hard", "soft", "block", "undetermined")
#: The campaign of mail that names none (ingest's ``default_campaign``): counted as unattributed
#: volume, the IP-pool surge that no campaign's send explains.
UNATTRIBUTED_CAMPAIGN = "(none)"

FIELDS = (
    "event_id", "provider", "type", "bounce_class", "timestamp", "campaign",
    "sending_domain", "ip_pool", "recipient_domain", "recipient_hash",
    "mailbox_provider", "smtp_code", "reason", "message_id", "attempt",
)
#: Fields that are only present in an event when they have a value. A producer leaves them
#: out rather than sending null, so events without them are byte-identical to those of
#: earlier versions (and their stable ids unchanged).
SPARSE_FIELDS = ("attempt",)
REQUIRED = ("event_id", "provider", "type", "timestamp", "campaign", "recipient_domain")
_FIELD_SET = frozenset(FIELDS)
_TYPE_SET = frozenset(EVENT_TYPES)
_OPTIONAL_STR = ("sending_domain", "ip_pool", "recipient_hash", "reason", "message_id")
MAX_REASON_CHARS = 500


class EventError(ValueError):
    """A canonical event failed validation; ``field`` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def _require_str(ev: Mapping[str, Any], name: str) -> str:
    value = ev.get(name)
    if type(value) is not str and not isinstance(value, str):
        raise EventError(name, f"must be a string, got {type(value).__name__}")
    if not value or value.isspace():
        raise EventError(name, "must not be empty")
    return value


def validate_event(ev: Any) -> dict:
    """Return a clean copy of ``ev`` or raise :class:`EventError`.

    Derived fields are filled in when absent (``mailbox_provider`` from the recipient
    domain, ``bounce_class`` = ``undetermined`` for a bounce without a class).
    ``attempt`` (the ESP's delivery attempt number, an integer >= 1) is optional and
    sparse: absent or null in the input, it is absent in the output.
    """
    if type(ev) is not dict and not isinstance(ev, Mapping):
        raise EventError("event", f"must be a JSON object, got {type(ev).__name__}")
    if not _FIELD_SET.issuperset(ev):
        unknown = sorted(set(ev) - _FIELD_SET)
        raise EventError(unknown[0], "unknown field (allowed: " + ", ".join(FIELDS) + ")")
    for name in REQUIRED:
        if name not in ev or ev[name] is None:
            raise EventError(name, "is required")

    out: dict[str, Any] = {}
    out["event_id"] = _require_str(ev, "event_id")
    out["provider"] = _require_str(ev, "provider")
    etype = _require_str(ev, "type")
    if etype not in _TYPE_SET:
        raise EventError("type", f"{etype!r} is not one of {', '.join(EVENT_TYPES)}")
    out["type"] = etype

    bclass = ev.get("bounce_class")
    if etype == "bounced":
        if bclass is None:
            bclass = "undetermined"
        if bclass not in BOUNCE_CLASSES:
            raise EventError("bounce_class", f"{bclass!r} is not one of {', '.join(BOUNCE_CLASSES)}")
    elif bclass is not None:
        raise EventError("bounce_class", f"must be null for a {etype!r} event")
    out["bounce_class"] = bclass

    ts = ev["timestamp"]
    if type(ts) is not float and (isinstance(ts, bool) or not isinstance(ts, (int, float))):
        raise EventError("timestamp", f"must be a number of Unix seconds, got {type(ts).__name__}")
    ts = float(ts)
    if not math.isfinite(ts) or ts < 0 or ts > 32503680000:  # year 3000
        raise EventError("timestamp", f"{ts!r} is not a plausible Unix time in seconds")
    out["timestamp"] = ts

    out["campaign"] = _require_str(ev, "campaign")
    domain = _require_str(ev, "recipient_domain").strip().lower()
    if "@" in domain:
        # A raw address must never travel further than the edge.
        raise EventError("recipient_domain", "must be a domain, not an address")
    out["recipient_domain"] = domain

    for name in _OPTIONAL_STR:
        value = ev.get(name)
        if value is not None and type(value) is not str and not isinstance(value, str):
            raise EventError(name, f"must be a string or null, got {type(value).__name__}")
        out[name] = value
    if out["reason"] is not None:
        out["reason"] = out["reason"].strip()[:MAX_REASON_CHARS] or None

    mp = ev.get("mailbox_provider")
    if mp is None:
        mp = mailbox_provider(domain)
    elif not isinstance(mp, str) or not mp:
        raise EventError("mailbox_provider", "must be a non-empty string or null")
    out["mailbox_provider"] = mp

    code = ev.get("smtp_code")
    if code is not None:
        if isinstance(code, bool) or not isinstance(code, int):
            raise EventError("smtp_code", f"must be an integer or null, got {type(code).__name__}")
        if not 200 <= code <= 599:
            raise EventError("smtp_code", f"{code} is not an SMTP reply code (200-599)")
    out["smtp_code"] = code

    attempt = ev.get("attempt")
    if attempt is not None:
        if isinstance(attempt, bool) or not isinstance(attempt, int):
            raise EventError("attempt", f"must be an integer or null, got {type(attempt).__name__}")
        if attempt < 1:
            raise EventError("attempt", f"{attempt} is not a delivery attempt number (>= 1)")
        out["attempt"] = attempt
    return out


def make_event(**fields: Any) -> dict:
    """Build and validate a canonical event; ``event_id`` defaults to a stable hash."""
    fields.setdefault("event_id", None)
    if fields["event_id"] is None:
        fields["event_id"] = stable_event_id(fields)
    return validate_event(fields)


def stable_event_id(fields: Mapping[str, Any]) -> str:
    """A deterministic id for providers that send none: same payload, same id."""
    material = {k: fields.get(k) for k in FIELDS
                if k != "event_id" and (k not in SPARSE_FIELDS or fields.get(k) is not None)}
    digest = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
    return "h:" + digest[:32]


def dumps(ev: Mapping[str, Any]) -> str:
    return json.dumps(ev, separators=(",", ":"), sort_keys=True)


def parse_line(line: str | bytes) -> dict:
    """Parse one JSON line into a validated event (EventError on bad JSON too)."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError("event", f"invalid JSON: {exc}") from None
    return validate_event(obj)
