"""``logserver demo``: the kill-a-node failover demo, with numbers and a picture.

It starts ZooKeeper and three logservers (or uses ``--zk``), runs an app
process that logs numbered messages through LogClient, and meanwhile kills the
server the app is sending to (SIGKILL every ``--kill-every`` seconds, restarted
a little later), freezes one once (SIGSTOP, then SIGCONT) and stops one
gracefully once (SIGTERM). At the end it reads everything back from every
server and checks each message is there exactly once.

The last line of standard output is one JSON object; the exit status is 0 only
when nothing was lost and nothing is duplicated after de-duplication.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from logserver.tools.demo_disk import LostDisk, lose_disk, repair_after_loss
from logserver.tools.demo_files import write_outputs

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


#: What the demo did to a server (or, for forget and repair, to the cluster).
EventKind = Literal[
    "kill", "stop", "cont", "term", "restart", "lose-disk", "forget", "repair", "repaired"
]


@dataclass
class Event:
    t: float
    kind: EventKind
    server: str

    def label(self) -> str:
        return {
            "kill": "SIGKILL",
            "stop": "SIGSTOP",
            "cont": "SIGCONT",
            "term": "SIGTERM",
            "restart": "restart",
            "lose-disk": "SIGKILL + disk deleted",
            "forget": "forget",
            "repair": "repair",
            "repaired": "repaired",
        }[self.kind]


@dataclass
class DemoState:
    """What the live display and the report read; written by the demo's threads."""

    started: float = field(default_factory=time.time)
    app: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    samples: list[tuple[float, str, int]] = field(default_factory=list)  # (t, server, stored)
    acked: list[tuple[float, int]] = field(default_factory=list)  # (t, acknowledged to the app)
    rates: dict[str, float] = field(default_factory=dict)
    lost: LostDisk = field(default_factory=LostDisk)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def event(self, kind: EventKind, server: str) -> None:
        with self.lock:
            self.events.append(Event(time.time(), kind, server))


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
        _print_report(report)
    finally:
        # Whatever happened to the files and the text report, the summary is the last line.
        print(json.dumps(report["summary"]), flush=True)
    return 0 if _passed(report["summary"]) else 1


def _passed(s: dict[str, Any]) -> bool:
    """Nothing lost, nothing shown twice; with a lost disk, repair complete and every record
    back to its copies."""
    ok = s["lost"] == 0 and s["duplicates_after_dedup"] == 0
    if s.get("disks_lost"):
        ok = ok and s["repair_complete"] and s["min_copies"] >= s["copies"]
    return bool(ok)


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
    _display(args, state, servers, app)
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
    return _verify(args, servers, state, final)


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


def _verify(
    args: argparse.Namespace, servers: list[Any], state: DemoState, final: dict[str, Any]
) -> dict[str, Any]:
    """Read everything back from every server and count each numbered message."""
    from logserver.reader import merge_unique, read_server
    from logwire.serverset import Endpoint

    sent = int(final.get("sent", 0))
    raw_copies = 0
    counts: Counter[int] = Counter()
    streams = [list(read_server(Endpoint.parse(s.endpoint), "demo")) for s in servers]
    raw_copies = sum(len(st) for st in streams)
    holders: Counter[tuple[str, int, int]] = Counter()
    for stream in streams:  # on how many servers each record is
        holders.update({r.key for r in stream if r.key is not None})
    for record in merge_unique(streams):
        text = record.message.decode(errors="replace")
        if text.startswith("demo-"):
            counts[int(text[5:])] += 1
    present = {n for n in counts if 0 <= n < sent}
    with state.lock:
        events = list(state.events)
    stall_by_kind = _stalls_by_signal(events, final.get("stalls", []))
    summary = {
        "sent": sent,
        "acked": int(final.get("acked", 0)),
        "stored_unique": len(present),
        "lost": sent - len(present),
        "duplicates_after_dedup": sum(c - 1 for c in counts.values() if c > 1),
        "copies_before_dedup": raw_copies - len(present),
        "kills": sum(e.kind in ("kill", "lose-disk") for e in events),
        "sigstops": sum(e.kind == "stop" for e in events),
        "sigterms": sum(e.kind == "term" for e in events),
        "failovers": int(final.get("failovers", 0)),
        "dropped": int(final.get("dropped", 0)),
        "max_stall_ms": max(stall_by_kind.get("kill", 0.0), stall_by_kind.get("lose-disk", 0.0)),
        "max_stall_sigstop_ms": stall_by_kind.get("stop", 0.0),
        "max_stall_sigterm_ms": stall_by_kind.get("term", 0.0),
        "longest_stall_ms": float(final.get("max_stall_ms", -1)),
        "duration_s": args.duration,
        "rate": args.rate,
        "copies": args.copies,
        "min_copies": min(holders.values(), default=0),
    }
    if args.lose_disk:
        lost = state.lost
        summary |= {
            "disks_lost": len(lost.lost_ids),
            "repair_complete": lost.repair_status == 0 and bool(lost.repair.get("complete")),
            "repair_copied_batches": int(lost.repair.get("copied_batches", 0)),
            "repair_copied_records": int(lost.repair.get("copied_records", 0)),
            "repair_seconds": float(lost.repair.get("seconds", 0.0)),
        }
    return {
        "summary": summary,
        "lost_disk": state.lost.to_json() if args.lose_disk else None,
        "events": [{"t": e.t - state.started, "kind": e.kind, "server": e.server} for e in events],
        "servers": [s.endpoint for s in servers],
        "app_final": final,
    }


