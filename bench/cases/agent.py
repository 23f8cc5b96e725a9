"""Discovery through the host's agent: how fast a join reaches a client, what it saves ZooKeeper,
what idle clients cost.

- ``agent_join``: a new ``logserver`` registers (``joins`` times, each stopped before the
  next); time from the znode's ``ctime`` (ZooKeeper's clock, same machine) until the pool of a
  ``LogClient(servers=FileServers(file))`` has it, the file written by a real
  ``logserver discovery-agent``. Baseline, on the same joins: a ``LogClient`` with its own
  ZooKeeper watch (:class:`~logclient.discovery.ZooKeeperServers`).
- ``agent_fleet``: ``idle_processes`` app processes on this host (forked from one parent,
  each holding one idle ``LogClient`` with default policies), first each with its own
  ZooKeeper session, then reading the agent's file. Sessions are counted with ZooKeeper's
  ``cons`` (before and with the processes up); CPU is the processes' ``utime + stime`` from
  ``/proc`` over ``idle_window_s``, the agent's own included in the file-based figure.
  For context, the same processes holding only a ``FileServers`` (no client): what
  discovery through the file costs by itself; the rest is the clients' own sender threads.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from bench.cases.discovery import _node_of
from bench.common import BenchEnv, CaseResult, Row, summary
from logclient import FileServers, LogClient, SpoolPolicy
from logserver.tools.launcher import DiscoveryAgentProcess, session_count, wait_for
from logwire.zkclient import new_client, stop_client

_TICK = os.sysconf("SC_CLK_TCK")


def _agent(env: BenchEnv, name: str, zk_path: str) -> DiscoveryAgentProcess:
    agent = DiscoveryAgentProcess(
        zk_hosts=env.zk_hosts,
        file=env.workdir / name / "servers.json",
        zk_path=zk_path,
        heartbeat_s=5.0,
        check_interval_s=0.2,
        log_path=env.logs / f"{name}.log",
    )
    env.on_close(agent.stop)
    return agent.start()


# ------------------------------------------------------------------------- join


def agent_join(env: BenchEnv) -> CaseResult:
    from logclient.discovery import ZooKeeperServers

    path = env.zk_path("agent-join")
    agent = _agent(env, "agent-join", path)
    seen: dict[str, dict[str, float]] = {"file": {}, "direct": {}, "written": {}}
    lock = threading.Lock()
    file_source = FileServers(agent.file, zk_path=path)
    direct_source = ZooKeeperServers(env.zk_hosts, path)
    file_client = LogClient(
        servers=file_source, spool=SpoolPolicy(directory=env.workdir / "agent-join-file-spool")
    )
    direct_client = LogClient(
        servers=direct_source,
        spool=SpoolPolicy(directory=env.workdir / "agent-join-direct-spool"),
    )

    def recorder(kind: str) -> Any:
        def on_servers(servers: frozenset[object]) -> None:
            now = time.time()
            document = file_source.document() if kind == "file" else None
            with lock:
                for endpoint in servers:
                    seen[kind].setdefault(str(endpoint), now)
                    if document is not None:
                        seen["written"].setdefault(str(endpoint), document.written_at)

        return on_servers

    # After each client's own listener: its pool is updated first.
    file_source.subscribe(recorder("file"))
    direct_source.subscribe(recorder("direct"))
    kz = new_client(env.zk_hosts)
    kz.start(timeout=30)
    events: list[dict[str, Any]] = []
    try:
        for i in range(env.profile.joins):
            server = env.new_server(f"agent-join-{i}", zk_path=path, wait=True)
            endpoint = server.endpoint

            def both_seen(ep: str = endpoint) -> bool:
                with lock:
                    return ep in seen["file"] and ep in seen["direct"]

            def both_gone(ep: str = endpoint) -> bool:
                return all(
                    ep not in {str(e) for e in source.servers()}
                    for source in (file_source, direct_source)
                )

            wait_for(both_seen, 30, what=f"both clients to see {endpoint}")
            _node, ctime = _node_of(kz, path, endpoint)
            with lock:
                events.append(
                    {
                        "endpoint": endpoint,
                        "file_ms": (seen["file"][endpoint] - ctime) * 1000,
                        "direct_ms": (seen["direct"][endpoint] - ctime) * 1000,
                        "agent_ms": (seen["written"].get(endpoint, math.inf) - ctime) * 1000,
                    }
                )
            server.terminate()
            wait_for(both_gone, 30, what=f"both clients to see {endpoint} leave")
            with lock:
                for kind in seen.values():
                    kind.pop(endpoint, None)  # a later server may get the same port
    finally:
        for client in (file_client, direct_client):
            client.close(5)
        file_source.close(5)
        direct_source.close(5)
        stop_client(kz, deadline=time.monotonic() + 10.0)
    file_ms = summary(e["file_ms"] for e in events)
    direct_ms = summary(e["direct_ms"] for e in events)
    agent_ms = summary(e["agent_ms"] for e in events)
    result = CaseResult(
        "agent_join", "a new server registers: time until a client reading the agent's file sees it"
    )
    result.rows.append(
        Row(
            label=f"new server x{len(events)}: seen through the agent's file",
            unit="ms",
            figure=file_ms,
            judge="p99",
            baseline_label="a client with its own ZooKeeper watch, same joins",
            baseline=direct_ms,
            ratio_def="p99 file / p99 own watch",
            ratio=summary([file_ms["p99"] / direct_ms["p99"]]) if direct_ms["p99"] > 0 else None,
            target="p99 <= 100 ms",
            op="<=",
            limit=100.0,
        ).evaluate()
    )
    result.rows.append(
        Row(
            label="  of which: registration -> the agent's file written",
            unit="ms",
            figure=agent_ms,
            judge="p99",
            target="(info)",
        )
    )
    result.details = {"events": events}
    return result


# ------------------------------------------------------------------------ fleet


def _cpu_ticks(pids: list[int]) -> int:
    """utime + stime of ``pids`` (clock ticks); a process that is gone counts 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return total


