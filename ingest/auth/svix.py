"""Svix / Standard Webhooks (Resend): ``v1,`` + base64 HMAC-SHA256(secret, id.timestamp.body).

The secret is ``whsec_`` + base64 key. The header may carry several space-separated
signatures during key rotation; any match is accepted. Timestamps beyond the tolerance
are rejected (Svix libraries use 5 minutes).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from ..errors import AuthError
from .common import AuthRequest, check_timestamp, equal, missing


def svix_key(secret: str) -> bytes:
    secret = secret.strip()
    if secret.startswith("whsec_"):
        secret = secret[len("whsec_"):]
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("Svix secret is not 'whsec_' + base64") from None


def svix_signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class SvixVerifier:
    def __init__(self, secret: str, tolerance: float):
        self.key = svix_key(secret)
        self.tolerance = tolerance

    def verify(self, req: AuthRequest) -> None:
        h = req.headers
        msg_id = h.get("svix-id") or h.get("webhook-id")
        ts = h.get("svix-timestamp") or h.get("webhook-timestamp")
        sigs = h.get("svix-signature") or h.get("webhook-signature")
        if not msg_id or not sigs:
            raise missing("svix-id / svix-signature headers")
        check_timestamp(ts, req.now, self.tolerance, "svix-timestamp")
        expected = svix_signature(self.key, msg_id, ts.strip(), req.body)
        if not any(equal(expected, s) for s in sigs.split() if s.startswith("v1,")):
            raise AuthError(403, "bad_signature", "Svix signature does not match")
