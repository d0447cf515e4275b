"""The bounded top-N campaign collector, read back through a fresh CollectorRegistry."""
from __future__ import annotations

import random
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ddetect.rates_collector import CampaignRatesCollector, label_value


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def exported(registry: CollectorRegistry, name: str) -> dict[tuple, float]:
    """Series of one family as {label tuple: value}, parsed from the real exposition text."""
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def make(top_n=20, **kw):
    registry = CollectorRegistry()
    kw.setdefault("half_life_seconds", None)
    collector = CampaignRatesCollector(top_n, registry=registry, **kw)
    return registry, collector


def test_ratios_match_their_definitions():
    registry, c = make()
    c.observe("spring-sale", {"accepted": 1000, "delivered": 970, "bounced": 30, "complained": 2})
    c.observe("spring-sale", {"delivered": 30, "complained": 1})
    assert registry.get_sample_value("ddetect_campaign_bounce_ratio", {"campaign": "spring-sale"}) \
        == pytest.approx(30 / (1000 + 30))
    assert registry.get_sample_value("ddetect_campaign_complaint_ratio", {"campaign": "spring-sale"}) \
        == pytest.approx(3 / 1000)
    assert registry.get_sample_value("ddetect_campaign_events",
                                     {"campaign": "spring-sale", "type": "accepted"}) == 1000
    assert registry.get_sample_value("ddetect_campaign_tracker_campaigns") == 1


def test_ratio_without_denominator_is_absent_not_nan():
    registry, c = make()
    c.observe("opens-only", {"opened": 5, "clicked": 1})
    assert exported(registry, "ddetect_campaign_bounce_ratio") == {}
    assert exported(registry, "ddetect_campaign_complaint_ratio") == {}
    assert registry.get_sample_value("ddetect_campaign_events",
                                     {"campaign": "opens-only", "type": "opened"}) == 5


def test_only_top_n_campaigns_are_exported():
    registry, c = make(top_n=5, capacity=60)
    for i in range(50):
        c.observe(f"camp-{i:02d}", {"delivered": 10 * (i + 1), "bounced": i})
    series = exported(registry, "ddetect_campaign_bounce_ratio")
    assert len(series) == 5
    assert {dict(k)["campaign"] for k in series} == {f"camp-{i}" for i in range(45, 50)}
    assert [r.campaign for r in c.top()] == ["camp-49", "camp-48", "camp-47", "camp-46", "camp-45"]


def test_memory_is_bounded_and_heavy_hitters_survive_a_long_tail():
    """10,000 one-off campaigns interleaved with 5 heavy ones: the table never grows past
    its capacity and the exported top 5 are exactly the true top 5."""
    rng = random.Random(20240601)
    registry, c = make(top_n=5, capacity=25)
    heavy = [f"newsletter-{k}" for k in range(5)]
    truth = Counter()
    tail = 0
    for _ in range(40_000):
        if rng.random() < 0.25:
            name = heavy[rng.randrange(5)]
        else:
            name = f"oneoff-{tail}"
            tail += 1
        n = rng.randint(1, 4)
        c.observe(name, {"delivered": n})
        truth[name] += n
        assert c.tracked() <= 25
    assert tail > 25_000
    assert c.evictions() > 25_000
    assert {r.campaign for r in c.top()} == set(heavy)
    assert set(dict(k)["campaign"] for k in exported(registry, "ddetect_campaign_events")) == set(heavy)
    # Space-Saving bounds: volume - error <= truth <= volume; the per-type counts cover
    # everything since the campaign last entered, and what came before is within error.
    for row in c.top():
        assert row.volume - row.error <= truth[row.campaign] <= row.volume
        assert 0 <= truth[row.campaign] - row.counts["delivered"] <= row.error
        assert row.error < 0.01 * row.volume
    assert registry.get_sample_value("ddetect_campaign_tracker_evictions_total") == c.evictions()


def test_newcomer_cannot_leap_on_borrowed_volume():
    registry, c = make(top_n=2, capacity=3)
    c.observe("a", {"delivered": 100})
    c.observe("b", {"delivered": 50})
    c.observe("c", {"delivered": 40})
    c.observe("d", {"delivered": 1})  # evicts c (40), inherits 40 as error
    rows = {r.campaign: r for r in c.top()}
    assert set(rows) == {"a", "b"}
    assert "c" not in c._slots and "d" in c._slots
    assert c._slots["d"].volume == 41 and c._slots["d"].error == 40


