"""A new server registers: how long until a watching client knows it.

A LogClient (default policies) finds its servers through
:class:`~logclient.discovery.ZooKeeperServers`; a listener subscribed after the
client's own notes when each endpoint first appears, i.e. once the client's
server pool has it. The clock starts at the znode's creation time as
ZooKeeper recorded it (``ctime``, same machine clock). The baseline is a raw
kazoo ``ChildrenWatch`` on the same path in the same process: ZooKeeper's
own notification delay, which no client can beat. Each new server is a real
``logserver serve`` process, stopped (deregistered) before the next starts.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Any

from kazoo.client import KazooClient
from kazoo.recipe.watchers import ChildrenWatch

from bench.common import BenchEnv, CaseResult, Row, summary
from logclient import LogClient, SpoolPolicy
from logserver.tools.launcher import wait_for
from logwire.serverset import Member
from logwire.zkclient import new_client, stop_client


def join(env: BenchEnv) -> CaseResult:
    from logclient.discovery import ZooKeeperServers

    path = env.zk_path("discovery")
    seen_endpoint: dict[str, float] = {}
    seen_node: dict[str, float] = {}
    lock = threading.Lock()

    kz = new_client(env.zk_hosts, session_timeout_s=10.0)
    kz.start(timeout=30)
    kz.ensure_path(path)

    def on_children(children: list[str]) -> None:
        now = time.time()
        with lock:
            for child in children:
                seen_node.setdefault(child, now)

    ChildrenWatch(kz, path, on_children)
    source = ZooKeeperServers(env.zk_hosts, path)
    client = LogClient(servers=source, spool=SpoolPolicy(directory=env.workdir / "discovery-spool"))

    def on_servers(servers: frozenset[object]) -> None:
        now = time.time()
        with lock:
            for endpoint in servers:
                seen_endpoint.setdefault(str(endpoint), now)

    source.subscribe(on_servers)  # after the client's own listener: its pool is updated first
    events: list[dict[str, Any]] = []
    try:
        for i in range(env.profile.joins):
            server = env.new_server(f"join-{i}", zk_path=path, wait=True)
            endpoint = server.endpoint

            def seen(ep: str = endpoint) -> bool:
                return ep in seen_endpoint

            def gone(ep: str = endpoint) -> bool:
                return ep not in {str(e) for e in source.servers()}

            wait_for(seen, 30, what=f"the client to see {endpoint}")
            node, ctime = _node_of(kz, path, endpoint)
            events.append(
                {
                    "endpoint": endpoint,
                    "node": node,
                    "client_ms": (seen_endpoint[endpoint] - ctime) * 1000,
                    "raw_watch_ms": (seen_node.get(node, math.inf) - ctime) * 1000,
                }
            )
            server.terminate()
            wait_for(gone, 30, what=f"the client to see {endpoint} leave")
            with lock:
                seen_endpoint.pop(endpoint, None)  # a later server may get the same port
    finally:
        client.close(5)
        source.close(5)  # a source passed in is the caller's to close
        stop_client(kz, deadline=time.monotonic() + 10.0)
    client_ms = [e["client_ms"] for e in events]
    raw_ms = [e["raw_watch_ms"] for e in events]
    stats, raw = summary(client_ms), summary(raw_ms)
    result = CaseResult(
        "discovery_join", "a new server registers: time until a watching client sees it"
    )
    result.rows.append(
        Row(
            label=f"new server x{len(events)}: seen by the client's pool",
            unit="ms",
            figure=stats,
            judge="p99",
            baseline_label="raw kazoo ChildrenWatch, same path",
            baseline=raw,
            ratio_def="p99 client / p99 raw watch",
            ratio=summary([stats["p99"] / raw["p99"]]) if raw["p99"] > 0 else None,
            target="p99 <= 100 ms",
            op="<=",
            limit=100.0,
        ).evaluate()
    )
    result.details = {"events": events}
    return result


def _node_of(kz: KazooClient, path: str, endpoint: str) -> tuple[str, float]:
    """The znode that registers ``endpoint`` (the newest, if a ghost lingers) and its ctime."""
    best: tuple[str, float] | None = None
    for child in kz.get_children(path):
        with contextlib.suppress(Exception):
            data, stat = kz.get(f"{path}/{child}")
            if str(Member.from_json(data).endpoint) == endpoint:
                ctime = stat.ctime / 1000
                if best is None or ctime > best[1]:
                    best = (child, ctime)
    if best is None:
        raise RuntimeError(f"no znode for {endpoint} under {path}")
    return best
