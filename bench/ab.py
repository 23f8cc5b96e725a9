"""A/B of one client against one server: where the time of ``single_client`` goes.

The suite says *whether* a target holds; this says *why*, and whether a change
helps. It starts ZooKeeper and one ``logserver`` (from this tree) with the
shared launcher, then runs the ``throughput`` worker (300,000 x 100 B by
default) ``--runs`` times per tree, the trees alternating so that a noisy
neighbour hits both, and prints per run and as medians: records/s, the app's
``log()`` loop, and the CPU per record of the client process (start-up
included) and of the server (``/proc/<pid>/stat`` around the run)::

    .venv/bin/python -m bench.ab --runs 10
    git worktree add /tmp/base HEAD~1
    .venv/bin/python -m bench.ab --runs 10 --trees /tmp/base,.    # client code of two trees

Client code comes from each tree (``PYTHONPATH``); the server is this tree's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from logserver.tools.launcher import LogServerProcess, ZooKeeperEnsemble

REPO = Path(__file__).resolve().parents[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6, help="runs per tree")
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--fsync", default="always", choices=("always", "interval", "never"))
    parser.add_argument("--trees", default=str(REPO), help="comma-separated checkouts")
    parser.add_argument("--no-spool", action="store_true", help="SpoolPolicy.disabled()")
    args = parser.parse_args()
    trees = [str(Path(t).resolve()) for t in args.trees.split(",")]

    work = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    zk = ZooKeeperEnsemble(1, workdir=work / "zk").start()
    server = LogServerProcess(zk_hosts=zk.hosts, data_dir=work / "server", fsync=args.fsync)
    server.start()
    assert server.pid is not None
    results: dict[str, list[tuple[float, float, float, float]]] = {t: [] for t in trees}
    try:
        for i in range(args.runs * len(trees)):
            tree = trees[i % len(trees)]
            config = {"servers": [server.endpoint], "records": args.records}
            if args.no_spool:
                config["no_spool"] = True
            env = dict(os.environ, PYTHONPATH=tree, XDG_STATE_HOME=str(work / "state"))
            server_before, client_before = _cpu_seconds(server.pid), _children_cpu()
            out = subprocess.run(
                [sys.executable, "-m", "bench.workers.throughput", json.dumps(config)],
                cwd=tree,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
            server_cpu = _cpu_seconds(server.pid) - server_before
            client_cpu = _children_cpu() - client_before
            result = json.loads(out.stdout.strip().splitlines()[-1])
            n = result["records"]
            row = (
                result["rate"],
                result["log_seconds"],
                client_cpu / n * 1e6,
                server_cpu / n * 1e6,
            )
            results[tree].append(row)
            print(
                f"{tree}: {row[0] / 1e3:,.0f}k rec/s, log() loop {row[1]:.3f} s, "
                f"CPU per record: client {row[2]:.2f} us, server {row[3]:.2f} us, "
                f"spilled {result['spilled']}",
                flush=True,
            )
    finally:
        server.stop()
        zk.stop()
    print("medians:")
    for tree, rows in results.items():
        rate, log_s, client, srv = (statistics.median(col) for col in zip(*rows, strict=True))
        print(
            f"  {tree}: {rate / 1e3:,.0f}k rec/s, log() loop {log_s:.3f} s, "
            f"client {client:.2f} us/rec, server {srv:.2f} us/rec (n={len(rows)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
