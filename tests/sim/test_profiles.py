"""ESP profiles: which event types a stream carries, per ESP; labels that still describe it."""
from __future__ import annotations

import functools
import hashlib
import json

import numpy as np
import pytest

from sim import simulate
from sim.heldout import (HELDOUT_CLEAN_SEEDS, HELDOUT_SEEDS, HELDOUT_VARIANTS, TUNING_CLEAN_SEEDS,
                         TUNING_SEEDS)
from sim.profiles import ESP_PROFILES, PROFILES
from sim.world import is_weekend
from tests.sim.helpers import HOUR, START


@functools.lru_cache(maxsize=None)
def _run(scenario: str, profile: str, seed: int = 4, duration: float = 3 * HOUR, scale: float = 0.1):
    return simulate(scenario, seed=seed, start=START, duration=duration, scale=scale, profile=profile)


def _types_by_esp(table) -> dict[str, set[str]]:
    esp, types = table.column("provider"), table.column("type")
    return {e: set(types[esp == e].tolist()) for e in set(esp.tolist())}


def test_outcome_only_has_no_accepted_and_the_same_fates():
    sends, _ = _run("provider-block", "sends")
    outcome, _ = _run("provider-block", "outcome-only")
    assert "accepted" not in set(outcome.column("type").tolist())
    assert "accepted" in set(sends.column("type").tolist())

    def distinct(table, etype):        # event numbers differ between streams; count distinct events
        return len(np.unique(table.seq[table.column("type") == etype]))
    for etype in ("delivered", "bounced", "deferred", "complained", "opened"):
        assert distinct(outcome, etype) == distinct(sends, etype), etype


def test_esp_mix_filters_each_campaign_to_its_own_esp():
    table, _ = _run("demo", "esp-mix")
    seen = _types_by_esp(table)
    assert {"sendgrid", "mailgun", "postmark", "ses", "sparkpost"} <= set(seen)
    assert "accepted" not in seen["postmark"] and "deferred" not in seen["postmark"]
    assert seen["postmark"] >= {"delivered", "bounced", "opened"}
    assert seen["ses"] <= {"delivered", "bounced", "complained", "dropped"} and "delivered" in seen["ses"]
    for esp in ("sendgrid", "mailgun", "sparkpost"):
        assert {"accepted", "deferred", "delivered", "bounced"} <= seen[esp], esp


@pytest.mark.parametrize("esp", sorted(ESP_PROFILES))
def test_single_esp_profile_emits_only_that_esps_types(esp):
    table, _ = _run("clean", esp, duration=2 * HOUR, scale=0.05)
    types = set(table.column("type").tolist())
    assert types <= ESP_PROFILES[esp].types
    assert "delivered" in types


def test_labels_follow_the_profile():
    _, sends = _run("silent-stop", "sends")
    _, outcome = _run("silent-stop", "outcome-only")
    _, mix = _run("silent-stop", "esp-mix")        # abandoned-cart is a Mailgun flow: it posts accepted
    assert sends[0]["metric"] == mix[0]["metric"] == "volume"
    assert outcome[0]["metric"] == "delivery_volume"
    # delivery attempts: every accepted message that is not dropped
    assert 0.95 * sends[0]["baseline_rate"] < outcome[0]["baseline_rate"] < sends[0]["baseline_rate"]
    # rate labels do not depend on what the ESP posts
    _, block_sends = _run("provider-block", "sends")
    _, block_mix = _run("provider-block", "esp-mix")
    assert block_sends == block_mix


def test_ses_complaints_arrive_later_and_its_label_says_so():
    lags = {}
    for profile in ("sends", "ses"):
        table, labels = _run("wrong-segment", profile, duration=6 * HOUR)
        rows = table.column("type") == "complained"
        lags[profile] = float(np.median(table.ts[rows] - table.m_t[table.msg[rows]]))
        lag_label = labels[0]["signal_lag_s"]
        assert lag_label == (3 * HOUR if profile == "ses" else HOUR)
    assert lags["ses"] > 2.0 * lags["sends"], lags


def test_unknown_profile_is_rejected():
    with pytest.raises(ValueError, match="unknown profile"):
        simulate("clean", seed=1, duration=HOUR, scale=0.01, profile="nope")
    assert {"sends", "outcome-only", "esp-mix", "postmark", "ses", "mailjet"} <= set(PROFILES)


def test_a_week_has_quieter_weekends():
    table, _ = simulate("clean", seed=3, start=START, duration=7 * 86400.0, scale=0.02)
    t = table.m_t
    day = ((t - START) // 86400).astype(int)
    per_day = np.bincount(day, minlength=7)[:7]
    weekend = np.array([is_weekend(START + d * 86400 + 43200) for d in range(7)])
    assert weekend.sum() == 2                       # 2024-06-04 is a Tuesday: Sat 8th, Sun 9th
    assert per_day[weekend].mean() < 0.8 * per_day[~weekend].mean()


def test_heldout_set_is_frozen_and_disjoint_from_tuning():
    assert not set(HELDOUT_SEEDS) & set(TUNING_SEEDS) and not set(HELDOUT_CLEAN_SEEDS) & set(TUNING_CLEAN_SEEDS)
    frozen = json.dumps([HELDOUT_SEEDS, HELDOUT_CLEAN_SEEDS,
                         [(v.scenario, v.name, sorted(v.params.items())) for v in HELDOUT_VARIANTS]])
    # Changing the held-out set makes it a tuning set: add a new frozen set instead.
    assert hashlib.sha256(frozen.encode()).hexdigest()[:16] == "e58fc94a64a3b544"


@pytest.mark.parametrize("variant", HELDOUT_VARIANTS, ids=lambda v: v.key)
def test_every_heldout_variant_simulates_with_labels(variant):
    table, labels = simulate(variant.scenario, seed=HELDOUT_SEEDS[0], start=START, duration=2 * HOUR, scale=0.03,
                             profile="esp-mix", params=dict(variant.params))
    assert len(table) > 1000
    assert len(labels) == (0 if variant.scenario == "clean" else 1)
    for label in labels:
        assert label["baseline_rate"] is not None and label["incident_rate"] is not None


def test_simulate_cli_profile_option(tmp_path, capsys):
    from sim import main_simulate

    out = tmp_path / "e.jsonl"
    assert main_simulate(["--scenario", "clean", "--duration", "1h", "--scale", "0.05", "--profile", "postmark",
                          "--out", str(out)]) == 0
    types = {json.loads(line)["type"] for line in out.read_text().splitlines()}
    assert "delivered" in types and not types & {"accepted", "deferred"}
    assert "(postmark)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main_simulate(["--scenario", "clean", "--profile", "nope", "--out", str(out)])
    assert main_simulate(["--list"]) == 0
    assert "outcome-only" in capsys.readouterr().out