def test_counts_decay_with_the_half_life():
    clock = FakeClock()
    registry, c = make(top_n=2, half_life_seconds=600.0, clock=clock)
    c.observe("old", {"delivered": 800, "bounced": 200})
    clock.now += 600
    assert registry.get_sample_value("ddetect_campaign_events",
                                     {"campaign": "old", "type": "delivered"}) == pytest.approx(400)
    # Decay scales numerator and denominator alike: the ratio is unchanged.
    assert registry.get_sample_value("ddetect_campaign_bounce_ratio", {"campaign": "old"}) \
        == pytest.approx(0.2)
    c.observe("new", {"delivered": 300})
    clock.now += 600
    # old: 1000 -> 250; new: 300 -> 150; new observations weigh more than old ones.
    c.observe("old", {"bounced": 100})
    top = {r.campaign: r for r in c.top()}
    assert top["old"].counts["bounced"] == pytest.approx(50 + 100)
    assert top["old"].bounce_ratio == pytest.approx(150 / (200 + 150))
    assert top["new"].volume == pytest.approx(150)


def test_decay_lets_a_new_campaign_overtake_a_finished_one():
    clock = FakeClock()
    registry, c = make(top_n=1, half_life_seconds=3600.0, clock=clock)
    c.observe("black-friday", {"delivered": 100_000})
    for _ in range(24):  # a day of a smaller steady campaign
        clock.now += 3600
        c.observe("weekly", {"delivered": 2_000})
    assert [r.campaign for r in c.top()] == ["weekly"]


def test_renormalisation_keeps_values_exact_over_long_runs():
    clock = FakeClock(0.0)
    registry, c = make(top_n=3, half_life_seconds=1.0, clock=clock)
    for step in range(500):  # 500 half-lives: growth would overflow without renormalising
        clock.now = float(step)
        c.observe("steady", {"delivered": 10, "bounced": 1})
    # Geometric series: 11 * (1 + 1/2 + 1/4 + ...) -> 22 at steady state.
    row = c.top()[0]
    assert row.volume == pytest.approx(22.0)
    assert row.bounce_ratio == pytest.approx(1 / 11)


def test_bad_input_raises_and_changes_nothing():
    registry, c = make()
    c.observe("ok", {"delivered": 5})
    before = generate_latest(registry)
    bad_calls = [
        ("", {"delivered": 1}),
        (None, {"delivered": 1}),
        ("x", {"delivered": 1, "sent": 3}),
        ("x", {"delivered": 1, "bounced": -1}),
        ("x", {"delivered": True}),
        ("x", {"delivered": 1.5}),
        ("x", [("delivered", 1)]),
    ]
    for campaign, counts in bad_calls:
        with pytest.raises(ValueError):
            c.observe(campaign, counts)
    assert generate_latest(registry) == before
    assert c.tracked() == 1


def test_long_campaign_ids_are_truncated_but_stay_distinct():
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    la, lb = label_value(a, 64), label_value(b, 64)
    assert len(la) == len(lb) == 64 and la != lb
    registry, c = make(max_label_chars=64)
    c.observe(a, {"delivered": 2})
    c.observe(b, {"delivered": 1})
    labels = {dict(k)["campaign"] for k in exported(registry, "ddetect_campaign_events")}
    assert labels == {la, lb}


def test_constructor_rejects_nonsense():
    with pytest.raises(ValueError):
        CampaignRatesCollector(0)
    with pytest.raises(ValueError):
        CampaignRatesCollector(10, capacity=5)
    with pytest.raises(ValueError):
        CampaignRatesCollector(10, half_life_seconds=0)


def test_describe_names_match_collect_names():
    registry, c = make()
    c.observe("c", {"delivered": 1, "bounced": 1, "complained": 1})
    described = {f.name for f in c.describe()}
    collected = {f.name for f in c.collect()}
    assert described == collected == {
        "ddetect_campaign_events", "ddetect_campaign_bounce_ratio",
        "ddetect_campaign_complaint_ratio", "ddetect_campaign_tracker_campaigns",
        "ddetect_campaign_tracker_evictions"}
