"""The servers file: the live membership one discovery agent per host writes for every app there.

``logserver discovery-agent`` holds the host's only ZooKeeper session, watches
the registration path and writes what it sees to a local file;
``logclient.FileServers`` reads it. Both sides use this module, so the format
is written down once (``docs/servers-file.md`` shows an example)::

    {
      "format": "logservice-servers",
      "version": 1,
      "servers": [{"host": "10.0.0.7", "port": 9090,
                   "node": "member_0000000042", "order": 42}, ...],
      "state": "current",
      "written_at": 1767000000.25,
      "changed_at": 1767000000.25,
      "stale_since": null,
      "heartbeat_s": 5.0,
      "serial": 42,
      "source": {"zk_hosts": "zk1:2181,zk2:2181", "zk_path": "/logservers"},
      "agent": {"pid": 4242, "host": "app17", "started_at": 1766990000.0}
    }

- ``servers``: the ALIVE endpoints registered under ``source.zk_path``, one per
  endpoint (a restarted server's lingering ghost node counts once), sorted.
  Each may name its registration: ``node``, the member's znode (a new node for
  a known endpoint is a restart, news for a client that had given up on it),
  and ``order``, its place in registration order (the sequential node's
  counter: ``choice="leader"`` picks the lowest), and ``zone``, the failure
  domain it registered in (``logserver serve --zone``: clients spread a
  batch's copies across zones). All three are optional.
- ``state``: ``current`` (the agent is connected to ZooKeeper: the list is what
  ZooKeeper says now), ``stale`` (the agent lost ZooKeeper at ``stale_since``
  and keeps the last list it knew) or ``stopped`` (the agent exited cleanly;
  the list was current until then).
- ``written_at``: when this content was written (Unix time, seconds);
  ``changed_at``: when the list last changed, as this agent saw it.
- Freshness: while ``current``, the agent sets the file's modification time
  every ``heartbeat_s`` without rewriting it, so readers are not woken for
  nothing (a reader watching for renames and writes does not see it). The
  list's age is ``now - max(written_at, mtime)``. A reader treats the list as
  stale when ``state`` is not ``current`` or its age exceeds
  :data:`STALE_AFTER_HEARTBEATS` heartbeats: the agent is gone or stuck.
  Stale or not, the list is still the best one there is: readers keep using it.
- ``serial`` counts the writes of one agent process (``agent.pid``); it
  restarts with the agent.

Versioning: a reader accepts ``version`` 1 and ignores fields it does not
know; a change that old readers would misread gets a new version, which they
refuse (keeping their last good list) rather than guess at.

The file is replaced atomically (temporary file, fsync, rename, fsync of the
directory), so a reader sees the old content or the new, never half; a file
written some other way may be torn, and a reader must then keep its last good
list (:func:`parse` raises :class:`ServersFileError`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from logwire.errors import ServersFileError
from logwire.serverset import Endpoint, zone_problem

__all__ = [
    "FORMAT",
    "MAX_FILE_BYTES",
    "STALE_AFTER_HEARTBEATS",
    "STATES",
    "VERSION",
    "AgentInfo",
    "ListedServer",
    "ServersFile",
    "ServersFileError",
    "parse",
]

FORMAT = "logservice-servers"
VERSION = 1
STATES = ("current", "stale", "stopped")
#: A list not refreshed for this many heartbeats is stale (the agent is gone or stuck).
STALE_AFTER_HEARTBEATS = 3
#: Larger files are refused unread: 10,000 servers take about 400 kB.
MAX_FILE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class AgentInfo:
    """Which agent process wrote the file."""

    pid: int
    host: str
    started_at: float


@dataclass(frozen=True)
class ListedServer:
    """A server as the file lists it: its endpoint and, if known, its registration."""

    endpoint: Endpoint
    node: str = ""
    order: int | None = None
    zone: str = ""


@dataclass(frozen=True)
class ServersFile:
    """One version of the servers file (see the module's docstring for each field)."""

    servers: frozenset[Endpoint]
    zk_hosts: str
    zk_path: str
    state: str
    written_at: float
    changed_at: float
    heartbeat_s: float
    serial: int
    agent: AgentInfo
    stale_since: float | None = None
    #: The servers' registrations (node, order), one per endpoint of ``servers``; may be empty.
    registrations: tuple[ListedServer, ...] = ()
    version: int = field(default=VERSION)

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ServersFileError(f"state must be one of {', '.join(STATES)}, not {self.state!r}")
        if not (math.isfinite(self.heartbeat_s) and self.heartbeat_s > 0):
            raise ServersFileError(f"heartbeat_s must be positive, not {self.heartbeat_s!r}")
        for name in ("written_at", "changed_at"):
            if not math.isfinite(getattr(self, name)):
                raise ServersFileError(f"{name} must be a finite time")
        if self.stale_since is not None and not math.isfinite(self.stale_since):
            raise ServersFileError("stale_since must be a finite time or null")
        if self.serial < 0:
            raise ServersFileError("serial must not be negative")
        if self.registrations:
            endpoints = [r.endpoint for r in self.registrations]
            if len(set(endpoints)) != len(endpoints) or set(endpoints) != self.servers:
                raise ServersFileError("registrations must name each server exactly once")

    def __repr__(self) -> str:
        return (
            f"<ServersFile v{self.version} {self.state} serial={self.serial} "
            f"servers={sorted(map(str, self.servers))} path={self.zk_path}>"
        )

    @property
    def stale_after_s(self) -> float:
        """How long after its last refresh the list counts as stale."""
        return STALE_AFTER_HEARTBEATS * self.heartbeat_s

    def age(self, now: float, mtime: float | None = None) -> float:
        """Seconds since the agent last confirmed the list (``mtime``: the file's, if known)."""
        refreshed = self.written_at if mtime is None else max(self.written_at, mtime)
        return max(0.0, now - refreshed)

    def is_stale(self, now: float, mtime: float | None = None) -> bool:
        """True when the agent says so, or has not refreshed the list for too long."""
        return self.state != "current" or self.age(now, mtime) > self.stale_after_s

    def listed(self) -> tuple[ListedServer, ...]:
        """Every server with its registration where known, sorted by endpoint."""
        known = {r.endpoint: r for r in self.registrations}
        return tuple(known.get(e, ListedServer(e)) for e in sorted(self.servers))

    def evolve(self, **changes: Any) -> ServersFile:
        """A copy with ``changes`` (validated again)."""
        return replace(self, **changes)

    def to_json(self) -> bytes:
        """The file's bytes: indented, servers sorted, newline-terminated (easy to read and diff)."""
        doc = {
            "format": FORMAT,
            "version": self.version,
            "servers": [_server_json(s) for s in self.listed()],
            "state": self.state,
            "written_at": self.written_at,
            "changed_at": self.changed_at,
            "stale_since": self.stale_since,
            "heartbeat_s": self.heartbeat_s,
            "serial": self.serial,
            "source": {"zk_hosts": self.zk_hosts, "zk_path": self.zk_path},
            "agent": {
                "pid": self.agent.pid,
                "host": self.agent.host,
                "started_at": self.agent.started_at,
            },
        }
        return (json.dumps(doc, indent=2) + "\n").encode()


def parse(data: bytes) -> ServersFile:
    """Read a servers file; raise :class:`ServersFileError` for anything not wholly usable.

    An entry that is not a valid endpoint makes the whole file unusable rather
    than being skipped: a file with a broken entry is more likely torn or
    hand-edited wrongly than right in every other entry.
    """
    if len(data) > MAX_FILE_BYTES:
        raise ServersFileError(f"{len(data)} bytes, more than the {MAX_FILE_BYTES} allowed")
    if not data.strip():
        raise ServersFileError("empty")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServersFileError(f"not JSON (torn or garbage?): {exc}") from None
    if not isinstance(doc, dict):
        raise ServersFileError(f"not a JSON object: {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise ServersFileError(f"format is {doc.get('format')!r}, not {FORMAT!r}")
    version = doc.get("version")
    if type(version) is not int:
        raise ServersFileError(f"version must be an integer, not {version!r}")
    if version != VERSION:
        raise ServersFileError(
            f"version {version} is not {VERSION}: written by another version of the agent"
        )
    try:
        source = _object(doc, "source")
        agent = _object(doc, "agent")
        listed = tuple(_listed(e) for e in _list(doc, "servers"))
        return ServersFile(
            servers=frozenset(s.endpoint for s in listed),
            registrations=listed
            if any(s.node or s.order is not None or s.zone for s in listed)
            else (),
            zk_hosts=_str(source, "zk_hosts"),
            zk_path=_str(source, "zk_path"),
            state=_str(doc, "state"),
            written_at=_number(doc, "written_at"),
            changed_at=_number(doc, "changed_at"),
            stale_since=None if doc.get("stale_since") is None else _number(doc, "stale_since"),
            heartbeat_s=_number(doc, "heartbeat_s"),
            serial=_int(doc, "serial"),
            agent=AgentInfo(
                pid=_int(agent, "pid"),
                host=_str(agent, "host"),
                started_at=_number(agent, "started_at"),
            ),
            version=version,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ServersFileError):
            raise
        raise ServersFileError(f"bad field: {exc}") from None


def _object(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc[key]
    if not isinstance(value, dict):
        raise ServersFileError(f"{key} must be an object")
    return value


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc[key]
    if not isinstance(value, list):
        raise ServersFileError(f"{key} must be a list")
    return value


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc[key]
    if not isinstance(value, str):
        raise ServersFileError(f"{key} must be a string")
    return value


def _int(doc: dict[str, Any], key: str) -> int:
    value = doc[key]
    if type(value) is not int:
        raise ServersFileError(f"{key} must be an integer")
    return value


def _number(doc: dict[str, Any], key: str) -> float:
    value = doc[key]
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ServersFileError(f"{key} must be a finite number")
    return float(value)


def _server_json(server: ListedServer) -> dict[str, Any]:
    entry: dict[str, Any] = {"host": server.endpoint.host, "port": server.endpoint.port}
    if server.node:
        entry["node"] = server.node
    if server.order is not None:
        entry["order"] = server.order
    if server.zone:
        entry["zone"] = server.zone
    return entry


def _listed(entry: Any) -> ListedServer:
    endpoint = _endpoint(entry)
    node = entry.get("node", "")
    order = entry.get("order")
    if not isinstance(node, str) or "/" in node or any(c.isspace() for c in node):
        raise ServersFileError(f"bad server node {node!r}")
    if order is not None and (type(order) is not int or order < 0):
        raise ServersFileError(f"bad server order {order!r}")
    zone = entry.get("zone", "")
    if zone != "" and (not isinstance(zone, str) or zone_problem(zone) is not None):
        raise ServersFileError(f"bad server zone {zone!r}")
    return ListedServer(endpoint, node, order, zone)


def _endpoint(entry: Any) -> Endpoint:
    if not isinstance(entry, dict):
        raise ServersFileError(f"a server must be an object with host and port, not {entry!r}")
    host, port = entry.get("host"), entry.get("port")
    if not isinstance(host, str) or not host or any(c.isspace() for c in host):
        raise ServersFileError(f"bad server host {host!r}")
    if type(port) is not int or not 0 < port < 65536:
        raise ServersFileError(f"bad server port {port!r}")
    return Endpoint(host, port)
