"""No scope is split by a field only some event types carry; ip_pool and attempt per ESP;
the README's subscription table is the generated one.

Fixtures: tests/fixtures/esp (published payloads; sources in SOURCES.md). Only payloads that
keep the ESP's full field set are used for the all-or-none check: the anymail SparkPost
delivery/bounce/delay samples are trimmed to the fields anymail reads ("Later tests omit
unused event fields"), so the SparkPost rows use the sample-events API copies.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.event import EVENT_TYPES
from ingest import subscriptions
from ingest.normalize import normalize_file
from ingest.providers import PROVIDERS

from .helpers import FIXTURES, fixture_bytes, make_config

OUTCOMES = ("delivered", "bounced", "complained", "deferred")

#: ESP -> published payloads of its outcome types (every outcome type a fixture exists for).
OUTCOME_FIXTURES = {
    "sendgrid": ["sendgrid-docs-delivered.json", "sendgrid-docs-bounce-hard.json",
                 "sendgrid-docs-bounce-blocked.json", "sendgrid-docs-deferred.json", "sendgrid-docs-spamreport.json"],
    "mailgun": ["mailgun-docs-eventdata-delivered.json", "mailgun-docs-eventdata-failed-permanent-hard-bounce.json",
                "mailgun-docs-eventdata-failed-temporary.json", "mailgun-docs-eventdata-complained.json"],
    "postmark": ["postmark-skills-delivery.json", "postmark-skills-bounce-hard.json",
                 "postmark-skills-spamcomplaint.json", "postmark-supportarticle-delivery-legacy.json",
                 "postmark-marketingpage-bounce-legacy.json", "postmark-docs-spamcomplaint.json"],
    "ses": ["ses-docs-eventpublishing-delivery.json", "ses-docs-eventpublishing-bounce-permanent.json",
            "ses-docs-eventpublishing-complaint.json", "ses-docs-eventpublishing-deliverydelay.json"],
    "ses-notifications": ["ses-docs-notification-delivery.json", "ses-docs-notification-bounce-with-dsn.json",
                          "ses-docs-notification-complaint-with-feedback.json"],
    "sparkpost": ["sparkpost-samplesapi-copy-spam-complaint-and-oob.json"],
    "mandrill": ["mandrill-example-hard-bounce-event.json", "mandrill-anymail-hard-bounce.json"],
    "brevo": ["brevo-anymail-delivered.json", "brevo-anymail-hard-bounce.json", "brevo-anymail-soft-bounce.json",
              "brevo-anymail-spam.json", "brevo-anymail-deferred.json"],
    "resend": ["resend-anymail-delivered.json", "resend-anymail-bounced.json", "resend-anymail-complained.json",
               "resend-anymail-delivery-delayed.json"],
    "mailersend": ["mailersend-anymail-delivered.json", "mailersend-anymail-hard-bounced.json",
                   "mailersend-anymail-soft-bounced.json", "mailersend-anymail-spam-complaint.json"],
    "mailjet": ["mailjet-anymail-sent.json", "mailjet-anymail-bounce.json", "mailjet-anymail-spam.json",
                "mailjet-anymail-bounce-greylist.json"],
}
#: What the defaults fill on every outcome event (True) or leave null on all (False).
EXPECTED = {
    "sendgrid": {"sending_domain": False, "ip_pool": False},
    "mailgun": {"sending_domain": True, "ip_pool": True},
    "postmark": {"sending_domain": False, "ip_pool": False},
    "ses": {"sending_domain": True, "ip_pool": True},
    "ses-notifications": {"sending_domain": True, "ip_pool": False},
    "sparkpost": {"sending_domain": True, "ip_pool": True},
    "mandrill": {"sending_domain": True, "ip_pool": False},
    "brevo": {"sending_domain": False, "ip_pool": False},
    "resend": {"sending_domain": True, "ip_pool": False},
    "mailersend": {"sending_domain": False, "ip_pool": False},
    "mailjet": {"sending_domain": False, "ip_pool": False},
}


def _events(key: str, config=None) -> list[dict]:
    provider = key.split("-")[0]
    config = config or make_config()
    out = []
    for name in OUTCOME_FIXTURES[key]:
        out.extend(normalize_file(provider, FIXTURES / name, config))
    return [e for e in out if e["type"] in OUTCOMES]


@pytest.mark.parametrize("key", sorted(OUTCOME_FIXTURES))
def test_scope_fields_are_on_every_outcome_type_or_on_none(key):
    events = _events(key)
    assert events, key
    for field, filled in EXPECTED[key].items():
        by_type = {e["type"]: e[field] is not None for e in events}
        assert set(by_type.values()) == {filled}, (key, field, by_type)


def test_postmark_delivery_and_bounce_share_one_sending_domain_scope():
    """The measured failure: Postmark's Bounce names From, its Delivery does not."""
    events = _events("postmark")
    assert {e["sending_domain"] for e in events} == {None}
    cfg = make_config(postmark={"sending_domain": "mail.example.com"})
    events = _events("postmark", cfg)
    assert {e["type"] for e in events} >= {"delivered", "bounced", "complained"}
    assert {e["sending_domain"] for e in events} == {"mail.example.com"}


