"""Memory: what a LogClient adds to an app, and a logserver's RSS under sustained load."""

from __future__ import annotations

from bench.cases.throughput import _many
from bench.common import BenchEnv, CaseResult, Row, rss_bytes, summary

MB = 1e6


def client(env: BenchEnv) -> CaseResult:
    server = env.server("always")
    del server  # registered under the shared path; the client finds it through ZooKeeper
    p = env.profile
    runs = [
        env.run_worker(
            "memory",
            {
                "zk_hosts": env.zk_hosts,
                "zk_path": env.zk_path("shared"),
                "rate": p.memory_rate,
                "steady_s": p.memory_steady_s,
                "burst": p.memory_burst,
            },
            timeout=300,
        )
        for _ in range(p.repeats)
    ]
    result = CaseResult("memory_client", "RSS a LogClient adds to an app (default policies)")
    result.rows.append(
        Row(
            label=f"client RSS added, {p.memory_rate:,} rec/s steady",
            unit="MB",
            figure=summary([r["added_steady"] / MB for r in runs]),
            target="<= 25 MB",
            op="<=",
            limit=25.0,
        ).evaluate()
    )
    result.rows.append(
        Row(
            label=f"  context: after a burst of {p.memory_burst:,} records",
            unit="MB",
            figure=summary([r["added_burst"] / MB for r in runs]),
            target="(info)",
        )
    )
    result.details = {"runs": runs}
    return result


def server(env: BenchEnv) -> CaseResult:
    if "always" not in env.server_peaks:
        _many(env, "always")  # run on its own: put the shared server under load first
    shared = env.server("always")
    assert shared.pid is not None
    peak_sampled = env.server_peaks["always"]
    hwm = rss_bytes(shared.pid, "VmHWM")
    result = CaseResult("memory_server", "logserver RSS under sustained load")
    result.rows.append(
        Row(
            label=f"server peak RSS, {env.profile.group_clients} clients at full speed",
            unit="MB",
            figure=summary([max(peak_sampled, hwm) / MB]),
            judge="value",
            target="<= 200 MB",
            op="<=",
            limit=200.0,
        ).evaluate()
    )
    result.details = {"sampled_peak_rss": peak_sampled, "vm_hwm": hwm}
    return result
