"""Reduce a recipient address at the edge: domain, mailbox provider and a keyed hash.

The raw address is personal data; nothing after this module sees it. The hash is an
HMAC-SHA256 keyed with a secret from configuration (a plain hash of an address is
reversible by dictionary), so the same recipient hashes the same way across providers
and restarts without being recoverable.
"""
from __future__ import annotations

import hashlib
import hmac
import re

from detector.mailbox import mailbox_provider

from .errors import PayloadError

# Anything that looks like local@domain. Used to scrub free text (SMTP replies quote the
# recipient: "550 5.1.1 <jane@example.com>: Recipient address rejected").
_ADDRESS_RE = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """Replace every address-looking token in ``text``."""
    return _ADDRESS_RE.sub(REDACTED, text)


def _bare_address(value: str) -> str:
    """``"Jane <Jane@Example.com>"`` -> ``jane@example.com``."""
    value = value.strip()
    if "<" in value and value.endswith(">"):
        value = value[value.rindex("<") + 1:-1]
    return value.strip().lower()


class RecipientReducer:
    """Turns a raw address into the three fields the canonical event keeps."""

    def __init__(self, key: bytes):
        if not key:
            raise ValueError("recipient hash key must not be empty")
        self._key = key

    def __repr__(self) -> str:  # never show the key
        return "RecipientReducer(key=<hidden>)"

    def reduce(self, address: object, where: str = "recipient") -> dict:
        """Return ``recipient_domain``, ``mailbox_provider``, ``recipient_hash``.

        ``where`` names the source field in the error; the value itself is never quoted.
        """
        if not isinstance(address, str) or not address.strip():
            raise PayloadError(f"{where}: missing recipient address")
        bare = _bare_address(address)
        local, at, domain = bare.rpartition("@")
        domain = domain.strip().rstrip(".")
        if not at or not local or not domain or any(c.isspace() for c in domain) or "@" in domain:
            raise PayloadError(f"{where}: not an email address")
        digest = hmac.new(self._key, bare.encode("utf-8"), hashlib.sha256).hexdigest()
        return {
            "recipient_domain": domain,
            "mailbox_provider": mailbox_provider(domain),
            "recipient_hash": digest,
        }
