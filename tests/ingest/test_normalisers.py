"""Every provider's published samples normalise to the expected canonical events.

Fixtures: tests/fixtures/esp (sources in SOURCES.md). Each row asserts the mapping
(type, bounce class, campaign, recipient domain) and that no address from the raw
payload survives anywhere in the output.
"""
from __future__ import annotations

import json
from urllib.parse import unquote_plus

import pytest

from detector.event import dumps, validate_event
from ingest.errors import PayloadError, UnsupportedMediaType
from ingest.normalize import normalize_file
from ingest.providers import PROVIDERS

from .helpers import FIXTURES, fixture_bytes, make_config, recipient_addresses

T = tuple  # (type, bounce_class, campaign, recipient_domain)
CASES = [
    ("sendgrid", "sendgrid-docs-delivered.json", [T(("delivered", None, "cat facts", "test.com"))]),
    ("sendgrid", "sendgrid-docs-bounce-hard.json", [("bounced", "hard", "cat facts", "test.com")]),
    ("sendgrid", "sendgrid-docs-bounce-blocked.json", [("bounced", "block", "cat facts", "test.com")]),
    ("sendgrid", "sendgrid-docs-deferred.json", [("deferred", None, "cat facts", "test.com")]),
    ("sendgrid", "sendgrid-docs-dropped.json", [("dropped", None, "cat facts", "test.com")]),
    ("sendgrid", "sendgrid-docs-spamreport.json", [("complained", None, "cat facts", "test.com")]),
    ("sendgrid", "sendgrid-docs-processed-with-ip-pool.json", [("accepted", None, "cat facts", "test.com")]),
    ("sendgrid", "sendgrid-docs-singlesend-open.json", [("opened", None, "Example Single Send", "example.com")]),
    ("sendgrid", "sendgrid-realcapture-blocked-bounce-classification.json",
     [("bounced", "block", "(none)", "this.does.not.exist.tld")]),
    ("sendgrid", "sendgrid-signed-dropped.body.json", [("dropped", None, "(none)", "world.com")]),
    ("mailgun", "mailgun-docs-eventdata-delivered.json", [("delivered", None, "webhook_payload", "sample.mailgun.com")]),
    ("mailgun", "mailgun-docs-eventdata-failed-permanent-hard-bounce.json",
     [("bounced", "hard", "webhook_payload", "sample.mailgun.com")]),
    ("mailgun", "mailgun-docs-eventdata-failed-temporary.json", [("deferred", None, "webhook_payload", "sample.mailgun.com")]),
    ("mailgun", "mailgun-docs-eventdata-complained.json", [("complained", None, "webhook_payload", "sample.mailgun.com")]),
    ("mailgun", "mailgun-legacydocs-eventdata-failed-suppress-bounce.json", [("dropped", None, "(none)", "mailgun.com")]),
    ("postmark", "postmark-skills-bounce-hard.json", [("bounced", "hard", "welcome-email", "example.com")]),
    ("postmark", "postmark-skills-delivery.json", [("delivered", None, "welcome-email", "example.com")]),
    ("postmark", "postmark-skills-spamcomplaint.json", [("complained", None, "welcome-email", "example.com")]),
    ("postmark", "postmark-skills-subscriptionchange.json", [("unsubscribed", None, "newsletter", "example.com")]),
    ("postmark", "postmark-docs-spamcomplaint.json", [("complained", None, "Test", "example.com")]),
    ("postmark", "postmark-marketingpage-bounce-legacy.json", [("bounced", "hard", "Test", "example.com")]),
    ("postmark", "postmark-supportarticle-delivery-legacy.json", [("delivered", None, "Your Tag", "example.com")]),
    ("ses", "ses-docs-eventpublishing-bounce-permanent.json", [("bounced", "hard", "ConfigSet", "example.com")]),
    ("ses", "ses-docs-eventpublishing-complaint.json", [("complained", None, "ConfigSet", "example.com")]),
    ("ses", "ses-docs-eventpublishing-delivery.json", [("delivered", None, "ConfigSet", "example.com")]),
    ("ses", "ses-docs-eventpublishing-deliverydelay.json", [("deferred", None, "ConfigSet", "example.com")]),
    ("ses", "ses-docs-eventpublishing-send.json", [("accepted", None, "ConfigSet", "example.com")]),
    ("ses", "ses-docs-eventpublishing-reject.json", [("dropped", None, "ConfigSet", "example.com")]),
    ("ses", "ses-docs-eventpublishing-open.json", [("opened", None, "ConfigSet", "example.com")]),
    ("ses", "ses-docs-eventpublishing-click.json", [("clicked", None, "ConfigSet", "example.com")]),
    ("ses", "ses-docs-eventpublishing-subscription.json", [("unsubscribed", None, "ConfigSet", "example.com")]),
    ("ses", "ses-docs-notification-bounce-no-dsn.json",
     [("bounced", "hard", "(none)", "example.com"), ("bounced", "hard", "(none)", "example.com")]),
    ("ses", "ses-docs-notification-complaint-with-feedback.json", [("complained", None, "(none)", "example.com")]),
    ("ses", "ses-docs-notification-delivery.json", [("delivered", None, "(none)", "example.com")]),
    ("sparkpost", "sparkpost-anymail-bounce.json", [("bounced", "hard", "(none)", "example.com")]),
    ("sparkpost", "sparkpost-anymail-delay.json", [("deferred", None, "(none)", "nomx.example.com")]),
    ("sparkpost", "sparkpost-anymail-delivery.json", [("delivered", None, "(none)", "example.com")]),
    ("sparkpost", "sparkpost-anymail-injection-full.json", [("accepted", None, "Example Campaign Name", "example.com")]),
    ("sparkpost", "sparkpost-samplesapi-copy-spam-complaint-and-oob.json",
     [("complained", None, "Example Campaign Name", "example.com"),
      ("bounced", "undetermined", "Example Campaign Name", "example.com")]),
    ("sparkpost", "sparkpost-docs-validate-ping-batch.json", []),
    ("mandrill", "mandrill-example-hard-bounce.form-body.txt",
     [("bounced", "hard", "webhook-example", "mandrillapp.com")]),
    ("mandrill", "mandrill-anymail-hard-bounce.json", [("bounced", "hard", "(none)", "example.com")]),
    ("brevo", "brevo-anymail-request-sent.json", [("accepted", None, "tag1", "example.com")]),
    ("brevo", "brevo-anymail-delivered.json", [("delivered", None, "(none)", "example.com")]),
    ("brevo", "brevo-anymail-hard-bounce.json", [("bounced", "hard", "header-tag", "example.com")]),
    ("brevo", "brevo-anymail-soft-bounce.json", [("bounced", "soft", "(none)", "no-mx.example.com")]),
    ("brevo", "brevo-anymail-blocked.json", [("dropped", None, "(none)", "example.com")]),
    ("brevo", "brevo-anymail-spam.json", [("complained", None, "(none)", "example.com")]),
    ("brevo", "brevo-anymail-complaint.json", [("complained", None, "transac_messages", "domain.com")]),
    ("brevo", "brevo-anymail-deferred.json", [("deferred", None, "(none)", "example.com")]),
    ("resend", "resend-anymail-delivered.json", [("delivered", None, "(none)", "example.org")]),
    ("resend", "resend-anymail-bounced.json", [("bounced", "hard", "(none)", "resend.dev")]),
    ("resend", "resend-anymail-bounced-suppressed.json", [("dropped", None, "(none)", "example.org")]),
    ("resend", "resend-anymail-complained.json", [("complained", None, "(none)", "resend.dev")]),
    ("resend", "resend-anymail-delivery-delayed.json", [("deferred", None, "(none)", "resend.dev")]),
    ("mailersend", "mailersend-anymail-delivered.json", [("delivered", None, "(none)", "example.com")]),
    ("mailersend", "mailersend-anymail-hard-bounced.json", [("bounced", "hard", "(none)", "example.com")]),
    ("mailersend", "mailersend-anymail-soft-bounced.json", [("bounced", "soft", "(none)", "example.com")]),
    ("mailersend", "mailersend-anymail-spam-complaint.json", [("complained", None, "(none)", "example.com")]),
    ("mailjet", "mailjet-anymail-sent.json", [("delivered", None, "tag1", "example.com")]),
    ("mailjet", "mailjet-anymail-bounce.json", [("bounced", "hard", "1234567890", "invalid")]),
    ("mailjet", "mailjet-anymail-bounce-greylist.json", [("bounced", "soft", "1234567890", "example.com")]),
    ("mailjet", "mailjet-anymail-blocked.json", [("dropped", None, "(none)", "example.com")]),
    ("mailjet", "mailjet-anymail-spam.json", [("complained", None, "1234567890", "example.com")]),
]


