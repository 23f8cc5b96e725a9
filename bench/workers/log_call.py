"""The cost of one ``LogClient.log()`` call, timed call by call, while the sender works.

The client has default policies and a real server (static list). Calls come
in bursts of 50 with a 1 ms pause, about 50,000 records/s at most: a busy app
whose logs the sender keeps up with, so no call waits for queue room. Each
call is timed with ``perf_counter_ns``; the timer's own cost is measured and
reported beside it. The baseline is the cheapest thread-safe hand-off Python
offers for the same work: a function taking a lock and appending the pair to
a deque, timed the same way in the same process.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from bench.workers import config, emit
from logclient import LogClient, StaticServers

BURST = 50


def timed(fn: object, calls: int, category: str, message: bytes) -> list[int]:
    clock = time.perf_counter_ns
    samples: list[int] = []
    add = samples.append
    for _ in range(calls // BURST):
        for _ in range(BURST):
            t0 = clock()
            fn(category, message)  # type: ignore[operator]
            add(clock() - t0)
        time.sleep(0.001)
    return samples


def median(values: list[int]) -> float:
    values = sorted(values)
    return float(values[len(values) // 2])


def main() -> None:
    cfg = config()
    calls = int(cfg["calls"])
    message = b"x" * int(cfg.get("message_bytes", 100))
    client = LogClient(servers=StaticServers(cfg["servers"]))
    lock = threading.Lock()
    dq: deque[tuple[str, bytes]] = deque()

    def floor(category: str, data: bytes) -> None:
        with lock:
            dq.append((category, data))

    def nothing(category: str, data: bytes) -> None:
        pass

    try:
        timed(client.log, min(calls, 5000), "bench", message)  # warm-up
        if not client.flush(30):
            raise SystemExit("warm-up not acknowledged")
        log_ns = timed(client.log, calls, "bench", message)
        floor_ns = timed(floor, calls, "bench", message)
        dq.clear()
        empty_ns = timed(nothing, calls, "bench", message)
        flushed = client.flush(60)
        stats = client.stats()
    finally:
        client.close(10)
    log_ns.sort()
    emit(
        {
            "calls": len(log_ns),
            "log_median_us": median(log_ns) / 1000,
            "log_p90_us": log_ns[int(len(log_ns) * 0.9)] / 1000,
            "log_p99_us": log_ns[int(len(log_ns) * 0.99)] / 1000,
            "floor_median_us": median(floor_ns) / 1000,
            "call_median_us": median(empty_ns) / 1000,
            "flushed": flushed,
            "acknowledged": stats.acknowledged,
            "dropped": stats.dropped,
        }
    )


if __name__ == "__main__":
    main()
