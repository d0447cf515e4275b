"""``ddetect simulate`` command line and the paced replay used by the live demo."""
from __future__ import annotations

import json

import pytest

from detector.event import parse_line
from sim import main_simulate, read_labels
from sim.cli import parse_duration, parse_start
from sim.pace import paced


def test_simulate_writes_events_and_labels(tmp_path, capsys):
    out, labels = tmp_path / "events.jsonl", tmp_path / "labels.json"
    rc = main_simulate(["--scenario", "old_list", "--seed", "4", "--duration", "2h", "--scale", "0.05",
                        "--out", str(out), "--labels", str(labels)])
    assert rc == 0
    lines = out.read_text().splitlines()
    events = [parse_line(line) for line in lines]        # every line is a valid canonical event
    assert len(events) > 1000
    (label,) = read_labels(labels)
    assert label["scenario"] == "old-list" and label["metric"] == "hard_bounce_rate"
    assert label["scope"]["campaign"] in {e["campaign"] for e in events}
    assert f"{len(lines)} events, 1 labels" in capsys.readouterr().err


def test_timestamp_order_option(tmp_path):
    out = tmp_path / "e.jsonl"
    assert main_simulate(["--scenario", "clean", "--duration", "1h", "--scale", "0.05", "--order", "timestamp",
                          "--out", str(out)]) == 0
    ts = [json.loads(line)["timestamp"] for line in out.read_text().splitlines()]
    assert ts == sorted(ts)


def test_list(capsys):
    assert main_simulate(["--list"]) == 0
    text = capsys.readouterr().out
    for name in ("clean", "provider-block", "old-list", "wrong-segment", "silent-stop", "runaway",
                 "reputation-decay", "webhook-outage", "demo"):
        assert name in text


@pytest.mark.parametrize("argv, message", [
    (["--scenario", "nope", "--out", "x"], "unknown scenario 'nope'"),
    (["--scenario", "clean"], "--scenario and --out are required"),
    (["--scenario", "clean", "--out", "x", "--duration", "6x"], "not a duration"),
    (["--scenario", "clean", "--out", "x", "--scale", "0"], "must be positive"),
    (["--scenario", "clean", "--out", "x", "--start", "yesterday"], "not a time"),
])
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main_simulate(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_parsers():
    assert parse_duration("6h") == 21600 and parse_duration("1h30m") == 5400 and parse_duration("90") == 90
    assert parse_start("2024-06-04T08:00:00Z") == 1717488000.0
    assert parse_start("1717488000") == 1717488000.0


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_paced_replay_compresses_time_and_batches():
    fake = FakeClock()
    timed = [(1000.0, {"n": 0}), (1000.0, {"n": 1}), (1060.0, {"n": 2}), (1600.0, {"n": 3}), (1600.5, {"n": 4})]
    batches = list(paced(timed, speedup=60.0, clock=fake.clock, sleep=fake.sleep))
    assert [[e["n"] for e in b] for b in batches] == [[0, 1], [2], [3], [4]]
    # 600 simulated seconds at 60x: 10 wall seconds in all, slept in arrival gaps.
    assert sum(fake.slept) == pytest.approx(600.5 / 60)
    assert fake.now - 100.0 == pytest.approx(600.5 / 60)


def test_paced_caps_batch_size():
    fake = FakeClock()
    timed = [(0.0, {"n": i}) for i in range(1200)]
    batches = list(paced(timed, speedup=10, clock=fake.clock, sleep=fake.sleep, max_batch=500))
    assert [len(b) for b in batches] == [500, 500, 200]
    with pytest.raises(ValueError, match="speedup"):
        list(paced(timed, speedup=0))