@pytest.mark.parametrize("provider,name,expected", CASES, ids=[c[1] for c in CASES])
def test_published_sample_mapping(provider, name, expected):
    events = normalize_file(provider, FIXTURES / name, make_config())
    got = [(e["type"], e["bounce_class"], e["campaign"], e["recipient_domain"]) for e in events]
    assert got == [tuple(x) for x in expected]
    # No address from the raw payload may appear in the output, except inside message_id
    # (RFC Message-IDs look like addresses but identify the message, not a person).
    out = "\n".join(dumps({k: v for k, v in e.items() if k not in ("message_id", "event_id")}) for e in events)
    ids = " ".join(f"{e['message_id']} {e['event_id']}" for e in events).lower()
    raw = fixture_bytes(name)
    if name.endswith(".form-body.txt"):
        raw = unquote_plus(raw.decode()).encode()
    leaked = {a for a in recipient_addresses(raw) if a in out.lower() and a not in ids}
    assert not leaked
    if events:
        assert recipient_addresses(raw)  # the check above had something to find
    for e in events:
        assert validate_event(e) == e
        assert e["provider"] == provider
        assert len(e["recipient_hash"]) == 64 and e["recipient_hash"] != e["recipient_domain"]
        assert e["event_id"].startswith(provider + ":")
        # no address-looking text outside ids: reasons are scrubbed
        assert e["reason"] is None or "@" not in e["reason"] or "[redacted]" in e["reason"]


