"""The discovery agent: one ZooKeeper session per host, the live servers in a local file.

The watching is logclient's :class:`~logclient.discovery.ZooKeeperServers`,
the same code every client would otherwise run: ghosts counted once by
endpoint, only ALIVE members, malformed nodes skipped, the path's deletion
and re-creation followed, and the last good membership kept through an
outage. The agent adds what a file needs: it writes the list when it
changes, marks it ``stale`` while ZooKeeper is unreachable (without emptying
it), refreshes its mtime every heartbeat while it is current, and marks it
``stopped`` when it exits cleanly.

One thread (the caller's) does all of it: a listener on the watcher only
wakes it, and it also looks at the connection state every
``check_interval_s``, so a lost connection is in the file within that time.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from logserver.agent._file import ServersFileWriter
from logserver.errors import ConfigError
from logwire.serversfile import AgentInfo, ListedServer, ServersFile
from logwire.zktls import ZkTLSPolicy

if TYPE_CHECKING:
    from logclient.discovery import KnownServer

__all__ = ["AgentPolicy", "DiscoveryAgent", "WatchedServers"]

# stdlib logging, not structlog: the agent runs on app hosts, where a plain install of the
# package (the client's dependencies) is all there is. The command routes it through the
# server's JSON renderer when structlog is installed. Messages start with the event's name.
logger = logging.getLogger("logserver.agent")

# How often "still waiting for ZooKeeper" is repeated before the first answer.
_WAITING_LOG_INTERVAL_S = 10.0


@dataclass(frozen=True)
class AgentPolicy:
    """How the agent watches and writes.

    ``heartbeat_s``: how often the file's mtime is refreshed while the list is
    current (readers call a list stale after three missed heartbeats).
    ``check_interval_s``: how often the ZooKeeper connection state is looked
    at, i.e. how soon an outage shows in the file. ``session_timeout_s``: the
    agent's ZooKeeper session. ``file_mode``: the file's permissions (apps of
    other users must be able to read it).
    """

    heartbeat_s: float = 5.0
    check_interval_s: float = 0.2
    session_timeout_s: float = 10.0
    file_mode: int = 0o644

    def __post_init__(self) -> None:
        for name in ("heartbeat_s", "check_interval_s", "session_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.check_interval_s > self.heartbeat_s:
            raise ConfigError("check_interval_s must not exceed heartbeat_s")
        if not 0 <= self.file_mode <= 0o777:
            raise ConfigError(f"file_mode must be a permission mode, not {self.file_mode!r}")


class WatchedServers(Protocol):
    """What the agent needs of a watcher: :class:`~logclient.discovery.ZooKeeperServers`."""

    def start(self) -> None: ...

    def members(self) -> tuple[KnownServer, ...]:
        """The ALIVE servers, one per endpoint, with their member node and order."""
        ...

    def subscribe_members(self, listener: Callable[[tuple[KnownServer, ...]], None]) -> None:
        """Call ``listener`` on every change, a known endpoint's new registration included."""
        ...

    def connection(self) -> tuple[bool, bool]:
        """(answered: ZooKeeper has said what the members are, connected: it is reachable now)."""
        ...

    def close(self, timeout: float = 5.0) -> None: ...


class _ZooKeeperWatch:
    """:class:`~logclient.discovery.ZooKeeperServers` with the connection state the agent reads."""

    def __init__(
        self, zk_hosts: str, zk_path: str, session_timeout_s: float, tls: ZkTLSPolicy | None
    ) -> None:
        from logclient.discovery import ZooKeeperServers

        self._source = ZooKeeperServers(
            zk_hosts, zk_path, session_timeout_s=session_timeout_s, tls=tls
        )

    def __repr__(self) -> str:
        return repr(self._source)

    def start(self) -> None:
        self._source.start()

    def members(self) -> tuple[KnownServer, ...]:
        return self._source.members()

    def subscribe_members(self, listener: Callable[[tuple[KnownServer, ...]], None]) -> None:
        self._source.subscribe_members(listener)

    def connection(self) -> tuple[bool, bool]:
        stats = self._source.stats()
        return stats.answered, stats.connected

    def close(self, timeout: float = 5.0) -> None:
        self._source.close(timeout)


def zookeeper_watch(
    zk_hosts: str, zk_path: str, *, session_timeout_s: float, tls: ZkTLSPolicy | None
) -> WatchedServers:
    """The agent's one ZooKeeper session (the only place it is made)."""
    from logclient.errors import DiscoveryError

    try:
        return _ZooKeeperWatch(zk_hosts, zk_path, session_timeout_s, tls)
    except DiscoveryError as exc:
        raise ConfigError(str(exc)) from exc


