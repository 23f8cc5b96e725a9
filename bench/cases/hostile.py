"""Hostile load: what legal requests sent as an attack cost the server and another client.

Each case starts a server of its own with default flags, measures a
well-behaved client's calls alone (the baseline), then again while the attack
runs, and the figure the attack used to blow up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import BenchEnv, CaseResult, Row, rss_bytes, summary

MiB = 2**20


def _probe(env: BenchEnv, server: str, **config: Any) -> dict[str, Any]:
    """Another client's Append calls for a while, timed (see ``bench.workers.prober``)."""
    return env.run_worker("prober", {"server": server, **config}, timeout=600)


def memory_flood(env: BenchEnv) -> CaseResult:
    p = env.profile
    server = env.new_server("hostile-memory", zk_path=env.zk_path("hostile-memory"))
    assert server.pid is not None
    alone = _probe(env, server.endpoint, seconds=p.hostile_probe_s)
    stop = Path(env.workdir / "hostile-memory.stop")
    prober = env.worker(
        "prober", {"server": server.endpoint, "seconds": 600, "stop_file": str(stop)}
    )
    attack = env.run_worker(
        "attacker",
        {
            "kind": "frames",
            "port": server.port,
            "connections": p.hostile_frames,
            "log_bytes": p.hostile_frame_bytes,
        },
        timeout=600,
    )
    stop.touch()
    under_attack = prober.result(timeout=60)
    peak = rss_bytes(server.pid, "VmHWM")
    frames = f"{p.hostile_frames} x {p.hostile_frame_bytes / MiB:.0f} MiB Log frames at once"
    result = CaseResult("hostile_memory", f"memory flood: {frames}")
    result.rows.append(
        Row(
            label=f"server peak RSS (VmHWM), {frames}",
            unit="MiB",
            figure=summary([peak / MiB]),
            judge="value",
            target="<= 600 MiB",
            op="<=",
            limit=600.0,
        ).evaluate()
    )
    result.rows.append(
        Row(
            label="another client's slowest Append (1,000 records) during the flood",
            unit="s",
            figure=summary([under_attack["max_s"]]),
            judge="value",
            baseline_label="its slowest call alone",
            baseline=summary([alone["max_s"]]),
            target="<= 2 s (logclient's RPC timeout)",
            op="<=",
            limit=2.0,
        ).evaluate()
    )
    for answer in ("ok", "try_later"):
        result.rows.append(
            Row(
                label=f"  context: flood frames answered {answer.upper()}",
                unit="frames",
                figure=summary([attack["outcomes"].get(answer, 0)]),
                judge="value",
                target="(info)",
            )
        )
    result.details = {
        "alone": alone,
        "under_attack": under_attack,
        "attack": attack,
        "vm_hwm": peak,
    }
    return result


def _open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def category_bomb(env: BenchEnv) -> CaseResult:
    """One Append naming N new categories, let in by raised caps, on a server with fsync
    always: another client's slowest call meanwhile, and the server's descriptors."""
    import threading

    count = env.profile.hostile_categories
    server = env.new_server(
        "hostile-categories",
        zk_path=env.zk_path("hostile-categories"),
        extra_args=["--max-batch-categories", str(count), "--max-categories", str(10 * count)],
    )
    pid = server.pid
    assert pid is not None
    alone = _probe(env, server.endpoint, seconds=env.profile.hostile_probe_s)
    stop = Path(env.workdir / "hostile-categories.stop")
    prober = env.worker(
        "prober", {"server": server.endpoint, "seconds": 600, "stop_file": str(stop)}
    )
    peak = [_open_fds(pid)]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.05):
            peak[0] = max(peak[0], _open_fds(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        bomb = env.run_worker(
            "attacker",
            {"kind": "categories", "port": server.port, "categories": count},
            timeout=900,
        )
    finally:
        sampling.set()
        sampler.join(5)
        stop.touch()
    under_attack = prober.result(timeout=60)
    result = CaseResult(
        "hostile_categories", f"category bomb: one Append naming {count:,} categories"
    )
    result.rows.append(
        Row(
            label=f"another client's slowest Append during a {count:,}-category batch",
            unit="s",
            figure=summary([under_attack["max_s"]]),
            judge="value",
            baseline_label="its slowest call alone",
            baseline=summary([alone["max_s"]]),
            target="< 1 s",
            op="<=",
            limit=1.0,
        ).evaluate()
    )
    result.rows.append(
        Row(
            label="server's open descriptors at most, meanwhile",
            unit="fds",
            figure=summary([peak[0]]),
            judge="value",
            target="< 4,096",
            op="<=",
            limit=4095.0,
        ).evaluate()
    )
    result.rows.append(
        Row(
            label=f"  context: the {count:,}-category batch took (fsync always)",
            unit="s",
            figure=summary([bomb["elapsed_s"]]),
            judge="value",
            target="(info)",
        )
    )
    result.details = {
        "alone": alone,
        "under_attack": under_attack,
        "bomb": bomb,
        "peak_fds": peak[0],
    }
    return result
