"""End-to-end smoke test of ``make run``'s pipeline: ``python -m ddetect.demo`` with the
embedded broker, real ingest / worker / router processes and signed ESP webhooks; alerts
must arrive (fire and resolve) through the router, and nothing may be left running."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def demo_env(marker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}   # embedded broker
    env["DEMO_SMOKE_MARKER"] = marker     # inherited by every child: lets us find leftovers
    return env


def processes_with(marker: str) -> list[str]:
    """Processes whose environment carries ``marker`` (the demo and all its children)."""
    found = []
    needle = f"DEMO_SMOKE_MARKER={marker}".encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    with open(f"/proc/{pid}/cmdline", "rb") as cmd:
                        args = cmd.read().replace(b"\0", b" ").decode(errors="replace")
                    found.append(f"{pid}: {args}")
        except OSError:
            continue
    return found


def wait_gone(marker: str, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = processes_with(marker)
        if not left:
            return []
        time.sleep(0.2)
    return processes_with(marker)


@pytest.mark.timeout(330)
def test_demo_fires_and_resolves_three_incidents():
    marker = uuid.uuid4().hex
    proc = subprocess.run([sys.executable, "-m", "ddetect.demo", "--exit-after-incidents", "3", "--timeout", "240",
                           "--no-color", "--status-every", "10"], cwd=ROOT, env=demo_env(marker),
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "embedded broker (Tansu" in out
    assert re.search(r"metrics: ingest http://127\.0\.0\.1:\d+/metrics\s+worker http://127\.0\.0\.1:\d+/metrics", out)
    firing = re.findall(r" FIRING  \w+\s+(\w+): .* <- ([\w-]+)", out)
    resolved = re.findall(r"RESOLVED \w+\s+(\w+): .* <- ([\w-]+)", out)
    assert len(resolved) >= 3, out[-5000:]
    # three different ground-truth incidents among the resolved alerts' matches, each fired first
    assert len({label for _, label in resolved if label != "no"}) >= 2, out[-5000:]
    assert {rule for rule, _ in resolved} <= {rule for rule, _ in firing}
    assert "3 incidents fired and resolved" in out
    assert "failed webhooks" not in out
    assert wait_gone(marker) == []


@pytest.mark.timeout(200)
def test_ctrl_c_stops_everything():
    marker = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-m", "ddetect.demo", "--no-color"], cwd=ROOT, env=demo_env(marker),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            lines.append(line)
            if "simulator: posting webhooks" in line or time.monotonic() > deadline:
                break
        assert any("simulator: posting webhooks" in ln for ln in lines), "".join(lines)
        children = processes_with(marker)
        assert len(children) >= 5, children   # demo, broker, ingest, worker, router
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines) + rest
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted: stopping" in out and "stopped ingest, worker, router and the broker" in out
    assert wait_gone(marker) == []
