"""Generic endpoint: canonical JSON events (one object or an array), for in-house senders.

Fields are those of :mod:`detector.event`, plus an optional ``recipient`` (raw address)
which is reduced here like every provider's; ``event_id`` defaults to a stable hash and
``provider`` to ``generic``. Free-text ``reason`` is scrubbed of addresses.
"""
from __future__ import annotations

from detector.event import FIELDS, UNATTRIBUTED_CAMPAIGN, EventError, make_event

from ..privacy import RecipientReducer, redact
from .common import ParseResult, PayloadError, as_list, check_content_type, load_json, run_each, strict

NAME = "generic"
CONTENT_TYPES = ("application/json",)
DEFAULT_CAMPAIGN_FIELDS = ("campaign",)
OUTAGE_STATUS = 503


def _one(reducer: RecipientReducer, default_campaign: str, raw: dict) -> list[dict]:
    ev = dict(raw)
    recipient = ev.pop("recipient", None)
    if recipient is not None:
        ev.update(reducer.reduce(recipient, "recipient"))
    unknown = sorted(k for k in ev if k not in FIELDS)
    if unknown:
        raise PayloadError(f"{unknown[0][:50]}: unknown field (allowed: recipient, {', '.join(FIELDS)})")
    ev.setdefault("provider", NAME)
    if ev.get("campaign") in (None, ""):
        ev["campaign"] = default_campaign
    if isinstance(ev.get("reason"), str):
        ev["reason"] = redact(ev["reason"])
    try:
        return [make_event(**ev)]
    except EventError as exc:
        raise PayloadError(redact(str(exc))[:300]) from None


def normalize(body: bytes, content_type: str, config) -> ParseResult:
    check_content_type(content_type, CONTENT_TYPES)
    reducer = RecipientReducer(config.recipient_hash_key)
    default = getattr(config, "default_campaign", UNATTRIBUTED_CAMPAIGN)
    return run_each(as_list(load_json(body), "event or array of events"), lambda raw: _one(reducer, default, raw))


def parse(body: bytes, content_type: str, config) -> list[dict]:
    return strict(normalize(body, content_type, config))
