"""Peer rule sets (rules/peers/, ddetect/peers.py): loaded, evaluated like Prometheus would, matched like ddetect."""
from __future__ import annotations

import numpy as np
import pytest

from ddetect.evaluate import METRIC_FAMILY, evaluate_run, peer_summary
from ddetect.peers import DEFAULT_PEERS, ThresholdRule, evaluate_rule, load_peer
from detector.counts import COUNTER_INDEX
from detector.rules import default_rules_path

HOUR = 3600.0
RULES = str(default_rules_path())


class _Index:
    """The slice of TrafficIndex the evaluator reads: one campaign, one provider; events given by hand."""

    def __init__(self, ts, types, bounce=None):
        n = len(ts)
        self.t = np.zeros(n)
        self.fields = {"campaign": (np.array(["spring"], dtype=object), np.zeros(n, dtype=int)),
                       "mailbox_provider": (np.array(["gmail"], dtype=object), np.zeros(n, dtype=int))}
        self.ev_msg = np.arange(n)
        self.ev_ts = np.asarray(ts, dtype=float)
        self.ev_seq = np.arange(n)
        self.ev_type = np.array([COUNTER_INDEX[t] for t in types])
        self.ev_bounce = np.array([COUNTER_INDEX[f"bounced_{b}"] if b else -1 for b in (bounce or [None] * n)])
        self.ev_fbl = np.full(n, -1)          # gmail: no feedback loop


def _stream(bad_from: float, bad_to: float, minutes: int = 180, per_min: int = 20, bad_share: float = 0.5):
    ts, types, bounce = [], [], []
    for m in range(minutes):
        for k in range(per_min):
            t = m * 60.0 + k
            bad = bad_from <= t < bad_to and k < per_min * bad_share
            ts.append(t)
            types.append("bounced" if bad else "delivered")
            bounce.append("block" if bad else None)
    return _Index(ts, types, bounce)


def test_threshold_rule_fires_once_per_episode_after_its_pending_time_and_resolves():
    rule = ThresholdRule("b", "bounce_rate", ("mailbox_provider",), above=0.05, span=600.0, every=60.0,
                         pending=300.0, min_total=100)
    alerts, book = evaluate_rule(rule, _stream(3600.0, 5400.0), 0.0, 3 * HOUR)
    firing = [a for a in alerts if a["status"] == "firing"]
    resolved = [a for a in alerts if a["status"] == "resolved"]
    assert len(firing) == 1 and len(resolved) == 1
    # the 10-minute ratio passes 5% one minute in; then 5 more minutes pending
    assert 3600.0 + 300.0 < firing[0]["detected_at"] <= 3600.0 + 420.0
    assert firing[0]["observed"]["rate"] > 0.05 and firing[0]["scope"] == {"mailbox_provider": "gmail"}
    assert resolved[0]["detected_at"] > 5400.0
    assert book["series"] == {("b", "mailbox_provider=gmail")}
    assert book["armed_since"][("b", "mailbox_provider=gmail")] <= 600.0


def test_a_blip_shorter_than_for_does_not_fire_and_min_total_gates():
    rule = ThresholdRule("b", "bounce_rate", ("mailbox_provider",), above=0.05, span=60.0, every=60.0,
                         pending=300.0, min_total=10)
    assert evaluate_rule(rule, _stream(3600.0, 3720.0), 0.0, 3 * HOUR)[0] == []
    thin = ThresholdRule("b", "bounce_rate", ("mailbox_provider",), above=0.05, span=60.0, every=60.0,
                         min_total=1000)
    alerts, book = evaluate_rule(thin, _stream(3600.0, 5400.0), 0.0, 3 * HOUR)
    assert alerts == [] and book["armed_since"] == {}


def test_shipped_peers_load_and_can_match_labels():
    families = set().union(*METRIC_FAMILY.values())
    for name in DEFAULT_PEERS:
        peer = load_peer(name)
        assert peer.rules and peer.source
        for rule in peer.rules:
            assert rule.metric in families, (name, rule.name)
    assert {r.above for r in load_peer("posthog").rules} == {0.01, 0.003, 0.10, 0.05}
    assert [(r.metric, r.scope, r.above) for r in load_peer("sparkpost").rules] == \
        [("block_rate", ("mailbox_provider",), 0.10)]


def test_bad_peer_file_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: x, metric: volume, scope: [campaign], above: 0.1, span: 1h, every: 5m}\n")
    with pytest.raises(ValueError, match="not a rate metric"):
        load_peer(bad)


@pytest.fixture(scope="module")
def blatant_block():
    # A Gmail block refusing 90% of one domain's mail: every peer's block or bounce line is crossed.
    return evaluate_run("provider-block", 2, scale=0.1, duration=3 * HOUR, rules_path=RULES,
                        params={"rate": 0.9, "throttle": 0.0, "span": (0.4, 0.9)}, variant="provider-block@blatant",
                        peers=DEFAULT_PEERS, profile="esp-mix")


def test_peers_catch_a_blatant_block_on_the_same_stream(blatant_block):
    run = blatant_block
    assert run["scenario"] == "provider-block@blatant" and run["base_scenario"] == "provider-block"
    for name in ("sparkpost", "grafana"):
        s = peer_summary([run], name)
        assert s["caught"] == 1, (name, run["peers"][name]["alerts"][:3])
        assert 0 < s["median_delay_s"] < 0.5 * 3 * HOUR
    assert peer_summary([run])["caught"] == 1          # ddetect's pack too


def test_peers_fire_nothing_on_a_short_clean_run():
    run = evaluate_run("clean", 5, scale=0.1, duration=3 * HOUR, rules_path=RULES, peers=DEFAULT_PEERS)
    for name in DEFAULT_PEERS:
        part = run["peers"][name]
        assert part["firing"] == 0, (name, part["alerts"][:3])
        assert part["series"] > 0
    s = peer_summary([run], "grafana")
    assert s["clean"]["runs"] == 1 and s["clean"]["false_alarms"] == 0 and s["clean"]["armed_days"] > 0
