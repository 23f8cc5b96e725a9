"""One source's blocks, fetched ahead by a thread of its own: what the merge consumes.

A :class:`SourceStream` asks its server for pages of blocks (``QueryBlocks``,
the query's filters applied there; ``ReadBlocks`` and filters applied here
for a server that predates it) and keeps at most ``prefetch_pages`` of them:
when the merge does not keep up, the thread stops asking, and the records
wait on the server's disk. Nothing is ever dropped to catch up.

It rides through trouble: a connection that fails is made again (backoff up
to ``backoff_max_s``; at once when the server registers again), and reading
resumes at the position it had reached, which survives a server's restart.
A one-off read gives up on a server after ``retry_for_s`` without progress
and reports it; a following one never does. A position the server no longer
knows (its data directory changed) restarts the stream from the query's
start time: the merge drops what was already shown.
"""

from __future__ import annotations

import collections
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from thriftpy2.thrift import TApplicationException
from thriftpy2.transport import TTransportException

from logserver.errors import LogServerError, TLSMismatchError
from logserver.reader._connect import connect, interrupt
from logserver.reader._policy import ReaderPolicy
from logserver.reader._query import ReadQuery
from logserver.reader._report import ReadReport
from logserver.reader._sources import Source
from logwire.blocks import WireBlock
from logwire.idl import log_thrift

__all__ = ["Page", "SourceStream"]

#: What a failed call to a server can raise (thriftpy2's errors are inconsistent:
#: TTransportException, builtin TimeoutError, raw socket errors, EOFError).
_TRANSIENT = (LogServerError, TTransportException, OSError, EOFError)


class Page(NamedTuple):
    """Blocks of one answer, in the source's order."""

    blocks: list[WireBlock]
    skip: int
    """Records of ``blocks[0]`` before the position asked for (the reader drops them)."""
    end_of_log: bool
    restart: bool
    """The first block follows a (re)start of the stream: it may be the tail of a write."""
    filtered: bool
    """The server applied the query's time range and pattern (else the merge does)."""