def _stalls_by_signal(events: list[Event], stalls: list[list[float]]) -> dict[str, float]:
    """The longest stall (ms) that began within 3 s after each kind of signal.

    A stall is an episode in which the app had records waiting and none was
    acknowledged; the app reports every one of 20 ms or more.
    """
    longest: dict[str, float] = {}
    for e in events:
        if e.kind not in ("kill", "stop", "term", "lose-disk"):
            continue
        around = [d for start, d in stalls if e.t - 0.2 <= start <= e.t + 3.0]
        if around:
            longest[e.kind] = max(longest.get(e.kind, 0.0), round(max(around) * 1000, 1))
    return longest


def _print_report(report: dict[str, Any]) -> None:
    s = report["summary"]
    ok = _passed(s)
    print()
    print(
        f"{'PASS' if ok else 'FAIL'}: {s['sent']} messages sent, {s['stored_unique']} stored once, "
        f"{s['lost']} lost, {s['duplicates_after_dedup']} duplicated after de-duplication."
    )
    print(
        f"  {s['kills']} SIGKILLs, {s['sigstops']} SIGSTOP, {s['sigterms']} SIGTERM of the server the app was using;"
        f" {s['failovers']} client failovers."
    )
    print(
        f"  Longest time with messages waiting and none acknowledged: {s['max_stall_ms']:.0f} ms"
        f" around a SIGKILL, {s['max_stall_sigterm_ms']:.0f} ms around the SIGTERM,"
        f" {s['max_stall_sigstop_ms']:.0f} ms around the SIGSTOP"
        " (a frozen server costs the hedge delay, not the RPC timeout)."
    )
    if s["copies"] == 1:
        print(
            f"  {s['copies_before_dedup']} records were stored on two servers (re-sent after an "
            "ambiguous failure) and removed when read."
        )
    else:
        print(
            f"  Each batch was stored on {s['copies']} servers; every record is now on at "
            f"least {s['min_copies']} (readers show each once)."
        )
    if s.get("disks_lost"):
        print(
            f"  {s['disks_lost']} data directory deleted with its server (SIGKILL + rm -r), "
            "the server back empty; then `logserver forget` and `logserver repair` copied "
            f"{s['repair_copied_batches']} batches ({s['repair_copied_records']} records) in "
            f"{s['repair_seconds']:.2f} s: repair {'complete' if s['repair_complete'] else 'INCOMPLETE'}."
        )


def _display(
    args: argparse.Namespace, state: DemoState, servers: list[Any], app: subprocess.Popen[str]
) -> None:
    """Live progress on a terminal (rich); plain event lines otherwise."""
    use_live = sys.stdout.isatty() and not args.no_live
    if use_live and importlib.util.find_spec("rich") is None:
        print(
            "demo: no live display: rich is not installed (pip install 'logservice[demo]')",
            file=sys.stderr,
        )
        use_live = False
    printed = 0
    if use_live:
        from rich.live import Live

        with Live(_render(state, servers), refresh_per_second=8, transient=False) as live:
            while app.poll() is None:
                live.update(_render(state, servers))
                time.sleep(0.125)
            live.update(_render(state, servers))
        return
    while app.poll() is None:
        time.sleep(0.25)
        with state.lock:
            events = state.events[printed:]
            printed += len(events)
            a = dict(state.app)
        for e in events:
            print(
                f"[{e.t - state.started:6.2f}s] {e.label():8} {e.server}  (sent {a.get('sent', 0)}, acked {a.get('acked', 0)})"
            )


def _render(state: DemoState, servers: list[Any]) -> Any:
    from rich.console import Group
    from rich.table import Table

    with state.lock:
        a = dict(state.app)
        events = list(state.events[-8:])
        rates = dict(state.rates)
    top = Table(title="kill-a-node failover demo", expand=False)
    for col in ("elapsed", "sent", "acked", "pending", "current server", "failovers", "stall now"):
        top.add_column(col, justify="right")
    sent, acked = a.get("sent", 0), a.get("acked", 0)
    top.add_row(
        f"{time.time() - state.started:5.1f}s",
        str(sent),
        str(acked),
        str(sent - acked),
        a.get("server", "-"),
        str(a.get("failovers", 0)),
        f"{a.get('stall_ms', 0):.0f} ms",
    )
    per = Table(title="servers")
    per.add_column("server")
    per.add_column("state")
    per.add_column("stored/s", justify="right")
    for s in servers:
        per.add_row(s.endpoint, "up" if s.alive() else "DOWN", f"{rates.get(s.endpoint, 0):.0f}")
    log = Table(title="events")
    log.add_column("t", justify="right")
    log.add_column("event")
    log.add_column("server")
    for e in events:
        log.add_row(f"{e.t - state.started:.2f}s", e.label(), e.server)
    return Group(top, per, log)