class DiscoveryAgent:
    """Watches ``zk_path`` and keeps ``file`` listing its live servers (see the module's docstring).

    :meth:`run` blocks until :meth:`request_stop` (e.g. from a signal handler).
    ``watch`` is the seam for tests: any :class:`WatchedServers`; by default
    the ZooKeeper watch.
    """

    def __init__(
        self,
        zk_hosts: str,
        zk_path: str,
        file: Path,
        policy: AgentPolicy = AgentPolicy(),
        *,
        tls: ZkTLSPolicy | None = None,
        watch: WatchedServers | None = None,
    ) -> None:
        self.zk_hosts = zk_hosts
        self.zk_path = zk_path
        self.policy = policy
        self.writer = ServersFileWriter(file, mode=policy.file_mode)
        self._tls = tls
        self._watch = watch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._info = AgentInfo(pid=os.getpid(), host=socket.gethostname(), started_at=time.time())
        # The running thread's:
        self._written: ServersFile | None = None
        self._serial = 0
        self._refreshed = 0.0  # time.monotonic() of the last write or heartbeat
        self._failure: str | None = None

    def __repr__(self) -> str:
        written = self._written
        what = (
            f"{written.state} serial={written.serial} servers={len(written.servers)}"
            if written is not None
            else "nothing written"
        )
        return f"<DiscoveryAgent {self.zk_hosts}{self.zk_path} -> {self.writer.path} {what}>"

    @property
    def written(self) -> ServersFile | None:
        """What this agent last wrote (None before its first write)."""
        return self._written

    def request_stop(self, signum: int | None = None, _frame: object = None) -> None:
        """Ask :meth:`run` to return (safe from a signal handler)."""
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Lock the file, watch ZooKeeper and keep the file current until asked to stop."""
        self.writer.acquire()
        try:
            for leftover in self.writer.remove_leftovers():
                logger.info("removed_leftover file=%s", leftover)
            previous, problem = self.writer.read_existing()
            logger.info(
                "agent_started zk=%s zk_path=%s file=%s previous_servers=%s previous_problem=%s",
                self.zk_hosts,
                self.zk_path,
                self.writer.path,
                len(previous.servers) if previous else None,
                problem,
            )
            watch = self._watch or zookeeper_watch(
                self.zk_hosts,
                self.zk_path,
                session_timeout_s=self.policy.session_timeout_s,
                tls=self._tls,
            )
            watch.subscribe_members(lambda _members: self._wake.set())
            watch.start()
            try:
                self._loop(watch, previous)
            finally:
                watch.close(5.0)
                self._write_stopped()
        finally:
            self.writer.release()
            logger.info("agent_stopped file=%s", self.writer.path)

    # ------------------------------------------------------------------ loop

    def _loop(self, watch: WatchedServers, previous: ServersFile | None) -> None:
        started = time.monotonic()
        next_waiting_log = started + _WAITING_LOG_INTERVAL_S
        while not self._stop.is_set():
            self._wake.wait(self.policy.check_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            answered, connected = watch.connection()
            if not answered:
                # Until ZooKeeper has answered, the file a previous agent left is the best
                # there is: leave it (its age tells readers how old it is).
                if time.monotonic() >= next_waiting_log:
                    next_waiting_log += _WAITING_LOG_INTERVAL_S
                    logger.warning(
                        "zookeeper_waiting zk=%s waited_s=%.1f file_left_as_is=%s",
                        self.zk_hosts,
                        time.monotonic() - started,
                        self.writer.path,
                    )
                continue
            listed = tuple(
                ListedServer(m.endpoint, m.node, m.order, m.zone) for m in watch.members()
            )
            self._update(listed, "current" if connected else "stale", previous)

    def _update(
        self, listed: tuple[ListedServer, ...], state: str, previous: ServersFile | None
    ) -> None:
        written = self._written
        if written is None or listed != written.listed() or state != written.state:
            self._write(listed, state, written or previous)
        elif state == "current" and time.monotonic() - self._refreshed >= self.policy.heartbeat_s:
            try:
                if not self.writer.touch():
                    logger.warning("servers_file_replaced file=%s", self.writer.path)
                    self._write(listed, state, written)
                    return
            except OSError as exc:
                self._failed("heartbeat", exc)
                return
            self._refreshed = time.monotonic()

    def _write(
        self, listed: tuple[ListedServer, ...], state: str, before: ServersFile | None
    ) -> None:
        """Write ``listed`` in ``state``. A server registered anew (same endpoint, new node)
        is a change of the list too: a client learns that it restarted."""
        now = time.time()
        servers = frozenset(s.endpoint for s in listed)
        changed = before is None or listed != before.listed()
        if state == "current":
            stale_since = None
        elif before is not None and before.stale_since is not None:
            stale_since = before.stale_since
        else:
            stale_since = now
        document = ServersFile(
            servers=servers,
            registrations=listed
            if any(s.node or s.order is not None or s.zone for s in listed)
            else (),
            zk_hosts=self.zk_hosts,
            zk_path=self.zk_path,
            state=state,
            written_at=now,
            changed_at=now if changed or before is None else before.changed_at,
            stale_since=stale_since,
            heartbeat_s=self.policy.heartbeat_s,
            serial=self._serial + 1,
            agent=self._info,
        )
        try:
            self.writer.write(document)
        except OSError as exc:
            self._failed("write", exc)  # tried again at the next check
            return
        self._serial += 1
        self._written = document
        self._refreshed = time.monotonic()
        if self._failure is not None:
            logger.info("servers_file_writable_again file=%s", self.writer.path)
            self._failure = None
        old = before.servers if before is not None else frozenset()
        logger.info(
            "servers_file_written state=%s servers=%d added=%s removed=%s serial=%d",
            state,
            len(servers),
            ",".join(sorted(map(str, servers - old))) or "-",
            ",".join(sorted(map(str, old - servers))) or "-",
            document.serial,
        )

    def _failed(self, what: str, exc: OSError) -> None:
        """Log a failure once until it changes or clears (a full disk would repeat every check)."""
        failure = f"{what}: {exc}"
        if failure != self._failure:
            logger.error("servers_file_failed file=%s error=%s", self.writer.path, failure)
            self._failure = failure

    def _write_stopped(self) -> None:
        """On a clean exit: the list stays (readers keep using it), marked ``stopped``."""
        written = self._written
        if written is None:
            return
        self._write(written.listed(), "stopped", written)