def test_all_samples_covered_per_provider():
    covered = {c[0] for c in CASES}
    assert covered == set(PROVIDERS) - {"generic"}


def test_sendgrid_all_event_types_skips_group_resubscribe():
    mod = PROVIDERS["sendgrid"]
    result = mod.normalize(fixture_bytes("sendgrid-docs-all-event-types.json"), "application/json", make_config())
    assert result.skipped == 1 and not result.rejected
    assert [e["type"] for e in result.events] == [
        "accepted", "deferred", "delivered", "opened", "clicked", "bounced", "dropped", "complained",
        "unsubscribed", "unsubscribed"]


def test_reason_is_scrubbed_of_the_recipient_address():
    (ev,) = normalize_file("sparkpost", FIXTURES / "sparkpost-anymail-bounce.json", make_config())
    assert ev["smtp_code"] == 550
    (ev,) = normalize_file("brevo", FIXTURES / "brevo-anymail-deferred.json", make_config())
    assert "notauser@example.com" not in ev["reason"] and "[redacted]" in ev["reason"]


def test_recipient_hash_is_keyed_and_case_insensitive():
    body = json.dumps([{"event": "delivered", "email": "Jane@Example.COM", "timestamp": 1700000000,
                        "sg_event_id": "a"}]).encode()
    (a,) = PROVIDERS["sendgrid"].parse(body, "application/json", make_config())
    body2 = body.replace(b"Jane@Example.COM", b"jane@example.com")
    (b,) = PROVIDERS["sendgrid"].parse(body2, "application/json", make_config())
    other = make_config()
    other.recipient_hash_key = b"another key"
    (c,) = PROVIDERS["sendgrid"].parse(body, "application/json", other)
    assert a["recipient_hash"] == b["recipient_hash"] != c["recipient_hash"]


