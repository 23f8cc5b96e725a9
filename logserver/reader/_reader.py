"""The reader: sources in, each record once out, as blocks in columns or as records.

:class:`Reader` puts the parts together: a :class:`~logserver.reader.Sources`
says what to read, a :class:`~logserver.reader._stream.SourceStream` per
source fetches pages ahead, the :class:`~logserver.reader._merge.Merge`
orders and de-duplicates them, and a :class:`~logserver.reader.ReadReport`
collects what went wrong. :func:`read` makes one from the usual arguments;
``logserver cat`` is a :class:`Reader` whose blocks are printed.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from logserver.errors import ConfigError
from logserver.reader._merge import Merge
from logserver.reader._policy import ReaderPolicy
from logserver.reader._query import ReadQuery, parse_time
from logserver.reader._records import Record, RecordBlock
from logserver.reader._report import ReadEvent, ReadReport
from logserver.reader._sources import Source, Sources, StaticSources, ZooKeeperSources
from logserver.reader._stream import SourceStream
from logwire.serverset import Endpoint

if TYPE_CHECKING:
    from logclient import TLSPolicy
    from logwire.zktls import ZkTLSPolicy

__all__ = ["Reader", "TimeArg", "read"]

#: A time as :func:`read` takes it: what ``--since`` takes (str), an aware datetime,
#: a timedelta (that long ago), or ns since the epoch.
TimeArg = str | dt.datetime | dt.timedelta | int


class Reader:
    """Reads one category from its sources: iterate for :class:`Record` objects, or call
    :meth:`blocks` for :class:`RecordBlock` ones (columns, for printing millions).

    Each record comes once, however many servers hold copies of it. A one-off
    read ends when every source reached the end of its log (or failed: see
    :attr:`report`); a following one (``query.follow``) runs until :meth:`close`
    (from any thread) or the end of the ``with`` block. Iterate once.
    """

    def __init__(
        self,
        sources: Sources,
        query: ReadQuery,
        *,
        tls: TLSPolicy | None = None,
        policy: ReaderPolicy | None = None,
        on_event: Callable[[ReadEvent], None] | None = None,
    ) -> None:
        self.sources = sources
        self.query = query
        self.policy = policy or ReaderPolicy()
        self.report = ReadReport(on_event)
        self._tls = tls
        self._cond = threading.Condition()
        self._merge = Merge(query, self._cond)
        self._streams: dict[str, SourceStream] = {}
        self._origin_ns = time.time_ns()
        self._started = False
        self._closed = False
        self.caught_up = threading.Event()
        """Set once every source's history has been shown (a following reader is live)."""

    def __repr__(self) -> str:
        return (
            f"<Reader {self.query.category!r} follow={self.query.follow} "
            f"streams={list(self._streams.values())!r} {self._merge!r} {self.report!r}>"
        )

    def __enter__(self) -> Reader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Record]:
        for block in self.blocks():
            yield from block.records()

    def blocks(self) -> Iterator[RecordBlock]:
        """The records, a block at a time, in time order (live: as they arrive)."""
        self._start()
        last = self.query.last
        ordered = self._merge.ordered()
        if last is not None:
            ordered = _last(ordered, last)
        try:
            yield from ordered
            self.caught_up.set()
            if self.query.follow:
                yield from self._merge.live()
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading (any thread); idempotent. Threads are joined briefly."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            streams = list(self._streams.values())
        self._merge.close()
        for stream in streams:
            stream.close()
        self.sources.close()
        for stream in streams:
            stream.join(1.0)

    def _start(self) -> None:
        if self._started:
            raise RuntimeError("a Reader is iterated once")
        self._started = True
        self.sources.start()
        listing = self.sources.listing()
        for problem in listing.unreachable:
            self.report.failed(problem.source, problem.reason)
        for missed in listing.missed:
            self.report.missing(missed.source, missed.reason)
        if not listing.sources and not self.query.follow:
            self.report.failed(str(self.sources), "no server to read: none is registered or given")
        for source in listing.sources:
            self._add(source, self.query)
        if self.query.follow:
            self.sources.subscribe(self._on_sources)

    def _add(self, source: Source, query: ReadQuery) -> None:
        with self._cond:
            if self._closed or source.name in self._streams:
                return
            stream = SourceStream(
                source,
                query,
                cond=self._cond,
                report=self.report,
                policy=self.policy,
                tls=self._tls,
                origin_ns=self._origin_ns,
            )
            self._streams[source.name] = stream
        self._merge.add(stream)
        stream.start()

    def _on_sources(self, registered: frozenset[Endpoint]) -> None:
        """The registrations changed (discovery's thread): follow new servers from the time
        this reader started; wake the streams of servers that registered again."""
        late = replace(self.query, last=None, since_ns=self.query.since_ns or self._origin_ns)
        for source in self.sources.listing().sources:
            with self._cond:
                known = self._streams.get(source.name)
            if known is None:
                self._add(source, late)
            elif source.endpoint in registered:
                known.retry_now()


