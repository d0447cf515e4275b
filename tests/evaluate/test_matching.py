"""Alert-to-label matching, false-alarm counting and precision/recall on hand-built data."""
from __future__ import annotations

import pytest

from ddetect.evaluate import (DEFAULT_GRACE, alert_matches, match_alerts, scope_relation, summarize)

T0 = 1_000_000.0
LABEL = {"scenario": "old-list", "incident": "old-list", "kind": "step", "start": T0, "end": T0 + 600.0,
         "scope": {"campaign": "spring"}, "metric": "hard_bounce_rate", "rule_hint": "hard_bounce_spike"}


def alert(rule="hard_bounce_spike", scope=None, at=T0 + 300.0, status="firing", metric="hard_bounce_rate", i=0):
    return {"alert_id": f"a{i}", "rule": rule, "status": status, "metric": metric, "detected_at": at,
            "scope": {"campaign": "spring", "mailbox_provider": "gmail"} if scope is None else scope}


def test_sub_scope_matches_label_scope():
    a = alert()
    assert scope_relation(a["scope"], LABEL["scope"]) == "sub"
    assert alert_matches(a, LABEL, DEFAULT_GRACE)


def test_same_and_super_scope():
    assert scope_relation({"campaign": "spring"}, {"campaign": "spring"}) == "same"
    label = dict(LABEL, scope={"campaign": "spring", "mailbox_provider": "gmail"})
    a = alert(scope={"campaign": "spring"})
    assert scope_relation(a["scope"], label["scope"]) == "super"
    assert alert_matches(a, label, DEFAULT_GRACE)


def test_other_campaign_does_not_match():
    assert scope_relation({"campaign": "autumn", "mailbox_provider": "gmail"}, {"campaign": "spring"}) is None
    assert not alert_matches(alert(scope={"campaign": "autumn", "mailbox_provider": "gmail"}), LABEL, DEFAULT_GRACE)


def test_overlapping_scope_matches_only_when_traffic_is_shared():
    """{sending_domain, provider} vs {campaign}: neither contains the other; they meet in campaign x provider."""
    scope = {"sending_domain": "news.example.com", "mailbox_provider": "yahoo"}
    a = alert(rule="spam_rate_policy", scope=scope)
    assert scope_relation(scope, LABEL["scope"]) == "overlap"
    assert alert_matches(a, LABEL, DEFAULT_GRACE)
    assert scope_relation(scope, LABEL["scope"], overlaps=lambda x, y: False) is None
    assert not alert_matches(a, LABEL, DEFAULT_GRACE, overlaps=lambda x, y: False)
    # With the campaign's sending domain known, another domain disagrees: no match even if "overlapping".
    closure = lambda s: dict(s, sending_domain="other.example.com") if s.get("campaign") == "spring" else dict(s)
    assert scope_relation(scope, LABEL["scope"], closure, overlaps=lambda x, y: True) is None


def test_closure_makes_the_campaigns_sending_domain_a_super_scope():
    """A campaign has one sending domain, so {sending_domain: d} contains all of its traffic."""
    facts = {("campaign", "spring"): {"sending_domain": "news.example.com"}}

    def closure(scope):
        out = dict(scope)
        for k, v in scope.items():
            out.update(facts.get((k, v), {}))
        return out

    a = alert(rule="ses_bounce_review", scope={"sending_domain": "news.example.com"})
    assert scope_relation(a["scope"], LABEL["scope"]) == "overlap"   # literal keys: nothing to compare
    assert scope_relation(a["scope"], LABEL["scope"], closure) == "super"
    assert alert_matches(a, LABEL, DEFAULT_GRACE, closure)
    assert not alert_matches(alert(scope={"sending_domain": "other.example.com"}), LABEL, DEFAULT_GRACE, closure)


@pytest.mark.parametrize("at, grace, expected", [
    (T0 - 1.0, 3600.0, False),            # before onset
    (T0, 3600.0, True),                   # at onset
    (T0 + 600.0 + 3600.0, 3600.0, True),  # last second of the grace
    (T0 + 600.0 + 3601.0, 3600.0, False),  # after it
    (T0 + 600.0 + 60.0, 0.0, False),      # no grace
])
def test_time_window(at, grace, expected):
    assert alert_matches(alert(at=at), LABEL, grace) is expected


def test_signal_lag_extends_the_grace():
    label = dict(LABEL, metric="complaint_rate", rule_hint="complaint_spike", signal_lag_s=3600.0)
    late = alert(rule="complaint_spike", metric="complaint_rate", at=T0 + 600.0 + 3600.0 + 2 * 3600.0)
    assert alert_matches(late, label, 3600.0)
    assert not alert_matches(dict(late, detected_at=T0 + 600.0 + 3600.0 + 3 * 3600.0 + 1), label, 3600.0)


