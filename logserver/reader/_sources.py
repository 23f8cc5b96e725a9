"""Which servers (and data directories) a reader reads, and which of them cannot be read.

This is the one place that decides it: a :class:`Sources` lists
:class:`Source` objects to read, :class:`SourceProblem` objects for the ones
known to exist that cannot be read (a malformed registration, say), and the
servers that may hold records of the category but will not be read (``missed``:
see below), and tells a following reader when the list changes. Everything
after it (the streams, the merge) only reads what it is given and reports what
failed to the reader's :class:`~logserver.reader.ReadReport`.

- :class:`StaticSources`: ``--server`` and ``--data-dir``, as given.
- :class:`ZooKeeperSources`: the servers registered under the registration
  path. Read once for a one-off read; watched while following, where every
  server ever registered stays a source: a server that dies keeps its place
  (its records show when it is back), and a new registration of a known
  endpoint (a restart) wakes its stream at once instead of at its next retry.

Given the category, :class:`ZooKeeperSources` also reads the **data
inventory** (every server's record of the categories it holds, kept in
ZooKeeper beside the registrations, :mod:`logserver.tools.inventory`): a
server that holds data of the category and is not registered (stopped, or
its disk lost) is ``missed``, and so is, for a one-off read, a registered
server that does not answer a ``Status`` within a few seconds (it is not read:
a frozen server would hold the whole read up). A data directory given with
``--data-dir`` reaches its server: that server is not missed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from logserver.errors import ConfigError, LogServerError
from logwire.serverset import Endpoint

if TYPE_CHECKING:
    from logclient import TLSPolicy
    from logclient.discovery import ZooKeeperServers
    from logserver.tools.inventory import ClusterView
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
    """Sources that should be read and cannot be: their records are missing."""
    missed: tuple[SourceProblem, ...] = ()
    """Servers that may hold records of the category and are not read (the data
    inventory's holders that are not registered or do not answer): ``reason`` is the
    whole line an operator reads (who, where, what it holds, how to forget it)."""


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
        category: str | None = None,
        server_tls: TLSPolicy | None = None,
    ) -> None:
        self.zk_hosts = zk_hosts
        self.zk_path = zk_path
        self.category = category
        """With a category, the data inventory is read too (see the module docstring)."""
        self._watch = watch
        self._tls = tls
        self._server_tls = server_tls
        self._timeout = timeout
        self._extra = extra or StaticSources()
        self._lock = threading.Lock()
        self._found: dict[Endpoint, Source] = {}
        self._problems: tuple[SourceProblem, ...] = ()
        self._missed: tuple[SourceProblem, ...] = ()
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
        view: ClusterView | None = None
        if self.category is None:
            registered = list_servers(self.zk_hosts, self.zk_path, self._timeout, tls=self._tls)
        else:
            from logserver.tools.inventory import read_cluster

            view = read_cluster(self.zk_hosts, self.zk_path, tls=self._tls, timeout=self._timeout)
            registered = view.members
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
        if view is not None:
            self._refuse_tls_without_policy()
            self._check_holders(view)
        if self._watch:
            self._start_watch()

    def _refuse_tls_without_policy(self) -> None:
        """Servers registered as speaking TLS cannot be read (nor asked who they are)
        without a TLS policy: ConfigError, before anything is read."""
        if self._server_tls is not None:
            return
        with self._lock:
            with_tls = sorted(s.name for s in self._found.values() if s.tls)
        if with_tls:
            raise ConfigError(
                f"{', '.join(with_tls)} speak TLS: give --tls-ca (or --tls to trust the "
                "system's CAs; from Python: tls=TLSPolicy(...))"
            )

    def _check_holders(self, view: ClusterView) -> None:
        """The inventory's holders of the category that this read does not reach: missed.
        A one-off read asks each registered server who it is first (``Status``, a few
        seconds at most) and does not read those that do not answer."""
        from logserver.storage import read_server_id
        from logserver.tools.inventory import Coverage

        assert self.category is not None
        reached: set[str] = set()
        for source in self._extra.listing().sources:
            if source.data_dir is None:
                continue
            try:
                server_id = read_server_id(source.data_dir)
            except LogServerError:
                continue  # a damaged id: it reaches no server we can name
            if server_id:
                reached.add(server_id)
        if self._watch:
            # A follower reads every registered server, retrying the silent ones.
            coverage = Coverage(self.category, reached=reached | view.registered_ids())
        else:
            coverage = Coverage.of(view, self.category, tls=self._server_tls, data_dir_ids=reached)
        missed = coverage.unreachable(view)
        with self._lock:
            for endpoint, _ in coverage.silent:
                self._found.pop(endpoint, None)
            self._missed = tuple(
                SourceProblem(m.server_id or str(m.registered_at), m.describe(self.category))
                for m in missed
            )

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
            return SourceListing(found, self._problems + extra.unreachable, self._missed)

    def subscribe(self, listener: ChangeListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def close(self) -> None:
        discovery, self._discovery = self._discovery, None
        if discovery is not None:
            discovery.close(timeout=5.0)
