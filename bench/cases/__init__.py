"""The cases, in the order the suite runs them; each maps an id to a function of a BenchEnv."""

from __future__ import annotations

from collections.abc import Callable

from bench.cases import (
    agent,
    applog,
    compression,
    copies,
    discovery,
    failover,
    fleet,
    forked,
    hostile,
    latency,
    memory,
    reading,
    repair,
    restart,
    throughput,
    wire,
)
from bench.common import BenchEnv, CaseResult

__all__ = ["CASES"]

CaseFn = Callable[[BenchEnv], CaseResult]

CASES: dict[str, CaseFn] = {
    "raw_ceiling": throughput.raw_ceiling,
    "single_client": throughput.single_client,
    "group_commit": throughput.group_commit,
    "handler_vs_file": applog.handler_vs_file,
    "handler_vs_syslog": applog.handler_vs_syslog,
    "log_call": latency.log_call,
    "failover_sigkill": failover.sigkill,
    "failover_sigstop": failover.sigstop,
    "hedged_share": copies.hedged_share,
    "failover_sigkill_copies": copies.failover_sigkill_copies,
    "copies_throughput": copies.copies_throughput,
    "failover_restarted": failover.restarted_peer,
    "fork_workers": forked.fork_workers,
    "discovery_join": discovery.join,
    "fleet_kill": fleet.fleet_kill,
    "agent_join": agent.agent_join,
    "agent_fleet": agent.agent_fleet,
    "guard_cost": wire.guard_cost,
    "hostile_load": wire.hostile_load,
    "memory_client": memory.client,
    "memory_server": memory.server,
    "hostile_memory": hostile.memory_flood,
    "compression_disk": compression.compression_disk,
    "compression_wire": compression.compression_wire,
    "compression_speed": compression.compression_speed,
    "compression_read": compression.compression_read,
    "read_throughput": reading.read_throughput,
    "read_since": reading.read_since,
    "follow_latency": reading.follow_latency,
    "followers": reading.followers,
    "reader_rss": reading.reader_rss,
    "hostile_categories": hostile.category_bomb,
    "restart": restart.restart,
    "repair": repair.repair,
}
