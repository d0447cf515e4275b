"""A locally generated SNS signing certificate, served by a real local HTTP server that
also records SubscribeURL confirmations; plus a fetcher that maps the genuine
``https://sns.<region>.amazonaws.com/...`` URLs onto it (the host rule stays enforced)."""
from __future__ import annotations

import base64
import datetime as dt
import json
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from ingest.auth.sns import string_to_sign

REGION = "us-east-1"
CERT_PATH = "/SimpleNotificationService-localtest.pem"
CERT_URL = f"https://sns.{REGION}.amazonaws.com{CERT_PATH}"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def make_cert():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


class LocalSns:
    def __init__(self):
        self.key, self.pem = make_cert()
        self.requests: list[str] = []
        self.server: TestServer | None = None
        self.fail = False

    async def start(self):
        app = web.Application()

        async def handler(request):
            self.requests.append(str(request.rel_url))
            if self.fail:
                return web.Response(status=500)
            if request.path == CERT_PATH:
                return web.Response(body=self.pem)
            return web.Response(text="<ConfirmSubscriptionResponse/>")

        app.router.add_get("/{tail:.*}", handler)
        self.server = TestServer(app)
        await self.server.start_server()
        return self

    async def close(self):
        await self.server.close()

    async def fetch(self, url: str) -> bytes:
        parts = urlsplit(url)
        assert parts.hostname == f"sns.{REGION}.amazonaws.com", url  # only validated URLs reach here
        local = f"http://127.0.0.1:{self.server.port}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        async with aiohttp.ClientSession() as session:
            async with session.get(local) as resp:
                if resp.status != 200:
                    raise OSError(f"HTTP {resp.status}")
                return await resp.read()

    def sign(self, msg: dict, version: str = "2") -> dict:
        msg = dict(msg, SignatureVersion=version, SigningCertURL=CERT_URL)
        alg = hashes.SHA256() if version == "2" else hashes.SHA1()
        sig = self.key.sign(string_to_sign(msg), padding.PKCS1v15(), alg)
        msg["Signature"] = base64.b64encode(sig).decode()
        return msg

    def notification(self, ses_event: dict, message_id: str = "msg-1", topic: str = TOPIC, version="2") -> bytes:
        return json.dumps(self.sign({
            "Type": "Notification", "MessageId": message_id, "TopicArn": topic,
            "Message": json.dumps(ses_event), "Timestamp": _now_iso(),
            "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe"}, version)).encode()

    def subscription_confirmation(self, topic: str = TOPIC) -> bytes:
        return json.dumps(self.sign({
            "Type": "SubscriptionConfirmation", "MessageId": "sub-1", "Token": "tok123", "TopicArn": topic,
            "Message": "You have chosen to subscribe.",
            "SubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&Token=tok123",
            "Timestamp": _now_iso()}, "1")).encode()
