"""Property: no input makes the server answer 5xx or crash (the producer works), and no
answer or DLQ reason ever echoes an address from the input."""
from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.config import PROVIDER_NAMES

from .helpers import AppHarness, make_config

CONTENT_TYPES = ["application/json", "text/plain; charset=UTF-8", "application/x-www-form-urlencoded",
                 "text/html", "", "application/json; charset=utf-8", "multipart/form-data"]
ADDRESS = "victim.person@private-domain.example"

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64), st.floats(allow_nan=True),
                      st.text(max_size=20), st.just(ADDRESS), st.sampled_from(
                          ["delivered", "bounce", "failed", "Bounce", "Notification", "hard_bounce",
                           "email.bounced", "activity.hard_bounced", "blocked", "permanent", "1700000000",
                           "2024-01-01T00:00:00Z", "bad@", "@", "<a@b>"]))
keys = st.sampled_from(["event", "email", "timestamp", "type", "event-data", "recipient", "severity", "msys",
                        "message_event", "RecordType", "TypeCode", "Email", "BouncedAt", "Type", "Message",
                        "mail", "bounce", "data", "to", "created_at", "msg", "ts", "ts_epoch", "time",
                        "sg_event_id", "bounce_class", "campaign", "recipient_domain", "reason",
                        "delivery-status", "rcpt_to", "eventType", "destination", "bouncedRecipients"])
json_values = st.recursive(json_leaf, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=6)), max_leaves=25)


def body_strategy():
    as_json = json_values.map(lambda v: json.dumps(v).encode())
    raw = st.binary(max_size=300)
    form = json_values.map(lambda v: b"mandrill_events=" + json.dumps(v).encode())
    return st.one_of(as_json, raw, form)


SEEN_STATUSES: set[int] = set()


@pytest.fixture(scope="module")
def harness():
    cfg = make_config(**{name: {"unauthenticated": True} for name in PROVIDER_NAMES})
    cfg.max_body_bytes = 4096
    loop = asyncio.new_event_loop()
    h = AppHarness(cfg)
    loop.run_until_complete(h.__aenter__())
    yield loop, h
    loop.run_until_complete(h.__aexit__(None, None, None))
    loop.close()


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(provider=st.sampled_from(PROVIDER_NAMES + ("unknown",)), body=body_strategy(),
       content_type=st.sampled_from(CONTENT_TYPES))
def test_no_input_causes_5xx_or_leaks_an_address(harness, provider, body, content_type):
    loop, h = harness

    async def post():
        headers = {"Content-Type": content_type} if content_type else {}
        r = await h.client.post(f"/webhooks/{provider}", data=body, headers=headers)
        return r.status, await r.text()

    dl_before = len(h.producer.dead_letters)
    status, text = loop.run_until_complete(post())
    SEEN_STATUSES.add(status)
    assert status < 500, text
    assert ADDRESS not in text
    for ev in h.producer.events:
        assert ADDRESS not in json.dumps(ev)
    for record in h.producer.dead_letters[dl_before:]:
        assert ADDRESS not in record["reason"]


def test_the_fuzzing_reached_every_kind_of_answer():
    """Guards the property above against passing vacuously (e.g. everything 415)."""
    assert {200, 400, 404, 415} <= SEEN_STATUSES, SEEN_STATUSES


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(st.fixed_dictionaries({
    "event": st.sampled_from(["processed", "delivered", "bounce", "deferred", "dropped", "open", "click",
                              "spamreport", "group_resubscribe"]),
    "email": st.emails(), "timestamp": st.integers(0, 4_000_000_000),
    "sg_event_id": st.text(min_size=1, max_size=12),
    "reason": st.text(max_size=40), "status": st.sampled_from(["5.1.1", "4.2.2", "5.7.1", "", "x"]),
    "type": st.sampled_from(["bounce", "blocked", ""])}), max_size=20))
def test_valid_sendgrid_batches_always_accepted(harness, events):
    loop, h = harness

    payload = json.dumps(events)

    async def post():
        r = await h.client.post("/webhooks/sendgrid", data=payload,
                                headers={"Content-Type": "application/json"})
        return r.status, await r.json()

    status, body = loop.run_until_complete(post())
    if len(payload.encode()) > h.config.max_body_bytes:  # escaped non-ASCII text can outgrow the limit
        assert status == 413 and "larger than" in body["error"], body
        return
    assert status == 200, body
    assert body["accepted"] + body["duplicates"] + body["skipped"] + body["rejected"] == len(events)
    assert body["rejected"] == 0, body["errors"]
