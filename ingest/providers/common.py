"""Shared plumbing for the per-provider normalisers.

Each provider module exposes ``NAME``, ``CONTENT_TYPES``, ``DEFAULT_CAMPAIGN_FIELDS``,
``OUTAGE_STATUS``, ``normalize(body, content_type, config) -> ParseResult`` (lenient: bad
events are collected, good ones kept) and ``parse(body, content_type, config)`` (strict:
the first problem raises :class:`PayloadError`).

Why lenient at the server: SendGrid and others resend the whole batch on any non-2xx,
so one bad event in a batch of 1,000 must not block the other 999; it goes to the DLQ.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from detector.event import (UNATTRIBUTED_CAMPAIGN, BOUNCE_CLASSES, EVENT_TYPES, MAX_REASON_CHARS, EventError, stable_event_id,
                            validate_event)

from .. import fastjson
from ..campaign import CampaignResolver, lookup
from ..errors import PayloadError, UnsupportedMediaType
from ..privacy import RecipientReducer, redact


@dataclass
class Rejected:
    index: int
    reason: str          # redacted, names the field
    raw: Any             # the provider's raw event (DLQ only)


@dataclass
class ParseResult:
    events: list[dict] = field(default_factory=list)
    skipped: int = 0     # provider events without a canonical meaning
    rejected: list[Rejected] = field(default_factory=list)

    def raise_first(self) -> None:
        if self.rejected:
            r = self.rejected[0]
            raise PayloadError(f"event[{r.index}]: {r.reason}")


class Skip(Exception):
    """This provider event has no canonical meaning (e.g. SendGrid group_resubscribe)."""


class Context:
    """What a normaliser needs from the config, resolved once per request."""

    def __init__(self, provider: str, config: Any, default_fields: Iterable[str]):
        self.provider = provider
        self.config = config
        ps = config.provider(provider) if hasattr(config, "provider") else None
        fields = ps.campaign_fields if ps is not None and ps.campaign_fields else None
        self.campaign_fields = tuple(fields) if fields else tuple(default_fields)
        self.default_campaign = getattr(config, "default_campaign", UNATTRIBUTED_CAMPAIGN)
        self.reducer = RecipientReducer(config.recipient_hash_key)
        self.campaign = CampaignResolver(self.campaign_fields, self.default_campaign)
        domain_fields = ps.sending_domain_fields if ps is not None and ps.sending_domain_fields else ()
        self.sending_domain_paths = tuple(domain_fields)
        self.default_sending_domain = ps.sending_domain if ps is not None else None
        pool_fields = ps.ip_pool_fields if ps is not None and ps.ip_pool_fields else ()
        self.ip_pool_paths = tuple(pool_fields)
        self.default_ip_pool = ps.ip_pool if ps is not None else None

    def event(self, *, raw_for_campaign: Any, recipient: Any, recipient_field: str, type: str,
              timestamp: float, provider_id: str | None = None, bounce_class: str | None = None,
              smtp_code: int | None = None, reason: Any = None, message_id: Any = None,
              sending_domain: Any = None, ip_pool: Any = None, campaign: str | None = None,
              attempt: Any = None) -> dict:
        domain, mailbox, digest = self.reducer.reduce_parts(recipient, recipient_field)
        fields = {  # FIELDS order
            "event_id": None, "provider": self.provider, "type": type,
            "bounce_class": bounce_class if type == "bounced" else None, "timestamp": timestamp,
            "campaign": campaign or self.campaign(raw_for_campaign),
            "sending_domain": self._sending_domain(raw_for_campaign, sending_domain),
            "ip_pool": self._ip_pool(raw_for_campaign, ip_pool),
            "recipient_domain": domain, "recipient_hash": digest, "mailbox_provider": mailbox,
            "smtp_code": smtp_code if isinstance(smtp_code, int) and 200 <= smtp_code <= 599 else None,
            "reason": redact(reason)[:500] if isinstance(reason, str) and reason.strip() else None,
            "message_id": (_scrub_exact(str(message_id), recipient)[:200]
                           if message_id is not None and message_id != "" else None),
        }
        attempt = attempt_number(attempt)
        if attempt is not None:  # sparse field (detector.event.SPARSE_FIELDS): absent when unknown
            fields["attempt"] = attempt
        fields["event_id"] = f"{self.provider}:{provider_id}" if provider_id else stable_event_id(fields)
        if _trusted_event(fields):
            return fields
        try:  # something is off: let the schema name the field
            return validate_event(fields)
        except EventError as exc:  # our mapping produced something invalid: name the field
            raise PayloadError(redact(str(exc))) from None


    def _sending_domain(self, raw: Any, native: Any) -> str | None:
        return _configured(raw, self.sending_domain_paths, native, self.default_sending_domain, _domain_of)

    def _ip_pool(self, raw: Any, native: Any) -> str | None:
        return _configured(raw, self.ip_pool_paths, native, self.default_ip_pool, _label_of)


def _label_of(value: Any) -> str | None:
    """A pool name or IP from a field value: a string, a number, the first element of a
    list (SES tags are lists) or the ``name`` of an object (SendGrid ``pool``)."""
    if isinstance(value, dict):
        value = value.get("name")
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, (str, int)) and not isinstance(v, bool)
                      and str(v).strip()), None)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:100]


def attempt_number(value: Any) -> int | None:
    """An ESP's delivery attempt number (SendGrid sends ``"5"``, Mailgun ``1``) as an int >= 1."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            return None
        value = int(value)
    elif isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    elif not isinstance(value, int):
        return None
    return value if 1 <= value <= 1_000_000 else None


