"""Which servers (and data directories) a reader reads, and which of them cannot be read.

This is the one place that decides it: a :class:`Sources` lists
:class:`Source` objects to read and :class:`SourceProblem` objects for the
ones known to exist that cannot be read (a malformed registration, say), and
tells a following reader when the list changes. Everything after it (the
streams, the merge) only reads what it is given and reports what failed to
the reader's :class:`~logserver.reader.ReadReport`.

- :class:`StaticSources`: ``--server`` and ``--data-dir``, as given.
- :class:`ZooKeeperSources`: the servers registered under the registration
  path. Read once for a one-off read; watched while following, where every
  server ever registered stays a source: a server that dies keeps its place
  (its records show when it is back), and a new registration of a known
  endpoint (a restart) wakes its stream at once instead of at its next retry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from logwire.serverset import Endpoint

if TYPE_CHECKING:
    from logclient.discovery import ZooKeeperServers
    from logwire.zktls import ZkTLSPolicy

__all__ = [
    "Source",
    "SourceListing",
    "SourceProblem",
    "Sources",
    "StaticSources",
    "ZooKeeperSources",
]


@dataclass(frozen=True, order=True)
class Source:
    """One place records are read from: a server (``endpoint``) or a data directory."""

    name: str
    """``host:port``, or the directory's path: what output and warnings call it."""
    endpoint: Endpoint | None = field(default=None, compare=False)
    data_dir: Path | None = field(default=None, compare=False)
    tls: bool = field(default=False, compare=False)
    """The server registered itself as speaking TLS."""

    @classmethod
    def server(cls, endpoint: Endpoint, *, tls: bool = False) -> Source:
        return cls(str(endpoint), endpoint=endpoint, tls=tls)

    @classmethod
    def directory(cls, path: Path) -> Source:
        return cls(str(path), data_dir=Path(path))


@dataclass(frozen=True)
class SourceProblem:
    """A source that should be read and cannot be, and why."""

    source: str
    reason: str


@dataclass(frozen=True)
class SourceListing:
    """What to read now, and what is known to be missing from it."""

    sources: tuple[Source, ...]
    unreachable: tuple[SourceProblem, ...] = ()


#: Called (on any thread) when a listing may have changed; ``restarted``: endpoints that
#: registered again (a restart), whose streams should retry now.
ChangeListener = Callable[[frozenset[Endpoint]], None]


class Sources(Protocol):
    """Lists what a reader reads (see the module docstring)."""

    def start(self) -> None:
        """Find the sources (may block up to its timeout; raises LogServerError)."""

    def listing(self) -> SourceListing:
        """The sources to read now, and the unreachable ones."""

    def subscribe(self, listener: ChangeListener) -> None:
        """Call ``listener`` when the listing may have changed (following readers)."""

    def close(self) -> None:
        """Stop watching; idempotent."""


class StaticSources:
    """A fixed list: ``--server`` endpoints and ``--data-dir`` directories."""

    def __init__(self, endpoints: Iterable[Endpoint] = (), data_dirs: Iterable[Path] = ()) -> None:
        found = {Source.server(e) for e in endpoints} | {Source.directory(d) for d in data_dirs}
        self._listing = SourceListing(tuple(sorted(found)))

    def __repr__(self) -> str:
        return f"<StaticSources {[s.name for s in self._listing.sources]}>"

    def __str__(self) -> str:
        return "the servers and directories given"

    def start(self) -> None:
        pass

    def listing(self) -> SourceListing:
        return self._listing

    def subscribe(self, listener: ChangeListener) -> None:
        pass  # never changes

    def close(self) -> None:
        pass


class ZooKeeperSources:
    """The servers registered under ``zk_path`` (plus any fixed ``extra`` sources).

    With ``watch`` (a following reader) the registrations are watched and every
    endpoint seen stays in the listing; without, they are read once at
    :meth:`start`.
    """

    def __init__(
        self,
        zk_hosts: str,
        zk_path: str = "/logservers",
        *,
        watch: bool = False,
        tls: ZkTLSPolicy | None = None,
        timeout: float = 10.0,
        extra: StaticSources | None = None,
    ) -> None:
        self.zk_hosts = zk_hosts
        self.zk_path = zk_path
        self._watch = watch
        self._tls = tls
        self._timeout = timeout
        self._extra = extra or StaticSources()
        self._lock = threading.Lock()
        self._found: dict[Endpoint, Source] = {}
        self._problems: tuple[SourceProblem, ...] = ()
        self._listeners: list[ChangeListener] = []
        self._discovery: ZooKeeperServers | None = None
        self._started = False

    def __repr__(self) -> str:
        with self._lock:
            names = sorted(str(e) for e in self._found)
        return f"<ZooKeeperSources {self.zk_hosts}{self.zk_path} watch={self._watch} {names}>"

    def __str__(self) -> str:
        return f"ZooKeeper {self.zk_hosts} {self.zk_path}"

    def start(self) -> None:
        """List the registered servers once (raises LogServerError when ZooKeeper cannot
        be reached), then, when watching, keep following the registration path.
        Idempotent."""
        from logserver.reader._registry import list_servers

        with self._lock:
            if self._started:
                return
            self._started = True
        registered = list_servers(self.zk_hosts, self.zk_path, self._timeout, tls=self._tls)
        problems = []
        with self._lock:
            for server in registered:
                if server.member is None:
                    problems.append(
                        SourceProblem(
                            f"{self.zk_path}/{server.node}",
                            f"malformed registration: {server.error}",
                        )
                    )
                    continue
                endpoint = server.member.endpoint
                self._found[endpoint] = Source.server(endpoint, tls=server.member.tls)
            self._problems = tuple(problems)
        if self._watch:
            self._start_watch()

    def _start_watch(self) -> None:
        from logclient.discovery import ZooKeeperServers

        discovery = ZooKeeperServers(
            self.zk_hosts, self.zk_path, session_timeout_s=self._timeout, tls=self._tls
        )
        discovery.subscribe_members(self._on_members)
        self._discovery = discovery
        discovery.start()

    def _on_members(self, members: tuple[object, ...]) -> None:
        """A change of registrations (on the discovery thread): new endpoints join the
        listing; every endpoint that registered is passed on, so a restarted server's
        stream retries at once."""
        endpoints = frozenset(getattr(m, "endpoint") for m in members)  # noqa: B009
        with self._lock:
            for endpoint in endpoints:
                if endpoint not in self._found:
                    self._found[endpoint] = Source.server(endpoint)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(endpoints)

    def listing(self) -> SourceListing:
        extra = self._extra.listing()
        with self._lock:
            found = tuple(sorted({*self._found.values(), *extra.sources}))
            return SourceListing(found, self._problems + extra.unreachable)

    def subscribe(self, listener: ChangeListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def close(self) -> None:
        discovery, self._discovery = self._discovery, None
        if discovery is not None:
            discovery.close(timeout=5.0)
