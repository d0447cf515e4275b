"""deploy/ checked against the code: compose, Kubernetes manifests, Grafana provisioning.

There is no container engine here, so nothing is started; instead every port, path and
setting in the deployment files is read back through the application's own settings
loaders and HTTP route tables, so a change on either side breaks this test.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from prometheus_client import CollectorRegistry

from ddetect.metrics import Metrics

from .promql import metric_selectors
from .tooling import (DASHBOARD_DIR, DEPLOY, PROMETHEUS_BUILTIN, PROMETHEUS_DIR, REPO, TARGET_LABELS,
                      exported_metric_names, recording_rule_names)

COMPOSE_FILE = DEPLOY / "docker-compose.yml"
K8S_DIR = DEPLOY / "k8s"
TOPICS = {"deliverability-events", "deliverability-events-dlq", "deliverability-alerts",
          "deliverability-alerts-dlq"}


# --- what the application really does with an environment ------------------------------
def ingest_settings(env: dict):
    from ingest.config import load_config
    return load_config(env=env, require_hash_key=False)


def worker_settings(env: dict, monkeypatch):
    from streams.config import WorkerConfig
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return WorkerConfig()


def router_settings(env: dict):
    from alerting.service import RouterSettings
    return RouterSettings.from_env(env)


def ingest_paths() -> set[str]:
    from ingest.server import build_app
    app = build_app(ingest_settings({}), producer=None, metrics=Metrics(CollectorRegistry()))
    return {r.resource.canonical for r in app.router.routes() if r.method == "GET"}


def router_paths() -> set[str]:
    from alerting.web import make_app
    app = make_app(ledger=None, registry=CollectorRegistry())
    return {r.resource.canonical for r in app.router.routes() if r.method == "GET"}


def worker_paths() -> set[str]:
    """Faust pages the worker registers (read from its source: building the Faust app needs
    rule files and a broker configuration, which this static check does without)."""
    source = (REPO / "streams" / "app.py").read_text()
    return set(re.findall(r"@app\.page\(\s*[\"']([^\"']+)[\"']", source))


# --- docker compose ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def published(service: dict) -> dict[int, int]:
    out = {}
    for spec in service.get("ports", []):
        host, _, container = str(spec).rpartition(":")
        out[int(container)] = int(host)
    return out


def test_compose_has_the_whole_stack(compose):
    services = compose["services"]
    assert {"kafka", "kafka-init", "ingest", "worker-1", "worker-2", "router", "prometheus", "grafana",
            "alertmanager"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    for name in ("ingest", "worker-1", "worker-2", "router"):
        svc = services[name]
        assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}, name
        assert svc["command"][0] == "ddetect", name
        assert env_of(svc)["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
    assert services["ingest"]["command"] == ["ddetect", "ingest"]
    assert services["worker-1"]["command"] == services["worker-2"]["command"] == ["ddetect", "worker"]
    assert services["router"]["command"] == ["ddetect", "router"]


def test_compose_kafka_is_a_valid_single_node_kraft_cluster(compose):
    env = env_of(compose["services"]["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    listeners = dict(re.match(r"(\w+)://(.*)", x).groups() for x in env["KAFKA_LISTENERS"].split(","))
    protocol_map = dict(x.split(":") for x in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocol_map)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    advertised = dict(re.match(r"(\w+)://(.*)", x).groups() for x in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["PLAINTEXT"] == "kafka:9092" and listeners["PLAINTEXT"] == ":9092"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"  # one broker: RF 3 would never form
    # CLUSTER_ID must be what `kafka-storage random-uuid` prints: 16 bytes, URL-safe base64.
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    init = " ".join(compose["services"]["kafka-init"]["command"])
    assert {t for t in TOPICS if f"{t}:" in init} == TOPICS


def test_compose_ports_are_the_ones_the_processes_bind(compose, monkeypatch):
    services = compose["services"]
    ingest = ingest_settings(env_of(services["ingest"]))
    assert ingest.host == "0.0.0.0"
    assert ingest.bootstrap_servers == "kafka:9092"
    assert ingest.port in published(services["ingest"])
    router = router_settings(env_of(services["router"]))
    assert router.http_host == "0.0.0.0"
    assert router.http_port in published(services["router"])
    assert router.routing_path == "/etc/ddetect/rules/routing.yaml"
    ports = set()
    for name in ("worker-1", "worker-2"):
        worker = worker_settings(env_of(services[name]), monkeypatch)
        assert worker.broker == "kafka:9092"
        assert worker.rules == "/etc/ddetect/rules/default.yaml"
        ports.add(worker.web_port)
    assert ports == {6066}


def scrape_targets() -> dict[str, set[str]]:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    return {job["job_name"]: {t for sc in job["static_configs"] for t in sc["targets"]}
            for job in config["scrape_configs"]}


def test_prometheus_scrapes_every_app_container_on_its_metrics_port(compose, monkeypatch):
    services = compose["services"]
    targets = scrape_targets()
    ingest = ingest_settings(env_of(services["ingest"]))
    router = router_settings(env_of(services["router"]))
    assert targets["ddetect-ingest"] == {f"ingest:{ingest.port}"}
    assert targets["ddetect-router"] == {f"router:{router.http_port}"}
    assert targets["ddetect-worker"] == {
        f"{name}:{worker_settings(env_of(services[name]), monkeypatch).web_port}"
        for name in ("worker-1", "worker-2")}
    assert "/metrics" in ingest_paths() and "/metrics" in router_paths() and "/metrics" in worker_paths()
    alerting = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())["alerting"]
    am_target = alerting["alertmanagers"][0]["static_configs"][0]["targets"][0]
    host, port = am_target.split(":")
    assert host in services and int(port) in published(services[host])
    for target in set().union(*targets.values()):
        host = target.split(":")[0]
        assert host in services or host == "localhost", target


def test_compose_healthchecks_hit_paths_the_apps_serve(compose, monkeypatch):
    services = compose["services"]
    served = {"ingest": ingest_paths(), "router": router_paths(), "worker-1": worker_paths()}
    for name, paths in served.items():
        url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", " ".join(services[name]["healthcheck"]["test"]))
        assert url, name
        assert url.group(2) in paths, f"{name} healthcheck {url.group(2)} not among {sorted(paths)}"
    assert int(re.search(r":(\d+)/", " ".join(services["ingest"]["healthcheck"]["test"])).group(1)) == \
        ingest_settings(env_of(services["ingest"])).port


def test_compose_mounts_exist_in_the_repo(compose):
    named = set(compose.get("volumes", {}))
    for name, svc in compose["services"].items():
        for spec in svc.get("volumes", []):
            source = spec.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).resolve().exists(), f"{name}: {source} missing"
            else:
                assert source in named, f"{name}: named volume {source} not declared"
    # The rule files the services are told to load are in the mounted directory.
    rules_dir = REPO / "rules"
    assert (rules_dir / "default.yaml").is_file() and (rules_dir / "routing.yaml").is_file()
    workers = [compose["services"][w] for w in ("worker-1", "worker-2")]
    assert all("../rules:/etc/ddetect/rules:ro" in w["volumes"] for w in workers)
    # Each worker has its own RocksDB volume.
    data = [next(v for v in w["volumes"] if v.endswith(":/var/lib/ddetect")) for w in workers]
    assert len(set(data)) == 2


def test_compose_grafana_and_prometheus_mounts_match_their_configs(compose):
    grafana = compose["services"]["grafana"]
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/ddetect.yml").read_text())
    dash_path = provider["providers"][0]["options"]["path"]
    assert f"./grafana/dashboards:{dash_path}:ro" in grafana["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    prom = next(d for d in datasources["datasources"] if d["type"] == "prometheus")
    url = urlparse(prom["url"])
    assert url.hostname in compose["services"] and url.port in published(compose["services"][url.hostname])
    prometheus = compose["services"]["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_compose_requires_the_hash_key_instead_of_a_default(compose):
    assert env_of(compose["services"]["ingest"])["DDETECT_RECIPIENT_HASH_KEY"].startswith(
        "${DDETECT_RECIPIENT_HASH_KEY:?")


def test_docker_compose_config_parses():
    """The compose client's own validation, where a client is installed (assertions above
    run regardless)."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        cmd = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        cmd = ["docker-compose"]
    else:
        pytest.skip("no docker compose client installed (the YAML checks in this file still ran)")
    env = dict(os.environ, DDETECT_RECIPIENT_HASH_KEY="test-key")
    proc = subprocess.run([*cmd, "-f", str(COMPOSE_FILE), "config", "-q"], capture_output=True,
                          text=True, env=env, cwd=DEPLOY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env.pop("DDETECT_RECIPIENT_HASH_KEY")
    proc = subprocess.run([*cmd, "-f", str(COMPOSE_FILE), "config", "-q"], capture_output=True,
                          text=True, env=env, cwd=DEPLOY)
    assert proc.returncode != 0 and "DDETECT_RECIPIENT_HASH_KEY" in proc.stdout + proc.stderr


def test_dockerfile_installs_the_package_and_its_sources():
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert re.search(r"^RUN pip install \.", text, re.M)
    pyproject = (REPO / "pyproject.toml").read_text()
    packages = re.search(r"include = \[([^\]]*)\]", pyproject).group(1)
    for pkg in re.findall(r'"(\w+)\*"', packages):
        assert re.search(rf"^COPY {pkg} ", text, re.M), f"Dockerfile does not copy package {pkg}"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    for source in re.findall(r"^COPY (\S+)", text, re.M):
        if source not in ("pyproject.toml",):
            assert f"!{source}" in ignore or f"!{source}/" in ignore, source


# --- Kubernetes ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def k8s() -> list[dict]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container(workload: dict) -> dict:
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    return c


def k8s_env(c: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def test_k8s_has_the_workloads(k8s):
    assert set(by_kind(k8s, "Deployment")) == {"ddetect-ingest", "ddetect-router"}
    worker = by_kind(k8s, "StatefulSet")["ddetect-worker"]
    (claim,) = worker["spec"]["volumeClaimTemplates"]
    c = container(worker)
    mount = next(m for m in c["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    assert mount["mountPath"] == k8s_env(c)["DDETECT_DATA_DIR"]
    assert worker["spec"]["serviceName"] in by_kind(k8s, "Service")
    assert by_kind(k8s, "Service")[worker["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"
    for d in k8s:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "ddetect", d["metadata"]["name"]


def test_k8s_probes_use_paths_and_ports_the_apps_serve(k8s, monkeypatch):
    workloads = {**by_kind(k8s, "Deployment"), **by_kind(k8s, "StatefulSet")}
    expected = {
        "ddetect-ingest": (ingest_paths(), lambda env: ingest_settings(env).port),
        "ddetect-router": (router_paths(), lambda env: router_settings(env).http_port),
        "ddetect-worker": (worker_paths(), lambda env: worker_settings(env, monkeypatch).web_port),
    }
    for name, (paths, port_of) in expected.items():
        c = container(workloads[name])
        port = port_of(k8s_env(c))
        named_ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert port in named_ports.values(), f"{name} binds {port}, container ports {named_ports}"
        annotations = workloads[name]["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == port
        assert annotations["prometheus.io/path"] in paths
        for probe in ("readinessProbe", "livenessProbe"):
            get = c[probe]["httpGet"]
            assert get["path"] in paths, f"{name} {probe} {get['path']} not among {sorted(paths)}"
            probe_port = named_ports.get(get["port"], get["port"])
            assert probe_port == port, f"{name} {probe} port {get['port']}"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container(workloads["ddetect-ingest"])["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container(workloads["ddetect-worker"])["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_k8s_services_select_pods_and_target_named_ports(k8s):
    workloads = {**by_kind(k8s, "Deployment"), **by_kind(k8s, "StatefulSet")}
    for name, svc in by_kind(k8s, "Service").items():
        matches = [w for w in workloads.values()
                   if svc["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matches) == 1, name
        w = matches[0]
        assert w["spec"]["selector"]["matchLabels"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
        port_names = {p["name"] for p in container(w)["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{name}: targetPort {port['targetPort']}"


def test_k8s_referenced_configmaps_and_claims_exist(k8s):
    configmaps = by_kind(k8s, "ConfigMap")
    claims = by_kind(k8s, "PersistentVolumeClaim")
    workloads = {**by_kind(k8s, "Deployment"), **by_kind(k8s, "StatefulSet")}
    for name, w in workloads.items():
        spec = w["spec"]["template"]["spec"]
        c = container(w)
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configmaps, name
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                cm = configmaps.get(volume["configMap"]["name"])
                assert cm is not None, f"{name}: ConfigMap {volume['configMap']['name']} missing"
                for item in volume["configMap"].get("items", []):
                    assert item["key"] in cm["data"], f"{name}: key {item['key']} missing"
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        volume_names = {v["name"] for v in spec.get("volumes", [])} | {
            t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
        assert set(mounts) <= volume_names, name
        # Files the process is told to load sit under a mount of the ConfigMap that has them.
        for key in ("DDETECT_RULES", "DDETECT_ROUTER_ROUTING_PATH"):
            path = k8s_env(c).get(key)
            if path:
                directory, filename = path.rsplit("/", 1)
                volume = next(v for v in spec["volumes"] if mounts.get(v["name"]) == directory)
                assert filename in configmaps[volume["configMap"]["name"]]["data"], f"{name}: {key}"
    assert "KAFKA_BOOTSTRAP_SERVERS" in configmaps["ddetect-env"]["data"]


def test_k8s_rules_configmap_matches_the_repo_rules():
    from importlib.util import module_from_spec, spec_from_file_location
    spec = spec_from_file_location("gen_rules_configmap", K8S_DIR / "gen_rules_configmap.py")
    gen = module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (K8S_DIR / "rules-configmap.yaml").read_text() == gen.build(), \
        "deploy/k8s/rules-configmap.yaml is stale: run python deploy/k8s/gen_rules_configmap.py"
    data = yaml.safe_load((K8S_DIR / "rules-configmap.yaml").read_text())["data"]
    assert data == {p.name: p.read_text() for p in (REPO / "rules").glob("*.yaml")}


def test_k8s_notes_cover_scaling():
    notes = (K8S_DIR / "NOTES.md").read_text()
    assert "Partitions bound the worker count" in notes


# --- Grafana ------------------------------------------------------------------------------
def dashboards() -> list[tuple[Path, dict]]:
    return [(p, json.loads(p.read_text())) for p in sorted(DASHBOARD_DIR.glob("*.json"))]


def all_panels(dash: dict):
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_expressions() -> list[tuple[str, str]]:
    out = []
    for _, dash in dashboards():
        for panel in all_panels(dash):
            for target in panel.get("targets", []):
                out.append((panel["title"], target["expr"]))
    return out


def test_dashboard_panels_reference_only_exported_metrics_and_labels():
    known = {**exported_metric_names(), **recording_rule_names(), **PROMETHEUS_BUILTIN}
    exprs = dashboard_expressions()
    assert len(exprs) >= 20
    used = set()
    for title, expr in exprs:
        selectors = metric_selectors(expr)
        assert selectors, f"{title}: no metric in {expr!r}"
        for metric, labels in selectors:
            assert metric in known, f"panel {title!r}: {metric} is not exported by the code or rules"
            allowed = set(known[metric]) | set(TARGET_LABELS)
            assert set(labels) <= allowed, f"panel {title!r}: {metric} has no label(s) {set(labels) - allowed}"
            used.add(metric)
    # Every family the issue asks for is on the dashboard.
    for required in ("ddetect_events_processed_total", "ddetect_consumer_lag_messages",
                     "ddetect_alerts_active", "ddetect_alert_delivery_attempts_total",
                     "ddetect_webhook_requests_total", "ddetect_webhook_request_duration_seconds_bucket",
                     "mailbox_provider:ddetect_bounce_ratio:rate1h",
                     "mailbox_provider:ddetect_complaint_ratio:rate1h", "ddetect_campaign_bounce_ratio"):
        assert required in used, required
    # The template variable queries a real metric and label too.
    for _, dash in dashboards():
        for var in dash["templating"]["list"]:
            if var["type"] == "query":
                m = re.match(r"label_values\((\w+),\s*(\w+)\)", var["definition"])
                assert m and m.group(2) in known[m.group(1)]


def test_dashboard_draws_the_policy_lines():
    def steps(title_part):
        (panel,) = [p for _, d in dashboards() for p in all_panels(d)
                    if title_part in p["title"] and "mailbox provider" in p["title"]]
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults["custom"]["thresholdsStyle"]["mode"].startswith("line")
        assert defaults["unit"] == "percentunit"
        return {s["value"] for s in defaults["thresholds"]["steps"]}
    assert 0.003 in steps("Complaint ratio")
    assert 0.05 in steps("Bounce ratio")


def test_dashboard_structure_and_datasource():
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = next(d["uid"] for d in datasources["datasources"] if d["type"] == "prometheus")
    for path, dash in dashboards():
        ids = [p["id"] for p in all_panels(dash)]
        assert len(ids) == len(set(ids)), path.name
        var = next(v for v in dash["templating"]["list"] if v["type"] == "datasource")
        assert var["current"]["value"] == uid
        for panel in all_panels(dash):
            g = panel["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
                assert panel["description"], panel["title"]
                refs = [t["refId"] for t in panel["targets"]]
                assert len(refs) == len(set(refs)), panel["title"]
