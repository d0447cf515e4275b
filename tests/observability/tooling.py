"""Shared helpers for the observability tests: repo paths, required binaries, metric names."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from ddetect.metrics import Metrics
from ddetect.rates_collector import CampaignRatesCollector

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.rules.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD_DIR = DEPLOY / "grafana" / "dashboards"

# The ports each process serves /metrics on (defaults of the app's settings).
INGEST_PORT = 8080
WORKER_PORT = 6066
ROUTER_PORT = 8090


def require_binary(name: str) -> str:
    """Path of a required tool; a missing one FAILS the test (a skip would pass silently)."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make deps` (Debian: apt-get install -y "
                    f"--no-install-recommends prometheus prometheus-alertmanager)", pytrace=False)
    return path


def exported_metric_names() -> dict[str, tuple[str, ...]]:
    """Every sample name the code can export, mapped to its label names.

    Built from a fresh registry: counters export ``_total`` (and ``_created``), histograms
    ``_bucket`` (plus ``le``), ``_sum`` and ``_count``; gauges their bare name.
    """
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    names: dict[str, tuple[str, ...]] = {}
    for attr in vars(metrics).values():
        if not hasattr(attr, "_labelnames"):
            continue
        labels = tuple(attr._labelnames)
        family = attr._name
        kind = attr._type
        if kind == "counter":
            names[family + "_total"] = labels
            names[family + "_created"] = labels
        elif kind == "histogram":
            names[family + "_bucket"] = labels + ("le",)
            names[family + "_sum"] = labels
            names[family + "_count"] = labels
            names[family + "_created"] = labels
        else:
            names[family] = labels
    collector = CampaignRatesCollector(5, half_life_seconds=None)
    collector.observe("probe", {"delivered": 2, "bounced": 1, "complained": 1})
    for family in collector.collect():
        for sample in family.samples:
            names.setdefault(sample.name, tuple(sample.labels))
    return names


def recording_rule_names() -> dict[str, tuple[str, ...]]:
    """Recorded series names, with the labels their ``by (...)`` clause keeps."""
    out = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    by = re.search(r"\bby\s*\(([^)]*)\)", rule["expr"])
                    labels = tuple(x.strip() for x in by.group(1).split(",")) if by else ()
                    out[rule["record"]] = labels
    return out


# Series Prometheus itself creates.
PROMETHEUS_BUILTIN = {"up": ("job", "instance"), "ALERTS": ("alertname", "alertstate"),
                      "ALERTS_FOR_STATE": ("alertname",)}
TARGET_LABELS = ("job", "instance")
