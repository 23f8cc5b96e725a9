"""Throughput: the raw thriftpy2 ceiling, one LogClient, and four clients (group commit).

Runs are interleaved: each repetition measures the baseline and then the case,
so a noisy neighbour slows both and the ratio stays honest.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.common import BenchEnv, CaseResult, Row, rss_bytes, summary
from logserver.tools.launcher import free_port, wait_for

# ----------------------------------------------------------------- raw ceiling


def _raw_server(env: BenchEnv) -> int:
    port = env.cache.get("raw_port")
    if port is None:
        port = free_port()
        env.worker("raw_server", {"port": port})  # runs until the suite ends
        import socket

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False

        wait_for(listening, 30, interval_s=0.05, what="the raw thriftpy2 server")
        env.cache["raw_port"] = port
    return int(port)


def _raw_run(env: BenchEnv) -> float:
    port = _raw_server(env)
    result = env.run_worker(
        "raw_client", {"port": port, "seconds": env.profile.raw_seconds}, timeout=120
    )
    return float(result["rate"])


def _single_run(env: BenchEnv, **options: Any) -> dict[str, Any]:
    server = env.server("always")
    return env.run_worker(
        "throughput",
        {"servers": [server.endpoint], "records": env.profile.single_records, **options},
        timeout=600,
    )


def _pairs(env: BenchEnv) -> dict[str, list[Any]]:
    """Raw ceiling and single-client runs, interleaved, once per suite run."""
    cached = env.cache.get("pairs")
    if cached is None:
        raw: list[float] = []
        single: list[dict[str, Any]] = []
        unspooled: list[dict[str, Any]] = []
        for _ in range(env.profile.repeats):
            raw.append(_raw_run(env))
            single.append(_single_run(env))
            unspooled.append(_single_run(env, no_spool=True))
        cached = env.cache["pairs"] = {"raw": raw, "single": single, "unspooled": unspooled}
    return cached


def raw_ceiling(env: BenchEnv) -> CaseResult:
    pairs = _pairs(env)
    result = CaseResult("raw_ceiling", "raw ceiling: thriftpy2 no-op Log server, batches of 1,000")
    result.rows.append(
        Row(
            label="raw ceiling (no-op make_server, cybin framed client)",
            unit="rec/s",
            figure=summary(pairs["raw"]),
            target="baseline",
        )
    )
    result.details = {"records_per_second": pairs["raw"]}
    return result


def single_client(env: BenchEnv) -> CaseResult:
    pairs = _pairs(env)
    rates = [r["rate"] for r in pairs["single"]]
    ratios = [s / r for s, r in zip(rates, pairs["raw"], strict=True)]
    result = CaseResult(
        "single_client", "one LogClient -> one logserver, --fsync always, acknowledged and durable"
    )
    result.rows.append(
        Row(
            label="1 LogClient -> 1 logserver (fsync always)",
            unit="rec/s",
            figure=summary(rates),
            baseline_label="raw ceiling",
            baseline=summary(pairs["raw"]),
            ratio_def="client / raw ceiling (same repetition)",
            ratio=summary(ratios),
            target=">= 0.6 x raw ceiling",
            target_on="ratio",
            op=">=",
            limit=0.6,
        ).evaluate()
    )
    rates_ns = [r["rate"] for r in pairs["unspooled"]]
    result.rows.append(
        Row(
            label="  context: the same with the spool disabled (no spill)",
            unit="rec/s",
            figure=summary(rates_ns),
            baseline_label="raw ceiling",
            baseline=summary(pairs["raw"]),
            ratio_def="client / raw ceiling (same repetition)",
            ratio=summary([s / r for s, r in zip(rates_ns, pairs["raw"], strict=True)]),
            target="(info)",
        )
    )
    result.details = {"runs": pairs["single"], "runs_spool_disabled": pairs["unspooled"]}
    return result


# ---------------------------------------------------------------- group commit


class _RssSampler:
    """Samples a process's RSS every 0.1 s in a thread; ``peak`` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (OSError, RuntimeError):
                return


def _many(env: BenchEnv, fsync: str) -> dict[str, Any]:
    server = env.server(fsync)
    profile = env.profile
    start_at = time.monotonic() + 2.5  # every worker imported and warmed up by then
    workers = [
        env.worker(
            "throughput",
            {
                "servers": [server.endpoint],
                "records": profile.group_records,
                "start_at": start_at,
                "category": f"bench{i}",
            },
        )
        for i in range(profile.group_clients)
    ]
    assert server.pid is not None
    with _RssSampler(server.pid) as sampler:
        runs = [w.result(timeout=600) for w in workers]
    env.server_peaks[fsync] = max(env.server_peaks.get(fsync, 0), sampler.peak)
    started = min(r["started"] for r in runs)
    done = max(r["done"] for r in runs)
    total = sum(r["records"] for r in runs)
    late = max(r["started"] for r in runs) - started
    return {
        "rate": total / (done - started),
        "seconds": done - started,
        "start_skew_s": late,
        "runs": runs,
    }


def group_commit(env: BenchEnv) -> CaseResult:
    always: list[dict[str, Any]] = []
    never: list[dict[str, Any]] = []
    for _ in range(env.profile.repeats):
        always.append(_many(env, "always"))
        never.append(_many(env, "never"))
    a = [r["rate"] for r in always]
    n = [r["rate"] for r in never]
    clients = env.profile.group_clients
    result = CaseResult(
        "group_commit", f"{clients} client processes -> one logserver, fsync always vs never"
    )
    result.rows.append(
        Row(
            label=f"{clients} clients -> 1 logserver (fsync always), aggregate",
            unit="rec/s",
            figure=summary(a),
            baseline_label="same with --fsync never",
            baseline=summary(n),
            ratio_def="always / never (same repetition)",
            ratio=summary([x / y for x, y in zip(a, n, strict=True)]),
            target=">= 0.8 x fsync never",
            target_on="ratio",
            op=">=",
            limit=0.8,
        ).evaluate()
    )
    raw = env.cache.get("pairs", {}).get("raw")
    if raw:
        result.details["vs_raw_ceiling_median"] = summary(a)["median"] / summary(raw)["median"]
    result.details |= {"always": always, "never": never}
    return result
