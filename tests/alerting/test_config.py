"""Routing file loading, validation errors with positions, routing decisions, and ``route test``."""
from __future__ import annotations

from pathlib import Path

import pytest

from alerting.config import load_routing, parse_routing
from alerting.durations import parse_duration
from alerting.matchers import parse_matcher
from alerting.route_test import main_route_test
from alerting.routing import receivers_for
from alerting.secrets import Secret, SecretRef
from alerting.yamlcheck import ConfigErrors

REPO = Path(__file__).resolve().parents[2]
DEFAULT = str(REPO / "rules" / "routing.yaml")
BAD = str(Path(__file__).parent / "testdata" / "bad_many.yaml")


def test_default_routing_file_loads_and_every_receiver_is_used_or_escalated_to():
    cfg = load_routing(DEFAULT)
    used = set()

    def walk(route):
        used.add(route.receiver)
        if route.escalate_to:
            used.add(route.escalate_to)
        for child in route.routes:
            walk(child)
    walk(cfg.route)
    used |= {r.escalate_to for r in cfg.receivers.values() if r.escalate_to}
    assert used == set(cfg.receivers)


@pytest.mark.parametrize("labels, expected", [
    ({"category": "technical", "severity": "critical"}, ["email-ops", "esp-contact"]),
    ({"category": "technical", "severity": "info"}, ["email-ops"]),
    ({"category": "compliance", "severity": "warning"}, ["legal-compliance"]),
    ({"category": "performance", "severity": "warning"}, ["marketing-analyst"]),
    ({"category": "complaints", "severity": "critical"}, ["customer-service", "senior-marketer"]),
    ({"category": "complaints", "severity": "info"}, ["customer-service"]),
    ({"category": "security", "severity": "critical"}, ["security-it"]),
    ({"category": "other"}, ["deliverability-default"]),
])
def test_default_matrix(labels, expected):
    assert receivers_for(load_routing(DEFAULT), labels) == expected


def test_default_escalations_are_inherited_values():
    cfg = load_routing(DEFAULT)
    tech = cfg.route.routes[0]
    assert (tech.receiver, tech.escalate_to, tech.escalate_after) == ("email-ops", "ops-pager", 900.0)
    assert tech.repeat_interval == 4 * 3600 and tech.group_by == ("category", "rule", "campaign")
    assert cfg.receivers["ops-pager"].escalate_to == "head-of-deliverability"


def test_all_errors_reported_with_file_line_column():
    with pytest.raises(ConfigErrors) as err:
        load_routing(BAD)
    lines = str(err.value).splitlines()
    expected = [
        (2, 13, "route receiver 'nope' is not defined"),
        (3, 3, "root route must not have 'matchers'"),
        (4, 15, "invalid duration '5x'"),
        (7, 7, "unknown key 'matchrs' in route"),
        (8, 18, "invalid regex"),
        (12, 9, "url is a secret; give url_env"),
        (13, 9, "unknown key 'colour'"),
        (14, 18, "unknown receiver 'ghost'"),
        (16, 11, "receiver 'r1' is defined twice"),
    ]
    assert len(lines) == len(expected), lines
    for line, (ln, col, text) in zip(lines, expected):
        assert line.startswith(f"{BAD}:{ln}:{col}: "), line
        assert text in line, line
    assert "XXXXXXXX" not in str(err.value)  # the inline secret is not echoed back


def test_yaml_syntax_error_has_position():
    with pytest.raises(ConfigErrors) as err:
        parse_routing("route:\n  receiver: [unclosed\nreceivers: []\n", "x.yaml")
    assert str(err.value).startswith("x.yaml:3:")


def test_escalation_loop_rejected():
    text = """
route: {receiver: a}
receivers:
  - {name: a, escalate_to: b, escalate_after: 1m}
  - {name: b, escalate_to: a, escalate_after: 1m}
"""
    with pytest.raises(ConfigErrors, match="escalation chain loops: a -> b -> a"):
        parse_routing(text)


def test_child_inherits_and_continue_fans_out():
    cfg = parse_routing("""
route:
  receiver: root
  repeat_interval: 1h
  group_by: [rule]
  routes:
    - receiver: a
      matchers: ['severity=~"critical|warning"']
      continue: true
      routes:
        - receiver: a2
          matchers: ['campaign="spring"']
          repeat_interval: 10m
    - receiver: b
      matchers: ['severity!="info"', 'campaign!~"test.*"']
receivers: [{name: root}, {name: a}, {name: a2}, {name: b}]
""")
    assert receivers_for(cfg, {"severity": "critical", "campaign": "spring"}) == ["a2", "b"]
    assert receivers_for(cfg, {"severity": "warning", "campaign": "test1"}) == ["a"]
    assert receivers_for(cfg, {"severity": "info"}) == ["root"]
    a2 = cfg.route.routes[0].routes[0]
    assert (a2.repeat_interval, a2.group_by) == (600.0, ("rule",))


def test_matchers_are_anchored_and_missing_label_is_empty():
    assert not parse_matcher("severity=~crit").matches({"severity": "critical"})
    assert parse_matcher("severity=~crit.*").matches({"severity": "critical"})
    assert parse_matcher('campaign=""').matches({})
    assert parse_matcher('campaign!=""').matches({"campaign": "x"})
    with pytest.raises(ValueError):
        parse_matcher("not a matcher")


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("15m", 900), ("1h30m", 5400), ("0", 0), ("2d", 172800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_secret_resolution_and_redaction(tmp_path):
    f = tmp_path / "key"
    f.write_text("s3cr3t\n")
    assert SecretRef(file=str(f)).resolve({}).reveal() == "s3cr3t"
    assert SecretRef(env="K").resolve({"K": "v"}).reveal() == "v"
    assert "v" not in repr(Secret("v-very-secret")) and "very" not in str(Secret("v-very-secret"))
    with pytest.raises(ValueError, match="environment variable K is not set"):
        SecretRef(env="K").resolve({})


def test_route_test_cli(capsys):
    rc = main_route_test(["--config", DEFAULT, "category=technical", "severity=critical"])
    assert rc == 0 and capsys.readouterr().out.strip() == "email-ops,esp-contact"
    rc = main_route_test(["--config", DEFAULT, "--verify.receivers=esp-contact,email-ops",
                          "category=technical", "severity=critical"])
    assert rc == 0
    rc = main_route_test(["--config", DEFAULT, "--verify.receivers=security-it", "category=technical"])
    captured = capsys.readouterr()
    assert rc == 1 and "Expected receivers did not match" in captured.err
    assert main_route_test(["--config", BAD, "a=b"]) == 2
    assert main_route_test(["--config", DEFAULT, "not-a-label"]) == 2
