"""Basic auth / bearer token for providers that do not sign (Postmark, SparkPost, Brevo,
Mailjet, generic). Either configured credential is accepted; comparisons are constant-time.
"""
from __future__ import annotations

import base64
import binascii

from ..errors import AuthError
from .common import AuthRequest, equal, missing

TOKEN_HEADERS = ("X-MessageSystems-Webhook-Token",)  # SparkPost's deprecated auth_token


class BasicOrBearerVerifier:
    def __init__(self, user: str | None, password: str | None, token: str | None):
        if not ((user and password) or token):
            raise ValueError("needs basic_user + basic_password, or bearer_token")
        self.user, self.password, self.token = user, password, token

    def verify(self, req: AuthRequest) -> None:
        auth = req.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        scheme = scheme.lower()
        if self.token:
            presented = value.strip() if scheme == "bearer" else None
            for name in TOKEN_HEADERS:
                presented = presented or req.headers.get(name)
            if presented:
                if equal(presented, self.token):
                    return
                raise AuthError(403, "bad_credentials", "bearer token does not match")
        if self.user and scheme == "basic":
            try:
                user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, ValueError, UnicodeDecodeError):
                raise AuthError(403, "bad_credentials", "malformed Basic credentials") from None
            # Evaluate both comparisons: no early exit on the user name.
            ok_user, ok_pass = equal(user, self.user), equal(password, self.password)
            if sep and ok_user and ok_pass:
                return
            raise AuthError(403, "bad_credentials", "Basic credentials do not match")
        raise missing("Authorization header (Basic or Bearer)")