def _last(blocks: Iterator[RecordBlock], n: int) -> Iterator[RecordBlock]:
    """The last ``n`` records of ``blocks`` (memory: about ``n`` records)."""
    kept: collections.deque[RecordBlock] = collections.deque()
    held = 0
    if n == 0:
        for _ in blocks:
            pass
        return
    for block in blocks:
        kept.append(block)
        held += len(block)
        while held - len(kept[0]) >= n:
            held -= len(kept.popleft())
    if kept and held > n:
        kept[0] = kept[0].tail(len(kept[0]) - (held - n))
    yield from kept


def _time(value: TimeArg | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a time, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, dt.timedelta):
        return time.time_ns() - int(value.total_seconds() * 1e9)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.astimezone()
        return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000
    return parse_time(value)


def read(
    zk_hosts: str | None,
    category: str,
    *,
    since: TimeArg | None = None,
    until: TimeArg | None = None,
    last: int | None = None,
    grep: str | None = None,
    follow: bool = False,
    zk_path: str = "/logservers",
    servers: Iterable[Endpoint | str] = (),
    data_dirs: Iterable[Path | str] = (),
    tls: TLSPolicy | None = None,
    zk_tls: ZkTLSPolicy | None = None,
    policy: ReaderPolicy | None = None,
    on_event: Callable[[ReadEvent], None] | None = None,
) -> Reader:
    """A :class:`Reader` of ``category`` from every server registered in ZooKeeper at
    ``zk_hosts`` (and/or the given ``servers`` and ``data_dirs``).

    ``since``/``until``: a time range (since inclusive, until exclusive), as
    ``--since`` reads it (``"15m"``, ``"2026-01-05T10:00:00Z"``), a datetime, a
    timedelta (ago) or ns; ``last``: only the last N records (then, with
    ``follow``, what comes); ``grep``: an RE2 pattern the servers apply;
    ``follow``: keep reading live until the reader is closed (from the time of
    this call when neither ``since`` nor ``last`` says otherwise).

    Raises ConfigError for arguments that make no sense; ZooKeeper trouble
    shows when iteration starts (LogServerError). Use it in a ``with`` block, or
    close it: a following reader's threads run until then::

        with logserver.read("zk1:2181", "app", since="15m", follow=True) as reader:
            for record in reader:
                print(record.time, record.message)
    """
    query = ReadQuery(
        category,
        since_ns=_time(since, "since"),
        until_ns=_time(until, "until"),
        last=last,
        grep=grep,
        follow=follow,
    )
    static = StaticSources(
        [e if isinstance(e, Endpoint) else Endpoint.parse(e) for e in servers],
        [Path(d) for d in data_dirs],
    )
    sources: Sources = static
    if zk_hosts:
        sources = ZooKeeperSources(
            zk_hosts,
            zk_path,
            watch=follow,
            tls=zk_tls,
            extra=static,
            category=category,
            server_tls=tls,
        )
    elif not static.listing().sources:
        raise ConfigError("give ZooKeeper hosts, servers or data directories to read from")
    return Reader(sources, query, tls=tls, policy=policy, on_event=on_event)
