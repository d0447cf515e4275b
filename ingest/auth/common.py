"""What every authenticator receives, and helpers shared by several schemes."""
from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from typing import Mapping

from ..errors import AuthError


@dataclass
class AuthRequest:
    provider: str
    body: bytes
    headers: Mapping[str, str]   # case-insensitive mapping (aiohttp CIMultiDictProxy)
    url: str                     # URL as received (Mandrill uses the configured one instead)
    now: float                   # Unix seconds, injectable for the published (old) vectors


class TransientAuthError(Exception):
    """Authentication could not be completed for an infrastructure reason (e.g. the SNS
    certificate could not be fetched). Answered with the provider's retry status, because
    a 4xx would make SNS drop a genuine message."""


def missing(what: str) -> AuthError:
    return AuthError(401, "missing_credentials", f"missing {what}")


def check_timestamp(value: str | None, now: float, tolerance: float, what: str) -> float:
    if value is None or not str(value).strip():
        raise missing(what)
    try:
        ts = float(value)
    except ValueError:
        raise AuthError(403, "bad_timestamp", f"{what} is not a Unix timestamp") from None
    if tolerance > 0 and abs(now - ts) > tolerance:
        raise AuthError(403, "stale_timestamp", f"{what} outside the {tolerance:g} s tolerance")
    return ts


def b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AuthError(403, "bad_signature", f"{what} is not valid base64") from None


def equal(a: str | bytes, b: str | bytes) -> bool:
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return hmac.compare_digest(a, b)
