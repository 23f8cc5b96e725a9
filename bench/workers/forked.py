"""Pre-fork workers logging: the parent's client inherited through fork(), or one client each.

``mode`` is ``inherited`` (the parent makes a ``LogClient`` on ZooKeeper,
waits until it knows the servers, as an app imported by gunicorn ``--preload``
would, then forks: each worker uses the copy it got, which starts afresh on
its first ``log()``) or ``own`` (the parent makes none; each worker makes its
own right after the fork, as with gunicorn without ``--preload``). Every
worker logs ``records`` 100-byte records as fast as it can, then ``flush()``
and ``close()``. The result: from the fork to the last worker's records all
acknowledged, the records per second over all workers; and each worker's
``log()`` loop.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import logclient.discovery  # noqa: F401 - loads kazoo before the fork, in both modes
from bench.workers import config, emit, fork_children, wait_children
from logclient import LogClient
from logwire.idl import log_thrift  # noqa: F401 - loads the IDL before the fork


def main() -> None:
    cfg = config()
    zk_hosts, zk_path = str(cfg["zk_hosts"]), str(cfg["zk_path"])
    records, mode = int(cfg["records"]), str(cfg["mode"])
    out_dir = Path(str(cfg["out_dir"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    message = b"x" * 100
    parent: LogClient | None = None
    if mode == "inherited":
        parent = LogClient(zk_hosts, zk_path)
        deadline = time.monotonic() + 30
        while not parent.stats().known_servers and time.monotonic() < deadline:
            time.sleep(0.01)
    elif mode != "own":
        raise SystemExit(f"unknown mode {mode!r}")

    def worker(index: int) -> int:
        client = parent if parent is not None else LogClient(zk_hosts, zk_path)
        log = client.log
        t0 = time.monotonic()
        for _ in range(records):
            log("forked", message)
        logged_at = time.monotonic()
        flushed = client.flush(120)
        done_at = time.monotonic()
        stats = client.stats()
        client.close(10)
        (out_dir / f"worker-{index}.json").write_text(
            json.dumps(
                {
                    "flushed": flushed,
                    "acknowledged": stats.acknowledged,
                    "log_seconds": logged_at - t0,
                    "done_at": done_at,
                }
            )
        )
        return 0 if flushed else 3

    started = time.monotonic()
    pids = fork_children(int(cfg["workers"]), worker)
    codes = wait_children(pids, time.monotonic() + 300)
    if parent is not None:
        parent.close(10)
    results = [json.loads(p.read_text()) for p in sorted(out_dir.glob("worker-*.json"))]
    if any(codes) or len(results) != len(pids):
        raise SystemExit(f"workers failed: exit codes {codes}, {len(results)} results")
    acknowledged = sum(r["acknowledged"] for r in results)
    seconds = max(r["done_at"] for r in results) - started
    emit(
        {
            "mode": mode,
            "workers": len(pids),
            "records": acknowledged,
            "seconds": seconds,
            "rate": acknowledged / seconds,
            "log_seconds": [r["log_seconds"] for r in results],
        }
    )


if __name__ == "__main__":
    main()