def test_rule_must_be_hinted_or_in_the_metric_family():
    assert alert_matches(alert(rule="bounce_rate_outlier", metric="bounce_rate", scope={"campaign": "spring"}),
                         LABEL, DEFAULT_GRACE)
    assert not alert_matches(alert(rule="complaint_spike", metric="complaint_rate"), LABEL, DEFAULT_GRACE)
    assert not alert_matches(alert(rule="volume_surge", metric="volume", scope={"campaign": "spring"}),
                             LABEL, DEFAULT_GRACE)


def test_false_alarm_counting():
    alerts = [
        alert(i=0),                                                    # matched
        alert(i=0, status="resolved", at=T0 + 1200.0),                 # resolved: neither
        alert(i=1, scope={"campaign": "spring", "mailbox_provider": "yahoo"}, at=T0 + 600.0),  # matched too
        alert(i=2, at=T0 - 3600.0),                                    # before onset: false alarm
        alert(i=3, rule="complaint_spike", metric="complaint_rate"),   # wrong metric: false alarm
        alert(i=4, scope={"campaign": "autumn"}),                      # other campaign: false alarm
    ]
    m = match_alerts(alerts, [LABEL], DEFAULT_GRACE)
    assert m.firing == 5
    assert m.by_label == [[0, 2]]
    assert m.false_alarms == [3, 4, 5]
    assert m.detected == [True]
    assert match_alerts(alerts[3:], [LABEL]).detected == [False]


def _run(scenario, labels, matched, false_alarms, firing, series=100, duration=6 * 3600.0):
    alerts = [alert(i=i) for i in range(firing)]
    return {"scenario": scenario, "seed": 1, "scale": 1.0, "duration": duration, "start": T0, "window": 300.0,
            "events": 0, "labels": labels, "alerts": alerts, "matched": matched, "false_alarms": false_alarms,
            "firing": firing, "detections": [], "series": series, "armed_series": series // 2,
            "armed_days": series * duration / 86400.0 / 2}


def test_precision_recall_and_clean_false_alarm_rate():
    runs = [
        _run("old-list", [LABEL], [[0, 1]], [2], 3),          # 2 matched, 1 false alarm
        _run("provider-block", [LABEL], [[]], [0], 1),        # missed, 1 false alarm
        _run("clean", [], [], [0], 1, series=200),            # 1 false alarm on 200 series x 0.25 d
    ]
    s = summarize(runs)
    assert s.overall["firing"] == 5
    assert s.overall["false_alarms"] == 3
    assert s.overall["precision"] == pytest.approx(2 / 5)
    assert s.overall["recall"] == pytest.approx(1 / 2)
    assert s.clean["scope_days"] == pytest.approx(50.0)
    assert s.clean["per_1000"] == pytest.approx(20.0)
    assert s.clean["per_1000_armed"] == pytest.approx(40.0)
    goals = {g.name.split()[0]: g for g in s.goals}
    assert not goals["every"].passed and "provider-block" in goals["every"].detail
    assert not goals["<="].passed
    assert "armed series-days" in goals["<="].name and "95% upper bound" in goals["<="].detail


@pytest.mark.parametrize("ratios, verdict", [([1.2, 1.4], True), ([1.2, 2.0], False), ([], None)])
def test_delay_goal_uses_the_mean_ratio_over_seeds(ratios, verdict):
    runs = []
    for seed, ratio in enumerate(ratios, 1):
        run = _run("old-list", [{**LABEL, "incident_rate": 0.08}], [[0]], [], 1)
        run["seed"] = seed
        run["detections"] = [{"label": 0, "incident": "old-list", "kind": "step", "rule": "hard_bounce_spike",
                              "hinted": True, "detected": True, "test": "cusum", "scope": {"campaign": "spring"},
                              "delay_s": 300.0, "delay_msgs": 500, "trials": 100 * ratio, "bound": 100.0,
                              "bound_window": 120, "chart_arl1": 110.0, "ratio": ratio, "seen_rate": 0.04}]
        runs.append(run)
    runs.append(_run("clean", [], [], [], 0, series=8000, duration=86400.0))   # 4,000 armed series-days, no alarm
    goals = summarize(runs).goals
    assert goals[1].passed is verdict
    if verdict is False:
        assert "1.60x" in goals[1].detail and "rate seen between onset and alarm 0.04 vs incident rate 0.08" \
            in goals[1].detail
    assert goals[2].passed is True and "too little exposure" not in goals[2].detail
