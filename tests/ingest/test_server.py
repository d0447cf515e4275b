"""The HTTP edge, in-process (aiohttp test server, real HTTP): statuses, DLQ, dedup,
outage answers, SNS handshake against a local certificate server, metrics endpoints."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from ingest.auth.mailgun_hmac import mailgun_signature
from ingest.server import outage_status

from .helpers import AppHarness, MemoryProducer, fixture_bytes, fixture_json, make_config, run
from .sns_local import REGION, TOPIC, LocalSns

BASIC = {"basic_user": "hook", "basic_password": "s3cret"}
AUTH = {"Authorization": "Basic " + base64.b64encode(b"hook:s3cret").decode()}
JSON = {"Content-Type": "application/json"}


def sendgrid_batch(n: int, prefix: str = "e") -> bytes:
    return json.dumps([{"event": "delivered", "email": f"user{i}@gmail.com", "timestamp": 1700000000 + i,
                        "sg_event_id": f"{prefix}{i}", "category": "spring"} for i in range(n)]).encode()


def test_basic_auth_batch_produced_and_redelivery_deduplicated():
    cfg = make_config(sendgrid=BASIC)

    async def go():
        async with AppHarness(cfg) as h:
            r = await h.client.post("/webhooks/sendgrid", data=sendgrid_batch(5), headers={**JSON, **AUTH})
            assert r.status == 200, await r.text()
            assert (await r.json())["accepted"] == 5
            r = await h.client.post("/webhooks/sendgrid", data=sendgrid_batch(6), headers={**JSON, **AUTH})
            body = await r.json()
            assert (r.status, body["accepted"], body["duplicates"]) == (200, 1, 5)
            assert len(h.producer.events) == 6
            assert len({e["event_id"] for e in h.producer.events}) == 6
            assert h.sample("ddetect_ingest_events_total", provider="sendgrid", outcome="duplicate") == 5
            assert h.sample("ddetect_webhook_requests_total", provider="sendgrid", status="200") == 2
            text = await (await h.client.get("/metrics")).text()
            assert "ddetect_webhook_requests_total" in text and "@gmail.com" not in text
    run(go())


def test_auth_failures_are_401_403_counted_and_not_dead_lettered():
    cfg = make_config(sendgrid=BASIC)

    async def go():
        async with AppHarness(cfg) as h:
            r = await h.client.post("/webhooks/sendgrid", data=sendgrid_batch(1), headers=JSON)
            assert r.status == 401 and (await r.json())["reason"] == "missing_credentials"
            bad = {"Authorization": "Basic " + base64.b64encode(b"hook:wrong").decode()}
            r = await h.client.post("/webhooks/sendgrid", data=sendgrid_batch(1), headers={**JSON, **bad})
            assert r.status == 403 and (await r.json())["reason"] == "bad_credentials"
            r = await h.client.post("/webhooks/postmark", data=b"{}", headers=JSON)  # not configured
            assert r.status == 403 and (await r.json())["reason"] == "not_configured"
            assert h.sample("ddetect_webhook_auth_failures_total", provider="sendgrid", reason="bad_credentials") == 1
            assert not h.producer.events and not h.producer.dead_letters
    run(go())


def test_malformed_body_is_400_with_reason_and_dead_lettered():
    cfg = make_config(sendgrid={"unauthenticated": True})

    async def go():
        async with AppHarness(cfg) as h:
            payload = b'[{"event": "delivered", "email": "jane@x.com", "timestamp": 1}'  # truncated
            r = await h.client.post("/webhooks/sendgrid", data=payload, headers=JSON)
            body = await r.json()
            assert r.status == 400 and "not valid JSON" in body["error"]
            (dl,) = h.producer.dead_letters
            assert dl["body"] == payload.decode() and dl["provider"] == "sendgrid"
            assert "jane@x.com" not in dl["reason"]
            assert h.sample("ddetect_dead_letters_total", source="ingest") == 1
    run(go())


def test_one_bad_event_in_a_batch_goes_to_dlq_others_produced():
    cfg = make_config(sendgrid={"unauthenticated": True})
    batch = json.loads(sendgrid_batch(3))
    batch[1]["email"] = "not-an-address"

    async def go():
        async with AppHarness(cfg) as h:
            r = await h.client.post("/webhooks/sendgrid", data=json.dumps(batch), headers=JSON)
            body = await r.json()
            assert (r.status, body["accepted"], body["rejected"]) == (200, 2, 1)
            assert body["errors"][0]["index"] == 1 and "email" in body["errors"][0]["error"]
            (dl,) = h.producer.dead_letters
            assert dl["event_index"] == 1 and dl["raw_event"]["sg_event_id"] == "e1"
    run(go())


def test_size_and_content_type_limits():
    cfg = make_config(sendgrid={"unauthenticated": True})
    cfg.max_body_bytes = 1000

    async def go():
        async with AppHarness(cfg) as h:
            r = await h.client.post("/webhooks/sendgrid", data=sendgrid_batch(50), headers=JSON)
            assert r.status == 413
            r = await h.client.post("/webhooks/sendgrid", data=b"[]", headers={"Content-Type": "text/html"})
            assert r.status == 415
            r = await h.client.post("/webhooks/nope", data=b"[]", headers=JSON)
            assert r.status == 404
            r = await h.client.head("/webhooks/mandrill")
            assert r.status == 200
    run(go())


@pytest.mark.parametrize("provider,expected", [("sendgrid", 503), ("mailgun", 503), ("ses", 503),
                                               ("postmark", 503), ("brevo", 429), ("sparkpost", 503)])
def test_broker_outage_answers_the_retry_status(provider, expected):
    assert outage_status(provider, make_config()) == expected
    cfg = make_config(**{provider: {"unauthenticated": True}})
    body = {"sendgrid": sendgrid_batch(2),
            "mailgun": json.dumps({"event-data": fixture_json("mailgun-docs-eventdata-delivered.json")}).encode(),
            "ses": fixture_bytes("ses-docs-eventpublishing-delivery.json"),
            "postmark": fixture_bytes("postmark-skills-delivery.json"),
            "brevo": fixture_bytes("brevo-anymail-delivered.json"),
            "sparkpost": fixture_bytes("sparkpost-anymail-delivery.json")}[provider]
    ctype = "text/plain; charset=UTF-8" if provider == "ses" else "application/json"

    async def go():
        producer = MemoryProducer()
        producer.fail = True
        async with AppHarness(cfg, producer) as h:
            r = await h.client.post(f"/webhooks/{provider}", data=body, headers={"Content-Type": ctype})
            assert r.status == expected and r.headers["Retry-After"]
            assert (await h.client.get("/readyz")).status == 503
            assert (await h.client.get("/healthz")).status == 200
            producer.fail = False  # broker back: the ESP's retry is accepted, nothing lost
            r = await h.client.post(f"/webhooks/{provider}", data=body, headers={"Content-Type": ctype})
            assert r.status == 200 and producer.events
            assert (await h.client.get("/readyz")).status == 200
    run(go())


def test_outage_status_refuses_do_not_retry_codes():
    for provider, status in (("mailgun", 406), ("ses", 400), ("brevo", 503), ("postmark", 410)):
        cfg = make_config(**{provider: {"outage_status": status}})
        with pytest.raises(ValueError):
            outage_status(provider, cfg)


def test_mailgun_signed_post_and_replay_rejected():
    key = "key-generated-in-test"
    cfg = make_config(mailgun={"secret": key})
    now = time.time()
    ts, token = str(int(now)), "t" * 50
    doc = {"signature": {"timestamp": ts, "token": token, "signature": mailgun_signature(key, ts, token)},
           "event-data": fixture_json("mailgun-docs-eventdata-failed-permanent-hard-bounce.json")}

    async def go():
        async with AppHarness(cfg) as h:
            r = await h.client.post("/webhooks/mailgun", data=json.dumps(doc), headers=JSON)
            assert r.status == 200, await r.text()
            assert h.producer.events[0]["bounce_class"] == "hard"
            r = await h.client.post("/webhooks/mailgun", data=json.dumps(doc), headers=JSON)
            assert r.status == 403 and (await r.json())["reason"] == "replayed_token"
    run(go())


def test_sendgrid_signed_vector_through_the_server():
    meta = fixture_json("sendgrid-signed-dropped.verify.json")
    cfg = make_config(sendgrid={"secret": meta["public_key_base64_der_spki"]})
    ts = float(meta["headers"]["X-Twilio-Email-Event-Webhook-Timestamp"])

    async def go():
        async with AppHarness(cfg, clock=lambda: ts + 1) as h:
            body = fixture_bytes(meta["body_file"])
            r = await h.client.post("/webhooks/sendgrid", data=body, headers={**JSON, **meta["headers"]})
            assert r.status == 200, await r.text()
            assert h.producer.events[0]["type"] == "dropped"
            r = await h.client.post("/webhooks/sendgrid", data=body + b" ", headers={**JSON, **meta["headers"]})
            assert r.status == 403
    run(go())


def test_mandrill_signed_form_post():
    url = "https://hooks.example.com/webhooks/mandrill"
    cfg = make_config(mandrill={"secret": "mk", "webhook_url": url})
    body = fixture_bytes("mandrill-example-hard-bounce.form-body.txt")
    from urllib.parse import parse_qsl
    from ingest.auth.mandrill_hmac import mandrill_signature
    sig = mandrill_signature("mk", url, parse_qsl(body.decode()))

    async def go():
        async with AppHarness(cfg) as h:
            headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Mandrill-Signature": sig}
            r = await h.client.post("/webhooks/mandrill", data=body, headers=headers)
            assert r.status == 200, await r.text()
            assert h.producer.events[0]["campaign"] == "webhook-example"
    run(go())


def test_resend_svix_signed_post():
    secret = "whsec_" + base64.b64encode(b"generated-in-test-32-bytes-key!!").decode()
    cfg = make_config(resend={"secret": secret})
    body = fixture_bytes("resend-anymail-bounced.json")
    ts = str(int(time.time()))
    mac = hmac.new(b"generated-in-test-32-bytes-key!!", b"msg_1." + ts.encode() + b"." + body, hashlib.sha256)
    headers = {**JSON, "svix-id": "msg_1", "svix-timestamp": ts,
               "svix-signature": "v1," + base64.b64encode(mac.digest()).decode()}

    async def go():
        async with AppHarness(cfg) as h:
            r = await h.client.post("/webhooks/resend", data=body, headers=headers)
            assert r.status == 200, await r.text()
            r = await h.client.post("/webhooks/resend", data=body, headers={**headers, "svix-timestamp": "1"})
            assert r.status == 403
    run(go())


def test_ses_via_sns_local_certificate_and_subscription_handshake():
    async def go():
        sns = await LocalSns().start()
        try:
            cfg = make_config(ses={"topic_arns": (TOPIC,), "sns_region": REGION})
            async with AppHarness(cfg, fetcher=sns.fetch) as h:
                ctype = {"Content-Type": "text/plain; charset=UTF-8"}
                # handshake for a topic that is not allowed: refused, no GET
                other = sns.subscription_confirmation("arn:aws:sns:us-east-1:123456789012:other")
                r = await h.client.post("/webhooks/ses", data=other, headers=ctype)
                assert r.status == 403
                assert not any("ConfirmSubscription" in u for u in sns.requests)
                r = await h.client.post("/webhooks/ses", data=sns.subscription_confirmation(), headers=ctype)
                assert r.status == 200, await r.text()
                assert any("Action=ConfirmSubscription" in u and "Token=tok123" in u for u in sns.requests)
                bounce = fixture_json("ses-docs-eventpublishing-bounce-permanent.json")
                for version in ("1", "2"):
                    r = await h.client.post("/webhooks/ses", data=sns.notification(bounce, f"m-{version}",
                                                                                    version=version), headers=ctype)
                    assert r.status == 200, await r.text()
                assert [e["bounce_class"] for e in h.producer.events] == ["hard", "hard"]
                assert sum(CERT in u for u in sns.requests for CERT in ["localtest.pem"]) == 1  # cached
                # SNS retry with the same MessageId: deduplicated
                r = await h.client.post("/webhooks/ses", data=sns.notification(bounce, "m-1"), headers=ctype)
                assert (await r.json())["duplicates"] == 1
                # forged signature -> 403; raw (unsigned) SES event -> 401
                forged = json.loads(sns.notification(bounce, "m-3"))
                forged["Message"] = forged["Message"].replace("Permanent", "Transient")
                r = await h.client.post("/webhooks/ses", data=json.dumps(forged), headers=ctype)
                assert r.status == 403
                r = await h.client.post("/webhooks/ses", data=json.dumps(bounce), headers=ctype)
                assert r.status == 401
        finally:
            await sns.close()
    run(go())


def test_sns_certificate_fetch_failure_asks_sns_to_retry():
    async def go():
        sns = await LocalSns().start()
        sns.fail = True
        try:
            cfg = make_config(ses={"topic_arns": (TOPIC,)})
            async with AppHarness(cfg, fetcher=sns.fetch) as h:
                bounce = fixture_json("ses-docs-eventpublishing-bounce-permanent.json")
                r = await h.client.post("/webhooks/ses", data=sns.notification(bounce),
                                        headers={"Content-Type": "text/plain"})
                assert r.status == 503  # a 4xx would make SNS drop it
        finally:
            await sns.close()
    run(go())


def test_events_stamped_in_the_future_are_accepted_counted_and_logged_once(caplog):
    """Ingest says so (metric + one log line per provider per interval) but still answers 200:
    the request is fine, the ESP's clock is not; the worker dead-letters such events."""
    cfg = make_config(sendgrid={"unauthenticated": True}, mailgun={"unauthenticated": True})
    now = time.time()
    batch = json.loads(sendgrid_batch(4, prefix="f"))
    batch[0]["timestamp"] = int(now)                 # on time
    batch[1]["timestamp"] = int(now + 600)           # within the skew
    batch[2]["timestamp"] = int(now + 2 * 86400)     # two days ahead
    batch[3]["timestamp"] = int(now + 365 * 86400)   # a year ahead

    async def go():
        async with AppHarness(cfg) as h:
            with caplog.at_level("WARNING", logger="ddetect.ingest"):
                r = await h.client.post("/webhooks/sendgrid", data=json.dumps(batch), headers=JSON)
                assert r.status == 200 and (await r.json())["accepted"] == 4
                later = [{**e, "sg_event_id": e["sg_event_id"] + "-again"} for e in batch]
                r = await h.client.post("/webhooks/sendgrid", data=json.dumps(later), headers=JSON)
                assert r.status == 200
            assert len(h.producer.events) == 8
            assert h.sample("ddetect_ingest_events_future_total", provider="sendgrid") == 4
            lines = [rec.getMessage() for rec in caplog.records if "in the future" in rec.getMessage()]
            assert len(lines) == 1 and "provider sendgrid: 2 event(s)" in lines[0], lines
    run(go())