def test_ses_sending_domain_and_pool_are_the_same_on_every_event_publishing_type():
    events = _events("ses")
    assert {e["type"] for e in events} == set(OUTCOMES)
    assert {e["sending_domain"] for e in events} == {"example.com"}
    assert {e["ip_pool"] for e in events} == {"ConfigSet"}   # mail.tags["ses:configuration-set"][0]
    (send,) = normalize_file("ses", FIXTURES / "ses-docs-eventpublishing-send.json", make_config())
    assert send["ip_pool"] == "ConfigSet"


def test_sendgrid_pool_is_not_taken_from_processed_alone_but_can_be_configured():
    path = FIXTURES / "sendgrid-docs-processed-with-ip-pool.json"
    (ev,) = normalize_file("sendgrid", path, make_config())
    assert ev["type"] == "accepted" and ev["ip_pool"] is None
    (ev,) = normalize_file("sendgrid", path, make_config(sendgrid={"ip_pool_fields": ("pool.name",)}))
    assert ev["ip_pool"] == "new_MY_test"
    # a custom arg every event carries is the way to fill it on all types
    doc = json.loads(fixture_bytes("sendgrid-docs-deferred.json"))
    doc[0]["ip_pool"] = "transactional"
    cfg = make_config(sendgrid={"ip_pool_fields": ("ip_pool",)})
    (ev,) = PROVIDERS["sendgrid"].normalize(json.dumps(doc).encode(), "application/json", cfg).events
    assert ev["ip_pool"] == "transactional"
    (ev,) = normalize_file("sendgrid", FIXTURES / "sendgrid-docs-delivered.json",
                           make_config(sendgrid={"ip_pool": "shared"}))
    assert ev["ip_pool"] == "shared"


def test_ip_pool_sources():
    (ev,) = normalize_file("mailgun", FIXTURES / "mailgun-docs-eventdata-delivered.json", make_config())
    raw = json.loads(fixture_bytes("mailgun-docs-eventdata-delivered.json"))
    assert ev["ip_pool"] == raw["envelope"]["sending-ip"]
    spark = normalize_file("sparkpost", FIXTURES / "sparkpost-samplesapi-copy-spam-complaint-and-oob.json",
                           make_config())
    assert {e["ip_pool"] for e in spark} == {"Example-Ip-Pool"}   # the named pool, not sending_ip


def test_ip_pool_settings_load_from_env():
    from ingest.config import load_config
    cfg = load_config(env={"DDETECT_RECIPIENT_HASH_KEY": "k" * 32,
                           "DDETECT_SENDGRID_IP_POOL_FIELDS": "ip_pool, pool.name",
                           "DDETECT_POSTMARK_IP_POOL": "shared"})
    assert cfg.provider("sendgrid").ip_pool_fields == ("ip_pool", "pool.name")
    assert cfg.provider("postmark").ip_pool == "shared"


@pytest.mark.parametrize("provider,name,expected", [
    ("sendgrid", "sendgrid-docs-deferred.json", 5),                       # "attempt": "5"
    ("mailgun", "mailgun-docs-eventdata-delivered.json", 1),              # delivery-status.attempt-no
    ("mailgun", "mailgun-docs-eventdata-failed-temporary.json", 1),
    ("mailgun", "mailgun-docs-eventdata-failed-permanent-hard-bounce.json", 1),
    ("sparkpost", "sparkpost-anymail-delay.json", 2),                     # num_retries "1" + 1
])
def test_attempt_number_where_the_esp_reports_it(provider, name, expected):
    (ev,) = normalize_file(provider, FIXTURES / name, make_config())
    assert ev["attempt"] == expected and type(ev["attempt"]) is int


@pytest.mark.parametrize("provider,name", [
    ("sendgrid", "sendgrid-docs-delivered.json"), ("postmark", "postmark-skills-delivery.json"),
    ("ses", "ses-docs-eventpublishing-deliverydelay.json"), ("mailgun", "mailgun-docs-eventdata-complained.json"),
])
def test_attempt_is_absent_when_unknown(provider, name):
    for ev in normalize_file(provider, FIXTURES / name, make_config()):
        assert "attempt" not in ev


def test_every_esp_names_its_subscriptions_in_canonical_types():
    for name, module in PROVIDERS.items():
        if name == "generic":
            continue
        subs = module.SUBSCRIPTIONS
        assert subs, name
        for types in subs.values():
            assert set(types) <= set(EVENT_TYPES), name
        # every canonical type the normaliser produces can be subscribed to
        produced = set(getattr(module, "TYPES", {}).values())
        assert produced <= {t for types in subs.values() for t in types}, name
    assert "accepted" in subscriptions.esp_names("mailgun", "accepted")


def test_readme_subscription_table_is_the_generated_one():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = subscriptions.readme_block(readme)
    assert block is not None, "README lacks the generated subscriptions block"
    assert block == subscriptions.readme_section(), "README is stale: run python -m ingest.subscriptions"
    for needed in ("accepted", "delivered", "bounced", "complained"):
        assert f"`{needed}`" in block