class SourceStream:
    """Pages of one source's blocks (see the module docstring); ``cond`` is shared with the
    merge, which waits on it for pages of any source."""

    def __init__(
        self,
        source: Source,
        query: ReadQuery,
        *,
        cond: threading.Condition,
        report: ReadReport,
        policy: ReaderPolicy,
        tls: Any = None,
        origin_ns: int,
    ) -> None:
        self.source = source
        self._query = query
        self._cond = cond
        self._report = report
        self._policy = policy
        self._tls = tls
        self._origin_ns = origin_ns
        self.pages: collections.deque[Page] = collections.deque()
        self.finished = False
        self.caught_up = False
        """Reached the end of the log at least once (following readers go live then)."""
        self.failed: str | None = None
        self.position = -1
        self.pages_read = 0
        self._closing = False
        self._client: Any = None
        self._retry = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{source.name}", daemon=True)

    def __repr__(self) -> str:
        state = "failed" if self.failed else "finished" if self.finished else "reading"
        return (
            f"<SourceStream {self.source.name} {state} position={self.position} "
            f"queued={len(self.pages)} pages={self.pages_read} caught_up={self.caught_up}>"
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            client, self._client = self._client, None
            self._cond.notify_all()
        self._retry.set()
        if client is not None:
            interrupt(client)  # a long poll in flight ends now

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def retry_now(self) -> None:
        """The server registered again: end a backoff wait early."""
        self._retry.set()

    # ------------------------------------------------------------ thread

    def _run(self) -> None:
        try:
            if self.source.data_dir is not None:
                self._read_directory()
            else:
                self._read_server()
        except Exception as exc:  # never die silently: the merge would wait forever
            self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            with self._cond:
                self.finished = True
                self._cond.notify_all()

    def _put(self, page: Page) -> bool:
        """Queue a page, waiting while ``prefetch_pages`` are queued; False when closing."""
        with self._cond:
            while len(self.pages) >= self._policy.prefetch_pages and not self._closing:
                self._cond.wait()
            if self._closing:
                return False
            self.pages.append(page)
            self.pages_read += 1
            if page.end_of_log:
                self.caught_up = True
            self._cond.notify_all()
            return True

    def _fail(self, reason: str) -> None:
        with self._cond:
            self.failed = reason
            self.caught_up = True
            self._cond.notify_all()
        self._report.failed(self.source.name, reason)

    def _read_directory(self) -> None:
        from logserver.reader._offline import directory_pages

        assert self.source.data_dir is not None
        first = True
        for blocks in directory_pages(self.source.data_dir, self._query.category):
            if not self._put(Page(blocks, 0, False, first, False)):
                return
            first = False
        self._put(Page([], 0, True, first, False))

    def _read_server(self) -> None:
        policy = self._policy
        follow = self._query.follow
        backoff = policy.backoff_initial_s
        trouble_since: float | None = None
        restart = True
        while not self._closing:
            try:
                for page in self._pages(restart):
                    restart = False
                    trouble_since = None
                    backoff = policy.backoff_initial_s
                    self._report.reachable(self.source.name)
                    if not self._put(page):
                        return
                    if page.end_of_log and not follow:
                        return
                return  # closing
            except log_thrift.InvalidPosition as exc:
                self._report.note(
                    self.source.name,
                    f"position {self.position} is no longer valid ({exc.reason}): "
                    "reading it again from the start time",
                )
                self.position = -1
                restart = True
                continue
            except (log_thrift.InvalidRequest, log_thrift.InvalidCategory) as exc:
                self._fail(f"refused the read: {getattr(exc, 'reason', exc)}")
                return
            except (*_TRANSIENT, log_thrift.StorageUnavailable, TApplicationException) as exc:
                if self._closing:
                    return  # our own close() cut the connection
                now = time.monotonic()
                trouble_since = trouble_since or now
                if isinstance(exc, TLSMismatchError) and not follow:
                    self._fail(str(exc))  # trying again changes nothing
                    return
                self._report.unreachable(self.source.name, _reason(exc))
                if follow:
                    with self._cond:
                        self.caught_up = True  # the history does not wait for it
                        self._cond.notify_all()
                if not follow and now - trouble_since >= policy.retry_for_s:
                    self._fail(f"unreachable: {_reason(exc)}")
                    return
            self._retry.wait(backoff)
            self._retry.clear()
            backoff = min(backoff * 2, policy.backoff_max_s)

    def _pages(self, restart: bool) -> Iterator[Page]:
        """Pages from one connection, until it fails or the read ends."""
        policy = self._policy
        query = self._query
        endpoint = self.source.endpoint
        assert endpoint is not None
        timeout = policy.timeout_s + policy.wait_s
        with connect(endpoint, timeout, tls=self._tls) as client:
            with self._cond:
                if self._closing:
                    return
                self._client = client
            ask: Callable[[int, int], Page] = self._query_call(client)
            while not self._closing:
                wait_ms = int(policy.wait_s * 1000) if query.follow and self.caught_up else 0
                page = ask(self.position, wait_ms)
                if restart:
                    page = page._replace(restart=True)
                    restart = False
                yield page

    def _query_call(self, client: Any) -> Callable[[int, int], Page]:
        """``ask(position, wait_ms)``: QueryBlocks, or ReadBlocks for an older server."""
        query = self._query
        policy = self._policy

        def query_blocks(position: int, wait_ms: int) -> Page:
            start = position
            since = query.since_ns
            if position < 0 and since is None and not query.last and query.follow:
                since = self._origin_ns  # a following reader starts now (or at its restart)
            result = client.QueryBlocks(
                log_thrift.BlockQuery(
                    category=query.category,
                    position=position,
                    max_bytes=policy.page_bytes,
                    since_ns=since or 0,
                    until_ns=query.until_ns or 0,
                    grep=query.grep or "",
                    last=query.last or 0,
                    wait_ms=wait_ms,
                )
            )
            if start >= 0 and result.start_position > start:
                self._report.gap(self.source.name, start, result.start_position)
            return self._page(result, result.start_position, True)

        def read_blocks(position: int, wait_ms: int) -> Page:
            if position < 0:
                position = 0
            result = client.ReadBlocks(query.category, position, policy.page_bytes)
            if not result.blocks and wait_ms:
                time.sleep(min(wait_ms / 1000, policy.old_server_poll_s))
            return self._page(result, position, False)

        chosen: list[Callable[[int, int], Page]] = []

        def first(position: int, wait_ms: int) -> Page:
            try:
                page = query_blocks(position, wait_ms)
            except TApplicationException as exc:
                if exc.type != TApplicationException.UNKNOWN_METHOD:
                    raise
                self._report.note(
                    self.source.name,
                    "server predates QueryBlocks: reading with ReadBlocks, filtering here",
                )
                chosen.append(read_blocks)
                return read_blocks(position, wait_ms)
            chosen.append(query_blocks)
            return page

        return lambda position, wait_ms: (chosen[0] if chosen else first)(position, wait_ms)

    def _page(self, result: Any, start: int, filtered: bool) -> Page:
        blocks = [WireBlock.from_thrift(b) for b in result.blocks or ()]
        skip = 0
        if blocks and blocks[0].position < start:
            skip = bisect_left(blocks[0].record_positions(), start)
        self.position = result.next_position
        return Page(blocks, skip, bool(result.end_of_log), False, filtered)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, log_thrift.StorageUnavailable):
        return f"storage unavailable: {exc.reason}"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return text
