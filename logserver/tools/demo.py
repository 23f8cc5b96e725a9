"""``logserver demo``: the kill-a-node failover demo, with numbers and a picture.

It starts ZooKeeper and three logservers (or uses ``--zk``), runs an app
process that logs numbered messages through LogClient, and meanwhile kills the
server the app is sending to (SIGKILL every ``--kill-every`` seconds, restarted
a little later), freezes one once (SIGSTOP, then SIGCONT) and stops one
gracefully once (SIGTERM). At the end it reads everything back from every
server and checks each message is there exactly once.

The last line of standard output is one JSON object; the exit status is 0 only
when nothing was lost and nothing is duplicated after de-duplication.

This module is the scenario: the command line, the processes, the threads
that feed the app's output into the shared :class:`~logserver.tools.demo_state.DemoState`,
sample the servers and send the signals. What it shows while running is
:mod:`logserver.tools.demo_live`; the read-back and the verdict are
:mod:`logserver.tools.demo_report`; the files :mod:`logserver.tools.demo_files`;
the lost disk and its repair :mod:`logserver.tools.demo_disk`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from logserver.tools.demo_disk import lose_disk, repair_after_loss
from logserver.tools.demo_files import write_outputs
from logserver.tools.demo_live import display
from logserver.tools.demo_report import passed, print_report, verify
from logserver.tools.demo_state import DemoState, EventKind

__all__ = ["add_arguments", "run_demo"]


def add_arguments(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    """Add ``demo``."""
    p = sub.add_parser("demo", help="the kill-a-node failover demo")
    p.add_argument("--zk", help="use this ZooKeeper instead of starting one")
    p.add_argument("--servers", type=int, default=3)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of logging")
    p.add_argument("--rate", type=float, default=3000.0, help="messages per second")
    p.add_argument(
        "--kill-every", type=float, default=5.0, help="SIGKILL the current server this often"
    )
    p.add_argument(
        "--restart-after", type=float, default=1.5, help="seconds before a killed server restarts"
    )
    p.add_argument("--copies", type=int, default=1, help="copies of each batch the app stores (1)")
    p.add_argument(
        "--lose-disk",
        action="store_true",
        help="the first SIGKILL also deletes the server's data directory (it comes back "
        "empty); then forget and repair run. Needs --copies 2 or more",
    )
    p.add_argument("--out", type=Path, help="write report.json and timeline.png here")
    p.add_argument("--no-live", action="store_true", help="no live display (plain event lines)")
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from logserver.tools.launcher import (
        ExistingZooKeeper,
        LogServerProcess,
        stopping,
        zookeeper_from_env,
    )

    if args.lose_disk and args.copies < 2:
        print(
            "logserver demo: --lose-disk needs --copies 2 or more (with one copy a lost "
            "disk loses what only it held)",
            file=sys.stderr,
        )
        return 2
    if not 1 <= args.copies <= args.servers:
        print(
            f"logserver demo: --copies must be within 1..--servers ({args.servers})",
            file=sys.stderr,
        )
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="logserver-demo-"))
    zk = ExistingZooKeeper(args.zk) if args.zk else zookeeper_from_env(workdir=workdir / "zk")
    zk_path = f"/demo/{uuid.uuid4().hex[:8]}/logservers"
    servers = [
        LogServerProcess(
            zk_hosts=zk.hosts,
            data_dir=workdir / f"server-{i + 1}",
            zk_path=zk_path,
            session_timeout_s=4.0,
        )
        for i in range(args.servers)
    ]
    state = DemoState()
    with stopping(zk, *servers):
        for s in servers:
            s.start(wait=False)
        for s in servers:
            s.wait_ready()
        report = _run(args, zk.hosts, zk_path, servers, state, workdir)
    try:
        if args.out:
            with state.lock:
                samples, acked = list(state.samples), list(state.acked)
            write_outputs(args.out, report, samples=samples, acked=acked, started=state.started)
        print_report(report)
    finally:
        # Whatever happened to the files and the text report, the summary is the last line.
        print(json.dumps(report["summary"]), flush=True)
    return 0 if passed(report["summary"]) else 1


def _run(
    args: argparse.Namespace,
    zk_hosts: str,
    zk_path: str,
    servers: list[Any],
    state: DemoState,
    workdir: Path,
) -> dict[str, Any]:
    app = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logserver.tools.demo_app",
            "--zk",
            zk_hosts,
            "--zk-path",
            zk_path,
            "--rate",
            str(args.rate),
            "--duration",
            str(args.duration),
            "--spool-dir",
            str(workdir / "spool"),
            "--copies",
            str(args.copies),
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    final: dict[str, Any] = {}

    def read_app() -> None:
        assert app.stdout is not None
        for line in app.stdout:
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if doc.get("final"):
                    final.update(doc)
                else:
                    with state.lock:
                        state.app = doc
                        state.acked.append((float(doc["t"]), int(doc["acked"])))

    done = threading.Event()
    threads = [
        threading.Thread(target=read_app, daemon=True),
        threading.Thread(target=_sample_servers, args=(servers, state, done), daemon=True),
        threading.Thread(target=_chaos, args=(args, servers, state, done), daemon=True),
    ]
    for t in threads:
        t.start()
    display(args, state, servers, app)
    app.wait(timeout=args.duration + 180)
    done.set()
    threads[0].join(10)
    threads[2].join(30)
    # Every server must be up to read everything back.
    for s in servers:
        if not s.alive():
            s.start()
            state.event("restart", s.endpoint)
        else:
            with contextlib.suppress(ProcessLookupError):
                s.signal(signal.SIGCONT)
    threads[1].join(5)
    if args.lose_disk:
        # The operator's part: the lost disk is gone for good; make the copies again.
        for s in servers:
            s.wait_ready()
        repair_after_loss(
            zk_hosts, zk_path, args.copies, state.lost, lambda kind: state.event(kind, "-")
        )
    return verify(args, servers, state, final)


def _current_server(state: DemoState, servers: list[Any]) -> Any | None:
    with state.lock:
        current = state.app.get("server", "")
    return next((s for s in servers if s.endpoint == current and s.alive()), None)


def _chaos(
    args: argparse.Namespace, servers: list[Any], state: DemoState, done: threading.Event
) -> None:
    """SIGKILL the current server every --kill-every seconds; once a SIGSTOP, once a SIGTERM."""
    start = time.monotonic()
    step = 0
    plan: list[EventKind] = [
        "lose-disk" if args.lose_disk else "kill",
        "stop",
        "kill",
        "term",
    ]
    while not done.wait(0.05):
        if time.monotonic() - start < args.kill_every * (step + 1):
            continue
        if time.monotonic() - start > args.duration - 2:
            return
        victim = _current_server(state, servers)
        if victim is None:
            continue
        action = plan[step % len(plan)] if step < len(plan) else "kill"
        step += 1
        if action in ("kill", "lose-disk"):
            if action == "lose-disk":
                lose_disk(victim, state.lost)
            else:
                victim.kill()
            state.event(action, victim.endpoint)
            threading.Timer(args.restart_after, _restart, (victim, state)).start()
        elif action == "stop":
            victim.signal(signal.SIGSTOP)
            state.event("stop", victim.endpoint)
            threading.Timer(3.0, _resume, (victim, state)).start()
        else:
            state.event("term", victim.endpoint)
            threading.Thread(
                target=_terminate_and_restart, args=(victim, state), daemon=True
            ).start()


def _resume(server: Any, state: DemoState) -> None:
    server.signal(signal.SIGCONT)
    state.event("cont", server.endpoint)


def _terminate_and_restart(server: Any, state: DemoState) -> None:
    server.terminate()
    _restart(server, state)


def _restart(server: Any, state: DemoState) -> None:
    with contextlib.suppress(Exception):
        server.start()
        state.event("restart", server.endpoint)


def _sample_servers(servers: list[Any], state: DemoState, done: threading.Event) -> None:
    """Poll each server's stored-record count four times a second (the servers' own truth)."""
    from logserver.reader import connect
    from logwire.serverset import Endpoint

    last: dict[str, tuple[float, int]] = {}
    while not done.wait(0.25):
        for s in servers:
            if not s.alive():
                last.pop(s.endpoint, None)
                continue
            try:
                with connect(Endpoint.parse(s.endpoint), timeout=0.2) as client:
                    stored = int(client.Status().records_stored)
            except Exception:  # frozen or restarting: no sample
                continue
            now = time.time()
            with state.lock:
                state.samples.append((now, s.endpoint, stored))
                prev = last.get(s.endpoint)
                if prev is not None and stored >= prev[1] and now > prev[0]:
                    state.rates[s.endpoint] = (stored - prev[1]) / (now - prev[0])
            last[s.endpoint] = (now, stored)
