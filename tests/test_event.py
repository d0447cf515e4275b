"""Canonical event validation, mailbox-provider mapping, and the purity of detector/."""
import ast
import pathlib

import pytest

from detector.event import EventError, make_event, parse_line, stable_event_id, validate_event
from detector.mailbox import mailbox_provider, register_domains

GOOD = {"event_id": "sg-1", "provider": "sendgrid", "type": "bounced", "bounce_class": "hard",
        "timestamp": 1700000000.5, "campaign": "spring", "sending_domain": "news.example.com",
        "ip_pool": None, "recipient_domain": "Gmail.com", "recipient_hash": "ab12", "mailbox_provider": None,
        "smtp_code": 550, "reason": "  5.1.1 user unknown  ", "message_id": "m1"}


def test_valid_event_is_normalised():
    ev = validate_event(GOOD)
    assert ev["recipient_domain"] == "gmail.com"
    assert ev["mailbox_provider"] == "gmail"
    assert ev["reason"] == "5.1.1 user unknown"


@pytest.mark.parametrize("patch, field", [
    ({"type": "bounce"}, "type"),
    ({"bounce_class": "medium"}, "bounce_class"),
    ({"type": "delivered"}, "bounce_class"),           # a class on a non-bounce
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"timestamp": float("nan")}, "timestamp"),
    ({"timestamp": 1e15}, "timestamp"),                  # milliseconds, not seconds
    ({"campaign": ""}, "campaign"),
    ({"campaign": None}, "campaign"),
    ({"recipient_domain": "bob@gmail.com"}, "recipient_domain"),
    ({"smtp_code": 55}, "smtp_code"),
    ({"smtp_code": "550"}, "smtp_code"),
    ({"ip_pool": 3}, "ip_pool"),
    ({"recipient": "bob@gmail.com"}, "recipient"),       # unknown field
    ({"event_id": 7}, "event_id"),
    ({"attempt": 0}, "attempt"),
    ({"attempt": "5"}, "attempt"),                       # the normaliser converts, the schema does not
    ({"attempt": 2.0}, "attempt"),
    ({"attempt": True}, "attempt"),
])
def test_invalid_events_name_the_field(patch, field):
    with pytest.raises(EventError) as info:
        validate_event({**GOOD, **patch})
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")


def test_bounce_without_class_is_undetermined():
    ev = validate_event({**GOOD, "bounce_class": None})
    assert ev["bounce_class"] == "undetermined"


def test_not_an_object_and_bad_json():
    with pytest.raises(EventError):
        validate_event([1, 2])
    with pytest.raises(EventError) as info:
        parse_line(b"{not json")
    assert info.value.field == "event"


def test_attempt_is_optional_and_sparse():
    """attempt (delivery attempt number) validates when present; absent or null, the output
    has no such key, so events of earlier versions validate to exactly what they did."""
    assert "attempt" not in validate_event(GOOD)
    assert "attempt" not in validate_event({**GOOD, "attempt": None})
    assert validate_event({**GOOD, "attempt": 3})["attempt"] == 3
    assert set(validate_event(GOOD)) == set(GOOD)


def test_stable_event_id_ignores_an_unknown_attempt():
    """Ids of events without attempt are those of the schema before the field existed."""
    import hashlib
    import json
    fields = {k: v for k, v in GOOD.items() if k != "event_id"}
    before = ("sending_domain", "ip_pool", "recipient_domain", "recipient_hash", "mailbox_provider",
              "smtp_code", "reason", "message_id")
    material = {k: fields.get(k) for k in ("provider", "type", "bounce_class", "timestamp", "campaign") + before}
    old = "h:" + hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:32]
    assert stable_event_id(fields) == old == stable_event_id({**fields, "attempt": None})
    assert stable_event_id({**fields, "attempt": 2}) != old


def test_stable_event_id_is_deterministic():
    fields = {k: v for k, v in GOOD.items() if k != "event_id"}
    assert stable_event_id(fields) == stable_event_id(dict(fields))
    assert make_event(**fields)["event_id"] == stable_event_id(fields)


def test_mailbox_mapping_and_extension():
    assert mailbox_provider("googlemail.com") == "gmail"
    assert mailbox_provider("mail.yahoo.co.jp") == "yahoo"
    assert mailbox_provider("HOTMAIL.COM.") == "microsoft"
    assert mailbox_provider("example.org") == "other"
    register_domains("gmail", ["workspace-customer.example"])
    assert mailbox_provider("workspace-customer.example") == "gmail"


def test_detector_is_pure():
    """detector/ must not import Kafka, Faust, Prometheus or HTTP libraries."""
    forbidden = {"faust", "kafka", "aiokafka", "prometheus_client", "aiohttp", "mode"}
    root = pathlib.Path(__file__).parent.parent / "detector"
    seen = set()
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                seen |= {(path.name, a.name.split(".")[0]) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                seen.add((path.name, node.module.split(".")[0]))
    bad = sorted((f, m) for f, m in seen if m in forbidden)
    assert not bad, bad
    assert seen, "no imports parsed: the check would pass vacuously"
