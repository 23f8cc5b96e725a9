"""A fleet of client processes: one parent imports everything, then forks ``clients`` children.

Forking after the imports (and before any thread exists: logclient starts none
at import) lets 50 clients start in a second instead of paying 50 Python
start-ups on a 2-core machine. Each child is a separate process with its own
LogClient (default policies, servers from ZooKeeper) that logs one 100-byte
record every ``interval_s`` from ``start_at`` to ``stop_at`` and writes the
acknowledgements it saw (time, server, records) to ``out_dir/client-N.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import logclient.discovery  # noqa: F401 - loads kazoo before the fork
from bench.recording import RecordingTransport, ack_log
from bench.workers import config, emit, fork_children, sleep_until, wait_children
from logclient import LogClient
from logwire.idl import log_thrift  # noqa: F401 - loads the IDL before the fork


def child(index: int, cfg: dict[str, object]) -> int:
    transport = RecordingTransport()
    client = LogClient(str(cfg["zk_hosts"]), str(cfg["zk_path"]), transport=transport)
    interval = float(cfg["interval_s"])  # type: ignore[arg-type]
    stop_at = float(cfg["stop_at"])  # type: ignore[arg-type]
    message = b"x" * 100
    logged = 0
    sleep_until(float(cfg["start_at"]))  # type: ignore[arg-type]
    next_at = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= stop_at:
            break
        client.log("fleet", message)
        logged += 1
        next_at += interval
        if next_at > now:
            time.sleep(next_at - now)
    flushed = client.flush(20)
    stats = client.stats()
    client.close(10)
    out = Path(str(cfg["out_dir"])) / f"client-{index}.json"
    out.write_text(
        json.dumps(
            {
                "index": index,
                "pid": os.getpid(),
                "logged": logged,
                "flushed": flushed,
                "acknowledged": stats.acknowledged,
                "dropped": stats.dropped,
                "failovers": stats.failovers,
                "acks": ack_log(transport.acks),
            }
        )
    )
    return 0 if flushed else 3


def main() -> None:
    cfg = config()
    n = int(cfg["clients"])
    pids = fork_children(n, lambda i: child(i, cfg))
    codes = wait_children(pids, float(cfg["stop_at"]) + 60)
    emit({"clients": n, "exit_codes": sorted(codes)})


if __name__ == "__main__":
    main()