_TYPES = frozenset(EVENT_TYPES)
_BOUNCE_CLASSES = frozenset(BOUNCE_CLASSES)
_MAX_TIMESTAMP = 32503680000.0  # year 3000, as detector.event.validate_event


def _trusted_event(f: dict) -> bool:
    """True when ``f`` (in FIELDS order) is what ``validate_event(f)`` would return, after
    the two normalisations done here in place (bounce class default, reason trimming).

    Why: full validation was a quarter of the per-event cost of a batch, and most of its
    checks are already guaranteed by :meth:`Context.event` (types of the reduced recipient
    fields, SMTP code range, domain without "@"). Only the checks that depend on provider
    data are repeated; any doubt returns False and the caller runs the real validator, so
    output and error messages are the schema's. tests/ingest/test_hotpath.py checks the
    equivalence on arbitrary field values.
    """
    etype = f["type"]
    if etype not in _TYPES:
        return False
    bclass = f["bounce_class"]
    if etype == "bounced":
        if bclass is None:
            bclass = "undetermined"
        elif bclass not in _BOUNCE_CLASSES:
            return False
    elif bclass is not None:
        return False
    ts = f["timestamp"]
    if type(ts) is not float or not 0.0 <= ts <= _MAX_TIMESTAMP:  # NaN fails the range test
        return False
    campaign = f["campaign"]
    if type(campaign) is not str or not campaign.strip():
        return False
    reason = f["reason"]
    if reason is not None:
        if type(reason) is not str:
            return False
        reason = reason.strip()[:MAX_REASON_CHARS] or None
    for name in ("sending_domain", "ip_pool", "message_id"):
        value = f[name]
        if value is not None and type(value) is not str:
            return False
    if "attempt" in f:
        attempt = f["attempt"]
        if type(attempt) is not int or attempt < 1:
            return False
    f["bounce_class"] = bclass
    f["reason"] = reason
    return True


def _scrub_exact(text: str, recipient: Any) -> str:
    """Remove the recipient's own address from an id (Message-IDs look like addresses but
    are not personal data, so they are kept unless they embed the recipient)."""
    if isinstance(recipient, str) and "@" in recipient:
        bare = recipient.strip().strip("<>").lower()
        if bare and bare in text.lower():
            return re.sub(re.escape(bare), "[redacted]", text, flags=re.IGNORECASE)
    return text


def _domain_of(value: Any) -> str | None:
    """Sending domain from a domain or a sender address (sender, not recipient: not personal)."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if "<" in value and value.endswith(">"):
        value = value[value.rindex("<") + 1:-1]
    domain = value.rpartition("@")[2].strip().lower().rstrip(".")
    return domain or None


def check_content_type(content_type: str, allowed: Iterable[str]) -> None:
    base = (content_type or "").split(";", 1)[0].strip().lower()
    allowed = tuple(allowed)
    if base not in allowed:
        raise UnsupportedMediaType(
            f"content type {base or '(none)'!r} not accepted (expected {' or '.join(allowed)})")


def load_json(body: bytes) -> Any:
    try:
        return fastjson.loads(body)
    except UnicodeDecodeError:
        raise PayloadError("body is not UTF-8 text") from None
    except ValueError as exc:
        raise PayloadError(f"body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def as_list(doc: Any, what: str) -> list:
    """One object or an array of objects -> list."""
    if isinstance(doc, dict):
        return [doc]
    if isinstance(doc, list):
        return doc
    raise PayloadError(f"body must be a JSON {what} (object or array), got {type(doc).__name__}")


def run_each(items: Iterable[Any], one: Callable[[Any], list[dict]]) -> ParseResult:
    """Apply ``one`` to each raw provider event, collecting skips and rejections."""
    result = ParseResult()
    for index, raw in enumerate(items):
        try:
            if not isinstance(raw, dict):
                raise PayloadError(f"must be a JSON object, got {type(raw).__name__}")
            result.events.extend(one(raw))
        except Skip:
            result.skipped += 1
        except PayloadError as exc:
            result.rejected.append(Rejected(index, redact(str(exc)), raw))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            # Unexpected shape deep inside a provider event: name the exception, not the data.
            result.rejected.append(Rejected(index, f"unexpected structure ({type(exc).__name__})", raw))
    return result


def get_str(raw: dict, key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) and value.strip() else None


def strict(result: ParseResult) -> list[dict]:
    """The strict ``parse`` contract: any rejected event raises."""
    result.raise_first()
    return result.events


def _configured(raw: Any, paths, native: Any, default: Any, clean) -> str | None:
    """Configured paths first, then the provider's own field, then the configured constant."""
    for path in paths:
        found = clean(lookup(raw, path))
        if found:
            return found
    return clean(native) or clean(default)
