"""Repair: how long ``logserver repair`` takes for a wiped server, and when nothing is missing.

Two fresh servers of this run. One LogClient logs the records (this machine's
``/var/log`` lines, ``bench.corpus``) to the first server only: that is the
state a wipe leaves with two copies per batch (every batch on one server, the
other server empty), and the client's time to log them until acknowledged is
the same-run baseline. Then ``logserver repair --copies 2`` runs as the
operator runs it (its own process, ZooKeeper, every batch copied), and once
more when nothing is missing. Each figure is the command's wall time; the
ratios are against the write time of the same records in the same run.

The first repair also pays for the servers' holdings indexes (a scan of every
block header of the category on the server that holds it); the second finds
them built, as a server that has run a while does. A command's wall time
includes starting Python and a ZooKeeper session (most of it when nothing is
missing); the last row is the repair's own time, which says whether comparing
reads any record (it must not).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from bench.cases.compression import disk_bytes
from bench.common import REPO, BenchEnv, BenchError, CaseResult, Row, summary

__all__ = ["repair"]


def _repair(env: BenchEnv, zk_path: str) -> tuple[float, dict[str, Any]]:
    """Run ``logserver repair --copies 2``; (wall seconds, its JSON summary)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "logserver", "repair", "--zk", env.zk_hosts, "--zk-path", zk_path],
        cwd=REPO,
        env=env.worker_environ(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.monotonic() - started
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(
            f"repair exited with {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
        )
    return seconds, json.loads(lines[-1])["repair"]


def repair(env: BenchEnv) -> CaseResult:
    records = env.profile.repair_records
    zk_path = env.zk_path("repair")
    full = env.new_server("repair-full", zk_path=zk_path)
    wiped = env.new_server("repair-wiped", zk_path=zk_path)
    write = env.run_worker(
        "corpus_client",
        {"servers": [full.endpoint], "corpus": "varlog", "records": records, "category": "repair"},
        timeout=1800,
    )
    wiped_s, copied = _repair(env, zk_path)
    clean_s, checked = _repair(env, zk_path)
    if copied["copied_records"] < records or checked["copied_batches"] != 0:
        raise BenchError(f"repair did not copy every record once: {copied} then {checked}")
    write_s = float(write["seconds"])
    result = CaseResult(
        "repair",
        f"logserver repair of {records:,} records: one of two servers wiped, then nothing missing",
    )
    rows = (
        ("repair, one server wiped (every record copied): the command", wiped_s, 1.0),
        ("repair, nothing missing: the command", clean_s, 1.0),
        (
            "repair, nothing missing: its own work (survey, plan, check; no process start)",
            float(checked["seconds"]),
            0.05,
        ),
    )
    for label, seconds, target in rows:
        result.rows.append(
            Row(
                label=label,
                unit="s",
                figure=summary([seconds]),
                judge="value",
                baseline_label=f"one LogClient writing the {records:,} records",
                baseline=summary([write_s]),
                ratio_def="repair / write",
                ratio=summary([seconds / write_s]),
                target=f"<= {target} x the write",
                target_on="ratio",
                op="<=",
                limit=target,
            ).evaluate()
        )
    result.details = {
        "write": write,
        "repair_wiped": copied,
        "repair_clean": checked,
        "disk_bytes": {"full": disk_bytes(full.data_dir), "wiped": disk_bytes(wiped.data_dir)},
    }
    return result
