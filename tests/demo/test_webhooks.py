"""sim.webhooks: rendered ESP payloads parse back, through ingest's own normalisers, to the
simulated canonical events (modulo what each ESP's format cannot carry), and their
signatures / credentials pass ingest's authenticators; tampering fails them."""
from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from aiohttp.test_utils import TestClient, TestServer

from detector.event import validate_event
from ingest.auth import AuthRequest, build_authenticator
from ingest.config import load_config
from ingest.errors import AuthError
from ingest.providers import PROVIDERS
from ingest.server import build_app
from sim import simulate
from sim.table import DEMO_HASH_KEY, recipient_hash
from sim.webhooks import (ENDPOINT, DemoCredentials, SimEvent, WebhookRenderer, iter_timed_events,
                          mailgun_signature, sendgrid_signature)

NOW = 1_760_000_000.0
ESPS = ("sendgrid", "mailgun", "postmark", "sparkpost", "ses")
KINDS = [("accepted", None), ("delivered", None), ("deferred", None), ("dropped", None), ("opened", None),
         ("clicked", None), ("complained", None), ("unsubscribed", None),
         ("bounced", "hard"), ("bounced", "soft"), ("bounced", "block")]
#: What an ESP never posts a webhook for (the renderer counts these instead).
NOT_POSTED = {"postmark": {"accepted", "deferred", "dropped"}}


@pytest.fixture(scope="module")
def creds() -> DemoCredentials:
    return DemoCredentials.generate()


@pytest.fixture(scope="module")
def config(creds):
    return load_config(None, env=creds.ingest_env())


@pytest.fixture(scope="module")
def sample() -> list[SimEvent]:
    table, _ = simulate("demo", seed=7, duration=3 * 3600.0, scale=0.05)
    return [item for _, item in iter_timed_events(table)]


def mixed(sample: list[SimEvent], per_esp: int) -> list[SimEvent]:
    """The first ``per_esp`` events of each ESP, in arrival order (bulk sends start late)."""
    taken, out = Counter(), []
    for item in sample:
        esp = item.event["provider"]
        if taken[esp] < per_esp:
            taken[esp] += 1
            out.append(item)
    return out


def every_kind(sample: list[SimEvent]) -> list[SimEvent]:
    """One event of every (type, bounce class) per ESP, built from simulated events of that
    ESP (SMTP code and reply borrowed from a simulated event of the same kind), so rare
    combinations (a Postmark block, a Mailgun complaint) are covered too."""
    replies = {}
    for item in sample:
        ev = item.event
        replies.setdefault((ev["type"], ev["bounce_class"]), (ev["smtp_code"], ev["reason"]))
    out = []
    for esp in ESPS:
        template = next(i for i in sample if i.event["provider"] == esp)
        for n, (kind, bclass) in enumerate(KINDS):
            code, reason = replies.get((kind, bclass), (None, None))
            if kind == "complained":
                code, reason = None, None
            ev = validate_event(dict(template.event, type=kind, bounce_class=bclass, smtp_code=code, reason=reason,
                                     event_id=f"{template.event['event_id']}-{n:x}",
                                     timestamp=template.event["timestamp"] + n))
            out.append(SimEvent(ev, template.address))
    return out


def expected_after_roundtrip(esp: str, ev: dict) -> dict:
    """The canonical event ingest should produce from ``ev`` rendered as ``esp``'s webhook."""
    out = dict(ev)
    out["provider"] = esp
    out["event_id"] = ev["event_id"] if esp == "ses" else f"{esp}:{ev['event_id']}"
    out.pop("attempt", None)
    numbered = {"sendgrid": ("deferred",), "mailgun": ("delivered", "deferred", "bounced"),
                "sparkpost": ("delivered", "bounced", "deferred")}
    if ev["type"] in numbered.get(esp, ()) and (esp != "sparkpost" or ev.get("attempt")):
        out["attempt"] = ev.get("attempt") or 1          # the ESP numbers its delivery attempts
    elif esp == "sparkpost" and ev["type"] == "deferred":
        out["attempt"] = 2                               # a delay event without a number: num_retries 1
    if esp == "sendgrid":
        out["sending_domain"] = None                     # not in SendGrid's event payload
        out["ip_pool"] = None                            # SendGrid names the pool on processed only
        out["timestamp"] = float(int(ev["timestamp"]))   # integer seconds
        if ev["type"] == "delivered":
            out["reason"] = f"{ev['smtp_code']} OK"      # SendGrid's "response"
    elif esp == "sparkpost":
        out["timestamp"] = float(int(ev["timestamp"]))
        if ev["type"] == "delivered":
            out["smtp_code"] = None                      # delivery events carry no reply code
    elif esp == "mailgun":
        out["ip_pool"] = None
    elif esp == "postmark":
        out["ip_pool"] = None
        out["sending_domain"] = None                     # From is on Bounce/SpamComplaint only: not used
        if ev["type"] in ("opened", "clicked", "complained", "unsubscribed"):
            out["smtp_code"] = None
        out.pop("event_id")                              # Postmark ids: RecordType:ID:time
    return out


