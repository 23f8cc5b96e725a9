"""Followers of a category: how long after its ``log()`` each line reaches them.

``mode``: ``cli`` runs one ``logserver cat -f --raw`` (servers from ZooKeeper)
and reads its stdout as a terminal would; ``api`` runs ``followers`` readers
(``logserver.read(..., follow=True)``, a thread each, the given servers) in
this process. The lines carry the wall time of their ``log()`` (the ticker
worker); latency is the wall time a line arrives minus that. Once every reader
is live a ready file is written; after ``count`` lines each (or the deadline)
the readers are closed. Also counts, per follower, lines missing or seen twice.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import logserver
from bench.workers import config, emit


def _line(text: bytes, arrived: float, latencies: list[float], seen: dict[int, int]) -> None:
    stamp, _, number = text.partition(b" ")
    latencies.append(arrived - float(stamp))
    n = int(number)
    seen[n] = seen.get(n, 0) + 1


def _cli(cfg: dict, latencies: list[float], seen: dict[int, int], ready: Path) -> None:
    command = [sys.executable, "-m", "logserver", "cat", str(cfg["category"]), "-f", "--raw"]
    command += ["--since", "now", "--zk", str(cfg["zk"]), "--zk-path", str(cfg["zk_path"])]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    time.sleep(float(cfg.get("cli_warmup_s", 2.0)))  # its start, ZooKeeper, first long polls
    ready.write_text("ready")
    deadline = time.monotonic() + float(cfg["seconds"])
    timer = threading.Timer(
        max(0.0, deadline - time.monotonic()), process.send_signal, [signal.SIGINT]
    )
    timer.start()
    count = int(cfg["count"])
    for text in process.stdout:
        _line(text.rstrip(b"\n"), time.time(), latencies, seen)
        if len(seen) >= count:
            break
    timer.cancel()
    process.send_signal(signal.SIGINT)
    process.wait(10)


def _api(
    cfg: dict, index: int, latencies: list[float], seen: dict[int, int], live: threading.Barrier
) -> None:
    count = int(cfg["count"])
    reader = logserver.read(None, str(cfg["category"]), servers=cfg["servers"], follow=True)
    deadline = time.monotonic() + float(cfg["seconds"])
    stopper = threading.Timer(max(0.0, deadline - time.monotonic()), reader.close)
    stopper.start()
    waiter = threading.Thread(
        target=lambda: (reader.caught_up.wait(30), live.wait(60)), daemon=True
    )
    waiter.start()
    with reader:
        for block in reader.blocks():
            arrived = time.time()
            for message in block.messages():
                _line(message, arrived, latencies, seen)
            if len(seen) >= count:
                break
    stopper.cancel()


def main() -> None:
    cfg = config()
    ready = Path(str(cfg["ready_file"]))
    followers = int(cfg.get("followers", 1))
    latencies: list[list[float]] = [[] for _ in range(followers)]
    seen: list[dict[int, int]] = [{} for _ in range(followers)]
    if cfg["mode"] == "cli":
        _cli(cfg, latencies[0], seen[0], ready)
    else:
        live = threading.Barrier(followers + 1)
        threads = [
            threading.Thread(target=_api, args=(cfg, i, latencies[i], seen[i], live), daemon=True)
            for i in range(followers)
        ]
        for t in threads:
            t.start()
        live.wait(120)
        ready.write_text("ready")
        for t in threads:
            t.join(float(cfg["seconds"]) + 30)
    count = int(cfg["count"])
    emit(
        {
            "latencies": [x for per in latencies for x in per],
            "received": [len(s) for s in seen],
            "missing": [count - len(s) for s in seen],
            "duplicates": [sum(n - 1 for n in s.values()) for s in seen],
        }
    )


if __name__ == "__main__":
    main()
