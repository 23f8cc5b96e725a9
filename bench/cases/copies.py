"""Copies on several servers and hedged sends: what they cost, what they buy.

- ``copies_throughput``: one client process (the ``throughput`` worker, default policies
  otherwise) logs as fast as it can to two ``--fsync always`` servers, with
  ``ReplicationPolicy(copies=2)`` and, as the baseline in the same repetition, with one
  copy to the same two servers; the figure is acknowledged records/s (two durable copies
  each). The runs also count hedged batches at full speed.
- ``failover_sigkill_copies``: four servers in ZooKeeper and one client in the suite's
  process sending ~2,000 records/s with ``copies=2``, ``choice="sticky"`` and
  ``linger_s=0.002`` (as ``failover_sigkill``); the server it sends to first is SIGKILLed
  (restarted between kills): time from the signal until ``flush()`` says every record logged
  before it is on two servers. The baseline is the same ``flush()`` with no kill.
- ``hedged_share``: the ``failover`` cluster's client (one copy, default ``HedgePolicy``)
  logging steadily with every server healthy: hedged batches per batch sent.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from bench.cases.failover import FailoverCluster, healthy_failover_client
from bench.common import BenchEnv, CaseResult, Row, summary
from logclient import ReplicationPolicy
from logserver.tools.launcher import wait_for

# ------------------------------------------------------------------ throughput


def _throughput_runs(env: BenchEnv) -> dict[str, list[dict[str, Any]]]:
    runs = env.cache.get("copies_runs")
    if runs is not None:
        return runs
    path = env.zk_path("copies-throughput")
    servers = [env.new_server(f"copies-tp-{i}", zk_path=path) for i in range(2)]
    endpoints = [s.endpoint for s in servers]
    runs = {"one": [], "two": []}
    for rep in range(env.profile.repeats):
        for copies in (1, 2) if rep % 2 == 0 else (2, 1):
            config = {
                "servers": endpoints,
                "records": env.profile.copies_records,
                "category": f"copies{copies}",
            }
            if copies == 2:
                config["copies"] = 2
            result = env.run_worker("throughput", config, timeout=600)
            runs["one" if copies == 1 else "two"].append(result)
    env.cache["copies_runs"] = runs
    return runs


def copies_throughput(env: BenchEnv) -> CaseResult:
    runs = _throughput_runs(env)
    one = [r["rate"] for r in runs["one"]]
    two = [r["rate"] for r in runs["two"]]
    result = CaseResult(
        "copies_throughput",
        "one LogClient -> two logservers (fsync always): copies=2 against one copy",
    )
    result.rows.append(
        Row(
            label="1 LogClient, copies=2 -> 2 logservers (fsync always)",
            unit="rec/s",
            figure=summary(two),
            baseline_label="the same client with one copy, same 2 servers",
            baseline=summary(one),
            ratio_def="copies=2 / copies=1 (same repetition)",
            ratio=summary([t / o for t, o in zip(two, one, strict=True)]),
            target=">= 0.5 x one copy",
            target_on="ratio",
            op=">=",
            limit=0.5,
        ).evaluate()
    )
    every = runs["one"] + runs["two"]
    hedged = sum(int(r.get("hedged", 0)) for r in every)
    sent = sum(int(r.get("sent_batches", 0)) for r in every)
    result.rows.append(
        Row(
            label="  context: hedged batches in these full-speed runs",
            unit="%",
            figure=summary([100.0 * hedged / sent if sent else 0.0]),
            target=f"(info: {hedged} of {sent} calls)",
        )
    )
    result.details = {"runs": runs}
    return result


# ------------------------------------------------------------------ failover


def failover_sigkill_copies(env: BenchEnv) -> CaseResult:
    cluster = FailoverCluster(env, "copies-failover", replication=ReplicationPolicy(copies=2))
    client = cluster.client
    kills: list[float] = []
    steady: list[float] = []
    for _ in range(env.profile.kills):
        wait_for(cluster.healthy, 30, what="every copies-failover server up and known")
        time.sleep(0.3)
        t0 = time.monotonic()
        client.flush(10)
        steady.append((time.monotonic() - t0) * 1000)
        victim = cluster.by_endpoint[str(wait_for(lambda: client.stats().current_server, 10))]
        t0 = time.monotonic()
        victim.signal(signal.SIGKILL)
        done = client.flush(10)
        kills.append((time.monotonic() - t0) * 1000 if done else float("inf"))
        victim.kill()
        victim.start()
    stats = summary(kills)
    base = summary(steady)
    result = CaseResult(
        "failover_sigkill_copies",
        "copies=2: SIGKILL of a server holding the batches in flight: flush() until two copies",
    )
    result.rows.append(
        Row(
            label=f"copies=2, SIGKILL x{len(kills)}: everything logged before on 2 servers",
            unit="ms",
            figure=stats,
            judge="p99",
            baseline_label="the same flush() with no kill",
            baseline=base,
            ratio_def="p99 / steady flush median",
            ratio=summary([stats["p99"] / base["median"]]) if base["median"] else None,
            target="p99 <= 50 ms",
            op="<=",
            limit=50.0,
        ).evaluate()
    )
    result.details = {"kills_ms": kills, "steady_ms": steady, "client": repr(client.stats())}
    return result


# ------------------------------------------------------------------ hedging


def hedged_share(env: BenchEnv) -> CaseResult:
    client = healthy_failover_client(env)
    before = client.stats()
    time.sleep(env.profile.steady_s)
    after = client.stats()
    hedged = after.hedged - before.hedged
    sent = after.sent_batches - before.sent_batches
    share = 100.0 * hedged / sent if sent else 0.0
    result = CaseResult(
        "hedged_share",
        "healthy servers, steady logging: batches also sent to a second server (hedged)",
    )
    result.rows.append(
        Row(
            label=f"hedged share, {env.profile.steady_s:.0f} s steady, ~2,000 rec/s, 4 servers",
            unit="%",
            figure=summary([share]),
            target="<= 1 % of batches",
            op="<=",
            limit=1.0,
        ).evaluate()
    )
    result.details = {"hedged": hedged, "sent_batches": sent, "client": repr(after)}
    return result
