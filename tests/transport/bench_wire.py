"""Throughput of the wire server: Log batches of 1,000 x 100-byte entries, no-op handler.

The server runs in this process; each client is a separate process (thriftpy2,
framed + Cython binary), so client and server do not share a GIL.

    .venv/bin/python -m tests.transport.bench_wire [--clients N] [--seconds S]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

BATCH = 1000
MESSAGE = "x" * 100


def _client(port: int, seconds: float, results: multiprocessing.Queue) -> None:
    from tests.transport.helpers import LogEntry, client

    entries = [LogEntry(category="bench", message=MESSAGE) for _ in range(BATCH)]
    c = client(port, timeout_s=30)
    c.Log(entries)  # warm up
    calls = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        c.Log(entries)
        calls += 1
    elapsed = time.perf_counter() - started
    c.close()
    results.put((calls * BATCH, elapsed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    import structlog

    from logserver.transport import ThriftServer
    from logserver.transport._guard import check_frame
    from tests.transport.helpers import LogEntry, LogService, NoopHandler, encode_call

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))

    frame = encode_call(
        "Log", LogService.Log_args(messages=[LogEntry(category="bench", message=MESSAGE)] * BATCH)
    )
    best = min(_time(check_frame, frame) for _ in range(5))
    print(f"guard: {best * 1e3:.3f} ms per {BATCH}-entry frame ({len(frame)} bytes)")

    server = ThriftServer(NoopHandler())
    server.start()
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = ctx.Queue()
    # By module path, so that spawned children find it also when run as __main__.
    from tests.transport.bench_wire import _client as client_main

    procs = [
        ctx.Process(target=client_main, args=(server.port, args.seconds, results))
        for _ in range(args.clients)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=args.seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    server.close()
    records = sum(r for r, _ in outcomes)
    elapsed = max(e for _, e in outcomes)
    print(
        f"{args.clients} client process(es): {records / elapsed:,.0f} records/s "
        f"({records / elapsed / BATCH:,.0f} calls/s); {server.stats()}"
    )


def _time(fn: object, frame: bytes, n: int = 50) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn(frame)  # type: ignore[operator]
    return (time.perf_counter() - started) / n


if __name__ == "__main__":
    main()
