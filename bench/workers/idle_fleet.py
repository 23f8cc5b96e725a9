"""A host's idle app processes: one parent imports, then forks ``processes`` children, each
holding one idle LogClient (default policies) until the parent says stop.

``source``: ``zookeeper`` (``LogClient(zk_hosts, zk_path)``: a session per process),
``file`` (``LogClient(servers=FileServers(file))``: the agent's file, no session) or
``file-only`` (a started ``FileServers`` and no client: what discovery alone costs). A child
writes ``ready_dir/ready-N`` (its pid) once its client knows a server, then blocks on a pipe
from the parent, so that waiting costs it nothing; the parent closes the pipe on
``stop_file``. The suite measures the children's CPU from ``/proc`` meanwhile, and the
sessions on the ensemble. Prints ``{"exit_codes": [...]}``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.workers import config, emit, fork_children, wait_children
from logclient import FileServers, LogClient, SpoolPolicy
from logwire.idl import log_thrift  # noqa: F401 - loads the IDL before the fork


def child(index: int, cfg: dict[str, object], stop_fd: int) -> int:
    spool = SpoolPolicy(directory=Path(str(cfg["spool_dir"])) / f"client-{index}")
    if cfg["source"] == "file-only":
        source = FileServers(str(cfg["file"]))
        source.start()
        known = source.wait_for(bool, 60)
        _ready(cfg, index, stop_fd)
        source.close()
        return 0 if known else 3
    if cfg["source"] == "zookeeper":
        client = LogClient(str(cfg["zk_hosts"]), str(cfg["zk_path"]), spool=spool)
    else:
        client = LogClient(servers=FileServers(str(cfg["file"])), spool=spool)
    deadline = time.monotonic() + 60
    while not client.stats().known_servers and time.monotonic() < deadline:
        time.sleep(0.05)
    known = bool(client.stats().known_servers)
    _ready(cfg, index, stop_fd)
    client.close(5)
    return 0 if known else 3


def _ready(cfg: dict[str, object], index: int, stop_fd: int) -> None:
    """Say so, then wait for the parent to close the pipe (blocked: no CPU)."""
    ready = Path(str(cfg["ready_dir"])) / f"ready-{index}"
    tmp = ready.with_name(f".{ready.name}.tmp")  # renamed: the suite never reads it half-written
    tmp.write_text(str(os.getpid()))
    tmp.rename(ready)
    os.read(stop_fd, 1)


def main() -> None:
    cfg = config()
    if cfg["source"] == "zookeeper":
        import logclient.discovery  # noqa: F401 - loads kazoo before the fork
    stop_read, stop_write = os.pipe()

    def run(index: int) -> int:
        os.close(stop_write)
        return child(index, cfg, stop_read)

    pids = fork_children(int(cfg["processes"]), run)
    os.close(stop_read)
    stop_file = Path(str(cfg["stop_file"]))
    deadline = time.monotonic() + float(cfg["max_seconds"])  # type: ignore[arg-type]
    while not stop_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.close(stop_write)
    codes = wait_children(pids, time.monotonic() + 60)
    emit({"exit_codes": codes})


if __name__ == "__main__":
    main()
