"""Mandrill: base64 HMAC-SHA1(webhook key, URL + each POST key + value, keys sorted).

The URL is the one configured in Mandrill, byte for byte (scheme, host, path, query),
not the one this server sees behind a proxy; hence the ``webhook_url`` setting.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qsl

from ..errors import AuthError
from .common import AuthRequest, equal, missing

SIGNATURE_HEADER = "X-Mandrill-Signature"


def mandrill_signature(key: str, url: str, params: list[tuple[str, str]]) -> str:
    signed = url + "".join(k + v for k, v in sorted(params, key=lambda kv: kv[0]))
    return base64.b64encode(hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()).decode()


class MandrillVerifier:
    def __init__(self, webhook_key: str, webhook_url: str):
        self.key = webhook_key
        self.url = webhook_url

    def verify(self, req: AuthRequest) -> None:
        sig = req.headers.get(SIGNATURE_HEADER)
        if not sig:
            raise missing(f"{SIGNATURE_HEADER} header")
        try:
            params = parse_qsl(req.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise AuthError(403, "bad_signature", "body is not UTF-8 form data") from None
        if not equal(mandrill_signature(self.key, self.url, params), sig.strip()):
            raise AuthError(403, "bad_signature", "Mandrill signature does not match")
