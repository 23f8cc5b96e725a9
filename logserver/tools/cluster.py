"""``logserver cluster``: start, status and stop a local cluster for an operator.

It uses the same launcher as the tests and the demo. The processes it starts
outlive the command (their own sessions); what they are is written to
``DIR/cluster.json`` so that ``status`` and ``stop`` can find them later.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from logserver.tools.launcher import (
    LogServerProcess,
    ZooKeeperEnsemble,
    four_letter_word,
    wait_for,
)

__all__ = ["add_arguments"]

STATE = "cluster.json"


def add_arguments(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    """Add ``cluster start|status|stop``."""
    parser = sub.add_parser("cluster", help="start, status and stop a local cluster")
    csub = parser.add_subparsers(dest="action", required=True)
    start = csub.add_parser("start", help="start ZooKeeper and N logservers")
    start.add_argument("--dir", type=Path, default=Path("cluster"), help="state and data")
    start.add_argument("--servers", type=int, default=3)
    start.add_argument("--ensemble", action="store_true", help="3 ZooKeeper nodes, not 1")
    start.add_argument("--zk", help="use this ZooKeeper instead of starting one")
    start.add_argument("--zk-path", default="/logservers")
    start.add_argument(
        "--base-port", type=int, default=9090, help="logserver N listens on base+N-1"
    )
    start.add_argument("--fsync", default="always", choices=["always", "interval", "never"])
    start.set_defaults(handler=_start)
    for name, handler in (("status", _status), ("stop", _stop)):
        p = csub.add_parser(name, help=f"{name} the cluster in --dir")
        p.add_argument("--dir", type=Path, default=Path("cluster"))
        p.set_defaults(handler=handler)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start(args: argparse.Namespace) -> int:
    base: Path = args.dir.resolve()
    state_file = base / STATE
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if any(_alive(p["pid"]) for p in state["processes"]):
            print(
                f"a cluster is already running from {base}; `logserver cluster stop --dir {args.dir}` first"
            )
            return 1
    base.mkdir(parents=True, exist_ok=True)
    processes: list[dict[str, Any]] = []
    if args.zk:
        hosts = args.zk
    else:
        zk = ZooKeeperEnsemble(size=3 if args.ensemble else 1, workdir=base / "zookeeper")
        zk.start()
        hosts = zk.hosts
        for node in zk.nodes:
            assert node.pid is not None
            processes.append(
                {
                    "kind": "zookeeper",
                    "pid": node.pid,
                    "address": node.address,
                    "log": str(node.workdir / "zookeeper.log"),
                }
            )
    servers = [
        LogServerProcess(
            zk_hosts=hosts,
            data_dir=base / f"logserver-{i + 1}",
            port=args.base_port + i if args.base_port else 0,
            zk_path=args.zk_path,
            fsync=args.fsync,
            session_timeout_s=6.0,
        )
        for i in range(args.servers)
    ]
    for s in servers:
        s.start(wait=False)
    for s in servers:
        s.wait_ready()
        processes.append(
            {
                "kind": "logserver",
                "pid": s.pid,
                "address": s.endpoint,
                "log": str(s.data_dir / "logserver.log"),
            }
        )
    state = {"zk": hosts, "zk_path": args.zk_path, "processes": processes}
    state_file.write_text(json.dumps(state, indent=2))
    print(f"ZooKeeper: {hosts}   registration path: {args.zk_path}")
    for p in processes:
        print(f"  {p['kind']:<10} pid {p['pid']:<8} {p['address']:<22} log {p['log']}")
    print(f"stop with: logserver cluster stop --dir {args.dir}")
    return 0


def _load(base: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((base / STATE).read_text())
        return state
    except (OSError, ValueError):
        print(f"no cluster state in {base}")
        return None


def _status(args: argparse.Namespace) -> int:
    state = _load(args.dir)
    if state is None:
        return 1
    from logserver.reader import list_servers

    down = 0
    for p in state["processes"]:
        alive = _alive(p["pid"])
        detail = ""
        if alive and p["kind"] == "zookeeper":
            host, port = p["address"].rsplit(":", 1)
            mode = [
                ln
                for ln in four_letter_word(host, int(port), "srvr").splitlines()
                if ln.startswith("Mode:")
            ]
            detail = mode[0] if mode else "not serving"
        down += not alive
        print(
            f"  {p['kind']:<10} pid {p['pid']:<8} {p['address']:<22} {'up' if alive else 'DOWN'} {detail}"
        )
    try:
        registered = list_servers(state["zk"], state["zk_path"], timeout=5.0)
        print(
            f"registered under {state['zk_path']}: "
            + ", ".join(f"{r.node}={r.member.endpoint}" for r in registered if r.member)
            or "none"
        )
    except Exception as exc:
        print(f"ZooKeeper not reachable: {exc}")
        down += 1
    return 0 if down == 0 else 1


def _stop(args: argparse.Namespace) -> int:
    state = _load(args.dir)
    if state is None:
        return 1
    # logservers first (they deregister and drain), ZooKeeper last.
    order = sorted(state["processes"], key=lambda p: p["kind"] == "zookeeper")
    for kind in ("logserver", "zookeeper"):
        group = [p for p in order if p["kind"] == kind and _alive(p["pid"])]
        for p in group:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p["pid"], signal.SIGCONT)
                os.kill(p["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in group:
            pid = int(p["pid"])
            try:
                wait_for(
                    lambda pid=pid: not _alive(pid),  # type: ignore[misc]
                    max(0.1, deadline - time.monotonic()),
                    interval_s=0.05,
                    what=f"pid {pid}",
                )
            except Exception:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p["pid"], signal.SIGKILL)
            print(f"  stopped {kind} pid {p['pid']}")
    return 0
