"""Benchmark: log() latency and client throughput to one real logserver.

    .venv/bin/python -m tests.client.bench_client [--records 500000] [--fsync always]

Starts a local ZooKeeper and one ``logserver serve`` process (the launcher),
then measures with a LogClient (StaticServers, spool disabled):

1. log() latency: each call timed with perf_counter_ns while the sender runs
   (median and p99; the timer's own cost is printed beside it).
2. throughput: N records of 100 bytes logged as fast as possible, then
   flush(); records/s = N / (time from the first log() to flush() == True).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from logclient import BatchPolicy, LogClient, QueuePolicy, SpoolPolicy, StaticServers
from logserver.tools.launcher import LogServerProcess, ZooKeeperEnsemble


def latency(client: LogClient, n: int) -> tuple[float, float, float]:
    message = "x" * 100
    log = client.log
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        t0 = clock()
        log("bench", message)
        samples.append(clock() - t0)
    overhead = []
    for _ in range(n):
        t0 = clock()
        overhead.append(clock() - t0)
    samples.sort()
    return (
        samples[len(samples) // 2] / 1000,
        samples[int(len(samples) * 0.99)] / 1000,
        statistics.median(overhead) / 1000,
    )


def throughput(client: LogClient, n: int) -> float:
    message = "y" * 100
    log = client.log
    started = time.perf_counter()
    for _ in range(n):
        log("bench", message)
    logged = time.perf_counter()
    assert client.flush(300), client.stats()
    elapsed = time.perf_counter() - started
    print(f"  logging {n} took {logged - started:.2f}s, delivery done after {elapsed:.2f}s")
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--latency-calls", type=int, default=200_000)
    parser.add_argument("--fsync", default="always")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-client-"))
    zk = ZooKeeperEnsemble(size=1, workdir=work / "zk").start()
    server = LogServerProcess(
        zk_hosts=zk.hosts, data_dir=work / "server", zk_path="/bench", fsync=args.fsync
    ).start()
    try:
        client = LogClient(
            servers=StaticServers([server.endpoint]),
            spool=SpoolPolicy.disabled(),
            queue=QueuePolicy(max_records=2_000_000, max_bytes=1 << 30),
            batching=BatchPolicy(),
        )
        with client:
            median, p99, timer = latency(client, args.latency_calls)
            assert client.flush(300)
            print(f"log(): median {median:.2f} us, p99 {p99:.2f} us (timer itself {timer:.2f} us)")
            rate = throughput(client, args.records)
            print(f"throughput to one server (fsync={args.fsync}): {rate:,.0f} records/s")
            print(client.stats())
    finally:
        server.stop()
        zk.stop()


if __name__ == "__main__":
    main()
