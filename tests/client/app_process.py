"""A tiny application that embeds LogClient, run as a real subprocess by the integration tests.

``python -m tests.client.app_process ZK_HOSTS ZK_PATH SPOOL_DIR PREFIX COUNT MODE [COPIES ACKS]``

With COPIES and ACKS the client has ``ReplicationPolicy(copies=COPIES, acks=ACKS)``.

- ``spool``: log COUNT numbered records while no server is reachable, wait until
  every one of them is in the spool (spill_after_s elapsed: they are on disk,
  fsync'd), print ``SPOOLED`` and wait to be killed.
- ``ack-then-spool``: log COUNT numbered records, flush and print ``ACKED``
  (they are acknowledged); wait for a line on stdin (the test makes the servers
  unreachable meanwhile), log COUNT more, then as ``spool``.
- ``deliver``: start (delivering whatever the spool holds first), log COUNT
  numbered records, flush, print ``FLUSHED True``/``False`` with the client's
  stats (``duplicates=N``: batches a server answered it already had), close.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from logclient import BatchPolicy, FailoverPolicy, LogClient, ReplicationPolicy, SpoolPolicy

ROOT = Path(__file__).resolve().parents[2]


def run_app(
    zk_hosts: str,
    zk_path: str,
    spool: Path,
    prefix: str,
    count: int,
    mode: str,
    *,
    replication: ReplicationPolicy | None = None,
) -> subprocess.Popen[str]:
    """Start this app as a real process (stdin, stdout and stderr are pipes, text)."""
    copies = () if replication is None else (str(replication.copies), str(replication.required))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.client.app_process",
            zk_hosts,
            zk_path,
            str(spool),
            prefix,
            str(count),
            mode,
            *copies,
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_spooled(client: LogClient, count: int) -> int:
    """Print ``SPOOLED`` once ``count`` records are in the spool and wait to be killed."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stats = client.stats()
        if stats.spooled >= count and stats.queued == 0:
            print("SPOOLED", flush=True)
            time.sleep(3600)
        time.sleep(0.05)
    print("NOT SPOOLED", client.stats(), flush=True)
    return 1


def main() -> int:
    zk_hosts, zk_path, spool_dir, prefix, count_arg, mode = sys.argv[1:7]
    count = int(count_arg)
    copies, acks = map(int, sys.argv[7:9]) if len(sys.argv) > 7 else (1, 1)
    client = LogClient(
        zk_hosts,
        zk_path,
        batching=BatchPolicy(max_records=100, linger_s=0.01),
        failover=FailoverPolicy(
            connect_timeout_s=0.5, rpc_timeout_s=1.0, down_backoff_s=0.2, probe_interval_s=0.2
        ),
        spool=SpoolPolicy(directory=Path(spool_dir), spill_after_s=0.3),
        replication=ReplicationPolicy(copies=copies, acks=acks),
    )
    for i in range(count):
        client.log("app", f"{prefix}-{i:06d}")
    if mode == "spool":
        return wait_spooled(client, count)
    if mode == "ack-then-spool":
        if not client.flush(60):
            print("NOT ACKED", client.stats(), flush=True)
            return 1
        print("ACKED", flush=True)
        sys.stdin.readline()
        for i in range(count, 2 * count):
            client.log("app", f"{prefix}-{i:06d}")
        return wait_spooled(client, count)
    flushed = client.flush(60)
    stats = client.stats()
    print("FLUSHED", flushed, stats, f"duplicates={stats.duplicates}", flush=True)
    client.close()
    return 0 if flushed else 1


if __name__ == "__main__":
    sys.exit(main())
