"""Hostile load: what legal requests sent as an attack cost the server and another client.

Each case starts a server of its own, measures a well-behaved client's calls
alone (the baseline), then again while the attack runs, and the figure the
attack used to blow up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BenchEnv, CaseResult, Row, rss_bytes, summary
from logserver.tools.launcher import LogServerProcess, wait_for

MiB = 2**20


@dataclass
class Attacked:
    """What :func:`_attack` measured."""

    #: The prober's calls without the attack, and during it (``bench.workers.prober``).
    alone: dict[str, Any]
    under_attack: dict[str, Any]
    #: The attacker worker's result.
    attack: dict[str, Any]
    #: The server's open descriptors at most, sampled during the attack.
    peak_fds: int

    def slowest_call(self, label: str, target: str, limit: float) -> Row:
        return Row(
            label=label,
            unit="s",
            figure=summary([self.under_attack["max_s"]]),
            judge="value",
            baseline_label="its slowest call alone",
            baseline=summary([self.alone["max_s"]]),
            target=target,
            op="<=",
            limit=limit,
        ).evaluate()


def _open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _attack(env: BenchEnv, server: LogServerProcess, attack: dict[str, Any]) -> Attacked:
    """Probe the server alone, then run the attacker worker while probing again."""
    pid = server.pid
    assert pid is not None
    alone = env.run_worker(
        "prober", {"server": server.endpoint, "seconds": env.profile.hostile_probe_s}, timeout=600
    )
    stop = env.workdir / f"{server.data_dir.name}.stop"
    ready = env.workdir / f"{server.data_dir.name}.probing"
    prober = env.worker(
        "prober",
        {
            "server": server.endpoint,
            "seconds": 600,
            "stop_file": str(stop),
            "ready_file": str(ready),
        },
    )
    wait_for(ready.exists, 60, what="the prober's first call")
    peak = [_open_fds(pid)]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.05):
            peak[0] = max(peak[0], _open_fds(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = env.run_worker("attacker", {"port": server.port, **attack}, timeout=900)
    finally:
        sampling.set()
        sampler.join(5)
        stop.touch()
    return Attacked(alone, prober.result(timeout=60), result, peak[0])


def memory_flood(env: BenchEnv) -> CaseResult:
    """Hundreds of the largest legal Log frames at once, on a server with default flags."""
    p = env.profile
    server = env.new_server("hostile-memory", zk_path=env.zk_path("hostile-memory"))
    assert server.pid is not None
    attacked = _attack(
        env,
        server,
        {"kind": "frames", "connections": p.hostile_frames, "log_bytes": p.hostile_frame_bytes},
    )
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
        attacked.slowest_call(
            "another client's slowest Append (1,000 records) during the flood",
            "<= 2 s (logclient's RPC timeout)",
            2.0,
        )
    )
    for answer in ("ok", "try_later"):
        result.rows.append(
            Row(
                label=f"  context: flood frames answered {answer.upper()}",
                unit="frames",
                figure=summary([attacked.attack["outcomes"].get(answer, 0)]),
                judge="value",
                target="(info)",
            )
        )
    result.details = {"attacked": vars(attacked), "vm_hwm": peak}
    return result


def category_bomb(env: BenchEnv) -> CaseResult:
    """One Append naming N new categories, let in by raised caps, on a server with fsync
    always: another client's slowest call meanwhile, and the server's descriptors."""
    count = env.profile.hostile_categories
    server = env.new_server(
        "hostile-categories",
        zk_path=env.zk_path("hostile-categories"),
        extra_args=["--max-batch-categories", str(count), "--max-categories", str(10 * count)],
    )
    attacked = _attack(env, server, {"kind": "categories", "categories": count})
    result = CaseResult(
        "hostile_categories", f"category bomb: one Append naming {count:,} categories"
    )
    result.rows.append(
        attacked.slowest_call(
            f"another client's slowest Append during a {count:,}-category batch", "< 1 s", 1.0
        )
    )
    result.rows.append(
        Row(
            label="server's open descriptors at most, meanwhile",
            unit="fds",
            figure=summary([attacked.peak_fds]),
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
            figure=summary([attacked.attack["elapsed_s"]]),
            judge="value",
            target="(info)",
        )
    )
    result.details = {"attacked": vars(attacked)}
    return result
