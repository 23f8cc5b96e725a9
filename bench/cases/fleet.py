"""Fifty client processes, three servers, one killed: recovery of every client and the load after.

The fleet worker forks ``fleet_clients`` client processes (default policies,
servers from ZooKeeper, one 100-byte record every 10 ms each). After a
warm-up, one server gets SIGKILL; ``fleet_window_s`` later it is restarted on
the same port, and the next kill (of the next server) waits until every
client's backoff for the restarted one has run out. For each kill:

- recovery: for every client, the time from the kill to its first
  acknowledgement by a surviving server; the figure is the slowest client;
- balance: records acknowledged per surviving server from 0.5 s after the
  kill to the end of the window, summed over clients; the figure is max/min.
"""

from __future__ import annotations

import json
import math
import signal
import time
from typing import Any

from bench.common import BenchEnv, CaseResult, Row, sleep_until, summary

INTERVAL_S = 0.01


def fleet_kill(env: BenchEnv) -> CaseResult:
    p = env.profile
    path = env.zk_path("fleet")
    servers = [env.new_server(f"fleet-{i}", zk_path=path, wait=False) for i in range(3)]
    for server in servers:
        server.wait_ready()
    out_dir = env.workdir / "fleet"
    out_dir.mkdir(exist_ok=True)
    # Forked clients start fast, but each must connect to ZooKeeper first.
    start_at = time.monotonic() + 2.0 + 0.06 * p.fleet_clients
    cycle = p.fleet_window_s + 1.5 + p.fleet_settle_s
    kill_at = [start_at + p.fleet_warmup_s + k * cycle for k in range(p.fleet_kills)]
    stop_at = kill_at[-1] + p.fleet_window_s + 0.5
    worker = env.worker(
        "fleet",
        {
            "zk_hosts": env.zk_hosts,
            "zk_path": path,
            "clients": p.fleet_clients,
            "start_at": start_at,
            "stop_at": stop_at,
            "interval_s": INTERVAL_S,
            "out_dir": str(out_dir),
        },
    )
    kills: list[dict[str, Any]] = []
    for k, at in enumerate(kill_at):
        victim = servers[k % len(servers)]
        sleep_until(at)
        t0 = time.monotonic()
        victim.signal(signal.SIGKILL)
        kills.append({"t": t0, "server": victim.endpoint})
        victim.kill()
        sleep_until(t0 + p.fleet_window_s)
        if k + 1 < len(kill_at):
            victim.start()
    summary_ = worker.result(timeout=stop_at - time.monotonic() + 120)
    clients = [json.loads(f.read_text()) for f in sorted(out_dir.glob("client-*.json"))]

    recovery: list[float] = []
    balance: list[float] = []
    per_kill = []
    for kill in kills:
        t0, dead = kill["t"], kill["server"]
        window_end = t0 + p.fleet_window_s
        delays = []
        load: dict[str, int] = {s.endpoint: 0 for s in servers if s.endpoint != dead}
        for c in clients:
            endpoints = c["acks"]["endpoints"]
            first = math.inf
            for t, idx, n in c["acks"]["rows"]:
                endpoint = endpoints[idx]
                if t <= t0 or endpoint == dead:
                    continue
                first = min(first, t - t0)
                if t0 + 0.5 <= t <= window_end and endpoint in load:
                    load[endpoint] += n
            delays.append(first)
        worst = max(delays) if delays else math.inf
        counts = list(load.values())
        ratio = max(counts) / min(counts) if counts and min(counts) > 0 else math.inf
        recovery.append(worst)
        balance.append(ratio)
        per_kill.append(
            {
                "server": dead,
                "slowest_client_s": worst,
                "median_client_s": summary(delays)["median"],
                "records_per_survivor": load,
                "max_over_min": ratio,
            }
        )
    n = p.fleet_clients
    result = CaseResult("fleet_kill", f"{n} client processes, 3 servers, one killed")
    result.rows.append(
        Row(
            label=f"{n} clients, kill 1 of 3 (x{len(kills)}): slowest client's next ack",
            unit="s",
            figure=summary(recovery),
            judge="max",
            target="every client <= 1 s",
            op="<=",
            limit=1.0,
        ).evaluate()
    )
    result.rows.append(
        Row(
            label="  load on the survivors afterwards, max/min",
            unit="x",
            figure=summary(balance),
            target="<= 1.5",
            op="<=",
            limit=1.5,
        ).evaluate()
    )
    result.details = {
        "kills": per_kill,
        "clients_reported": len(clients),
        "exit_codes": summary_["exit_codes"],
        "dropped": sum(c["dropped"] for c in clients),
        "not_flushed": sum(1 for c in clients if not c["flushed"]),
        "logged": sum(c["logged"] for c in clients),
        "acknowledged": sum(c["acknowledged"] for c in clients),
    }
    if len(clients) != n:
        raise RuntimeError(f"only {len(clients)} of {n} clients reported: {summary_}")
    return result
