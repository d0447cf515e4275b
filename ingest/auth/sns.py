"""Amazon SNS message signatures (v1 SHA1withRSA, v2 SHA256withRSA) and the subscription
handshake, for SES events delivered to an HTTPS subscription.

Checks, in order: the topic ARN is allow-listed (fail closed when the list is empty);
``SigningCertURL`` is https on ``sns.<region>.amazonaws.com[.cn]`` with a ``.pem`` path
(pinned to one region when configured); the certificate (fetched through an injectable
fetcher, cached LRU) verifies the string-to-sign; the message is not older than the
configured maximum age. A verified ``SubscriptionConfirmation`` for an allowed topic is
confirmed by GET on ``SubscribeURL`` (same host rule, so a forged URL cannot make us
fetch anything else).
"""
from __future__ import annotations

import base64
import binascii
import re
from collections import OrderedDict
from datetime import datetime
from typing import Awaitable, Callable
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import AuthError
from .common import TransientAuthError, missing

Fetcher = Callable[[str], Awaitable[bytes]]
_HOST_RE = re.compile(r"^sns\.[a-z0-9\-]{3,}\.amazonaws\.com(\.cn)?$")
_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


def validate_sns_url(url: object, region: str | None, what: str, *, pem: bool) -> str:
    if not isinstance(url, str) or not url:
        raise missing(what)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    ok = (parts.scheme == "https" and _HOST_RE.match(host) is not None and parts.port in (None, 443)
          and parts.username is None and (not pem or parts.path.endswith(".pem")))
    if ok and region:
        ok = host in (f"sns.{region}.amazonaws.com", f"sns.{region}.amazonaws.com.cn")
    if not ok:
        raise AuthError(403, "bad_cert_url", f"{what} is not an Amazon SNS URL")
    return url


def string_to_sign(msg: dict) -> bytes:
    keys = _NOTIFICATION_KEYS if msg.get("Type") == "Notification" else _SUBSCRIPTION_KEYS
    parts = []
    for key in keys:
        value = msg.get(key)
        if value is None:
            if key == "Subject":
                continue
            raise missing(f"SNS field {key}")
        parts.append(f"{key}\n{value}\n")
    return "".join(parts).encode("utf-8")


async def default_fetcher(url: str) -> bytes:
    """GET over HTTPS with a short timeout and no redirects."""
    import aiohttp
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(url, allow_redirects=False) as resp:
            if resp.status != 200:
                raise OSError(f"HTTP {resp.status}")
            return await resp.read()


class SnsVerifier:
    def __init__(self, topic_arns: tuple[str, ...], fetcher: Fetcher | None = None, *, region: str | None = None,
                 max_age: float = 0.0, cache_max: int = 32):
        self.topic_arns = frozenset(topic_arns)
        self.fetcher = fetcher or default_fetcher
        self.region = region
        self.max_age = max_age
        self.cache_max = cache_max
        self._certs: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()

    async def _public_key(self, url: str) -> rsa.RSAPublicKey:
        key = self._certs.get(url)
        if key is not None:
            self._certs.move_to_end(url)
            return key
        try:
            pem = await self.fetcher(url)
        except Exception as exc:  # network trouble: SNS must retry, not drop
            raise TransientAuthError(f"cannot fetch SNS signing certificate ({type(exc).__name__})") from None
        try:
            key = x509.load_pem_x509_certificate(pem).public_key()
        except ValueError:
            raise AuthError(403, "bad_certificate", "SNS signing certificate is not a PEM certificate") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise AuthError(403, "bad_certificate", "SNS signing certificate has no RSA key")
        self._certs[url] = key
        while len(self._certs) > self.cache_max:
            self._certs.popitem(last=False)
        return key

    async def verify(self, msg: dict, now: float) -> None:
        """Raise AuthError / TransientAuthError unless ``msg`` is a genuine allowed SNS message."""
        if msg.get("Type") not in ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"):
            raise missing("SNS message (Type)")
        if msg.get("TopicArn") not in self.topic_arns:
            raise AuthError(403, "topic_not_allowed", "SNS TopicArn is not in the allow-list")
        hash_cls = _HASHES.get(str(msg.get("SignatureVersion")))
        if hash_cls is None:
            raise AuthError(403, "bad_signature", "unsupported SNS SignatureVersion")
        url = validate_sns_url(msg.get("SigningCertURL") or msg.get("SigningCertUrl"), self.region,
                               "SigningCertURL", pem=True)
        signature = msg.get("Signature")
        if not isinstance(signature, str) or not signature:
            raise missing("SNS Signature")
        try:
            raw_sig = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise AuthError(403, "bad_signature", "SNS Signature is not base64") from None
        signed = string_to_sign(msg)
        key = await self._public_key(url)
        try:
            key.verify(raw_sig, signed, padding.PKCS1v15(), hash_cls())
        except InvalidSignature:
            raise AuthError(403, "bad_signature", "SNS signature does not match") from None
        if self.max_age > 0:
            try:
                sent = datetime.fromisoformat(str(msg.get("Timestamp"))).timestamp()
            except ValueError:
                raise AuthError(403, "bad_timestamp", "SNS Timestamp is not ISO-8601") from None
            if now - sent > self.max_age:
                raise AuthError(403, "stale_timestamp", f"SNS message older than {self.max_age:g} s")

    async def confirm_subscription(self, msg: dict) -> None:
        url = validate_sns_url(msg.get("SubscribeURL"), self.region, "SubscribeURL", pem=False)
        try:
            await self.fetcher(url)
        except Exception as exc:
            raise TransientAuthError(f"subscription confirmation failed ({type(exc).__name__})") from None
