"""An app that logs one line at a steady rate, each carrying the wall time of its ``log()``.

Default policies (batching, failover), servers found in ZooKeeper: the
latency a follower sees from a line's time is what an operator watching it
would see. Emits how many lines it logged and whether all were acknowledged.
"""

from __future__ import annotations

import time

from bench.workers import config, emit, sleep_until
from logclient import LogClient


def main() -> None:
    cfg = config()
    client = LogClient(str(cfg["zk"]), zk_path=str(cfg["zk_path"]))
    category = str(cfg["category"])
    count = int(cfg["count"])
    interval = 1.0 / float(cfg["rate"])
    try:
        sleep_until(float(cfg["start_at"]))
        next_at = time.monotonic()
        for i in range(count):
            client.log(category, f"{time.time():.6f} {i}")
            next_at += interval
            sleep_until(next_at)
        acknowledged = client.flush(30)
    finally:
        client.close(10)
    emit({"logged": count, "acknowledged": acknowledged})


if __name__ == "__main__":
    main()
