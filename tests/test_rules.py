"""Rule files: the shipped pack loads, and each bad fixture fails with one precise error."""
from pathlib import Path

import pytest

from ddetect.cli import main
from detector.rules import RuleError, default_rules_path, load_rules, load_rules_text, parse_duration

BAD = Path(__file__).parent / "fixtures" / "rules"

# fixture -> (line, column, message fragment); each fixture has exactly one failure.
EXPECTED = {
    "bad_unknown_key.yaml": (8, 5, 'rule "r1": unknown key \'treshold\''),
    "bad_unknown_metric.yaml": (4, 13, "unknown metric 'bonce_rate'"),
    "bad_scope_field.yaml": (5, 12, "unknown scope field 'recipient'"),
    "bad_category.yaml": (6, 15, "'marketing' is not one of technical"),
    "bad_probability.yaml": (8, 11, "rate must be between 0 and 1"),
    "bad_missing_key.yaml": (2, 5, "missing required key 'scope'"),
    "bad_duplicate_name.yaml": (8, 5, "duplicate rule name (first defined at line 2)"),
    "bad_key_for_test.yaml": (8, 5, "key 'rate' does not apply to test 'cusum'"),
    "bad_volume_metric.yaml": (4, 13, "test 'silence' needs a volume metric"),
    "bad_span.yaml": (11, 11, "span must be a whole number of windows"),
    "bad_yaml_syntax.yaml": (4, 1, "invalid YAML"),
    "bad_settings_duration.yaml": (2, 11, "settings.window 'five minutes' is not a duration"),
    "bad_pool_under.yaml": (8, 17, "pool_under must name some, not all, of the rule's scope fields"),
}


def test_every_bad_fixture_is_listed():
    assert sorted(p.name for p in BAD.glob("bad_*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_rule_file_reports_file_line_column(name):
    line, col, fragment = EXPECTED[name]
    with pytest.raises(RuleError) as info:
        load_rules(BAD / name)
    errors = info.value.errors
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{BAD / name}:{line}:{col}: "), errors[0]
    assert fragment in errors[0]


def test_all_errors_reported_at_once():
    text = """
rules:
  - name: a
    test: cusum
    metric: nope
    scope: [campaign]
    category: technical
    severity: loud
  - name: B
    test: policy
    metric: complaint_rate
    scope: [campaign]
    category: compliance
    severity: critical
"""
    with pytest.raises(RuleError) as info:
        load_rules_text(text, "x.yaml")
    msgs = info.value.errors
    assert any("x.yaml:5:13: rule \"a\": metric unknown metric 'nope'" in m for m in msgs), msgs
    assert any("x.yaml:8:15:" in m and "'loud'" in m for m in msgs), msgs
    assert any("x.yaml:9:11:" in m and "must match" in m for m in msgs), msgs
    assert any("needs 'rate'" in m for m in msgs) is False  # B's name error stops its checks early
    assert len(msgs) == 3


def test_default_rules_load():
    rs = load_rules(default_rules_path())
    names = [r.name for r in rs.rules]
    assert len(names) == len(set(names)) >= 10
    tests = {r.test for r in rs.rules}
    assert {"cusum", "betabinomial", "policy", "surge", "silence"} <= tests
    cats = {r.category for r in rs.rules}
    assert cats == {"technical", "compliance", "performance", "complaints", "security"}
    spam = next(r for r in rs.rules if r.name == "spam_rate_policy")
    assert spam.rate == 0.003 and spam.span_windows == 288


def test_disabled_rule_is_dropped():
    rs = load_rules_text("""
rules:
  - {name: a, test: cusum, metric: bounce_rate, scope: campaign, category: technical, severity: info,
     enabled: false}
""")
    assert rs.rules == []


def test_durations():
    assert parse_duration("5m") == 300 and parse_duration("1.5h") == 5400 and parse_duration(30) == 30
    for bad in ("5 minutes", "-1s", 0, True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_cli_rules_check_exit_codes(capsys):
    assert main(["rules", "check", str(default_rules_path())]) == 0
    assert main(["rules", "check", str(BAD / "bad_category.yaml")]) == 1
    err = capsys.readouterr().err
    assert "bad_category.yaml:6:15:" in err


def test_a_rule_that_silently_depends_on_a_key_gets_a_warning_with_its_position():
    text = """
rules:
  - name: blocks
    test: cusum
    metric: block_rate
    scope: [sending_domain, mailbox_provider]
    category: technical
    severity: critical
  - name: silence
    test: silence
    metric: volume
    scope: [campaign]
    category: performance
    severity: warning
"""
    rs = load_rules_text(text, "r.yaml")
    assert len(rs.warnings) == 2
    assert rs.warnings[0].startswith('r.yaml:3:5: rule "blocks": warning: cusum without baseline_cap')
    assert rs.warnings[1].startswith('r.yaml:9:5: rule "silence": warning: min_active is 0')
    assert load_rules(default_rules_path()).warnings == []
