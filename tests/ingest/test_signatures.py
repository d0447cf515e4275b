"""Signature schemes against published vectors (SendGrid, Mailgun, Svix, AWS SNS) and,
where no vector exists (Mandrill, MailerSend, SNS with our own cert), keys made here."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from multidict import CIMultiDict

from ingest.auth import AuthRequest, build_authenticator
from ingest.auth.mailersend_hmac import MailerSendVerifier, mailersend_signature
from ingest.auth.mailgun_hmac import MailgunVerifier
from ingest.auth.mandrill_hmac import MandrillVerifier, mandrill_signature
from ingest.auth.sendgrid_ecdsa import SendGridVerifier
from ingest.auth.sns import SnsVerifier, validate_sns_url
from ingest.auth.svix import SvixVerifier
from ingest.auth.basic import BasicOrBearerVerifier
from ingest.errors import AuthError

from .helpers import FIXTURES, fixture_bytes, fixture_json, make_config, run


def req(body: bytes, headers: dict, now: float, provider="x", url="http://test/") -> AuthRequest:
    return AuthRequest(provider, body, CIMultiDict(headers), url, now)


def reason_of(fn) -> str:
    with pytest.raises(AuthError) as info:
        fn()
    return info.value.reason


# --- SendGrid (ECDSA P-256) -------------------------------------------------------------
@pytest.mark.parametrize("vector", ["sendgrid-signed-dropped", "sendgrid-signed-test-event"])
def test_sendgrid_published_vectors(vector):
    meta = fixture_json(vector + ".verify.json")
    body = fixture_bytes(meta["body_file"])
    h = meta["headers"]
    ts = float(h["X-Twilio-Email-Event-Webhook-Timestamp"])
    v = SendGridVerifier(meta["public_key_base64_der_spki"], tolerance=300)
    v.verify(req(body, h, ts + 10))
    assert reason_of(lambda: v.verify(req(body + b" ", h, ts))) == "bad_signature"
    if body.endswith(b"\r\n"):  # the trailing CRLF is signed: a re-serialised body fails
        assert reason_of(lambda: v.verify(req(body[:-2], h, ts))) == "bad_signature"
    assert reason_of(lambda: v.verify(req(body, h, ts + 301))) == "stale_timestamp"
    assert reason_of(lambda: v.verify(req(body, {}, ts))) == "missing_credentials"
    neg = meta.get("negative_vectors") or {}
    assert neg
    if "wrong_public_key" in neg:
        other = SendGridVerifier(neg["wrong_public_key"], tolerance=300)
        assert reason_of(lambda: other.verify(req(body, h, ts))) == "bad_signature"
    if neg:
        bad = dict(h, **{"X-Twilio-Email-Event-Webhook-Signature": neg["wrong_signature"]})
        assert reason_of(lambda: v.verify(req(body, bad, ts))) == "bad_signature"


def test_sendgrid_key_accepts_pem():
    meta = fixture_json("sendgrid-signed-dropped.verify.json")
    b64 = meta["public_key_base64_der_spki"]
    pem = "-----BEGIN PUBLIC KEY-----\n" + b64 + "\n-----END PUBLIC KEY-----\n"
    v = SendGridVerifier(pem, tolerance=0)
    v.verify(req(fixture_bytes(meta["body_file"]), meta["headers"], 0))


# --- Mailgun (HMAC-SHA256, token replay) -----------------------------------------------
def test_mailgun_published_vector_and_replay():
    m = fixture_json("mailgun-signature-vector.json")
    v = MailgunVerifier(m["webhook_signing_key"], tolerance=300, replay_max=100)
    body = json.dumps({"signature": m["signature"], "event-data": {}}).encode()
    now = float(m["signature"]["timestamp"]) + 5
    v.verify(req(body, {}, now))
    assert reason_of(lambda: v.verify(req(body, {}, now))) == "replayed_token"
    neg = json.dumps({"signature": m["negative_vector"]}).encode()
    assert reason_of(lambda: v.verify(req(neg, {}, now))) == "bad_signature"
    fresh = MailgunVerifier(m["webhook_signing_key"], tolerance=300, replay_max=100)
    assert reason_of(lambda: fresh.verify(req(body, {}, now + 3600))) == "stale_timestamp"
    assert reason_of(lambda: fresh.verify(req(b"not json", {}, now))) == "missing_credentials"


# --- Svix / Resend ------------------------------------------------------------------------
def test_svix_published_vector():
    m = fixture_json("resend-svix-signature-vector.json")
    v = SvixVerifier(m["secret"], tolerance=300)
    body = m["raw_body"].encode()
    ts = float(m["headers"]["svix-timestamp"])
    v.verify(req(body, m["headers"], ts))
    rotated = dict(m["headers"], **{"svix-signature": "v1,AAAA " + m["headers"]["svix-signature"]})
    v.verify(req(body, rotated, ts))
    assert reason_of(lambda: v.verify(req(body + b"x", m["headers"], ts))) == "bad_signature"
    assert reason_of(lambda: v.verify(req(body, m["headers"], ts + 600))) == "stale_timestamp"


# --- Mandrill (HMAC-SHA1 over URL + sorted params) ------------------------------------
def test_mandrill_synthetic_vector_from_research_notes():
    m = fixture_json("synthetic/mandrill-signature-vector.SYNTHETIC.json")
    body = fixture_bytes("mandrill-example-hard-bounce.form-body.txt")
    v = MandrillVerifier(m["webhook_key"], m["webhook_url_as_configured"])
    v.verify(req(body, m["header"], 0))
    wrong_url = MandrillVerifier(m["webhook_key"], m["webhook_url_as_configured"] + "/")
    assert reason_of(lambda: wrong_url.verify(req(body, m["header"], 0))) == "bad_signature"


def test_mandrill_signature_sorts_params_independently():
    key, url = "k3y", "https://hooks.example.com/webhooks/mandrill?x=1"
    params = [("mandrill_events", "[]"), ("a", "1")]
    expected = base64.b64encode(hmac.new(b"k3y", (url + "a1mandrill_events[]").encode(), hashlib.sha1).digest()).decode()
    assert mandrill_signature(key, url, params) == expected


# --- MailerSend ---------------------------------------------------------------------------
def test_mailersend_generated_secret():
    body = fixture_bytes("mailersend-anymail-delivered.json")
    v = MailerSendVerifier("s3cret-generated-in-test")
    sig = hmac.new(b"s3cret-generated-in-test", body, hashlib.sha256).hexdigest()
    assert mailersend_signature("s3cret-generated-in-test", body) == sig
    v.verify(req(body, {"Signature": sig}, 0))
    assert reason_of(lambda: v.verify(req(body[:-1], {"Signature": sig}, 0))) == "bad_signature"
    assert reason_of(lambda: v.verify(req(body, {}, 0))) == "missing_credentials"


# --- Basic / bearer ---------------------------------------------------------------------
def test_basic_and_bearer():
    v = BasicOrBearerVerifier("hook", "pa:ss", "tok")
    good = "Basic " + base64.b64encode(b"hook:pa:ss").decode()
    v.verify(req(b"", {"Authorization": good}, 0))
    v.verify(req(b"", {"Authorization": "Bearer tok"}, 0))
    v.verify(req(b"", {"X-MessageSystems-Webhook-Token": "tok"}, 0))
    bad = "Basic " + base64.b64encode(b"hook:nope").decode()
    assert reason_of(lambda: v.verify(req(b"", {"Authorization": bad}, 0))) == "bad_credentials"
    assert reason_of(lambda: v.verify(req(b"", {"Authorization": "Bearer nope"}, 0))) == "bad_credentials"
    assert reason_of(lambda: v.verify(req(b"", {}, 0))) == "missing_credentials"


# --- SNS with the AWS SDKs' published, AWS-signed messages ---------------------------
SNS_SIGNED = ["sns-awssdkjava-notification-no-subject-sigv1.json", "sns-awssdkjava-notification-sigv2.json",
              "sns-awssdkjava-notification-with-subject-sigv1.json",
              "sns-awssdkjava-subscriptionconfirmation-sigv1.json",
              "sns-awssdkjava-unsubscribeconfirmation-sigv2.json",
              "sns-awssdkruby-notification-sigv1.json", "sns-awssdkruby-notification-sigv2.json",
              "sns-awssdkphp-notification-with-subject-sigv1.json",
              "sns-awssdkphp-notification-with-subject-sigv2.json",
              "sns-thirdparty-subscriptionconfirmation-us-east-1-sigv1.json"]


class FixtureCerts:
    """Serves SigningCertURL basenames from tests/fixtures/esp/certs; records requests."""

    def __init__(self):
        self.requested: list[str] = []

    async def __call__(self, url: str) -> bytes:
        self.requested.append(url)
        return (FIXTURES / "certs" / url.rsplit("/", 1)[1]).read_bytes()


@pytest.mark.parametrize("name", SNS_SIGNED)
def test_sns_published_messages_verify(name):
    msg = fixture_json(name)
    fetch = FixtureCerts()
    v = SnsVerifier((msg["TopicArn"],), fetch, max_age=0)
    run(v.verify(msg, now=0))
    run(v.verify(msg, now=0))
    assert len(fetch.requested) == 1  # certificate cache
    tampered = dict(msg, Message=msg["Message"] + " ")
    with pytest.raises(AuthError) as info:
        run(v.verify(tampered, now=0))
    assert info.value.reason == "bad_signature"


def test_sns_topic_allow_list_and_cert_url_rules():
    msg = fixture_json("sns-awssdkjava-notification-sigv2.json")
    v = SnsVerifier(("arn:aws:sns:us-west-2:999:other",), FixtureCerts())
    with pytest.raises(AuthError) as info:
        run(v.verify(msg, now=0))
    assert info.value.reason == "topic_not_allowed"
    for url in ["http://sns.us-west-2.amazonaws.com/x.pem", "https://sns.us-west-2.amazonaws.com.evil.com/x.pem",
                "https://evil.com/sns.us-west-2.amazonaws.com/x.pem", "https://sns.us-west-2.amazonaws.com/x.txt",
                "https://user@sns.us-west-2.amazonaws.com/x.pem", "https://sns.us-west-2.amazonaws.com:8443/x.pem"]:
        with pytest.raises(AuthError):
            validate_sns_url(url, None, "SigningCertURL", pem=True)
    validate_sns_url("https://sns.cn-north-1.amazonaws.com.cn/a.pem", None, "u", pem=True)
    with pytest.raises(AuthError):
        validate_sns_url("https://sns.us-east-1.amazonaws.com/a.pem", "us-west-2", "u", pem=True)
    pinned = SnsVerifier((msg["TopicArn"],), FixtureCerts(), region="us-east-1")
    with pytest.raises(AuthError) as info:
        run(pinned.verify(msg, now=0))
    assert info.value.reason == "bad_cert_url"


def test_sns_max_age():
    msg = fixture_json("sns-awssdkjava-notification-sigv2.json")
    v = SnsVerifier((msg["TopicArn"],), FixtureCerts(), max_age=3600)
    sent = 1772827226.893  # 2026-03-06T20:00:26.893Z
    run(v.verify(msg, now=sent + 60))
    with pytest.raises(AuthError) as info:
        run(v.verify(msg, now=sent + 7200))
    assert info.value.reason == "stale_timestamp"


def test_every_provider_fails_closed_without_credentials():
    cfg = make_config()
    for name in ("sendgrid", "mailgun", "postmark", "ses", "sparkpost", "mandrill", "brevo", "resend",
                 "mailersend", "mailjet", "generic"):
        auth = build_authenticator(name, cfg)
        with pytest.raises(AuthError) as info:
            run(auth.authenticate(req(b"{}", {}, 0, provider=name)))
        assert info.value.status == 403 and info.value.reason == "not_configured"
    cfg.provider("generic").unauthenticated = True
    assert run(build_authenticator("generic", cfg).authenticate(req(b"{}", {}, 0))) is None
