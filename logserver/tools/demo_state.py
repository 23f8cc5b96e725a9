"""What the failover demo saw and did, shared by its threads, its live display and its report.

The demo's threads (the app's output reader, the server sampler, the chaos
thread) write a :class:`DemoState`; the live display
(:mod:`logserver.tools.demo_live`) and the report
(:mod:`logserver.tools.demo_report`) read it under its lock. It lives apart from
all three so that none of them imports another.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from logserver.tools.demo_disk import LostDisk

__all__ = ["DemoState", "Event", "EventKind"]


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
