"""Reading logs back (issue 14): how fast, how small, how live.

- ``read_throughput``: one ``LogClient`` writes N records of 100 bytes to three
  servers (its records/s until acknowledged: the baseline), then ``logserver
  cat`` reads them back as an operator runs it (a process, servers from
  ZooKeeper, output to a pipe), in text and in JSON. Same repetition, same data.
- ``read_since``: the last 1 % of that category (``--since``) against the
  whole of it, through ``logserver.read`` in one process (the servers' time
  index against a full read).
- ``follow_latency``: an app logs 20 lines/s with default client policies
  while ``logserver cat -f`` follows (three servers, found in ZooKeeper); each
  line's time from ``log()`` to the follower's stdout.
- ``followers``: the same with 100 followers at once (``logserver.read(...,
  follow=True)`` readers, 25 per process, the servers given) against the single
  follower's figure.
- ``reader_rss``: the peak RSS of ``logserver cat`` at N records (from
  ``read_throughput``), and at 10 million when ``LOGBENCH_READ_BIG_RECORDS``
  is set (a run of its own: about two minutes on two cores, see BENCHMARKS.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench.common import BenchEnv, CaseResult, Row, quantile, summary
from logserver.tools.launcher import LogServerProcess, wait_for

MB = 2**20


def _cluster(env: BenchEnv) -> tuple[list[LogServerProcess], str]:
    """Three servers (default flags) of this module, registered under one path."""
    cached = env.cache.get("reading_cluster")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    path = env.zk_path("reading")
    servers = [env.new_server(f"reading-{i}", zk_path=path) for i in range(3)]
    env.cache["reading_cluster"] = (servers, path)
    return servers, path


def _write(env: BenchEnv, servers: list[LogServerProcess], category: str, n: int) -> float:
    run = env.run_worker(
        "throughput",
        {
            "records": n,
            "servers": [s.endpoint for s in servers],
            "category": category,
            "message_bytes": 100,
        },
        timeout=900,
    )
    return float(run["rate"])


def _cat(env: BenchEnv, path: str, category: str, *extra: str) -> dict[str, Any]:
    args = [category, "--zk", env.zk_hosts, "--zk-path", path, *extra]
    return env.run_worker("cat", {"args": args}, timeout=1800)


def read_throughput(env: BenchEnv) -> CaseResult:
    servers, path = _cluster(env)
    n = env.profile.read_records
    writes: list[float] = []
    texts: list[float] = []
    jsons: list[float] = []
    peaks: list[float] = []
    for r in range(env.profile.repeats):
        category = f"read{r}"
        writes.append(_write(env, servers, category, n))
        text = _cat(env, path, category)
        texts.append(float(text["rate"]))
        peaks.append(float(text["peak_rss"]))
        jsons.append(float(_cat(env, path, category, "--json")["rate"]))
        if int(text["records"]) != n + 1:  # the writer's warm-up record, then n
            raise RuntimeError(f"cat printed {text['records']} records of {n + 1}")
    env.cache["reading_category"] = ("read0", n)
    env.cache["reading_peak_rss"] = peaks
    result = CaseResult(
        "read_throughput",
        f"logserver cat of {n:,} records (100 bytes, three servers) vs one LogClient writing them",
    )
    for label, rates in (("text", texts), ("--json", jsons)):
        result.rows.append(
            Row(
                label=f"logserver cat {label} (process, ZooKeeper, to a pipe)",
                unit="rec/s",
                figure=summary(rates),
                baseline_label="1 LogClient writing them (until acknowledged)",
                baseline=summary(writes),
                ratio_def="read / write (same repetition)",
                ratio=summary([a / b for a, b in zip(rates, writes, strict=True)]),
                target=">= 0.7 x write",
                target_on="ratio",
                op=">=",
                limit=0.7,
            ).evaluate()
        )
    result.details = {"write": writes, "text": texts, "json": jsons, "peak_rss": peaks}
    return result


def read_since(env: BenchEnv) -> CaseResult:
    servers, _ = _cluster(env)
    category, n = env.cache.get("reading_category") or _fresh(env, servers)
    result = CaseResult(
        "read_since", f"reading the last 1 % of {n:,} records (--since) vs all of them"
    )
    row = _since_row(env, servers, category, n)
    result.rows.append(row)
    result.details = {"since": row.figure, "full": row.baseline}
    return result


def _since_row(env: BenchEnv, servers: list[LogServerProcess], category: str, n: int) -> Row:
    """The last 1 % of ``category`` through the time index against a full read."""
    import logserver

    endpoints = [s.endpoint for s in servers]
    with logserver.read(None, category, servers=endpoints, last=max(1, n // 100)) as reader:
        since_ns = next(iter(reader.blocks())).received_ns
    run = env.run_worker(
        "read_range",
        {
            "servers": endpoints,
            "category": category,
            "since_ns": since_ns,
            "repeats": env.profile.repeats,
        },
        timeout=3600,
    )
    full, part = run["full"], run["since"]
    return Row(
        label=f"last 1 % of {n:,} ({run['records']['since']:,} records) through the time index",
        unit="s",
        figure=summary(part),
        baseline_label=f"full read ({run['records']['full']:,} records)",
        baseline=summary(full),
        ratio_def="since / full (same repetition)",
        ratio=summary([a / b for a, b in zip(part, full, strict=True)]),
        target="<= 0.05 x full read",
        target_on="ratio",
        op="<=",
        limit=0.05,
    ).evaluate()


def _fresh(env: BenchEnv, servers: list[LogServerProcess]) -> tuple[str, int]:
    n = env.profile.read_records
    _write(env, servers, "read-since", n)
    return "read-since", n


def _follow(env: BenchEnv, mode: str, followers: int, seconds: float) -> dict[str, Any]:
    """Followers of a fresh category while the ticker app logs into it."""
    servers, path = _cluster(env)
    category = f"follow-{mode}-{followers}"
    rate = 20
    count = int(rate * seconds)
    ready_files: list[Path] = []
    workers = []
    per_process = 25 if mode == "api" else 1
    for i in range(max(1, followers // per_process)):
        ready = env.workdir / f"{category}-{i}.ready"
        ready_files.append(ready)
        workers.append(
            env.worker(
                "follower",
                {
                    "mode": mode,
                    "followers": min(per_process, followers),
                    "zk": env.zk_hosts,
                    "zk_path": path,
                    "servers": [s.endpoint for s in servers],
                    "category": category,
                    "count": count,
                    "seconds": seconds + 60,
                    "ready_file": str(ready),
                },
            )
        )
    wait_for(lambda: all(f.exists() for f in ready_files), 180, interval_s=0.1, what="followers")
    ticker = env.worker(
        "ticker",
        {
            "zk": env.zk_hosts,
            "zk_path": path,
            "category": category,
            "rate": rate,
            "count": count,
            "start_at": time.monotonic() + 0.5,
        },
    )
    ticked = ticker.result(seconds + 120)
    results = [w.result(seconds + 180) for w in workers]
    latencies = [x for r in results for x in r["latencies"]]
    return {
        "latencies": latencies,
        "p50": quantile(latencies, 0.5),
        "p95": quantile(latencies, 0.95),
        "p99": quantile(latencies, 0.99),
        "max": max(latencies) if latencies else float("nan"),
        "missing": sum(m for r in results for m in r["missing"]),
        "duplicates": sum(d for r in results for d in r["duplicates"]),
        "followers": sum(len(r["received"]) for r in results),
        "logged": ticked["logged"],
    }


def _latency_figure(run: dict[str, Any]) -> dict[str, Any]:
    figure = summary(run["latencies"])
    figure["p95"] = run["p95"]
    figure["median"] = run["p50"]
    figure["samples"] = []  # thousands of them: the percentiles say it
    return figure


def follow_latency(env: BenchEnv) -> CaseResult:
    run = _follow(env, "cli", 1, env.profile.follow_seconds)
    env.cache["follow_single_p95"] = run["p95"]
    result = CaseResult(
        "follow_latency", "log() to the line on a follower's stdout (logserver cat -f)"
    )
    result.rows.append(
        Row(
            label="1 follower (logserver cat -f, 3 servers, default client policies)",
            unit="s",
            figure=_latency_figure(run),
            judge="p95",
            target="p95 <= 0.5 s, every line once",
            op="<=",
            limit=0.5 if run["missing"] == 0 and run["duplicates"] == 0 else -1.0,
            note=f"missing {run['missing']}, duplicates {run['duplicates']}",
        ).evaluate()
    )
    result.details = {k: v for k, v in run.items() if k != "latencies"}
    return result


def followers(env: BenchEnv) -> CaseResult:
    n = env.profile.followers
    run = _follow(env, "api", n, env.profile.follow_seconds)
    single = env.cache.get("follow_single_p95")
    result = CaseResult("followers", f"{n} followers at once against three servers")
    result.rows.append(
        Row(
            label=f"{n} followers (logserver.read follow=True, 25 per process)",
            unit="s",
            figure=_latency_figure(run),
            judge="p95",
            baseline_label="1 follower's p95 (follow_latency)" if single else None,
            baseline=summary([single]) if single else None,
            ratio_def="p95 / 1 follower's p95" if single else None,
            ratio=summary([run["p95"] / single]) if single else None,
            target="p95 <= 1 s, every line once to each",
            op="<=",
            limit=1.0 if run["missing"] == 0 and run["duplicates"] == 0 else -1.0,
            note=f"missing {run['missing']}, duplicates {run['duplicates']}, "
            f"followers {run['followers']}",
        ).evaluate()
    )
    result.details = {k: v for k, v in run.items() if k != "latencies"}
    return result


def reader_rss(env: BenchEnv) -> CaseResult:
    result = CaseResult("reader_rss", "peak RSS of logserver cat, by category size")
    peaks = env.cache.get("reading_peak_rss")
    n = env.profile.read_records
    if peaks is None:
        servers, path = _cluster(env)
        _write(env, servers, "rss", n)
        peaks = [float(_cat(env, path, "rss")["peak_rss"])]
    result.rows.append(
        Row(
            label=f"logserver cat of {n:,} records",
            unit="MB",
            figure=summary([p / MB for p in peaks]),
            target="<= 150 MB",
            op="<=",
            limit=150,
        ).evaluate()
    )
    big = int(os.environ.get("LOGBENCH_READ_BIG_RECORDS", "0"))
    if big:
        servers, path = _cluster(env)
        write = _write(env, servers, "big", big)
        run = _cat(env, path, "big")
        if int(run["records"]) != big + 1:  # the writer's warm-up record, then big
            raise RuntimeError(f"cat printed {run['records']} records of {big + 1}")
        result.rows.append(
            Row(
                label=f"logserver cat of {big:,} records",
                unit="MB",
                figure=summary([run["peak_rss"] / MB]),
                target="<= 150 MB",
                op="<=",
                limit=150,
                note=f"read {run['rate']:,.0f} rec/s, written {write:,.0f} rec/s",
            ).evaluate()
        )
        result.details["big"] = {"records": big, "write_rate": write, **run}
        since = _since_row(env, servers, "big", big)
        result.rows.append(since)
        result.details["big_since"] = since.figure, since.baseline
    return result