def _idle_fleet(
    env: BenchEnv,
    source: str,
    *,
    path: str,
    file: Path | None,
    extra_pids: list[int],
    sessions_before: int | None = None,
) -> dict[str, Any]:
    """Start the idle processes, count sessions and CPU, stop them; the figures.

    Sessions are counted from ``sessions_before`` (default: just before the processes start).
    """
    p = env.profile
    name = f"idle-{source}"
    ready_dir = env.workdir / f"{name}-ready"
    ready_dir.mkdir()
    stop_file = env.workdir / f"{name}-stop"
    before = session_count(env.zk_hosts) if sessions_before is None else sessions_before
    worker = env.worker(
        "idle_fleet",
        {
            "source": source,
            "zk_hosts": env.zk_hosts,
            "zk_path": path,
            "file": str(file) if file is not None else "",
            "processes": p.idle_processes,
            "ready_dir": str(ready_dir),
            "spool_dir": str(env.workdir / f"{name}-spool"),
            "stop_file": str(stop_file),
            "max_seconds": 300,
        },
    )
    try:
        wait_for(
            lambda: len(list(ready_dir.glob("ready-*"))) == p.idle_processes,
            120,
            what=f"{p.idle_processes} {source} clients to know a server",
        )
        pids = [int(f.read_text()) for f in ready_dir.glob("ready-*")]
        time.sleep(min(1.0, p.idle_window_s))  # start-up work (connects, first reads) ends
        sessions = session_count(env.zk_hosts) - before
        started = time.monotonic()
        ticks = _cpu_ticks(pids + extra_pids)
        time.sleep(p.idle_window_s)
        spent = (_cpu_ticks(pids + extra_pids) - ticks) / _TICK
        elapsed = time.monotonic() - started
    finally:
        stop_file.touch()
    answer = worker.result(timeout=120)
    if any(code != 0 for code in answer["exit_codes"]):
        raise RuntimeError(f"{source} clients failed: {answer['exit_codes']}")
    return {
        "sessions": sessions,
        "cpu_percent": 100.0 * spent / elapsed,
        "cpu_seconds": spent,
        "window_s": elapsed,
    }


def agent_fleet(env: BenchEnv) -> CaseResult:
    p = env.profile
    n = p.idle_processes
    path = env.zk_path("agent-fleet")
    server = env.new_server("agent-fleet", zk_path=path, wait=True)
    del server  # registered under path: the clients' one server
    direct = _idle_fleet(env, "zookeeper", path=path, file=None, extra_pids=[])
    before_agent = session_count(env.zk_hosts)
    agent = _agent(env, "agent-fleet", path)
    assert agent.pid is not None
    via_file = _idle_fleet(
        env,
        "file",
        path=path,
        file=agent.file,
        extra_pids=[agent.pid],
        sessions_before=before_agent,
    )
    result = CaseResult("agent_fleet", f"{n} client processes on one host: ZooKeeper vs the agent")
    result.rows.append(
        Row(
            label=f"ZooKeeper sessions for {n} client processes on one host, via the agent",
            unit="",
            figure=summary([via_file["sessions"]]),
            judge="value",
            baseline_label="each process with its own session",
            baseline=summary([direct["sessions"]]),
            ratio_def="sessions via the agent / own sessions",
            ratio=summary([via_file["sessions"] / direct["sessions"]])
            if direct["sessions"]
            else None,
            target="1 (the agent's), not N",
            op="<=",
            limit=1.0,
        ).evaluate()
    )
    only = _idle_fleet(env, "file-only", path=path, file=agent.file, extra_pids=[])
    cpu_ratio = (
        summary([via_file["cpu_percent"] / direct["cpu_percent"]])
        if direct["cpu_percent"] > 0
        else None
    )
    result.rows.append(
        Row(
            label=f"CPU of {n} idle file-based clients (+ the agent), % of one core",
            unit="%",
            figure=summary([via_file["cpu_percent"]]),
            judge="value",
            baseline_label=f"{n} idle clients with their own ZooKeeper sessions",
            baseline=summary([direct["cpu_percent"]]),
            ratio_def="file-based / own sessions",
            ratio=cpu_ratio,
            target="(info)",
        )
    )
    result.rows.append(
        Row(
            label=f"  of which: discovery alone ({n} processes holding a FileServers, no client)",
            unit="%",
            figure=summary([only["cpu_percent"]]),
            judge="value",
            target="(info)",
        )
    )
    result.details = {"zookeeper": direct, "file": via_file, "file_only": only, "processes": n}
    json.dumps(result.details)  # fail here, not in the report, if something is not JSON
    return result
