"""No rule goes silently blind: coverage per ESP, `ddetect doctor`, and the replay notice."""
import json
import subprocess
import sys

from detector.counts import EventBatch
from detector.coverage import BlindRules, Coverage, assess
from detector.rules import default_rules_path, load_rules

RULES = load_rules(default_rules_path())
T0 = 1_717_200_000.0


def _event(i, esp, etype, **extra):
    ev = {"event_id": f"{esp}-{i}", "provider": esp, "type": etype, "timestamp": T0 + i * 0.5,
          "campaign": "receipts", "ip_pool": None, "sending_domain": None, "recipient_domain": "yahoo.com",
          "mailbox_provider": "yahoo", "recipient_hash": "a" * 64, "message_id": f"m{i}",
          "bounce_class": None, "smtp_code": None, "reason": None}
    ev.update(extra)
    return ev


def postmark_like(n=20_000):
    """Delivery names no sender; Bounce does (its From): one domain, two scopes."""
    out = []
    for i in range(n):
        if i % 50 == 0:
            out.append(_event(i, "postmark", "bounced", bounce_class="hard", sending_domain="mail.example.com"))
        else:
            out.append(_event(i, "postmark", "delivered"))
    return out


def ses_classic(n=150_000):
    return [_event(i, "ses", "bounced" if i % 100 == 0 else "delivered", sending_domain="mail.example.com",
                   bounce_class="hard" if i % 100 == 0 else None) for i in range(n)]


def verdicts(events):
    cov = Coverage()
    cov.update(EventBatch.from_events(events))
    return {v.rule: v for v in assess(cov, RULES)}


def test_a_field_only_bounces_carry_splits_the_sending_domain_rules():
    v = verdicts(postmark_like())
    for rule in ("provider_block", "ses_bounce_review", "ses_bounce_pause"):
        assert v[rule].status == "split", (rule, v[rule])
        assert "sending_domain" in v[rule].detail and "delivered" in v[rule].detail
    assert v["hard_bounce_spike"].status == "stand-in"  # campaign x provider is carried by every event


def test_an_esp_that_never_posts_complaints_leaves_complaint_rules_blind():
    v = verdicts(ses_classic())
    for rule in ("complaint_spike", "spam_rate_policy", "ses_complaint_review", "ses_complaint_pause"):
        assert v[rule].status == "blind" and "complained" in v[rule].detail
    assert v["ses_bounce_review"].status == "runs"
    assert v["campaign_silence"].status == "stand-in"


def test_too_little_traffic_is_not_called_blind():
    v = verdicts(ses_classic(n=20_000))
    assert v["complaint_spike"].status == "unseen"


def test_blind_rules_are_reported_once():
    blind = BlindRules(RULES)
    events = ses_classic()
    first = blind.update(EventBatch.from_events(events[:120_000]))
    again = blind.update(EventBatch.from_events(events[120_000:]))
    assert {v.rule for v in first} == {"complaint_spike", "spam_rate_policy", "ses_complaint_review",
                                       "ses_complaint_pause", "ip_pool_surge",  # no event names a pool
                                       "provider_throttle"}  # SES classic posts no deferrals
    assert again == []


def test_doctor_and_replay_say_which_rules_cannot_run(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in postmark_like()))
    doc = subprocess.run([sys.executable, "-m", "ddetect.cli", "doctor", str(path)], capture_output=True, text=True)
    assert doc.returncode == 1, doc.stderr
    assert "SPLIT provider_block" in doc.stdout.replace("  ", " ").replace("SPLIT ", "SPLIT ")
    rep = subprocess.run([sys.executable, "-m", "ddetect.cli", "replay", str(path)], capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    notices = [l for l in rep.stderr.splitlines() if "cannot run on postmark traffic" in l]
    assert any("provider_block" in l for l in notices) and len(notices) == len(set(notices))
