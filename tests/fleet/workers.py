"""A host's app processes for the fleet tests: one parent imports and makes a FileServers, then
forks N workers, as gunicorn ``--preload`` does.

``python -m tests.fleet.workers CONFIG_JSON``. Config keys: ``file`` (the agent's servers
file), ``zk_hosts``/``zk_path`` (what an app built for ZooKeeper passes), ``workers``,
``route`` (``source``: ``LogClient(servers=<the parent's FileServers>)`` made in the worker;
``env``: ``LogClient(zk_hosts, zk_path)`` made in the worker, with ``LOGCLIENT_SERVERS_FILE``
set; ``inherited``: the parent's ``LogClient(zk_hosts, zk_path)``, made before the fork with
the variable set, used in the worker; ``all``: the three in turn), ``mode`` (``count``: log ``records`` records; ``until``: one
record every ``interval_s`` until ``stop_file`` exists), ``category``, ``prefix``,
``out_dir``, ``spool_dir``.

Each worker touches ``out_dir/started-N`` once its first record is acknowledged, and at the
end writes ``out_dir/worker-N.json`` (what it logged, whether everything was acknowledged,
whether kazoo was ever imported in it, the servers it knew, its source's stats). The parent
prints ``{"exit_codes": [...]}``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.workers import fork_children, wait_children
from logclient import BatchPolicy, FailoverPolicy, FileServers, LogClient, SpoolPolicy
from logclient._fileservers import SERVERS_FILE_ENV
from logwire.idl import log_thrift  # noqa: F401 - loads the IDL once, before the fork

FAILOVER = FailoverPolicy(
    connect_timeout_s=0.5, rpc_timeout_s=1.0, down_backoff_s=0.2, probe_interval_s=0.2
)
MAX_SECONDS = 120.0


ROUTES = ("source", "env", "inherited")


def worker(index: int, cfg: dict[str, Any], source: FileServers, inherited: LogClient) -> int:
    route = cfg["route"] if cfg["route"] != "all" else ROUTES[index % len(ROUTES)]
    options: dict[str, Any] = {
        "batching": BatchPolicy(max_records=100, linger_s=0.01),
        "failover": FAILOVER,
        "spool": SpoolPolicy(directory=Path(cfg["spool_dir"]) / f"worker-{index}", spill_after_s=5),
    }
    if route == "source":
        client = LogClient(servers=source, **options)
    elif route == "env":
        client = LogClient(cfg["zk_hosts"], cfg["zk_path"], **options)
    else:
        client = inherited  # starts afresh in this process on first use
    out = Path(cfg["out_dir"])
    prefix = f"{cfg['prefix']}-{index:03d}"
    category = cfg["category"]
    logged = 0
    client.log(category, f"{prefix}-{logged:06d}")
    logged += 1
    started = client.flush(60)
    (out / f"started-{index}").touch()
    deadline = time.monotonic() + MAX_SECONDS
    if cfg["mode"] == "count":
        for _ in range(int(cfg["records"]) - 1):
            client.log(category, f"{prefix}-{logged:06d}")
            logged += 1
    else:
        stop = Path(cfg["stop_file"])
        while not stop.exists() and time.monotonic() < deadline:
            client.log(category, f"{prefix}-{logged:06d}")
            logged += 1
            time.sleep(float(cfg["interval_s"]))
    flushed = client.flush(60)
    stats = client.stats()
    source_stats = client._source.stats()  # type: ignore[attr-defined]
    client.close(10)
    result = {
        "index": index,
        "pid": os.getpid(),
        "route": route,
        "logged": logged,
        "started": started,
        "flushed": flushed,
        "acknowledged": stats.acknowledged,
        "dropped": stats.dropped,
        "known_servers": sorted(stats.known_servers),
        "kazoo_loaded": "kazoo" in sys.modules,
        "source": dataclasses.asdict(source_stats),
    }
    (out / f"worker-{index}.json").write_text(json.dumps(result))
    return 0 if flushed and started else 3


def main() -> None:
    cfg = json.loads(sys.argv[1])
    os.environ[SERVERS_FILE_ENV] = cfg["file"]
    source = FileServers(cfg["file"], zk_path=cfg["zk_path"])
    source.start()  # the parent's watcher thread runs while it forks
    inherited = LogClient(
        cfg["zk_hosts"],
        cfg["zk_path"],
        batching=BatchPolicy(max_records=100, linger_s=0.01),
        failover=FAILOVER,
        spool=SpoolPolicy(directory=Path(cfg["spool_dir"]) / "parent", spill_after_s=5),
    )
    pids = fork_children(int(cfg["workers"]), lambda index: worker(index, cfg, source, inherited))
    codes = wait_children(pids, time.monotonic() + MAX_SECONDS + 90)
    inherited.close(10)
    source.close()
    print(json.dumps({"exit_codes": codes, "kazoo_in_parent": "kazoo" in sys.modules}))


if __name__ == "__main__":
    main()