def test_campaign_mapping_is_configurable():
    cfg = make_config(sendgrid={"campaign_fields": ("marketing_campaign_name", "category")})
    body = json.dumps([{"event": "delivered", "email": "a@gmail.com", "timestamp": 1700000000,
                        "category": ["newsletter", "x"], "marketing_campaign_name": "Spring",
                        "sg_event_id": "e1"},
                       {"event": "delivered", "email": "a@gmail.com", "timestamp": 1700000000,
                        "category": ["newsletter", "x"], "sg_event_id": "e2"},
                       {"event": "delivered", "email": "a@gmail.com", "timestamp": 1700000000,
                        "sg_event_id": "e3"}]).encode()
    events = PROVIDERS["sendgrid"].parse(body, "application/json", cfg)
    assert [e["campaign"] for e in events] == ["Spring", "newsletter", "(none)"]
    assert events[0]["mailbox_provider"] == "gmail"
    cfg2 = make_config(ses={"campaign_fields": ("mail.tags.ses:from-domain",)})
    (ev,) = normalize_file("ses", FIXTURES / "ses-docs-eventpublishing-bounce-permanent.json", cfg2)
    assert ev["campaign"] == "example.com"


def test_ses_inside_sns_envelope_uses_message_id():
    ses_event = fixture_bytes("ses-docs-eventpublishing-bounce-permanent.json").decode()
    envelope = json.dumps({"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:1:t",
                           "Message": ses_event, "Timestamp": "2017-08-05T00:41:03.000Z"}).encode()
    (ev,) = PROVIDERS["ses"].parse(envelope, "text/plain; charset=UTF-8", make_config())
    assert ev["event_id"] == "ses:m-1:Bounce:0" and ev["bounce_class"] == "hard"


@pytest.mark.parametrize("provider,body,content_type,message", [
    ("sendgrid", b"{not json", "application/json", "not valid JSON"),
    ("sendgrid", b'"a string"', "application/json", "object or array"),
    ("sendgrid", b'[{"event": "delivered", "timestamp": 1}]', "application/json", "email: missing recipient"),
    ("sendgrid", b'[{"event": "delivered", "email": "nobody", "timestamp": 1}]', "application/json",
     "not an email address"),
    ("sendgrid", b'[{"event": "weird", "email": "a@b.com", "timestamp": 1}]', "application/json", "unknown SendGrid"),
    ("sendgrid", b'[{"event": "delivered", "email": "a@b.com", "timestamp": "yesterday"}]', "application/json",
     "timestamp"),
    ("mailgun", b'{"signature": {}}', "application/json", "event-data"),
    ("postmark", b'[]', "application/json", "one JSON object"),
    ("ses", b'{"Type": "Notification", "Message": "hello"}', "text/plain", "not SES event JSON"),
    ("mandrill", b"foo=bar", "application/x-www-form-urlencoded", "mandrill_events: missing"),
    ("mandrill", b"mandrill_events=%5B1", "application/x-www-form-urlencoded", "not valid JSON"),
    ("generic", b'{"type": "bounced"}', "application/json", "required"),
])
def test_malformed_input_names_the_problem(provider, body, content_type, message):
    with pytest.raises(PayloadError) as info:
        PROVIDERS[provider].parse(body, content_type, make_config())
    assert message in str(info.value)
    assert "a@b.com" not in str(info.value)


def test_wrong_content_type_is_its_own_error():
    with pytest.raises(UnsupportedMediaType):
        PROVIDERS["sendgrid"].parse(b"[]", "text/html", make_config())


def test_generic_accepts_canonical_events_and_reduces_recipient():
    body = json.dumps([
        {"type": "bounced", "bounce_class": "block", "timestamp": 1700000000, "campaign": "c1",
         "recipient": "Bob <bob@outlook.com>", "reason": "550 5.7.1 bob@outlook.com blocked"},
        {"type": "delivered", "timestamp": 1700000001, "recipient_domain": "yahoo.com", "event_id": "x-1"},
    ]).encode()
    a, b = PROVIDERS["generic"].parse(body, "application/json", make_config())
    assert (a["type"], a["bounce_class"], a["recipient_domain"], a["mailbox_provider"]) == \
        ("bounced", "block", "outlook.com", "microsoft")
    assert "bob@" not in dumps(a) and a["event_id"].startswith("h:")
    assert (b["event_id"], b["campaign"], b["mailbox_provider"]) == ("x-1", "(none)", "yahoo")


