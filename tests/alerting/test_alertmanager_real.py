"""A real Prometheus Alertmanager (Debian ``prometheus-alertmanager``) receives our alerts via API v2 and routes
them to a local webhook receiver; the alert must arrive with its labels, then arrive again as resolved."""
from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import urllib.request

import aiohttp
import pytest

from alerting.config import Integration
from alerting.receivers.alertmanager import AlertmanagerNotifier
from alerting.receivers.base import RenderContext
from tests.alerting.helpers import Recorder, make_alert, resolved

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def alertmanager(tmp_path):
    if BINARY is None:
        pytest.fail("prometheus-alertmanager not installed: apt-get install -y prometheus-alertmanager")
    yield tmp_path


def _start(tmp_path, hook_url: str):
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(f"""
route:
  receiver: hook
  group_by: [alertname, dedup_key]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {hook_url}
        send_resolved: true
""")
    if AMTOOL:
        check = subprocess.run([AMTOOL, "check-config", str(cfg)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    port = _free_port()
    log = open(tmp_path / "am.log", "w")
    proc = subprocess.Popen([BINARY, f"--config.file={cfg}", f"--storage.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                             "--log.level=info"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((tmp_path / "am.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise TimeoutError("alertmanager did not become ready: " + (tmp_path / "am.log").read_text()[-3000:])


async def _wait_for(rec: Recorder, predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for req in rec.requests:
            if predicate(req.json()):
                return req.json()
        await asyncio.sleep(0.2)
    raise AssertionError(f"no matching webhook from Alertmanager; got {[r.json() for r in rec.requests]}")


def test_alert_reaches_real_alertmanager_and_is_routed_with_labels(alertmanager):
    async def go():
        rec = await Recorder().start()
        proc, am_url = _start(alertmanager, rec.url("/am-hook"))
        try:
            n = AlertmanagerNotifier(Integration("am", "alertmanager", 0, {"url": am_url}), RenderContext(), {})
            alert = make_alert(detected_at=time.time() - 5, window={"start": time.time() - 305,
                                                                    "end": time.time() - 5})
            async with aiohttp.ClientSession() as s:
                await n.notify(alert, s)
                firing = await _wait_for(rec, lambda b: b["status"] == "firing")
                await n.notify(resolved(alert, detected_at=time.time()), s)
                done = await _wait_for(rec, lambda b: b["status"] == "resolved")
            return alert, firing, done
        finally:
            proc.terminate()
            proc.wait(10)
            await rec.stop()
    alert, firing, done = asyncio.run(go())
    got = firing["alerts"][0]
    assert got["labels"] == {"alertname": "bounce_rate_cusum", "category": "technical", "severity": "critical",
                             "rule": "bounce_rate_cusum", "campaign": "spring", "mailbox_provider": "gmail",
                             "sending_domain": "news.example.com", "dedup_key": alert["dedup_key"]}
    assert got["annotations"]["summary"] == alert["summary"]
    assert got["annotations"]["runbook"].startswith("Stop the fire")
    assert firing["receiver"] == "hook"
    assert done["alerts"][0]["labels"] == got["labels"] and done["alerts"][0]["status"] == "resolved"
