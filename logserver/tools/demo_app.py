"""The app of the failover demo: logs numbered messages through LogClient at a steady rate.

It is a separate process, as a real app would be. It reports progress as JSON
lines on stdout (about ten a second) and a final line with what it sent and
the longest stall: the longest time during which messages were waiting and
none was acknowledged.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from logclient import LogClient, ReplicationPolicy, SpoolPolicy

__all__ = ["main"]


def _emit(doc: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="logserver-demo-app")
    parser.add_argument("--zk", required=True)
    parser.add_argument("--zk-path", default="/logservers")
    parser.add_argument("--category", default="demo")
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--spool-dir", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=1)
    args = parser.parse_args(argv)

    client = LogClient(
        args.zk,
        args.zk_path,
        spool=SpoolPolicy(directory=args.spool_dir),
        replication=ReplicationPolicy(copies=args.copies),
    )
    stop = threading.Event()
    max_stall = 0.0
    stall_at = 0.0
    # Every episode of >= 20 ms with records waiting and none acknowledged: (wall start, seconds).
    stalls: list[tuple[float, float]] = []

    def watch() -> None:
        """Sample the client's counters every 5 ms to find the longest stall."""
        nonlocal max_stall, stall_at
        last_acked = -1
        last_progress = time.monotonic()
        next_report = 0.0
        while not stop.is_set():
            now = time.monotonic()
            s = client.stats()
            pending = s.logged - s.acknowledged
            if s.acknowledged != last_acked or pending == 0:
                if now - last_progress >= 0.02 and last_acked >= 0:
                    stalls.append((time.time() - (now - last_progress), now - last_progress))
                last_acked = s.acknowledged
                last_progress = now
            elif now - last_progress > max_stall:
                max_stall = now - last_progress
                stall_at = time.time()
            if now >= next_report:
                next_report = now + 0.1
                _emit(
                    {
                        "t": time.time(),
                        "sent": s.logged,
                        "acked": s.acknowledged,
                        "server": str(s.current_server or ""),
                        "failovers": s.failovers,
                        "stall_ms": round((now - last_progress) * 1000, 1),
                    }
                )
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, name="demo-watch", daemon=True)
    watcher.start()
    # Wait until the client knows a server, so the stall figure measures failover, not startup.
    deadline = time.monotonic() + 30
    while not client.stats().known_servers and time.monotonic() < deadline:
        time.sleep(0.05)

    started = time.monotonic()
    n = 0
    interval = 1.0 / args.rate
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= args.duration:
            break
        due = int(elapsed / interval) + 1
        while n < due:
            client.log(args.category, f"demo-{n}")
            n += 1
        time.sleep(min(0.002, interval))
    flushed = client.flush(timeout=60)
    stop.set()
    watcher.join()
    final = client.stats()
    client.close(timeout=30)
    _emit(
        {
            "final": True,
            "sent": n,
            "acked": final.acknowledged,
            "flushed": flushed,
            "failovers": final.failovers,
            "dropped": final.dropped,
            "max_stall_ms": round(max_stall * 1000, 1),
            "max_stall_at": stall_at,
            "stalls": [(round(t, 4), round(d, 4)) for t, d in stalls],
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
