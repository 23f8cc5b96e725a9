"""`logserver cluster start|status|stop`: what an operator runs on one machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logserver", "cluster", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(180)
def test_cluster_start_status_stop(tmp_path: Path, zk_hosts: str):
    """start brings up N registered servers that outlive the command; status says so; stop ends them."""
    base = tmp_path / "cluster"
    started = run(
        "start",
        "--dir",
        str(base),
        "--servers",
        "2",
        "--base-port",
        "0",
        "--zk",
        zk_hosts,
        "--zk-path",
        f"/tests/cluster-{tmp_path.name}",
    )
    try:
        assert started.returncode == 0, started.stderr
        state = json.loads((base / "cluster.json").read_text())
        assert [p["kind"] for p in state["processes"]] == ["logserver", "logserver"]
        status = run("status", "--dir", str(base))
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count(" up") == 2
        assert status.stdout.count("member_") == 2
        again = run("start", "--dir", str(base), "--zk", zk_hosts)
        assert again.returncode == 1 and "already running" in again.stdout
    finally:
        stopped = run("stop", "--dir", str(base))
    assert stopped.returncode == 0
    after = run("status", "--dir", str(base))
    assert after.returncode == 1
    assert after.stdout.count("DOWN") == 2
