"""The failover demo's live display: a rich table of the app, the servers and the events
on a terminal, plain event lines otherwise (or with ``--no-live``).

Only reads :class:`logserver.tools.demo_state.DemoState`; rich is optional
(``logservice[demo]`` brings it), so without it the demo still runs and says why
there is no live display.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from typing import Any

from logserver.tools.demo_state import DemoState

__all__ = ["display"]


def display(
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
