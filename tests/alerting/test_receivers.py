"""Payload shape of every receiver, checked on the wire against local recording servers."""
from __future__ import annotations

import asyncio
import email
import json
import logging
from email import policy

import aiohttp

from alerting.config import Integration
from alerting.receivers.alertmanager import AlertmanagerNotifier
from alerting.receivers.base import PermanentError, RenderContext, RetryableError
from alerting.receivers.email import EmailNotifier
from alerting.receivers.opsgenie import OpsgenieNotifier
from alerting.receivers.pagerduty import PagerDutyNotifier
from alerting.receivers.slack import SlackNotifier
from alerting.receivers.teams import TeamsNotifier
from alerting.receivers.webhook import WebhookNotifier, verify
from alerting.secrets import SecretRef
from tests.alerting.helpers import Recorder, make_alert, resolved
from tests.alerting.smtp_recorder import SmtpRecorder

CTX = RenderContext(source="ddetect-test", dashboard_url="https://grafana.example/d?c={campaign}",
                    router_url="http://router.example:9095")


def run(coro):
    return asyncio.run(coro)


async def _send(notifier_cls, kind, settings, alerts, env, script=None):
    rec = await Recorder(script=script or {}).start()
    base = rec.url("")
    settings = {k: (v.format(base=base) if isinstance(v, str) else
                    SecretRef(literal=v.literal.format(base=base)) if isinstance(v, SecretRef) and v.literal else v)
                for k, v in settings.items()}
    env = {k: v.format(base=base) for k, v in env.items()}
    notifier = notifier_cls(Integration("r", kind, 0, settings), CTX, env)
    errors = []
    async with aiohttp.ClientSession() as session:
        for alert in alerts:
            try:
                await notifier.notify(alert, session, group="category=technical,rule=x")
            except Exception as exc:  # collected so the test can assert on them
                errors.append(exc)
    await rec.stop()
    return rec, errors


def test_slack_block_kit_message():
    alert = make_alert()
    rec, errors = run(_send(SlackNotifier, "slack", {"url": SecretRef(env="SLACK_URL"), "channel": "#ops"},
                            [alert, resolved(alert)], {"SLACK_URL": "{base}/services/T1/B1/tok"}))
    assert not errors and [r.path for r in rec.requests] == ["/services/T1/B1/tok"] * 2
    msg = rec.requests[0].json()
    assert msg["channel"] == "#ops" and msg["text"].startswith("[FIRING] [CRITICAL] bounce_rate_cusum")
    blocks = msg["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "section", "divider", "section",
                                           "actions", "context"]
    assert blocks[0]["text"]["type"] == "plain_text" and len(blocks[0]["text"]["text"]) <= 150
    fields = {f["text"].split("\n")[0]: f["text"] for f in blocks[2]["fields"]}
    assert set(fields) == {"*Where*", "*How bad*", "*Since*", "*Category / severity*"}
    assert "campaign=spring" in fields["*Where*"] and "8.10% vs baseline 1.00%" in fields["*How bad*"]
    assert "2023-11-14T22:13:20.000Z" in fields["*Since*"]
    assert "550 5.1.1 user unknown x12" in blocks[3]["text"]["text"]
    assert "1. Stop the fire: pause campaign spring" in blocks[5]["text"]["text"]
    assert blocks[6]["elements"][0]["url"] == "https://grafana.example/d?c=spring"
    assert "ddetect ack" in blocks[7]["elements"][0]["text"]
    done = rec.requests[1].json()
    assert done["text"].startswith("[RESOLVED]") and "divider" not in [b["type"] for b in done["blocks"]]


def test_pagerduty_events_v2_trigger_and_resolve():
    alert = make_alert(summary="x" * 2000)
    rec, errors = run(_send(PagerDutyNotifier, "pagerduty",
                            {"routing_key": SecretRef(env="PD_KEY"), "url": "{base}/v2/enqueue"},
                            [alert, resolved(alert)], {"PD_KEY": "R0UT1NGKEY0000000000000000000000"}))
    assert not errors
    trigger, resolve = (r.json() for r in rec.at("/v2/enqueue"))
    assert set(trigger) == {"routing_key", "event_action", "dedup_key", "payload", "links"}
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == alert["dedup_key"]
    assert trigger["routing_key"] == "R0UT1NGKEY0000000000000000000000"
    p = trigger["payload"]
    assert set(p) == {"summary", "source", "severity", "timestamp", "component", "group", "class",
                      "custom_details"}
    assert len(p["summary"]) == 1024 and p["severity"] == "critical" and p["source"] == "news.example.com"
    assert p["timestamp"] == "2023-11-14T22:18:20.000Z"
    assert p["group"] == "category=technical,rule=x" and p["class"] == "bounce_rate_cusum"
    assert p["custom_details"]["runbook"][0].startswith("Stop the fire")
    assert resolve == {"routing_key": "R0UT1NGKEY0000000000000000000000", "event_action": "resolve",
                       "dedup_key": alert["dedup_key"]}


def test_pagerduty_severity_mapping():
    from alerting.receivers.pagerduty import pagerduty_event
    sev = {s: pagerduty_event(make_alert(severity=s), "k")["payload"]["severity"]
           for s in ("critical", "warning", "info")}
    assert sev == {"critical": "critical", "warning": "warning", "info": "info"}


