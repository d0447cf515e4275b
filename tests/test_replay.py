"""`ddetect replay` end to end: the CLI on files, an injected incident, and 1M clean events."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ddetect.replay import run_replay
from detector.event import dumps, validate_event
from detector.rules import default_rules_path, load_rules
from sim import simulate

from .streamgen import stream

T0 = 1_700_000_000.0
REPO = Path(__file__).resolve().parents[1]


def write(path, events):
    with open(path, "w") as f:
        for e in events:
            f.write(dumps(validate_event(e)) + "\n")


def test_cli_replay_fires_the_right_rule_on_the_right_scope(tmp_path):
    """Gmail hard bounces 1% -> 8% in one campaign, with the shipped default rules."""
    incident = {"campaign": "spring", "provider": "gmail", "start": T0 + 3 * 3600, "end": T0 + 4 * 3600,
                "hard": 0.08}
    path = tmp_path / "incident.jsonl"
    write(path, stream(seed=21, start=T0, hours=6, rate_per_s=6, campaigns=("spring", "autumn"),
                       incident=incident))
    with open(path, "a") as f:
        f.write('{"type": "delivered"}\n')  # a bad line is reported and skipped, nothing else lost
    proc = subprocess.run([sys.executable, "-m", "ddetect.cli", "replay", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    alerts = [json.loads(line) for line in proc.stdout.splitlines()]
    firing = [a for a in alerts if a["status"] == "firing"]
    # The CUSUM pinpoints campaign x provider; the campaign-wide window test sees the same incident.
    assert sorted((a["rule"], tuple(a["scope"].items())) for a in firing) == [
        ("bounce_rate_outlier", (("campaign", "spring"),)),
        ("hard_bounce_spike", (("campaign", "spring"), ("mailbox_provider", "gmail")))], \
        [a["summary"] for a in firing]
    assert all(incident["start"] < a["detected_at"] <= incident["start"] + 3 * 300 for a in firing)
    assert f"{path}:" in proc.stderr and "event_id: is required" in proc.stderr
    stats = json.loads(proc.stderr.strip().splitlines()[-1])["replay"]
    assert stats["invalid"] == 1 and stats["events"] > 100_000


@pytest.mark.slow
def test_one_million_clean_events_fire_nothing(tmp_path):
    events, labels = simulate("clean", seed=1, duration=6 * 3600, scale=2.2)
    assert labels == []
    path = tmp_path / "clean.jsonl"
    with open(path, "w") as f:
        n = 0
        for e in events:
            f.write(dumps(e) + "\n")
            n += 1
    assert n >= 1_000_000
    out, err = open(tmp_path / "alerts.jsonl", "w"), open(tmp_path / "err.txt", "w")
    stats = run_replay(str(path), load_rules(default_rules_path()), out, err)
    out.close()
    err.close()
    assert stats["events"] == n and stats["invalid"] == 0
    assert (tmp_path / "alerts.jsonl").read_text() == ""