def roundtrip(items: list[SimEvent], creds, config) -> tuple[list[dict], WebhookRenderer]:
    renderer = WebhookRenderer(creds, clock=lambda: NOW)
    parsed = []
    for hook in renderer.render(items):
        result = PROVIDERS[hook.endpoint].normalize(hook.body, hook.headers["Content-Type"], config)
        assert not result.rejected, (hook.esp, [r.reason for r in result.rejected])
        assert result.skipped == 0
        assert len(result.events) == hook.events
        parsed.extend(result.events)
    return parsed, renderer


def assert_same(esp: str, sent: list[dict], parsed: list[dict]) -> None:
    assert len(parsed) == len(sent), esp
    for ev, got in zip(sent, parsed):
        want = expected_after_roundtrip(esp, ev)
        for name, value in want.items():
            if name == "timestamp":
                assert got[name] == pytest.approx(value, abs=1e-3), (esp, ev["type"], name)
            else:
                assert got[name] == value, (esp, ev["type"], ev["bounce_class"], name, got[name], value)
        if esp == "postmark":
            assert got["event_id"].startswith("postmark:")


@pytest.mark.parametrize("esp", ESPS)
def test_every_event_kind_roundtrips(esp, sample, creds, config):
    items = [i for i in every_kind(sample) if i.event["provider"] == esp]
    parsed, renderer = roundtrip(items, creds, config)
    skipped = NOT_POSTED.get(esp, set())
    assert renderer.not_carried == Counter({(esp, kind): 1 for kind in skipped})
    assert_same(esp, [i.event for i in items if i.event["type"] not in skipped], parsed)


@pytest.mark.parametrize("esp", ESPS)
def test_simulated_stream_roundtrips(esp, sample, creds, config):
    items = [i for i in sample if i.event["provider"] == esp]
    assert len(items) > 100
    parsed, _ = roundtrip(items, creds, config)
    sent = [i.event for i in items if i.event["type"] not in NOT_POSTED.get(esp, set())]
    assert_same(esp, sent, parsed)


def test_recipient_hash_matches_the_simulator(sample, creds, config):
    """Ingest hashes the rendered address with the demo key: the hash the simulator wrote."""
    assert config.recipient_hash_key == DEMO_HASH_KEY
    items = [i for i in sample if i.event["provider"] == "sendgrid"][:300]
    parsed, _ = roundtrip(items, creds, config)
    for item, got in zip(items, parsed):
        assert got["recipient_hash"] == item.event["recipient_hash"] == recipient_hash(item.address)
        assert got["recipient_domain"] == item.address.rpartition("@")[2]


def test_batching_and_one_event_per_request(sample, creds):
    renderer = WebhookRenderer(creds, clock=lambda: NOW, max_batch=50)
    hooks = renderer.render(mixed(sample, 400))
    for hook in hooks:
        body = json.loads(hook.body)
        if hook.esp in ("sendgrid", "sparkpost", "ses"):
            assert isinstance(body, list) and 1 <= len(body) <= 50 == renderer.max_batch
        elif hook.esp == "mailgun":
            assert set(body) == {"signature", "event-data"}
        else:
            assert body["RecordType"]
    assert {h.endpoint for h in hooks} == set(ENDPOINT.values())


# ----------------------------------------------------------------------------- authentication