def test_opsgenie_create_and_close_by_alias():
    alert = make_alert()
    rec, errors = run(_send(OpsgenieNotifier, "opsgenie",
                            {"api_key": SecretRef(env="OG"), "api_url": "{base}", "team": "deliv"},
                            [alert, resolved(alert)], {"OG": "og-key-123"}))
    assert not errors
    create, close = rec.requests
    assert create.path == "/v2/alerts" and create.headers["Authorization"] == "GenieKey og-key-123"
    body = create.json()
    assert body["alias"] == alert["dedup_key"] and body["priority"] == "P1" and len(body["message"]) <= 130
    assert body["responders"] == [{"type": "team", "name": "deliv"}]
    assert close.path == f"/v2/alerts/{alert['dedup_key']}/close" and close.query == "identifierType=alias"


def test_teams_workflow_adaptive_card():
    rec, errors = run(_send(TeamsNotifier, "msteams", {"url": SecretRef(env="T")}, [make_alert()],
                            {"T": "{base}/workflows/abc"}))
    assert not errors
    msg = rec.requests[0].json()
    assert msg["type"] == "message" and len(msg["attachments"]) == 1
    att = msg["attachments"][0]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    facts = {f["title"]: f["value"] for f in card["body"][2]["facts"]}
    assert facts["Where"].startswith("campaign=spring") and card["actions"][0]["type"] == "Action.OpenUrl"


def test_generic_webhook_is_signed_over_timestamp_and_body():
    alert = make_alert()
    rec, errors = run(_send(WebhookNotifier, "webhook", {"url": SecretRef(literal="{base}/hook"),
                                                         "secret": SecretRef(env="HMAC")},
                            [alert], {"HMAC": "hmac-secret"}))
    assert not errors
    req = rec.requests[0]
    ts, sig = req.headers["X-Ddetect-Timestamp"], req.headers["X-Ddetect-Signature"]
    assert sig.startswith("sha256=") and verify("hmac-secret", ts, req.body, sig)
    assert not verify("wrong", ts, req.body, sig)
    assert not verify("hmac-secret", ts, req.body + b" ", sig)
    assert req.json()["alert"] == alert


def test_http_status_classification_and_retry_after():
    alert = make_alert()
    script = {"/a": [(429, {"Retry-After": "7"}), (503, {}), (400, {}), (408, {})]}
    rec, errors = run(_send(AlertmanagerNotifier, "alertmanager", {"url": "{base}/a/../a"}, [alert] * 4, {},
                            script={"/a/api/v2/alerts": script["/a"]}))
    kinds = [(type(e).__name__, e.status, e.retry_after) for e in errors]
    assert kinds == [("RetryableError", 429, 7.0), ("RetryableError", 503, None), ("PermanentError", 400, None),
                     ("RetryableError", 408, None)]


def test_receiver_down_is_retryable_and_secret_url_never_in_errors_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    n = SlackNotifier(Integration("r", "slack", 0, {"url": SecretRef(env="U")}), CTX,
                      {"U": "http://127.0.0.1:9/services/SUPERSECRET"})

    async def go():
        async with aiohttp.ClientSession() as s:
            try:
                await n.notify(make_alert(), s)
            except RetryableError as exc:
                return exc
    exc = run(go())
    assert isinstance(exc, RetryableError)
    assert "SUPERSECRET" not in str(exc) and "SUPERSECRET" not in repr(n.secrets) and "SUPERSECRET" not in caplog.text


def test_email_over_local_smtp_server():
    async def go():
        smtp = await SmtpRecorder(rcpt_reply=["250 OK", "250 OK", "550 no such user", "451 try later"]).start()
        n = EmailNotifier(Integration("r", "email", 0, {"to": ["ops@example.com"], "from": "dd@example.com",
                                                        "smarthost": f"127.0.0.1:{smtp.port}"}), CTX, {})
        alert = make_alert()
        await n.notify(alert, None)
        await n.notify(resolved(alert), None)
        errs = []
        for _ in range(2):
            try:
                await n.notify(alert, None)
            except (PermanentError, RetryableError) as exc:
                errs.append(type(exc).__name__)
        await smtp.stop()
        return smtp, errs
    smtp, errs = run(go())
    assert errs == ["PermanentError", "RetryableError"]
    assert len(smtp.messages) == 2 and smtp.messages[0]["to"] == ["<ops@example.com>"]
    first = email.message_from_bytes(smtp.messages[0]["data"], policy=policy.default)
    second = email.message_from_bytes(smtp.messages[1]["data"], policy=policy.default)
    assert first["Subject"].startswith("[FIRING] [CRITICAL] bounce_rate_cusum campaign=spring")
    body = first.get_content()
    assert "Runbook:" in body and "1. Stop the fire" in body and "How bad:   bounce_rate 8.10%" in body
    assert second["In-Reply-To"] == first["Message-ID"] and second["Subject"].startswith("[RESOLVED]")


def test_alertmanager_payload_shape():
    from alerting.receivers.alertmanager import alertmanager_alerts
    alert = make_alert()
    firing = alertmanager_alerts(alert, "http://x/g")[0]
    assert firing["labels"] == {"alertname": "bounce_rate_cusum", "category": "technical", "severity": "critical",
                                "rule": "bounce_rate_cusum", "campaign": "spring", "mailbox_provider": "gmail",
                                "sending_domain": "news.example.com", "dedup_key": alert["dedup_key"]}
    assert firing["startsAt"] == "2023-11-14T22:13:20.000Z" and "endsAt" not in firing
    assert firing["generatorURL"] == "http://x/g"
    done = alertmanager_alerts(resolved(alert), now=1700001000.0)[0]
    assert done["labels"] == firing["labels"] and done["endsAt"] == "2023-11-14T22:28:20.000Z"
    json.dumps(done)
