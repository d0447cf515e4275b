"""Mailgun: hex HMAC-SHA256(signing key, timestamp + token), token replay cache.

The HMAC does not cover the body (Mailgun's design), so replay protection rests on the
timestamp tolerance and on never accepting a token twice ("cache the token value locally
and not honor any subsequent request with the same token").
"""
from __future__ import annotations

import hashlib
import hmac
import json

from ..dedup import ExpiringSet
from ..errors import AuthError
from .common import AuthRequest, check_timestamp, equal, missing


def mailgun_signature(key: str, timestamp: str, token: str) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


class MailgunVerifier:
    def __init__(self, signing_key: str, tolerance: float, replay_max: int):
        self.key = signing_key
        self.tolerance = tolerance
        # Tokens older than the tolerance are rejected by the timestamp check anyway.
        self.tokens = ExpiringSet(max(2 * tolerance, 60.0), replay_max)

    def verify(self, req: AuthRequest) -> None:
        try:
            doc = json.loads(req.body)
        except (ValueError, UnicodeDecodeError):
            raise missing("Mailgun signature (body is not JSON)") from None
        sig = doc.get("signature") if isinstance(doc, dict) else None
        if not isinstance(sig, dict):
            raise missing("Mailgun 'signature' object")
        ts, token, signature = (str(sig.get(k) or "") for k in ("timestamp", "token", "signature"))
        if not token or not signature:
            raise missing("Mailgun signature token/signature")
        check_timestamp(ts, req.now, self.tolerance, "signature.timestamp")
        if not equal(mailgun_signature(self.key, ts, token), signature.lower()):
            raise AuthError(403, "bad_signature", "Mailgun signature does not match")
        if not self.tokens.add_if_absent(token):
            raise AuthError(403, "replayed_token", "Mailgun token already used")
