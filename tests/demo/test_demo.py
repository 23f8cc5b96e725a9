"""A short failover demo runs end to end: real ZooKeeper, three real servers, real signals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run_demo(zk_hosts: str, out: Path, *args: str, timeout: float) -> tuple[dict, str]:
    """Run `logserver demo` into ``out``; (its JSON last line, its stdout). Asserts exit 0."""
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "logserver", "demo", "--zk", zk_hosts),
            *("--duration", "12", "--kill-every", "2.5", "--rate", "1500"),
            *("--out", str(out), "--no-live", *args),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    summary = json.loads(lines[-1])
    assert proc.returncode == 0, (summary, proc.stdout[-3000:], proc.stderr[-3000:])
    return summary, proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_short_demo_loses_nothing_and_duplicates_nothing(zk_hosts: str, tmp_path: Path):
    """`logserver demo` ends with lost 0 and duplicates 0, a JSON last line, a report and a PNG."""
    out = tmp_path / "out"
    summary, _ = run_demo(zk_hosts, out, timeout=220)
    assert summary["lost"] == 0
    assert summary["duplicates_after_dedup"] == 0
    assert summary["sent"] == summary["stored_unique"] > 10_000
    assert summary["kills"] >= 2
    for key in (
        "sent",
        "acked",
        "stored_unique",
        "lost",
        "duplicates_after_dedup",
        "kills",
        "max_stall_ms",
    ):
        assert key in summary
    report = json.loads((out / "report.json").read_text())
    assert report["summary"] == summary
    png = (out / "timeline.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_with_two_copies_survives_a_lost_disk_and_repairs_it(zk_hosts: str, tmp_path: Path):
    """`logserver demo --copies 2 --lose-disk`: a server SIGKILLed and its data directory
    deleted mid-run comes back empty; forget and repair run; lost 0, duplicates 0, every
    record back on two servers, and the report and timeline say so."""
    out = tmp_path / "out"
    summary, stdout = run_demo(zk_hosts, out, "--copies", "2", "--lose-disk", timeout=280)
    assert (summary["lost"], summary["duplicates_after_dedup"]) == (0, 0)
    assert summary["disks_lost"] == 1 and summary["repair_complete"]
    assert summary["min_copies"] >= 2 == summary["copies"]
    assert summary["repair_copied_batches"] > 0
    report = json.loads((out / "report.json").read_text())
    kinds = [e["kind"] for e in report["events"]]
    assert kinds.count("lose-disk") == 1 and "forget" in kinds and "repaired" in kinds
    assert report["lost_disk"]["forgotten"] == report["lost_disk"]["lost_ids"]
    assert "disk deleted" in stdout and "repair complete" in stdout
    assert (out / "timeline.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.process
def test_losing_a_disk_needs_two_copies() -> None:
    """With one copy a lost disk loses records: the demo refuses to pretend otherwise."""
    proc = subprocess.run(
        [sys.executable, "-m", "logserver", "demo", "--lose-disk"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--copies 2" in proc.stderr
