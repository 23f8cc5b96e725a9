"""An app that logs from worker processes, run as a real subprocess by ``test_workers.py``.

``python -m tests.apps.mp_app MODE ZK_HOSTS ZK_PATH SPOOL_DIR TASKS``

- ``fork-pool``: the parent makes the client, logs ``parent-before``, then a
  ``multiprocessing`` pool with the fork start method runs TASKS tasks, each
  logging ``task <n>`` through the inherited client; ``close()`` + ``join()``.
- ``os-fork``: the parent makes the client, logs, forks 2 children with
  ``os.fork()``; each logs its share of TASKS and ends with ``sys.exit(0)``.
- ``forkserver`` / ``spawn``: no fork of the parent's client: each worker
  makes its own in the pool's initializer (the usual way with these methods).

The parent logs ``parent-after`` and closes its client; prints ``DONE``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

from logclient import BatchPolicy, LogClient, SpoolPolicy

_client: LogClient | None = None


def make_client(zk_hosts: str, zk_path: str, spool: str) -> LogClient:
    return LogClient(
        zk_hosts,
        zk_path,
        batching=BatchPolicy(linger_s=0.01),
        spool=SpoolPolicy(directory=Path(spool)),
    )


def init_worker(zk_hosts: str, zk_path: str, spool: str) -> None:
    global _client
    _client = make_client(zk_hosts, zk_path, f"{spool}-worker-{os.getpid()}")


def task(n: int) -> int:
    assert _client is not None
    _client.log("app", f"task {n}")
    return os.getpid()


def main() -> int:
    global _client
    mode, zk_hosts, zk_path, spool, tasks = sys.argv[1:6]
    count = int(tasks)
    if mode in ("fork-pool", "os-fork"):
        _client = make_client(zk_hosts, zk_path, spool)
        _client.log("app", "parent-before")
    if mode == "fork-pool":
        pool = multiprocessing.get_context("fork").Pool(4)
        pids = set(pool.map(task, range(count), chunksize=1))
        pool.close()
        pool.join()
    elif mode == "os-fork":
        children = []
        for child in range(2):
            pid = os.fork()
            if pid == 0:
                for n in range(child, count, 2):
                    task(n)
                sys.exit(0)
            children.append(pid)
        for pid in children:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, status
        pids = set(children)
    else:
        context = multiprocessing.get_context(mode)
        pool = context.Pool(2, initializer=init_worker, initargs=(zk_hosts, zk_path, spool))
        pids = set(pool.map(task, range(count), chunksize=1))
        pool.close()
        pool.join()
        _client = make_client(zk_hosts, zk_path, spool)
    _client.log("app", "parent-after")
    assert _client.flush(30)
    _client.close()
    print("DONE", len(pids), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
