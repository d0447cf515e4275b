"""promtool and amtool over deploy/: config syntax, rule syntax, rule unit tests, routing.

These run the real Debian binaries; if they are missing the tests fail (run `make deps`).
"""
from __future__ import annotations

import subprocess

import pytest
import yaml

from .promql import metric_selectors
from .tooling import (ALERTMANAGER_CONFIG, PROMETHEUS_BUILTIN, PROMETHEUS_DIR, RULE_FILES,
                      RULE_TESTS, TARGET_LABELS, exported_metric_names, recording_rule_names,
                      require_binary)


def run(cmd: list[str], cwd=None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{output}"
    return output


def test_rule_and_test_files_are_present():
    assert {p.name for p in RULE_FILES} >= {"ddetect-service.rules.yml", "ddetect-deliverability.rules.yml"}
    assert len(RULE_TESTS) >= 2


def test_promtool_check_config():
    out = run([require_binary("promtool"), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    assert f"{len(RULE_FILES)} rule files found" in out


def test_promtool_check_rules():
    out = run([require_binary("promtool"), "check", "rules", *map(str, RULE_FILES)])
    assert out.count("SUCCESS") == len(RULE_FILES)


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(test_file):
    out = run([require_binary("promtool"), "test", "rules", test_file.name], cwd=test_file.parent)
    assert "SUCCESS" in out and "FAILED" not in out


def test_every_rule_has_severity_category_and_summary():
    seen = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                seen.add(rule["alert"])
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
                assert rule["labels"]["category"] in {
                    "technical", "compliance", "performance", "complaints", "security", "pipeline"}, rule["alert"]
                assert rule["annotations"]["summary"], rule["alert"]
    assert {"DdetectWorkerDown", "DdetectConsumerLagGrowing", "DdetectWebhookErrorRatioHigh",
            "DdetectDeadLetters", "DdetectNoEvents"} <= seen


def test_rule_expressions_reference_exported_metrics_and_labels():
    """A renamed metric or label in ddetect/metrics.py must break this test, not the alerts."""
    known = {**exported_metric_names(), **recording_rule_names(), **PROMETHEUS_BUILTIN}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                selectors = metric_selectors(rule["expr"])
                assert selectors, f"{name}: no metric found in {rule['expr']!r}"
                for metric, labels in selectors:
                    assert metric in known, f"{path.name} {name}: unknown metric {metric}"
                    allowed = set(known[metric]) | set(TARGET_LABELS)
                    assert set(labels) <= allowed, \
                        f"{path.name} {name}: {metric} has no label(s) {sorted(set(labels) - allowed)}"


def test_amtool_check_config():
    out = run([require_binary("amtool"), "check-config", str(ALERTMANAGER_CONFIG)])
    assert "SUCCESS" in out


@pytest.mark.parametrize("labels, receivers", [
    ({"category": "pipeline", "severity": "warning"}, "platform-oncall"),
    ({"category": "pipeline", "severity": "critical"}, "pager,platform-oncall"),
    ({"category": "complaints", "severity": "critical"}, "pager,customer-service,senior-marketer"),
    ({"category": "complaints", "severity": "info"}, "customer-service"),
    ({"category": "technical", "severity": "warning"}, "email-ops"),
    ({"category": "compliance", "severity": "warning"}, "legal-compliance"),
    ({"category": "performance", "severity": "info"}, "marketing-analyst"),
    ({"category": "security", "severity": "warning"}, "security-it"),
    ({"category": "unknown", "severity": "info"}, "platform-oncall"),
])
def test_alertmanager_routes_by_category(labels, receivers):
    out = run([require_binary("amtool"), "config", "routes", "test",
               f"--config.file={ALERTMANAGER_CONFIG}", *(f"{k}={v}" for k, v in labels.items())])
    lines = [line for line in out.splitlines() if line and not line.startswith("Warning")]
    assert lines == [receivers]


def test_alertmanager_routes_every_rule_category_to_a_team():
    """Each category a Prometheus rule can carry reaches a receiver other than the fallback."""
    categories = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            categories |= {r["labels"]["category"] for r in group["rules"] if "alert" in r}
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    routed = set()
    for route in config["route"]["routes"]:
        for matcher in route.get("matchers", []):
            if matcher.startswith('category="'):
                routed.add(matcher.split('"')[1])
    assert categories <= routed
    assert routed >= {"technical", "compliance", "performance", "complaints", "security"}
