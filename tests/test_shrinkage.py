"""Empirical-Bayes pooling of sparse scopes under their parent (detector/shrinkage.py)."""
import numpy as np
import pytest
from scipy.stats import beta as beta_dist, betabinom

from detector.engine import Engine
from detector.event import validate_event
from detector.rules import load_rules_text
from detector.shrinkage import MIN_SIBLINGS, BetaPrior, SiblingRates
from streams.partitioning import Partitioner

from .streamgen import stream

T0 = 1_700_000_000.0


def _siblings(rng, k, mean, strength, sizes=(800, 20_000)):
    rates = SiblingRates()
    n = rng.integers(*sizes, k)
    x = betabinom.rvs(n, strength * mean, strength * (1 - mean), random_state=rng)
    for xi, ni in zip(x, n):
        rates.add(int(xi), int(ni))
    return rates


@pytest.mark.parametrize("mean,strength", [(0.004, 300.0), (0.004, 3000.0), (0.02, 150.0)])
def test_the_prior_recovers_mean_and_concentration_of_beta_binomial_siblings(mean, strength):
    """Siblings drawn by scipy's beta-binomial: the method-of-moments fit finds the mean within
    10% and the concentration within a factor 1.6 (400 siblings; the cap is out of the way)."""
    rng = np.random.default_rng(7)
    prior = _siblings(rng, 400, mean, strength).prior(max_strength=1e9)
    assert prior.mean == pytest.approx(mean, rel=0.10)
    assert strength / 1.6 < prior.strength < strength * 1.6, prior


def test_siblings_that_agree_give_the_capped_prior_and_few_give_none():
    rng = np.random.default_rng(3)
    rates = SiblingRates()
    for n in rng.integers(2_000, 5_000, 50):
        rates.add(int(rng.binomial(n, 0.005)), int(n))   # one rate: a spread of binomial noise only
    prior = rates.prior(max_strength=2000)
    assert prior.strength == 2000 and prior.mean == pytest.approx(0.005, rel=0.15)
    few = SiblingRates()
    for _ in range(MIN_SIBLINGS - 1):
        few.add(10, 2000)
    assert few.prior(max_strength=2000) is None


def test_the_posterior_bound_is_scipys_beta_quantile():
    prior = BetaPrior(mean=0.004, strength=500.0, siblings=9)
    assert prior.upper(3, 120, 0.95) == pytest.approx(beta_dist.ppf(0.95, 2.0 + 3, 498.0 + 117))


def test_the_sums_survive_a_json_round_trip():
    import json
    rates = _siblings(np.random.default_rng(1), 30, 0.01, 200.0)
    again = SiblingRates(json.loads(json.dumps(rates.sums)))
    assert again.prior(2000) == rates.prior(2000)


RULES = """
settings: {window: 5m, allowed_lateness: 2m}
rules:
  - name: hard_bounce_spike
    test: cusum
    metric: hard_bounce_rate
    scope: [campaign, mailbox_provider]
    category: technical
    severity: critical
    shift: [3, 15]
    arl0: 1.0e+7
    false_alarms_per_scope_day: 1.0e-3
    baseline_floor: 0.005
    baseline_cap: 0.02
    min_volume: 50
    min_sends: 50
    warmup: {messages: 2000, windows: 3}
    pool_under: [mailbox_provider]
    resolve: {windows: 3}
"""


def _run(rules, events):
    """Replay in batches of a minute of event time, as the pipeline reads its stream."""
    engine = Engine(load_rules_text(rules))
    alerts, batch = [], []
    for e in events:
        if batch and e["timestamp"] - batch[0]["timestamp"] >= 60:
            alerts += engine.process(batch)
            batch = []
        batch.append(e)
    alerts += engine.process(batch)
    return engine, alerts + engine.flush()


def _sparse_stream(hard_new: float):
    """Eight established campaigns (0.4% hard bounces) for three hours, then a new campaign of
    ~860 messages a day (half of them to Gmail) for 30 hours, at ``hard_new``."""
    names = tuple(f"c{i}" for i in range(8))
    old = list(stream(seed=5, start=T0, hours=3, rate_per_s=0.5, campaigns=names, hard=0.004))
    new = list(stream(seed=6, start=T0 + 3 * 3600, hours=30, rate_per_s=0.01, campaigns=("tiny",), hard=hard_new))
    events = [validate_event(e) for e in sorted(old + new, key=lambda e: e["timestamp"])]
    for i, e in enumerate(events):
        e["event_id"] = f"x{i}"
    return events


