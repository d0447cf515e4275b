"""Reduce a recipient address at the edge: domain, mailbox provider and a keyed hash.

The raw address is personal data; nothing after this module sees it. The hash is an
HMAC-SHA256 keyed with a secret from configuration (a plain hash of an address is
reversible by dictionary), so the same recipient hashes the same way across providers
and restarts without being recoverable.
"""
from __future__ import annotations

import hashlib
import re

from detector.mailbox import mailbox_provider

from .errors import PayloadError

# Anything that looks like local@domain. Used to scrub free text (SMTP replies quote the
# recipient: "550 5.1.1 <jane@example.com>: Recipient address rejected").
_ADDRESS_RE = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """Replace every address-looking token in ``text``."""
    if "@" not in text:  # the common case, and 30x cheaper than the regex
        return text
    return _ADDRESS_RE.sub(REDACTED, text)


def _bare_address(value: str) -> str:
    """``"Jane <Jane@Example.com>"`` -> ``jane@example.com``."""
    value = value.strip()
    if "<" in value and value.endswith(">"):
        value = value[value.rindex("<") + 1:-1]
    return value.strip().lower()


_SHA256_BLOCK = 64
_DOMAIN_CACHE_MAX = 4096


class RecipientReducer:
    """Turns a raw address into the three fields the canonical event keeps.

    Hot path (one call per event): the HMAC's keyed inner/outer SHA-256 states are
    computed once and copied per address (RFC 2104; 3x cheaper than ``hmac.new``), and
    the mailbox provider of a domain is cached (a batch has few distinct domains).
    """

    def __init__(self, key: bytes):
        if not key:
            raise ValueError("recipient hash key must not be empty")
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self._providers: dict[str, str] = {}

    def _hmac_hex(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def _mailbox_provider(self, domain: str) -> str:
        found = self._providers.get(domain)
        if found is None:
            if len(self._providers) >= _DOMAIN_CACHE_MAX:
                self._providers.clear()
            found = self._providers[domain] = mailbox_provider(domain)
        return found

    def __repr__(self) -> str:  # never show the key
        return "RecipientReducer(key=<hidden>)"

    def reduce(self, address: object, where: str = "recipient") -> dict:
        """Return ``recipient_domain``, ``mailbox_provider``, ``recipient_hash``.

        ``where`` names the source field in the error; the value itself is never quoted.
        """
        domain, provider, digest = self.reduce_parts(address, where)
        return {"recipient_domain": domain, "mailbox_provider": provider, "recipient_hash": digest}

    def reduce_parts(self, address: object, where: str = "recipient") -> tuple[str, str, str]:
        """(domain, mailbox provider, keyed hash): :meth:`reduce` without the dict (hot path)."""
        if type(address) is not str or not address.strip():
            if not isinstance(address, str) or not address.strip():
                raise PayloadError(f"{where}: missing recipient address")
        bare = _bare_address(address)
        local, at, domain = bare.rpartition("@")
        domain = domain.strip().rstrip(".")
        if not at or not local or not domain or "@" in domain or len(domain.split()) != 1:
            raise PayloadError(f"{where}: not an email address")
        provider = self._providers.get(domain)
        if provider is None:
            provider = self._mailbox_provider(domain)
        inner = self._inner.copy()
        inner.update(bare.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return domain, provider, outer.hexdigest()
