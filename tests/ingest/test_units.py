"""Config loading, the bounded dedup set, SMTP classification, privacy helpers."""
from __future__ import annotations

import pytest

from ingest.config import ConfigError, load_config
from ingest.dedup import ExpiringSet
from ingest.privacy import RecipientReducer, redact
from ingest.smtp import classify, classify_text, parse_smtp
from ingest.timeparse import to_unix_seconds
from ingest.errors import PayloadError


def test_config_from_yaml_and_env(tmp_path):
    key_file = tmp_path / "hash.key"
    key_file.write_text("file-key\n")
    pw = tmp_path / "pw"
    pw.write_text("postmark-pass")
    cfg_file = tmp_path / "ingest.yaml"
    cfg_file.write_text(f"""
ingest:
  port: 9000
  recipient_hash_key_file: {key_file}
  providers:
    postmark:
      basic_user: hook
      basic_password_file: {pw}
      campaign_fields: [Metadata.campaign, Tag]
    ses:
      topic_arns: [arn:aws:sns:us-east-1:1:a]
""")
    cfg = load_config(cfg_file, env={"DDETECT_INGEST_PORT": "9100", "KAFKA_BOOTSTRAP_SERVERS": "k:1",
                                     "DDETECT_SENDGRID_SECRET": "pubkey", "DDETECT_MAILGUN_UNAUTHENTICATED": "true",
                                     "DDETECT_SES_TOPIC_ARNS": "arn:a, arn:b"})
    assert cfg.port == 9100 and cfg.bootstrap_servers == "k:1"
    assert cfg.recipient_hash_key == b"file-key"
    pm = cfg.provider("postmark")
    assert (pm.basic_user, pm.basic_password, pm.campaign_fields) == ("hook", "postmark-pass", ("Metadata.campaign", "Tag"))
    assert cfg.provider("sendgrid").secret == "pubkey"
    assert cfg.provider("mailgun").unauthenticated is True
    assert cfg.provider("ses").topic_arns == ("arn:a", "arn:b")
    text = repr(cfg)
    assert "postmark-pass" not in text and "file-key" not in text and "pubkey" not in text


@pytest.mark.parametrize("yaml_text,message", [
    ("recipient_hash_key: inline", "recipient_hash_key_file"),
    ("providers: {postmark: {basic_password: x}}", "basic_password_file"),
    ("providers: {nope: {}}", "unknown provider"),
    ("prot: 1", "unknown setting"),
    ("port: abc", "invalid value"),
])
def test_config_errors_name_the_setting(tmp_path, yaml_text, message):
    f = tmp_path / "c.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(f, env={"DDETECT_RECIPIENT_HASH_KEY": "k"})
    assert message in str(info.value)


def test_hash_key_is_required():
    with pytest.raises(ConfigError):
        load_config(env={})


def test_expiring_set_is_bounded_in_time_and_size():
    now = [0.0]
    s = ExpiringSet(10, 3, clock=lambda: now[0])
    for k in "abc":
        s.add(k)
    assert "a" in s and len(s) == 3
    s.add("d")                      # size bound evicts the oldest
    assert "a" not in s and "d" in s
    now[0] = 10.5                   # time bound expires everything older than the window
    assert len(s) == 0
    assert s.add_if_absent("x") and not s.add_if_absent("x")


@pytest.mark.parametrize("text,expected", [
    ("550 5.1.1 <a@b.com>: Recipient address rejected: User unknown", "hard"),
    ("552 5.2.2 Mailbox full", "soft"),
    ("421 4.4.1 Unable to connect", "soft"),
    ("550 5.7.1 Service unavailable; client host blocked using Spamhaus", "block"),
    ("554 Message rejected due to poor reputation", "block"),
    ("550 Requested action not taken: mailbox unavailable", "hard"),
    ("something odd happened", "undetermined"),
    (None, "undetermined"),
])
def test_smtp_classification(text, expected):
    assert classify_text(text)[0] == expected


def test_parse_smtp_codes():
    assert parse_smtp("smtp; 550 5.1.1 user unknown") == (550, "5.1.1")
    assert parse_smtp("IP 18.99.99.99 listed") == (None, None)
    assert classify(None, "5.1.10", None) == "hard"


def test_redact_and_reduce():
    assert redact("550 <Jane.Doe+x@Example.com>: no") == "550 <[redacted]>: no"
    r = RecipientReducer(b"k")
    out = r.reduce("Jane <JANE@Gmail.com>")
    assert out["recipient_domain"] == "gmail.com" and out["mailbox_provider"] == "gmail"
    assert out == r.reduce("jane@gmail.com")
    for bad in ("", "jane", "@gmail.com", "jane@", None, 5):
        with pytest.raises(PayloadError) as info:
            r.reduce(bad, "email")
        assert info.value.args[0].startswith("email:")
    assert "k" not in repr(r).replace("key=<hidden>", "")


def test_timestamps():
    assert to_unix_seconds(1591726752372, "t") == pytest.approx(1591726752.372)
    assert to_unix_seconds("1454442600", "t") == 1454442600
    assert to_unix_seconds("2016-12-01T15:41:45-05:00", "t") == 1480624905
    assert to_unix_seconds("2018-03-06 11:10:23", "t") == 1520334623  # naive = UTC
    for bad in (None, True, "soon", float("nan"), -1, {}):
        with pytest.raises(PayloadError):
            to_unix_seconds(bad, "t")


def test_normalize_cli_prints_json_lines_or_the_error(tmp_path, monkeypatch):
    import argparse
    import io
    import json as _json
    from ingest.normalize import add_arguments, run
    from .helpers import FIXTURES
    monkeypatch.setenv("DDETECT_RECIPIENT_HASH_KEY", "k")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    args = parser.parse_args(["--provider", "sparkpost", str(FIXTURES / "sparkpost-samplesapi-copy-spam-complaint-and-oob.json")])
    assert run(args, out, err) == 0
    lines = [_json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["type"] for e in lines] == ["complained", "bounced"]
    bad = tmp_path / "bad.json"
    bad.write_text('[{"msys": {"message_event": {"type": "bounce", "rcpt_to": "x@y.com"}}}]')
    out, err = io.StringIO(), io.StringIO()
    assert run(parser.parse_args(["--provider", "sparkpost", str(bad)]), out, err) == 1
    assert "timestamp" in err.getvalue() and "x@y.com" not in err.getvalue() and not out.getvalue()