def _tiny_gmail(alerts):
    return [a for a in alerts if a["status"] == "firing" and a["scope"] == {"campaign": "tiny", "mailbox_provider": "gmail"}]


def test_a_sparse_new_campaign_is_armed_on_its_siblings_prior_and_pages_on_a_rise_the_cap_cannot_see():
    """A new campaign sends ~430 messages a day to Gmail; 2,000 of its own would take five days.
    Its eight siblings learned ~0.4% at Gmail: armed on their prior from its first window, it
    pages a 4% hard-bounce rate on day one. Without pooling it is charted against the 2% cap
    only (aimed at a 7.5% stale list) and stays silent through the same 30 hours. (Yahoo and
    Microsoft had too little traffic for any sibling to learn a baseline: no prior there.)"""
    events = _sparse_stream(hard_new=0.04)
    engine, pooled = _run(RULES, events)
    _, unpooled = _run(RULES.replace("    pool_under: [mailbox_provider]\n", ""), events)
    fired = _tiny_gmail(pooled)
    assert fired, "the pooled rule did not page the sparse campaign"
    assert fired[0]["baseline"] < 0.01 and fired[0]["detected_at"] < T0 + 24 * 3600
    assert not _tiny_gmail(unpooled)
    assert engine.meta["pools"]["hard_bounce_spike|mailbox_provider=gmail"][0] == 8


def test_a_healthy_sparse_campaign_armed_on_the_prior_stays_quiet():
    events = _sparse_stream(hard_new=0.004)
    engine, alerts = _run(RULES, events)
    assert not [a for a in alerts if a["status"] == "firing"]
    tiny = engine.states["campaign=tiny|mailbox_provider=gmail"]["rules"]["hard_bounce_spike"]
    assert tiny["phase"] == "armed" and tiny["eb"]["siblings"] == 8 and tiny["p0"] < 0.01


def test_scopes_pooled_under_one_parent_share_a_partition():
    part = Partitioner(load_rules_text(RULES), 12)
    gmail = {part(("campaign", "mailbox_provider"), f"campaign=c{i}|mailbox_provider=gmail") for i in range(40)}
    spread = {part(("campaign", "mailbox_provider"), f"campaign=c0|mailbox_provider={p}")
              for p in ("gmail", "yahoo", "microsoft", "apple", "gmx", "orange", "comcast", "web")}
    assert len(gmail) == 1 and len(spread) > 1


def test_a_scope_that_paged_on_the_prior_learns_its_own_baseline_after_the_resolve():
    from detector import detectors

    rule = load_rules_text(RULES).rules[0]
    prior = BetaPrior(mean=0.004, strength=2000.0, siblings=8)
    st = detectors.new_state()
    detectors.close_cusum(rule, st, "s", T0, 0, 0, 0, prior=prior)
    assert st["phase"] == "armed" and "eb" in st
    detectors.relearn(st)
    detectors.close_cusum(rule, st, "s", T0 + 300, 1, 60, 60, prior=prior)
    assert st["phase"] == "warmup" and st["own_only"] and st["wn"] == 60
    # a scope that learned its own baseline gives it to the pool; one armed on the prior does not
    own = detectors.new_state()
    for i in range(3):
        detectors.close_cusum(rule, own, "o", T0 + 300 * i, 4, 700, 700)
    assert own["phase"] == "armed" and own.pop("learned") == [12, 2100] and "eb" not in own


def test_a_scope_armed_on_the_prior_learns_its_own_baseline_once_it_has_a_warm_up():
    from detector import detectors

    rule = load_rules_text(RULES).rules[0]
    st = detectors.new_state()
    detectors.close_cusum(rule, st, "s", T0, 0, 0, 0, prior=BetaPrior(mean=0.004, strength=2000.0, siblings=8))
    prior_p0 = st["p0"]
    for i in range(1, 5):      # calm windows of its own at 1% (above the siblings, under the chart's reference)
        detectors.close_cusum(rule, st, "s", T0 + 300 * i, 6, 600, 600)
    assert "eb" not in st and st["learned"] == [24, 2400] and st["p0"] > prior_p0
    assert st["p0"] == pytest.approx(beta_dist.ppf(0.95, 25, 2376), rel=0.01)
