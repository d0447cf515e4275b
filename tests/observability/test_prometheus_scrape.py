"""A real Prometheus (Debian's /usr/bin/prometheus) scrapes a live /metrics endpoint.

The endpoint is an aiohttp server built with ddetect.metrics_http over a Metrics registry
that a background task updates the way the pipeline does. Prometheus loads the repository's
own rule files (deploy/prometheus/rules) with a 1 s evaluation interval; the assertions go
through its HTTP API: the key series exist, a recording rule computes the expected ratio,
an alert rule fires, and every Grafana dashboard expression is valid PromQL.
"""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from ddetect.metrics import Metrics
from ddetect.metrics_http import bound_port, start_metrics_app
from ddetect.rates_collector import CampaignRatesCollector

from .test_deploy_static import dashboard_expressions
from .tooling import RULE_FILES, require_binary

pytestmark = pytest.mark.slow
WAIT_SECONDS = 90  # generous: a loaded CI machine; the happy path takes a few seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakePipeline:
    """Serves a populated registry over HTTP and keeps updating it, like a worker would."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.m = Metrics(self.registry)
        self.campaigns = CampaignRatesCollector(5, registry=self.registry, half_life_seconds=None)
        self.port = None
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.ticks = 0

    def _tick(self):
        m = self.m
        self.ticks += 1
        m.webhook_requests.labels("sendgrid", "200").inc(50)
        m.webhook_request_duration.labels("sendgrid").observe(0.003)
        m.ingest_events.labels("sendgrid", "accepted").inc(101)
        for etype, bclass, n in (("delivered", "", 97), ("bounced", "hard", 3), ("complained", "", 1)):
            m.events_processed.labels(etype, bclass).inc(n)
            m.deliverability_events.labels("gmail", etype, bclass).inc(n)
            m.domain_events.labels("news.example.com", etype).inc(n)
        m.deliverability_events.labels("yahoo", "delivered", "").inc(40)
        m.consumer_lag.labels("deliverability-events", "0").set(7)
        m.evaluation_duration.observe(0.02)
        m.last_event_timestamp.set(time.time())
        m.alerts_active.labels("complaint-cusum", "warning", "complaints").set(1)
        self.campaigns.observe("spring-sale", {"delivered": 97, "bounced": 3, "complained": 1})

    async def _main(self):
        self._stop = asyncio.Event()
        self.m.dead_letters.labels("events")  # exported at 0 from the first scrape on
        runner = await start_metrics_app(self.registry, "127.0.0.1", 0)
        self.port = bound_port(runner)
        self._started.set()
        try:
            while not self._stop.is_set():
                self._tick()
                try:
                    await asyncio.wait_for(self._stop.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
        finally:
            await runner.cleanup()

    def _run(self):
        self._loop.run_until_complete(self._main())

    def start(self):
        self._thread.start()
        assert self._started.wait(10), "metrics server did not start"

    def dead_letter(self):
        """Write one dead letter (on the server's loop, like every other update)."""
        self._loop.call_soon_threadsafe(self.m.dead_letters.labels("events").inc)

    def stop(self):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def pipeline():
    p = FakePipeline()
    p.start()
    yield p
    p.stop()


def start_prometheus(binary: str, tmp: Path, target_port: int) -> tuple[str, subprocess.Popen]:
    """A real Prometheus scraping 127.0.0.1:target_port every second with the repo's rule files."""
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in RULE_FILES],
        "scrape_configs": [{"job_name": "ddetect-worker",
                            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    with open(tmp / "prometheus.log", "w") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'prom-data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ok(base + "/-/ready"), "Prometheus to become ready", proc, tmp)
    except BaseException:
        stop_prometheus(proc)
        raise
    return base, proc


def stop_prometheus(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def prometheus(tmp_path: Path, pipeline):
    base, proc = start_prometheus(require_binary("prometheus"), tmp_path, pipeline.port)
    try:
        yield base, proc, tmp_path
    finally:
        stop_prometheus(proc)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def query(base: str, expr: str) -> dict:
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as err:  # 400 for a bad expression: return the error body
        return json.load(err)


def wait_for(condition, what: str, proc=None, logdir: Path | None = None):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"prometheus exited with {proc.returncode}:\n"
                        + (logdir / "prometheus.log").read_text()[-3000:])
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    log = (logdir / "prometheus.log").read_text()[-3000:] if logdir else ""
    pytest.fail(f"timed out after {WAIT_SECONDS}s waiting for {what}\n{log}")


def vector(base: str, expr: str) -> list[dict]:
    body = query(base, expr)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_key_series_and_evaluates_rules(prometheus, pipeline):
    base, proc, logdir = prometheus

    def target_up():
        return vector(base, 'up{job="ddetect-worker"} == 1')
    wait_for(target_up, "the scrape target to be up", proc, logdir)

    for expr in ('ddetect_webhook_requests_total{provider="sendgrid", status="200"}',
                 'ddetect_ingest_events_total{outcome="accepted"}',
                 'ddetect_events_processed_total{type="delivered"}',
                 'ddetect_deliverability_events_total{mailbox_provider="gmail", type="bounced", bounce_class="hard"}',
                 'ddetect_consumer_lag_messages{topic="deliverability-events", partition="0"}',
                 'ddetect_evaluation_duration_seconds_bucket{le="0.025"}',
                 'ddetect_alerts_active{category="complaints"}',
                 'ddetect_campaign_bounce_ratio{campaign="spring-sale"}'):
        assert vector(base, expr), f"no series for {expr}"
    (lag,) = vector(base, "ddetect_consumer_lag_messages")
    assert float(lag["value"][1]) == 7
    (campaign,) = vector(base, 'ddetect_campaign_bounce_ratio{campaign="spring-sale"}')
    assert float(campaign["value"][1]) == pytest.approx(0.03)

    # Recording rules: once Prometheus has two samples of the counters, the ratios appear.
    bounce = wait_for(lambda: vector(base, 'mailbox_provider:ddetect_bounce_ratio:rate1h{mailbox_provider="gmail"}'),
                      "the bounce-ratio recording rule", proc, logdir)
    assert float(bounce[0]["value"][1]) == pytest.approx(3 / 100)
    complaints = vector(base, "mailbox_provider:ddetect_complaint_ratio:rate1h")
    got = {r["metric"]["mailbox_provider"]: float(r["value"][1]) for r in complaints}
    assert got == pytest.approx({"gmail": 1 / 97, "yahoo": 0.0})
    domain = wait_for(lambda: vector(base, "sending_domain:ddetect_bounce_ratio:rate1h"),
                      "the sending-domain recording rule", proc, logdir)
    assert float(domain[0]["value"][1]) == pytest.approx(0.03)

    # An alert rule from the repository fires on a dead letter written now that Prometheus
    # has scraped the counter at 0 (the recording rules above needed two scrapes).
    (zero,) = vector(base, 'ddetect_dead_letters_total{source="events"}')
    assert float(zero["value"][1]) == 0
    pipeline.dead_letter()
    firing = wait_for(lambda: vector(base, 'ALERTS{alertname="DdetectDeadLetters", alertstate="firing"}'),
                      "DdetectDeadLetters to fire", proc, logdir)
    assert firing[0]["metric"]["source"] == "events"
    assert firing[0]["metric"]["category"] == "pipeline"

    # All rule groups loaded and evaluate without errors.
    with urllib.request.urlopen(base + "/api/v1/rules", timeout=5) as resp:
        groups = json.load(resp)["data"]["groups"]
    loaded = {rule["name"] for g in groups for rule in g["rules"]}
    expected = {r.get("alert") or r.get("record") for p in RULE_FILES
                for g in yaml.safe_load(p.read_text())["groups"] for r in g["rules"]}
    assert loaded == expected
    unhealthy = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] == "err"]
    assert not unhealthy


def test_every_dashboard_expression_is_valid_promql(prometheus):
    base, proc, logdir = prometheus
    for title, expr in dashboard_expressions():
        concrete = (expr.replace("$__rate_interval", "1m").replace("${provider}", ".*")
                    .replace("$provider", ".*"))
        body = query(base, concrete)
        assert body["status"] == "success", f"panel {title!r}: {body.get('error')}\n{concrete}"
