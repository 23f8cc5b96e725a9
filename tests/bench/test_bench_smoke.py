"""The benchmark suite runs end to end: ``python -m bench --quick`` reports every case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import CASE_IDS

pytestmark = pytest.mark.process

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_run_reports_every_case(tmp_path: Path) -> None:
    """The quick mode runs every case: its JSON has each, with figures, none failed.

    (How long it takes is the suite's own report, "quick run: N s"; the bound
    here only stops a hung run, on a machine shared with other work.)
    """
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    assert list(doc["cases"]) == list(CASE_IDS)
    failed = {cid: case["error"] for cid, case in doc["cases"].items() if case["error"]}
    assert failed == {}
    empty = [cid for cid, case in doc["cases"].items() if not case["rows"]]
    assert empty == []
    assert doc["machine"]["cores"] >= 1
    assert doc["machine"]["packages"]["thriftpy2"]
    assert "figure" in proc.stdout and "target" in proc.stdout  # the table was printed


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_ab_tool_runs_and_prints_medians() -> None:
    """``python -m bench.ab`` (the tool BENCHMARKS.md's per-record figures came from) runs
    the throughput worker against a real server and prints each run and the medians."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ab", "--runs", "2", "--records", "20000"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    runs = [line for line in lines if "CPU per record: client" in line]
    assert len(runs) == 2 and all("spilled 0" in line for line in runs)
    assert lines[-2] == "medians:" and "(n=2)" in lines[-1]
