"""FileServers: the servers a host's discovery agent lists in a local file; no ZooKeeper here.

At fleet scale every worker process with its own ZooKeeper session costs the
ensemble a session and a watch per process, and ZooKeeper's ``maxClientCnxns``
(60 connections per client address by default) stops the 61st worker of a
host from discovering anything. ``logserver discovery-agent`` holds one
session per host and writes the live servers to a file; apps read the file.

Import-light: this module loads neither kazoo nor thriftpy2, and a process
that only reads the file opens no network connection for discovery at all.
A child process after ``fork()`` keeps reading the file (on its first use
there, the watcher restarts in the child) and needs no ZooKeeper session of
its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from logclient._filewatch import Reading, file_watcher
from logclient._membership import Membership
from logclient._source import KnownServer, Listener, MemberListener
from logclient.errors import DiscoveryError
from logwire.serverset import Endpoint
from logwire.serversfile import ServersFile

__all__ = ["SERVERS_FILE_ENV", "FileServers", "FileServersStats", "servers_file_from_env"]

logger = logging.getLogger("logclient.discovery")

#: Set to a path, it makes every ``LogClient(zk_hosts, ...)`` read that file instead.
SERVERS_FILE_ENV = "LOGCLIENT_SERVERS_FILE"


@dataclass(frozen=True)
class FileServersStats:
    """A snapshot of a :class:`FileServers`, for health checks and tests.

    ``state``: ``NOT_STARTED``, ``WATCHING`` or ``CLOSED``; ``mode``:
    ``inotify`` or ``poll``. ``answered``: a usable file was read. ``servers``:
    how many are known now (the last good list). ``updates``: changes of the
    list. ``bad_reads``: readings that were unusable (torn, garbage, another
    path's list, a newer version); ``missing``: the file is not there now;
    ``problem``: why the last reading was not used (None when it was).
    From the last usable file: ``agent_state`` (``current``, ``stale``,
    ``stopped``), ``serial``, ``age_s`` (seconds since the agent last
    confirmed the list) and ``stale`` (the agent says so, or it has not
    refreshed the file for three heartbeats; the list is used all the same).
    """

    path: str
    state: str
    mode: str
    answered: bool
    servers: int
    updates: int
    bad_reads: int
    missing: bool
    problem: str | None
    agent_state: str | None
    serial: int | None
    age_s: float | None
    stale: bool
    last_update: float | None


class FileServers:
    """The live logservers as the host's discovery agent lists them in ``path``.

    ``LogClient(servers=FileServers("/var/lib/logservice/servers.json"))``.
    ``start()`` reads the file at once (so a new client has its servers before
    its first record), then one thread per process, shared by every
    FileServers in it, notices changes: inotify on Linux, else a ``stat`` every
    ``poll_interval_s``. The list is the last *good* one: a missing, torn or
    garbage file, or one from a newer agent, is logged and counted, and the
    servers known stay. Only a usable file replaces them, even with an empty
    list (ZooKeeper said there are no servers). A stale file (the agent lost
    ZooKeeper, or stopped refreshing it) is used all the same, and logged.

    ``zk_path``, if given, is the registration path the file must come from:
    a file listing another path's servers is refused, so that a client is
    never pointed at another cluster.

    Listeners run on the watcher thread and must not block. ``close()`` stops
    the shared thread when it was the last user. Safe across ``fork()``: in
    the child, the first call (a client's first use) replaces the locks and
    restarts the watching; nothing runs in a fork hook.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        poll_interval_s: float = 1.0,
        inotify: bool = True,
        zk_path: str | None = None,
    ) -> None:
        try:
            text = os.fspath(path)
        except TypeError as exc:
            raise DiscoveryError(f"servers file path must be a path, not {path!r}") from exc
        if not isinstance(text, str) or not text or "\x00" in text:
            raise DiscoveryError(f"invalid servers file path {path!r}")
        if not 0.01 <= poll_interval_s <= 3600:
            raise DiscoveryError(f"poll_interval_s must be in [0.01, 3600], not {poll_interval_s}")
        if zk_path is not None and not zk_path.startswith("/"):
            raise DiscoveryError(f"zk_path must be an absolute ZooKeeper path, not {zk_path!r}")
        self.path = os.path.abspath(text)
        self.poll_interval_s = poll_interval_s
        self.inotify = inotify
        self.zk_path = zk_path
        self._members = Membership(self.path)
        self._lock = threading.Lock()
        self._pid = os.getpid()  # the process whose locks these are
        # Guarded by _lock:
        self._state = "NOT_STARTED"
        self._token: int | None = None
        self._document: ServersFile | None = None
        self._inode: tuple[int, int] | None = None
        self._mtime: float | None = None
        self._missing = False
        self._problem: str | None = None
        self._bad_reads = 0
        self._logged_mismatch: str | None = None

    def __repr__(self) -> str:
        self._here()
        with self._lock:
            state, problem = self._state, self._problem
        extra = f" problem={problem!r}" if problem else ""
        return f"<FileServers {self.path} state={state}{extra} {self._members!r}>"

    # ---------------------------------------------------------------- public

    def start(self) -> None:
        """Read the file and start watching it (idempotent); never blocks on the network."""
        self._here()
        with self._lock:
            if self._state == "CLOSED":
                raise DiscoveryError("FileServers was closed; create a new one")
            if self._state == "WATCHING":
                return
            self._state = "WATCHING"
        try:
            token = file_watcher().watch(
                self.path, self, inotify=self.inotify, poll_interval_s=self.poll_interval_s
            )
        except BaseException:
            with self._lock:
                self._state = "NOT_STARTED"
            raise
        with self._lock:
            self._token = token

    def servers(self) -> frozenset[Endpoint]:
        """The last good list (empty until a usable file was read)."""
        self._here()
        return self._members.servers()

    def members(self) -> tuple[KnownServer, ...]:
        """The last good list with each server's registration (node, order) as the agent saw it."""
        self._here()
        return self._members.members()

    @property
    def answered(self) -> bool:
        """True once a usable file was read (until then an empty list means "not known yet")."""
        return self._members.answered

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(servers)`` after every change, on the watcher thread."""
        self._here()
        self._members.subscribe(listener)

    def subscribe_members(self, listener: MemberListener) -> None:
        """Call ``listener(members)`` after every change, a server registered anew included."""
        self._here()
        self._members.subscribe_members(listener)

    def wait_for(self, predicate: Callable[[frozenset[Endpoint]], bool], timeout: float) -> bool:
        """Wait until ``predicate(servers())`` holds; False after ``timeout`` seconds."""
        self._here()
        return self._members.wait_for(predicate, timeout)

    def document(self) -> ServersFile | None:
        """The last usable file's content (None before the first)."""
        self._here()
        with self._lock:
            return self._document

    def stats(self) -> FileServersStats:
        """Counters and the list's freshness; ``age_s`` is measured now."""
        self._here()
        with self._lock:
            state, token, document = self._state, self._token, self._document
            inode, mtime = self._inode, self._mtime
            missing, problem, bad = self._missing, self._problem, self._bad_reads
        if document is not None:
            mtime = _current_mtime(self.path, inode, mtime)
        now = time.time()
        members = self._members.stats(state, connected=False)
        return FileServersStats(
            path=self.path,
            state=state,
            mode=file_watcher().mode(token) if token is not None else "poll",
            answered=members.answered,
            servers=members.servers,
            updates=members.updates,
            bad_reads=bad,
            missing=missing,
            problem=problem,
            agent_state=document.state if document else None,
            serial=document.serial if document else None,
            age_s=document.age(now, mtime) if document else None,
            stale=document.is_stale(now, mtime) if document else False,
            last_update=members.last_update,
        )

    def close(self, timeout: float = 5.0) -> None:
        """Stop watching (the shared thread too, if this was its last file); idempotent.

        The last known servers stay readable through :meth:`servers`.
        """
        self._here()
        with self._lock:
            if self._state == "CLOSED":
                return
            self._state = "CLOSED"
            token, self._token = self._token, None
        self._members.wake()
        if token is not None:
            file_watcher().unwatch(token, timeout)

    # ------------------------------------------------------ the watcher's side

    def on_reading(self, reading: Reading) -> None:
        """A new look at the file (watcher thread, or the caller of ``start()``)."""
        document = reading.document
        mismatch = None
        if document is not None and self.zk_path is not None and document.zk_path != self.zk_path:
            mismatch = (
                f"it lists the servers of {document.zk_path}, not of {self.zk_path} "
                f"(agent pid {document.agent.pid})"
            )
            document = None
        with self._lock:
            self._missing = reading.missing
            if document is None:
                self._problem = "missing" if reading.missing else (mismatch or reading.error)
                if not reading.missing:
                    self._bad_reads += 1
                log_mismatch = mismatch is not None and mismatch != self._logged_mismatch
                self._logged_mismatch = mismatch
            else:
                self._problem = None
                self._document = document
                self._inode, self._mtime = reading.inode, reading.mtime
                self._logged_mismatch = None
                log_mismatch = False
        if log_mismatch:
            logger.error("refusing servers file %s: %s", self.path, mismatch)
        if document is not None:
            listed = [KnownServer(s.endpoint, s.node, s.order, s.zone) for s in document.listed()]
            self._members.publish(listed, nodes=len(listed))

    def _here(self) -> None:
        """Every call's first step: in a child after fork(), start afresh (once).

        The shared watcher restarts (and replaces the locks of every source it
        serves); a source it does not serve (not started, or closed) replaces
        its own.
        """
        file_watcher().check_fork()
        if self._pid != os.getpid():
            self.reinit_after_fork()

    def reinit_after_fork(self) -> None:
        """In a child after fork(), on first use: fresh locks, as a thread of the parent may
        have held them (once per process; no waiting)."""
        pid = os.getpid()
        if self._pid == pid:
            return
        self._lock = threading.Lock()
        self._members.reinit_after_fork()
        self._pid = pid

    def restart_in_child(self) -> None:
        """What a client made before fork() calls in the child, before anything else.

        Restarts the shared watcher here, with this source's locks replaced;
        the file is per host, so the child reads the same one.
        """
        self._here()


def _current_mtime(path: str, inode: tuple[int, int] | None, mtime: float | None) -> float | None:
    """The file's mtime now if it is still the file read (the agent's heartbeat moves it)."""
    try:
        st = os.stat(path)
    except OSError:
        return mtime
    if inode is not None and (st.st_dev, st.st_ino) == inode:
        return st.st_mtime
    return mtime


_announced = False  # no lock: a race costs at most a second log line, a lock could outlive fork()


def servers_file_from_env(zk_hosts: str, zk_path: str) -> FileServers | None:
    """A :class:`FileServers` when ``LOGCLIENT_SERVERS_FILE`` is set, else None.

    This lets an operator move a fleet to the discovery agent without touching
    the apps: clients built with ``zk_hosts`` read the file instead. Logged once
    per process (a warning, as it overrides what the code says), so the
    operator can see it took effect.
    """
    global _announced
    path = os.environ.get(SERVERS_FILE_ENV, "").strip()
    if not path:
        return None
    source = FileServers(path, zk_path=zk_path)
    if not _announced:
        _announced = True
        logger.warning(
            "%s=%s: servers come from that file (the host's discovery agent), "
            "not from ZooKeeper %s%s",
            SERVERS_FILE_ENV,
            source.path,
            zk_hosts,
            zk_path,
        )
    return source
