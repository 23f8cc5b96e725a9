"""What the fault tests need besides ``tests/delivery.py``: watching a client's progress,
reading a server's own log, looking at registrations, and direct calls to one server."""

from __future__ import annotations

import collections
import json
import threading
import time
import uuid
from typing import Any

from logclient import LogClient
from logserver.reader import connect, list_servers
from logserver.tools.launcher import LogServerProcess
from logwire.idl import log_thrift
from logwire.serverset import Endpoint
from tests.delivery import progress
from tests.helpers import number_of
from tests.readback import read_server

__all__ = [
    "AckWatch",
    "append_probe",
    "keep_logging_for",
    "numbers_on",
    "registrations",
    "scribe_log",
    "server_events",
    "status",
]


class AckWatch:
    """Samples a client's stats every 10 ms on a thread: the longest time without a new
    acknowledgement (the stall a fault caused) and the fewest servers it knew meanwhile."""

    def __init__(self, client: LogClient, interval: float = 0.01) -> None:
        self.client = client
        self.interval = interval
        self.longest_stall = 0.0
        self.fewest_known: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ack-watch", daemon=True)

    def __enter__(self) -> AckWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def reset(self) -> None:
        """Forget the figures so far (measure one phase of a test)."""
        self.longest_stall = 0.0
        self.fewest_known = None

    def _run(self) -> None:
        last_acked = self.client.stats().acknowledged
        last_change = time.monotonic()
        while not self._stop.wait(self.interval):
            stats = self.client.stats()
            now = time.monotonic()
            known = len(stats.known_servers)
            self.fewest_known = (
                known if self.fewest_known is None else min(self.fewest_known, known)
            )
            if stats.acknowledged != last_acked:
                last_acked, last_change = stats.acknowledged, now
            self.longest_stall = max(self.longest_stall, now - last_change)

    def __repr__(self) -> str:
        return f"<AckWatch stall={self.longest_stall:.2f}s fewest_known={self.fewest_known}>"


def keep_logging_for(client: LogClient, seconds: float, records: int = 500) -> None:
    """For ``seconds``, require the client to acknowledge ``records`` more at least every 5 s:
    holds a fault for its duration while checking that logging goes on throughout."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        progress(client, records, timeout=5)


def numbers_on(server: LogServerProcess | str, prefix: str, category: str = "app") -> list[int]:
    """The numbers of the ``prefix-NNNNNN`` messages a server holds, in storage order."""
    endpoint = server.endpoint if isinstance(server, LogServerProcess) else server
    found = (number_of(r.message, prefix) for r in read_server(endpoint, category))
    return [n for n in found if n is not None]


def server_events(server: LogServerProcess, event: str) -> list[dict[str, Any]]:
    """The lines of the server's own JSON log (all its runs) whose event is ``event``."""
    path = server.log_path or server.data_dir / "logserver.log"
    found = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == event:
            found.append(entry)
    return found


def registrations(zk_hosts: str, zk_path: str) -> dict[str, list[str]]:
    """Endpoint -> the names of the nodes registered for it (a fresh session for every look)."""
    nodes: dict[str, list[str]] = collections.defaultdict(list)
    for registered in list_servers(zk_hosts, zk_path, timeout=10):
        if registered.member is not None:
            nodes[str(registered.member.endpoint)].append(registered.node)
    return dict(nodes)


def append_probe(server: LogServerProcess, records: int = 1) -> Any:
    """One ``Append`` of ``records`` records in category ``probe`` on a fresh connection."""
    batch = log_thrift.AppendBatch(
        producer=f"probe-{uuid.uuid4().hex[:12]}",
        sequence=0,
        entries=[
            log_thrift.LogEntry(category="probe", message=f"probe-{i}") for i in range(records)
        ],
    )
    with connect(Endpoint.parse(server.endpoint), timeout=5) as client:
        return client.Append(batch)


def scribe_log(server: LogServerProcess) -> int:
    """One raw Scribe ``Log`` call (thriftpy2, framed binary); the ResultCode it answered."""
    with connect(Endpoint.parse(server.endpoint), timeout=5) as client:
        return int(client.Log([log_thrift.LogEntry(category="probe", message="scribe")]))


def status(server: LogServerProcess) -> tuple[str, str]:
    """(Ping's answer, Status().state) on a fresh connection."""
    with connect(Endpoint.parse(server.endpoint), timeout=5) as client:
        return client.Ping(), client.Status().state
