"""MailerSend: header ``Signature`` = hex HMAC-SHA256(signing secret, raw body).

No timestamp is signed, so replays are only caught by event-id dedup.
"""
from __future__ import annotations

import hashlib
import hmac

from ..errors import AuthError
from .common import AuthRequest, equal, missing

SIGNATURE_HEADER = "Signature"


def mailersend_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class MailerSendVerifier:
    def __init__(self, secret: str):
        self.secret = secret

    def verify(self, req: AuthRequest) -> None:
        sig = req.headers.get(SIGNATURE_HEADER)
        if not sig:
            raise missing(f"{SIGNATURE_HEADER} header")
        if not equal(mailersend_signature(self.secret, req.body), sig.strip().lower()):
            raise AuthError(403, "bad_signature", "MailerSend signature does not match")