def test_generic_rejects_a_raw_address_in_recipient_domain_without_echoing_it():
    body = b'{"type": "delivered", "timestamp": 1, "campaign": "c", "recipient_domain": "eve@evil.com"}'
    with pytest.raises(PayloadError) as info:
        PROVIDERS["generic"].parse(body, "application/json", make_config())
    assert "eve@evil.com" not in str(info.value)


def test_batch_with_one_bad_event_keeps_the_others():
    body = json.dumps([{"event": "delivered", "email": "a@b.com", "timestamp": 1700000000, "sg_event_id": "1"},
                       {"event": "delivered", "timestamp": 1700000000},
                       "not an object"]).encode()
    result = PROVIDERS["sendgrid"].normalize(body, "application/json", make_config())
    assert len(result.events) == 1
    assert [r.index for r in result.rejected] == [1, 2]


def test_timestamps_in_milliseconds_are_normalised():
    (ev,) = normalize_file("sendgrid", FIXTURES / "sendgrid-docs-singlesend-open.json", make_config())
    assert ev["timestamp"] == pytest.approx(1591726752.372)


@pytest.mark.parametrize("status, expected", [
    ({"bounce-type": "soft", "code": 552, "message": "5.2.2 mailbox full"}, "soft"),
    ({"bounce-type": "hard", "code": 550, "message": "5.1.1 no such user"}, "hard"),
    ({"code": 552, "message": "552 5.2.2 mailbox full"}, "soft"),        # no verdict: SMTP class
    ({"code": 550, "message": "550 5.7.1 blocked by policy"}, "block"),
    ({"message": "no code at all"}, "hard"),                            # permanent, nothing else known
])
def test_mailgun_permanent_failures_keep_their_bounce_type(status, expected):
    """A permanent failure is not always a hard bounce: a full mailbox is Mailgun bounce-type soft."""
    doc = json.loads(fixture_bytes("mailgun-docs-eventdata-failed-permanent-hard-bounce.json"))
    data = doc.get("event-data", doc)
    data["delivery-status"] = {**status, "attempt-no": 1}
    data["severity"], data["reason"] = "permanent", "bounce"
    result = PROVIDERS["mailgun"].normalize(json.dumps(doc).encode(), "application/json", make_config())
    (ev,) = result.events
    assert (ev["type"], ev["bounce_class"]) == ("bounced", expected)


def test_sending_domain_from_configured_fields_then_native_then_constant():
    """SendGrid events name no sender: a custom arg (listed in sending_domain_fields) or a
    constant fills the field that provider_block and the SES rules are scoped on."""
    doc = json.loads(fixture_bytes("sendgrid-docs-delivered.json"))
    doc[0]["sending_domain"] = "News.Example.com"
    body = json.dumps(doc).encode()
    (plain,) = PROVIDERS["sendgrid"].normalize(body, "application/json", make_config()).events
    assert plain["sending_domain"] is None
    cfg = make_config(sendgrid={"sending_domain_fields": ("sending_domain",)})
    (mapped,) = PROVIDERS["sendgrid"].normalize(body, "application/json", cfg).events
    assert mapped["sending_domain"] == "news.example.com"
    cfg = make_config(sendgrid={"sending_domain": "mail.example.org"})
    (const,) = PROVIDERS["sendgrid"].normalize(body, "application/json", cfg).events
    assert const["sending_domain"] == "mail.example.org"
    # a provider that names its sender keeps it over the constant
    (mg,) = normalize_file("mailgun", FIXTURES / "mailgun-docs-eventdata-delivered.json",
                           make_config(mailgun={"sending_domain": "mail.example.org"}))
    assert mg["sending_domain"] == "sample.mailgun.com"


def test_sending_domain_settings_load_from_env():
    from ingest.config import load_config
    cfg = load_config(env={"DDETECT_RECIPIENT_HASH_KEY": "k" * 32,
                           "DDETECT_SENDGRID_SENDING_DOMAIN_FIELDS": "sending_domain, from_domain",
                           "DDETECT_SENDGRID_SENDING_DOMAIN": "news.example.com"})
    assert cfg.provider("sendgrid").sending_domain_fields == ("sending_domain", "from_domain")
    assert cfg.provider("sendgrid").sending_domain == "news.example.com"
