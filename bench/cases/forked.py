"""Pre-fork workers: the parent's client inherited through fork() against one client per worker.

The ``forked`` worker (see :mod:`bench.workers.forked`) forks 4 workers that
each log ``fork_records`` 100-byte records as fast as they can and flush; in
one run the parent made the client before the fork (gunicorn ``--preload``:
each worker's copy starts afresh on its first ``log()``: producer, queue,
sender thread, ZooKeeper session), in the other each worker makes its own.
Runs alternate (own, inherited, own, ...), so a noisy neighbour hits both;
the ratio is formed per pair. Servers from ZooKeeper, the shared server
(``fsync=always``), default policies.
"""

from __future__ import annotations

from bench.common import BenchEnv, CaseResult, Row, summary

WORKERS = 4


def fork_workers(env: BenchEnv) -> CaseResult:
    server = env.server("always")
    path = env.zk_path("shared")
    runs: dict[str, list[dict[str, object]]] = {"own": [], "inherited": []}
    for n in range(env.profile.repeats):
        for mode in ("own", "inherited"):
            runs[mode].append(
                env.run_worker(
                    "forked",
                    {
                        "zk_hosts": env.zk_hosts,
                        "zk_path": path,
                        "mode": mode,
                        "workers": WORKERS,
                        "records": env.profile.fork_records,
                        "out_dir": str(env.workdir / "forked" / f"{mode}-{n}"),
                    },
                    timeout=600,
                )
            )
    own = [float(r["rate"]) for r in runs["own"]]  # type: ignore[arg-type]
    inherited = [float(r["rate"]) for r in runs["inherited"]]  # type: ignore[arg-type]
    result = CaseResult(
        "fork_workers",
        f"{WORKERS} forked workers logging: the parent's client inherited vs one made in each",
    )
    result.rows.append(
        Row(
            label=f"{WORKERS} workers, client made before fork(): records/s acknowledged",
            unit="rec/s",
            figure=summary(inherited),
            baseline_label=f"{WORKERS} workers, each making its own client",
            baseline=summary(own),
            ratio_def="inherited / own (per pair of runs)",
            ratio=summary([i / o for i, o in zip(inherited, own, strict=True)]),
            target="ratio >= 0.9",
            target_on="ratio",
            op=">=",
            limit=0.9,
        ).evaluate()
    )
    result.details = {"server": server.endpoint, "runs": runs}
    return result
