"""Bounce class from SMTP reply codes and RFC 3463 enhanced status codes.

Used only when the provider's own classification is absent or ambiguous. Order of
evidence: enhanced code subject (x.7.x = policy/security = block, x.1.x = addressing =
hard, 4.x.x = transient = soft), then block wording (blocklists, reputation, spam),
then the basic reply code.
"""
from __future__ import annotations

import functools
import re

_ENHANCED_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC_RE = re.compile(r"(?<![\d.])([245]\d\d)(?![\d.])")
_BLOCK_WORDS = re.compile(
    r"block|blacklist|denylist|spamhaus|spamcop|\brbl\b|dnsbl|reputation|\bspam\b|"
    r"policy|rate limit|too many|throttl|not allowed|banned",
    re.IGNORECASE,
)
_SOFT_ENHANCED = {"5.2.2", "5.2.3", "5.3.4", "5.4.5", "5.4.7"}
_HARD_ENHANCED = {"5.2.1", "5.4.4", "5.4.1", "5.4.0"}


def parse_smtp(text: object) -> tuple[int | None, str | None]:
    """Return (basic reply code, enhanced status code) found in ``text``."""
    if isinstance(text, int) and not isinstance(text, bool):
        return (text if 200 <= text <= 599 else None), None
    if not isinstance(text, str):
        return None, None
    if "@" in text:  # quotes an address: not kept in the process-wide cache
        return _parse_text.__wrapped__(text)
    return _parse_text(text)


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> tuple[int | None, str | None]:
    """Cached: a batch repeats the same few SMTP replies many times."""
    enh = _ENHANCED_RE.search(text)
    basic = _BASIC_RE.search(text)
    return (int(basic.group(1)) if basic else None,
            ".".join(enh.groups()) if enh else None)


def classify(code: int | None, enhanced: str | None, text: str | None = None) -> str:
    """hard | soft | block | undetermined for a failed delivery."""
    text = text or ""
    if enhanced:
        klass, subject, _ = enhanced.split(".")
        if subject == "7":
            return "block"
        if klass == "4":
            return "soft"
        if subject == "1" or enhanced in _HARD_ENHANCED:
            return "hard"
        if enhanced in _SOFT_ENHANCED:
            return "soft"
    if _BLOCK_WORDS.search(text):
        return "block"
    if code is not None:
        if 400 <= code < 500:
            return "soft"
        if code in (550, 551, 553):
            return "hard"
        if code == 552:
            return "soft"
    return "undetermined"


def classify_text(text: object, code: int | None = None) -> tuple[str, int | None]:
    """Classify from free text (and an optional separate code); returns (class, code)."""
    found_code, enhanced = parse_smtp(text)
    code = code if code is not None else found_code
    return classify(code, enhanced, text if isinstance(text, str) else None), code
