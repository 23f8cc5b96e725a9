"""What a LogClient adds to an application's resident memory, with default policies.

The baseline is this process's RSS after the imports a plain app has
(``logging``, ``json``). Then the app imports logclient, creates a client with
default policies that finds its servers in ZooKeeper (kazoo and thriftpy2
load), and logs 100-byte records:

1. ``steady``: at ``rate`` records/s for ``steady_s`` seconds (a busy app whose
   logs the client keeps up with), then ``flush()``;
2. ``burst``: ``burst`` records as fast as the loop goes, then ``flush()``:
   the queue fills up to its default limits before the sender drains it.

Figures are peak RSS (``VmHWM``) minus the baseline, after each phase.
"""

from __future__ import annotations

import json  # noqa: F401 - part of the plain app's baseline
import logging  # noqa: F401
import time

from bench.workers import config, emit


def status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(key)


def main() -> None:
    cfg = config()
    baseline = status("VmRSS")
    from logclient import LogClient

    client = LogClient(cfg["zk_hosts"], cfg["zk_path"])
    deadline = time.monotonic() + 30
    while not client.stats().known_servers:
        if time.monotonic() > deadline:
            raise SystemExit("no server discovered")
        time.sleep(0.01)
    started = status("VmRSS")
    message = b"x" * 100
    log = client.log

    rate = int(cfg["rate"])
    steady_s = float(cfg["steady_s"])
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    t0 = time.monotonic()
    next_tick = t0
    while time.monotonic() - t0 < steady_s:
        for _ in range(per_tick):
            log("bench", message)
        next_tick += tick
        pause = next_tick - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    if not client.flush(60):
        raise SystemExit("steady phase not acknowledged")
    steady_peak = status("VmHWM")

    for _ in range(int(cfg["burst"])):
        log("bench", message)
    if not client.flush(120):
        raise SystemExit("burst not acknowledged")
    burst_peak = status("VmHWM")
    stats = client.stats()
    client.close(10)
    emit(
        {
            "baseline_rss": baseline,
            "client_started_rss": started,
            "steady_peak_rss": steady_peak,
            "burst_peak_rss": burst_peak,
            "added_at_start": started - baseline,
            "added_steady": steady_peak - baseline,
            "added_burst": burst_peak - baseline,
            "acknowledged": stats.acknowledged,
            "dropped": stats.dropped,
        }
    )


if __name__ == "__main__":
    main()