def _auth(provider, config, hook, now=NOW):
    from multidict import CIMultiDict

    authenticator = build_authenticator(provider, config)
    assert authenticator.problem is None and not authenticator.disabled
    request = AuthRequest(provider, hook.body, CIMultiDict(hook.headers), f"http://x/webhooks/{provider}", now)
    return asyncio.run(authenticator.authenticate(request))


@pytest.mark.parametrize("esp", ESPS)
def test_credentials_pass_ingest_authentication(esp, sample, creds, config):
    renderer = WebhookRenderer(creds, clock=lambda: NOW)
    hooks = [h for h in renderer.render(mixed(sample, 100)) if h.esp == esp]
    assert hooks
    for hook in hooks[:20]:
        _auth(hook.endpoint, config, hook)


def test_tampered_or_foreign_requests_are_refused(sample, creds, config):
    renderer = WebhookRenderer(creds, clock=lambda: NOW)
    hooks = {h.esp: h for h in renderer.render(mixed(sample, 100))}
    # SendGrid: the signature covers the body bytes.
    sg = hooks["sendgrid"]
    sg.body = sg.body.replace(b'"event":"', b'"event": "', 1)
    with pytest.raises(AuthError) as exc:
        _auth("sendgrid", config, sg)
    assert exc.value.reason == "bad_signature"
    # Mailgun: a signature made with another key; and a replayed token.
    other = DemoCredentials.generate()
    mg = WebhookRenderer(other, clock=lambda: NOW).render([i for i in sample if i.event["provider"] == "mailgun"][:1])[0]
    with pytest.raises(AuthError):
        _auth("mailgun", config, mg)
    # Postmark: wrong password.
    pm = WebhookRenderer(other, clock=lambda: NOW).render(
        [i for i in sample if i.event["provider"] == "postmark" and i.event["type"] == "delivered"][:1])[0]
    with pytest.raises(AuthError):
        _auth("postmark", config, pm)


def test_signature_helpers_match_ingest_schemes(creds):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from ingest.auth.mailgun_hmac import mailgun_signature as ingest_mailgun_signature
    from ingest.auth.sendgrid_ecdsa import load_public_key

    key = load_public_key(creds.sendgrid_public_key())
    import base64
    sig = sendgrid_signature(creds.sendgrid_key, "1700000000", b"[]")
    key.verify(base64.b64decode(sig), b"1700000000[]", ec.ECDSA(hashes.SHA256()))
    assert mailgun_signature("k", "1", "t") == ingest_mailgun_signature("k", "1", "t")


def test_mailgun_tokens_are_single_use(sample, creds, config):
    renderer = WebhookRenderer(creds, clock=lambda: NOW)
    items = [i for i in sample if i.event["provider"] == "mailgun"][:50]
    tokens = [json.loads(h.body)["signature"]["token"] for h in renderer.render(items)]
    assert len(set(tokens)) == len(tokens) == 50


# ----------------------------------------------------------------------------- over HTTP

class RecordingProducer:
    """Stands in for Kafka: this test is about HTTP + auth + parsing, not the broker."""

    def __init__(self):
        self.events, self.dead = [], []

    async def send_events(self, events):
        self.events.extend(events)

    async def send_dead_letter(self, record):
        self.dead.append(record)

    async def ping(self):
        return True


def test_real_ingest_app_accepts_every_rendered_request(sample, creds, config):
    """The demo's requests, exactly as sent, through ingest's aiohttp app: all 200, the
    events count matches, duplicates (the simulator redelivers some) are dropped."""
    async def main():
        producer = RecordingProducer()
        app = build_app(config, producer, fetcher=None)
        renderer = WebhookRenderer(creds)   # wall clock: the server checks signature age
        hooks = renderer.render(mixed(sample, 1500))
        async with TestClient(TestServer(app)) as client:
            statuses = Counter()
            for hook in hooks:
                resp = await client.post(f"/webhooks/{hook.endpoint}", data=hook.body, headers=hook.headers)
                statuses[resp.status] += 1
        return producer, hooks, statuses

    producer, hooks, statuses = asyncio.run(main())
    assert statuses == Counter({200: len(hooks)})
    assert not producer.dead
    posted = sum(h.events for h in hooks)
    ids = [e["event_id"] for e in producer.events]
    assert len(ids) == len(set(ids))
    assert 0 < posted - len(ids) < 0.02 * posted   # the simulator's duplicate deliveries, deduplicated

