"""End to end on a small simulation: traffic index vs the canonical events, report files, PNG plots."""
from __future__ import annotations

import math
from collections import Counter

import matplotlib.image
import pytest

from ddetect.evaluate import TrafficIndex, main_evaluate, plot_run, window_series
from sim import DEFAULT_START, simulate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOUR = 3600.0


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    pixels = matplotlib.image.imread(path)          # decodes the whole image (raises on a corrupt file)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert float(pixels[..., :3].std()) > 0.01      # not a blank canvas


@pytest.fixture(scope="module")
def block_run():
    return simulate("provider-block", seed=3, start=DEFAULT_START, duration=3 * HOUR, scale=0.1)


def test_index_counts_agree_with_the_canonical_events(block_run):
    table, labels = block_run
    label = labels[0]
    index = TrafficIndex(table)
    # The simulator's own label counts the messages accepted in [start, end) in the scope.
    assert index.messages(label["scope"], label["start"], label["end"]) == label["messages"]

    window = 300.0
    end = DEFAULT_START + 3 * HOUR
    series = window_series(index, label["scope"], "block_rate", DEFAULT_START, end, window)
    volume = window_series(index, label["scope"], "volume", DEFAULT_START, end, window)
    x, n, acc = Counter(), Counter(), Counter()
    for ev in table:                                # the dicts the engine is fed
        if any(ev[k] != v for k, v in label["scope"].items()):
            continue
        w = int((ev["timestamp"] - DEFAULT_START) // window)
        if ev["type"] in ("delivered", "bounced"):
            n[w] += 1
        if ev["type"] == "bounced" and ev["bounce_class"] == "block":
            x[w] += 1
        if ev["type"] == "accepted":
            acc[w] += 1
    n_win = math.ceil(3 * HOUR / window)
    assert series["n"] == [n[w] for w in range(n_win)]
    assert series["x"] == [x[w] for w in range(n_win)]
    assert volume["x"] == [acc[w] for w in range(n_win)]
    assert sum(series["x"]) > 0


def test_closure_adds_the_fields_a_campaign_determines(block_run):
    table, _ = block_run
    index = TrafficIndex(table)
    camp = table.campaigns[0]
    closed = index.closure({"campaign": camp})
    assert closed["campaign"] == camp
    assert closed["sending_domain"] == table.camp_sdom[0]
    assert closed["ip_pool"] == table.camp_pool[0]
    assert "mailbox_provider" not in closed          # a campaign goes to every provider
    assert index.closure({"campaign": "no-such-campaign"}) == {"campaign": "no-such-campaign"}


def test_evaluate_writes_table_report_and_plots(tmp_path, capsys):
    out = tmp_path / "report"
    rc = main_evaluate(["--scenarios", "clean,provider-block", "--seeds", "1", "--scale", "0.1",
                        "--duration", "3h", "--out", str(out), "--jobs", "1"])
    assert rc == 0
    printed = capsys.readouterr().out
    for text in ("scenario", "chart trials", "provider_block", "every scenario detected",
                 "exact CUSUM bound", "per 1,000 scope-days", "precision"):
        assert text in printed
    assert sum(line.startswith(("PASS", "FAIL", "N/A")) for line in printed.splitlines()) == 10
    readme = (out / "README.md").read_text()
    assert readme.startswith("# Detection quality on simulated traffic")
    for text in ("## Goals", "| scenario | incident | rule |", "## False alarms", "## Per run",
                 "![clean](clean.png)", "![provider-block](provider-block.png)", "scope-days"):
        assert text in readme
    for name in ("clean.png", "provider-block.png"):
        _assert_png(out / name)


def test_cli_rejects_unknown_scenario_and_bad_rules(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main_evaluate(["--scenarios", "no-such-thing", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "unknown scenario" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    test: nope\n")
    assert main_evaluate(["--rules", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "cannot load rules" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_plot_of_a_hand_built_run(tmp_path):
    t0, window = 1_700_000_000.0, 300.0
    starts = [t0 + i * window for i in range(24)]
    x = [40] * 10 + [400] * 6 + [40] * 8
    label = {"incident": "runaway", "metric": "volume", "scope": {"campaign": "welcome"},
             "start": t0 + 10 * window, "end": t0 + 16 * window}
    run = {"scenario": "runaway", "seed": 1, "scale": 1.0, "start": t0, "duration": 24 * window,
           "labels": [label], "matched": [[0]], "false_alarms": [],
           "alerts": [{"alert_id": "a1", "rule": "volume_surge", "status": "firing", "detected_at": t0 + 11 * window},
                      {"alert_id": "a1", "rule": "volume_surge", "status": "resolved", "detected_at": t0 + 19 * window}],
           "plots": {"labels": [{"scope": label["scope"], "metric": "volume", "start": starts, "x": x, "n": x,
                                 "window": window}], "false_alarms": []}}
    path = tmp_path / "runaway.png"
    plot_run(run, path)
    _assert_png(path)
    empty = dict(run, scenario="clean", labels=[], matched=[], alerts=[], plots={"labels": [], "false_alarms": []})
    plot_run(empty, tmp_path / "clean.png")
    _assert_png(tmp_path / "clean.png")
