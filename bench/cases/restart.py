"""Restart: what a server holding many categories and producers costs to start, against one
holding the same bytes in a single category.

Two data directories with the same message bytes, filled by
``bench.workers.fill_storage`` and closed cleanly: *wide* (200 categories) and
*narrow* (1 category), both written by the same many producers. Each is
started as a real ``logserver serve`` (``--dedup-scan-bytes`` below the data's
size, so the budget decides what is read) twice per repetition: after a clean
stop (the clean-shutdown record: only the budget's newest segments are read,
nothing synced) and after a SIGKILL (every category's last segment read whole,
everything read fdatasynced). Before each start the segment files' pages are
dropped from the page cache, as after a reboot. Figures: the storage
recovery's own time (its ``storage recovered`` event), the time from spawn to
a listening port, and the server's peak RSS once it listens; ratios wide /
narrow from the same repetition, the two interleaved.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from bench.common import BenchEnv, CaseResult, Row, rss_bytes, summary
from logserver.tools.launcher import LogServerProcess

MiB = 2**20


def _drop_cache(data_dir: Path) -> None:
    """Drop the segment files' pages from the page cache (advice; synced data only)."""
    for path in data_dir.glob("categories/*/*.seg"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _recovered(log_path: Path) -> dict[str, Any]:
    """The server's last ``storage recovered`` event."""
    found: dict[str, Any] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "storage recovered":
            found = entry
    return found


def _start(env: BenchEnv, name: str, data_dir: Path, scan_bytes: int) -> dict[str, Any]:
    """Start a server on ``data_dir`` (cache dropped first), measure, SIGKILL it."""
    _drop_cache(data_dir)
    started = time.monotonic()
    server = _server(env, name, data_dir, scan_bytes)
    ready_s = time.monotonic() - started
    assert server.pid is not None and server.log_path is not None
    peak = rss_bytes(server.pid, "VmHWM")
    event = _recovered(server.log_path)
    server.kill()
    return {"ready_s": ready_s, "vm_hwm": peak, **event}


def _server(env: BenchEnv, name: str, data_dir: Path, scan_bytes: int) -> LogServerProcess:
    """A listening server on ``data_dir`` (its log in the run's log directory)."""
    return env.new_server(
        name,
        zk_path=env.zk_path(name),
        data_dir=data_dir,
        log_path=env.logs / f"{name}.log",
        extra_args=["--dedup-scan-bytes", str(scan_bytes)],
    )


def restart(env: BenchEnv) -> CaseResult:
    p = env.profile
    dirs: dict[str, Path] = {}
    fills: dict[str, Any] = {}
    for shape, categories in (("narrow", 1), ("wide", p.restart_categories)):
        dirs[shape] = env.workdir / "restart" / shape
        fills[shape] = env.run_worker(
            "fill_storage",
            {
                "data_dir": str(dirs[shape]),
                "categories": categories,
                "producers": p.restart_producers,
                "total_bytes": p.restart_bytes,
                "record_bytes": 200,
                "records_per_batch": 10,
                "segment_bytes": p.restart_segment_bytes,
            },
            timeout=1800,
        )
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(p.repeats):
        for shape in ("narrow", "wide"):
            for mode in ("clean", "crash"):
                # The fill (and each repetition's last start, stopped by SIGTERM) closed
                # cleanly; the SIGKILL of the clean start makes the next one a crash.
                run = _start(env, f"restart-{shape}-{mode}", dirs[shape], p.restart_scan_bytes)
                runs.setdefault(f"{shape}-{mode}", []).append(run)
            _stop_cleanly(env, shape, dirs[shape], p.restart_scan_bytes)
    title = (
        f"restart with {p.restart_categories} categories vs 1, {p.restart_bytes / MiB:.0f} MiB "
        f"and {p.restart_producers:,} producers each, --dedup-scan-bytes "
        f"{p.restart_scan_bytes / MiB:.0f} MiB"
    )
    result = CaseResult("restart", title)
    for mode, target, limit in (("clean", "<= 2 x one category", 2.0), ("crash", "(info)", None)):
        wide = [r["elapsed_s"] for r in runs[f"wide-{mode}"]]
        narrow = [r["elapsed_s"] for r in runs[f"narrow-{mode}"]]
        row = Row(
            label=f"storage recovery after a {'clean stop' if mode == 'clean' else 'SIGKILL'}, "
            f"{p.restart_categories} categories",
            unit="s",
            figure=summary(wide),
            baseline_label="1 category, same bytes",
            baseline=summary(narrow),
            ratio_def="wide / narrow (same repetition)",
            ratio=summary([w / n for w, n in zip(wide, narrow, strict=True)]),
            target=target,
        )
        if limit is not None:
            row.target_on, row.op, row.limit = "ratio", "<=", limit
        result.rows.append(row.evaluate())
        read = [r["scanned_bytes"] / MiB for r in runs[f"wide-{mode}"]]
        result.rows.append(
            Row(
                label=f"  context: bytes read by that recovery ({p.restart_categories} "
                f"categories; 1 category: {runs[f'narrow-{mode}'][0]['scanned_bytes'] / MiB:.1f})",
                unit="MiB",
                figure=summary(read),
                target="<= --dedup-scan-bytes" if mode == "clean" else "(info)",
                op="<=" if mode == "clean" else "",
                limit=p.restart_scan_bytes / MiB if mode == "clean" else None,
            ).evaluate()
        )
    wide_hwm = [r["vm_hwm"] / MiB for r in runs["wide-clean"]]
    narrow_hwm = [r["vm_hwm"] / MiB for r in runs["narrow-clean"]]
    result.rows.append(
        Row(
            label=f"server peak RSS once listening, {p.restart_categories} categories",
            unit="MiB",
            figure=summary(wide_hwm),
            baseline_label="1 category, same bytes",
            baseline=summary(narrow_hwm),
            ratio_def="wide / narrow (same repetition)",
            ratio=summary([w / n for w, n in zip(wide_hwm, narrow_hwm, strict=True)]),
            target="<= 1.25 x one category",
            target_on="ratio",
            op="<=",
            limit=1.25,
        ).evaluate()
    )
    result.rows.append(
        Row(
            label="  context: spawn to listening port after a clean stop, "
            f"{p.restart_categories} categories",
            unit="s",
            figure=summary([r["ready_s"] for r in runs["wide-clean"]]),
            baseline_label="1 category",
            baseline=summary([r["ready_s"] for r in runs["narrow-clean"]]),
            target="(info)",
        )
    )
    result.rows.append(
        Row(
            label="  context: producers remembered after a clean stop (of "
            f"{p.restart_producers:,})",
            unit="producers",
            figure=summary([r["producers"] for r in runs["wide-clean"]]),
            target="(info)",
        )
    )
    result.details = {"fills": fills, "runs": runs}
    return result


def _stop_cleanly(env: BenchEnv, shape: str, data_dir: Path, scan_bytes: int) -> None:
    """Start once more and stop with SIGTERM: the next repetition starts after a clean stop."""
    _server(env, f"restart-{shape}-settle", data_dir, scan_bytes).terminate()
