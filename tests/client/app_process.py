"""A tiny application that embeds LogClient, run as a real subprocess by the integration tests.

``python -m tests.client.app_process ZK_HOSTS ZK_PATH SPOOL_DIR PREFIX COUNT MODE``

- ``spool``: log COUNT numbered records while no server is reachable, wait until
  every one of them is in the spool (spill_after_s elapsed: they are on disk,
  fsync'd), print ``SPOOLED`` and wait to be killed.
- ``deliver``: start (delivering whatever the spool holds first), log COUNT
  numbered records, flush, print ``FLUSHED True``/``False``, close.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from logclient import BatchPolicy, FailoverPolicy, LogClient, SpoolPolicy


def main() -> int:
    zk_hosts, zk_path, spool_dir, prefix, count, mode = sys.argv[1:7]
    client = LogClient(
        zk_hosts,
        zk_path,
        batching=BatchPolicy(max_records=100, linger_s=0.01),
        failover=FailoverPolicy(
            connect_timeout_s=0.5, rpc_timeout_s=1.0, down_backoff_s=0.2, probe_interval_s=0.2
        ),
        spool=SpoolPolicy(directory=Path(spool_dir), spill_after_s=0.3),
    )
    for i in range(int(count)):
        client.log("app", f"{prefix}-{i:06d}")
    if mode == "spool":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = client.stats()
            if stats.spooled >= int(count) and stats.queued == 0:
                print("SPOOLED", flush=True)
                time.sleep(3600)
            time.sleep(0.05)
        print("NOT SPOOLED", client.stats(), flush=True)
        return 1
    flushed = client.flush(60)
    print("FLUSHED", flushed, client.stats(), flush=True)
    client.close()
    return 0 if flushed else 1


if __name__ == "__main__":
    sys.exit(main())
