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
    # a window test's alert comes when its window closes: the window's end plus the allowed lateness
    assert all(incident["start"] < a["detected_at"] <= incident["start"] + 3 * 300 + 600 for a in firing)
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


# --- robust time ------------------------------------------------------------------------------

def _flow(start, hours, prefix, campaign="flow"):
    """A steady automated flow: accepted + delivered every ~4 s (volume rules arm on it)."""
    out, i = [], 0
    t = start
    while t < start + hours * 3600:
        for typ in ("accepted", "delivered"):
            out.append({"provider": "generic", "campaign": campaign, "recipient_domain": "gmail.com",
                        "sending_domain": "news.example.com", "ip_pool": "pool-a", "type": typ,
                        "event_id": f"{prefix}{i}-{typ}", "timestamp": t + (typ == "delivered")})
        i += 1
        t += 4.0 + (i % 3)
    return out


def _replay(tmp_path, events, monkeypatch=None, batch=None, **kw):
    import io
    import ddetect.replay as replay_mod

    if batch is not None:
        monkeypatch.setattr(replay_mod, "BATCH", batch)
    path = tmp_path / "in.jsonl"
    write(path, events)
    out, err = io.StringIO(), io.StringIO()
    stats = run_replay(str(path), load_rules(default_rules_path()), out, err, **kw)
    return stats, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


@pytest.mark.parametrize("ahead_days", [1, 30])
@pytest.mark.parametrize("where", ["middle", "batch_end"])
def test_one_event_stamped_ahead_is_an_outlier_not_the_new_clock(tmp_path, monkeypatch, ahead_days, where):
    """One event a day ahead made the next on-time events late (dropped); 30 days ahead made
    replay die with 'dispersion must be > 0'. Now it is reported and not counted."""
    events = _flow(T0, 4, "a")
    pos = len(events) // 2 if where == "middle" else 999  # the last event of the first 1000-event batch
    wrong = {**events[pos], "event_id": "clock-wrong", "timestamp": events[pos]["timestamp"] + ahead_days * 86400}
    events.insert(pos, wrong)
    stats, alerts, err = _replay(tmp_path, events, monkeypatch, batch=1000)
    assert stats["future"] == 1 and stats["late"] == 0 and stats["events"] == len(events) - 1, stats
    assert "1 event(s) stamped more than 3600 s ahead" in err and "clock-wrong" in err
    assert alerts == [], [a["summary"] for a in alerts]
    assert stats["windows"] <= 4 * 12 + 1


def test_a_real_gap_where_the_whole_stream_moves_ahead_is_followed(tmp_path, monkeypatch):
    """30 days without traffic, then traffic again: nothing is an outlier, no event is late, and
    the clock crosses the gap in one step. (A 3-hour flow is not yet a steady flow, armed after a
    day of traffic, so the pause pages nothing: tests/test_bulk_sends.py covers silence.)"""
    events = _flow(T0, 3, "a") + _flow(T0 + 30 * 86400, 3, "b")
    stats, alerts, err = _replay(tmp_path, events, monkeypatch, batch=1000)
    assert stats["future"] == 0 and stats["late"] == 0 and stats["events"] == len(events), (stats, err)
    assert alerts == [], [a["summary"] for a in alerts]
    assert stats["windows"] < 2 * 3 * 12 + 400 and stats["windows_skipped"] > 8000


def _esp_sample_events():
    """Every published ESP sample (tests/fixtures/esp, the copy of /work/shared/esp-samples),
    normalised as ingest would: real payloads dated 2013-2026."""
    from ingest.normalize import normalize_file

    from .ingest.helpers import FIXTURES, make_config
    from .ingest.test_normalisers import CASES

    config = make_config()
    return [e for provider, name, _ in CASES for e in normalize_file(provider, FIXTURES / name, config)]


@pytest.mark.parametrize("sort", [True, False])
def test_esp_samples_dated_2013_to_2026_neither_stall_nor_blow_up(tmp_path, sort):
    """Twelve years between the oldest and newest sample: closing every window in between was
    ~1.4 million window evaluations (minutes, gigabytes). Through `ddetect replay` (default skew
    filter) and through the engine alone (no filter), the windows evaluated stay bounded by the
    windows with data times the empty run the rules can use."""
    from datetime import datetime, timezone

    from detector import clock
    from detector.engine import Engine

    events = _esp_sample_events()
    years = {datetime.fromtimestamp(e["timestamp"], timezone.utc).year for e in events}
    assert min(years) <= 2014 and max(years) >= 2026 and len(events) > 50
    rs = load_rules(default_rules_path())
    bound = clock.empty_run_bound(rs)
    data_windows = len({e["timestamp"] // rs.settings.window for e in events})

    stats, _, err = _replay(tmp_path, events, sort=sort)
    assert stats["events"] + stats["future"] == len(events), err
    assert stats["windows"] <= data_windows * (bound + 1), stats

    engine = Engine(rs)
    ordered = sorted(events, key=lambda e: e["timestamp"]) if sort else events
    for e in ordered:  # one message per event, as the ESPs posted them
        engine.process([validate_event(e)])
    engine.flush()
    assert engine.windows_evaluated <= data_windows * (bound + 1), engine.windows_evaluated
    assert engine.windows_skipped > 1_000_000 if sort else True
    # scopes idle for years expired (TTL): what is left was seen within the TTL of the newest event
    newest = max(e["timestamp"] for e in events)
    horizon = rs.settings.scope_ttl + rs.settings.allowed_lateness + 2 * rs.settings.window
    stale = [sid for sid, st in engine.states.items()
             if newest - st["last_seen"] > horizon and not any(r.get("firing") for r in st["rules"].values())]
    assert stale == [] and 0 < len(engine.states) < len(events)
