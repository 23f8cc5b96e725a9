"""The benchmark suite: ``.venv/bin/python -m bench`` (``--quick`` for a smoke run).

Every case starts real processes through :mod:`logserver.tools.launcher` (ZooKeeper,
logservers) or its own small worker scripts (:mod:`bench.workers`), so the
server and the load generator never share a process. Figures that depend on
the machine's speed are reported as ratios against a baseline measured in the
same run; see ``BENCHMARKS.md`` for the method and the latest table.
"""

from __future__ import annotations

__all__ = ["CASE_IDS"]

#: Every case the suite runs, in order; the smoke test checks the JSON has each.
CASE_IDS: tuple[str, ...] = (
    "raw_ceiling",
    "single_client",
    "group_commit",
    "handler_vs_file",
    "handler_vs_syslog",
    "log_call",
    "failover_sigkill",
    "failover_sigstop",
    "hedged_share",
    "failover_sigkill_copies",
    "copies_throughput",
    "failover_restarted",
    "fork_workers",
    "discovery_join",
    "fleet_kill",
    "agent_join",
    "agent_fleet",
    "guard_cost",
    "hostile_load",
    "memory_client",
    "memory_server",
    "hostile_memory",
    "compression_disk",
    "compression_wire",
    "compression_speed",
    "compression_read",
    "read_throughput",
    "read_since",
    "follow_latency",
    "followers",
    "reader_rss",
    "hostile_categories",
    "restart",
    "repair",
)
