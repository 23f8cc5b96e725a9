"""The merge: the sources' blocks in time order, each record once, as :class:`RecordBlock`.

Every record of a stored block shares its batch's receive time, so the merge
works on blocks, never on records: a heap of one block per source, ordered
by ``received_ns`` (each source's stream is in storage order, which is its
receive order). A block's records pass the reader's filters (when its server
could not apply them), then :class:`~logserver.reader._seen.SeenRecords`,
which keeps the new ones.

A following reader merges in two phases: the history (until every source has
reached the end of its log once) in time order, as above; then live, where
blocks are shown as they arrive, those that arrive together in time order. A
source that joins later only has the live phase.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator, Sequence
from itertools import count as counter

from logserver.reader._query import ReadQuery
from logserver.reader._records import RecordBlock, messages_of
from logserver.reader._seen import BatchId, SeenRecords
from logserver.reader._stream import Page, SourceStream
from logwire.blocks import WireBlock
from logwire.grep import Matcher, compile_grep, matching_runs

__all__ = ["Merge"]

Runs = list[tuple[int, int]]


class _Cursor:
    """Where the merge is in one source's pages, and which stored batch it is showing."""

    __slots__ = ("at", "finishable", "key", "number", "page", "stream")

    def __init__(self, stream: SourceStream, number: int) -> None:
        self.stream = stream
        self.number = number
        self.page: Page | None = None
        self.at = 0
        self.key: tuple[str, int] | None = None
        self.finishable = False

    def __repr__(self) -> str:
        return f"<_Cursor {self.stream.source.name} key={self.key} at={self.at}>"


class Merge:
    """Blocks of several :class:`SourceStream` objects, merged and de-duplicated."""

    def __init__(
        self, query: ReadQuery, cond: threading.Condition, seen: SeenRecords | None = None
    ) -> None:
        self._query = query
        self._cond = cond
        self.seen = seen or SeenRecords()
        self._cursors: list[_Cursor] = []
        self._numbers = counter()
        self._closed = False
        self._search: Matcher | None = compile_grep(query.grep) if query.grep else None

    def __repr__(self) -> str:
        return f"<Merge sources={len(self._cursors)} {self.seen!r}>"

    def add(self, stream: SourceStream) -> None:
        """Merge one more source (a server that joined); call with or without the lock."""
        with self._cond:
            self._cursors.append(_Cursor(stream, next(self._numbers)))
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -------------------------------------------------------------- phases

    def ordered(self) -> Iterator[RecordBlock]:
        """Every source's blocks up to the end of its log (or its failure), in time order."""
        heap: list[tuple[int, int, int, _Cursor, WireBlock, int, bool, bool]] = []
        tie = counter()
        with self._cond:
            cursors = list(self._cursors)
        for cursor in cursors:
            item = self._next(cursor)
            if item is not None:
                heap.append((item[0].received_ns, cursor.number, next(tie), cursor, *item))
        heapq.heapify(heap)
        while heap:
            _, _, _, cursor, block, skip, restart, filtered = heapq.heappop(heap)
            shown = self._show(cursor, block, skip, restart, filtered)
            if shown is not None:
                yield shown
            item = self._next(cursor)
            if item is not None:
                heapq.heappush(heap, (item[0].received_ns, cursor.number, next(tie), cursor, *item))

    def live(self) -> Iterator[RecordBlock]:
        """Blocks as they arrive, until :meth:`close`; those that arrive together in time order."""
        while True:
            with self._cond:
                while not self._closed and not any(c.stream.pages for c in self._cursors):
                    self._cond.wait()
                if self._closed:
                    return
                ready = [(c, c.stream.pages.popleft()) for c in self._cursors if c.stream.pages]
                self._cond.notify_all()  # room for the streams' next pages
            arrived: list[tuple[int, int, int, _Cursor, WireBlock, int, bool, bool]] = []
            for cursor, page in ready:
                for i, block in enumerate(page.blocks):
                    arrived.append(
                        (
                            block.received_ns,
                            cursor.number,
                            i,
                            cursor,
                            block,
                            page.skip if i == 0 else 0,
                            page.restart and i == 0,
                            page.filtered,
                        )
                    )
            arrived.sort(key=lambda t: t[:3])
            for _, _, _, cursor, block, skip, restart, filtered in arrived:
                shown = self._show(cursor, block, skip, restart, filtered)
                if shown is not None:
                    yield shown
            for cursor, page in ready:
                if page.end_of_log:
                    self._finish(cursor)

    # ------------------------------------------------------------ internals

    def _next(self, cursor: _Cursor) -> tuple[WireBlock, int, bool, bool] | None:
        """The source's next block (waiting for its page), or None at the end of its log."""
        while True:
            page = cursor.page
            if page is not None and cursor.at < len(page.blocks):
                i = cursor.at
                cursor.at += 1
                return (
                    page.blocks[i],
                    page.skip if i == 0 else 0,
                    page.restart and i == 0,
                    page.filtered,
                )
            if page is not None:
                cursor.page = None
                if page.end_of_log:
                    self._finish(cursor)
                    return None
            with self._cond:
                stream = cursor.stream
                # A following reader's history waits for no source that is down: its
                # records show live, once it is back.
                while not (stream.pages or stream.finished or stream.caught_up or self._closed):
                    self._cond.wait()
                if not stream.pages:
                    return None
                cursor.page = stream.pages.popleft()
                cursor.at = 0
                self._cond.notify_all()

    def _finish(self, cursor: _Cursor) -> None:
        """The source has shown its current stored batch whole (it moved on, or its log ended)."""
        key = cursor.key
        if key is not None and cursor.finishable and key[0]:
            batch, _ = SeenRecords.batch_of(*key)
            if batch[0] == key[0]:  # a split half never completes its parent
                self.seen.finish(batch)
        cursor.key = None

    def _show(
        self, cursor: _Cursor, block: WireBlock, skip: int, restart: bool, filtered: bool
    ) -> RecordBlock | None:
        """The new records of ``block`` (None when there are none)."""
        key = (block.producer, block.sequence)
        if key != cursor.key:
            self._finish(cursor)
            cursor.key = key
            # After a (re)start the first block may be the tail of a write.
            cursor.finishable = not restart
        count = block.count
        if skip:
            cursor.finishable = False
        if not filtered and not self._query.admits(block.received_ns):
            cursor.finishable = False  # its records are not shown: it must not count as seen
            return None
        columns = block.decode()
        runs: Runs = [(skip, count - skip)] if skip < count else []
        if not filtered and self._search is not None:
            runs = _intersect(runs, matching_runs(messages_of(columns, runs), self._search))
        if not runs:
            return None
        batch: BatchId = (block.producer, block.sequence)
        offset = 0
        if block.producer:
            batch, offset = SeenRecords.batch_of(block.producer, block.sequence)
            pieces = _pieces(block.index_runs, runs)
            runs = self.seen.admit(batch, offset, pieces)
            whole = skip == 0 and count == block.batch_count and runs == [(0, count)]
            if whole and batch[0] == block.producer:
                self.seen.finish(batch)  # the block is its whole batch
            if not runs:
                return None
        return RecordBlock(
            self._query.category,
            cursor.stream.source.name,
            batch[0],
            batch[1] if block.producer else -1,
            block.received_ns,
            columns,
            _indexes(block.index_runs, offset),
            None if runs == [(0, count)] else runs,
        )


def _intersect(runs: Runs, matched: Runs) -> Runs:
    """``matched`` are runs of the records ``runs`` hold, numbered 0.. across them:
    the same records as block record numbers."""
    spans = []
    total = 0
    for first, n in runs:
        spans.append((total, first, n))
        total += n
    return [(b, n) for b, n, _ in _translate(spans, matched)]


def _pieces(index_runs: Sequence[tuple[int, int]], runs: Runs) -> list[tuple[int, int, int]]:
    """``(first index, count, first record)`` of the block's records in ``runs``."""
    if len(index_runs) == 1:
        first_index = index_runs[0][0]
        return [(first_index + a, n, a) for a, n in runs]
    spans = []
    at = 0
    for first_index, n in index_runs:
        spans.append((at, first_index, n))
        at += n
    return _translate(spans, runs)


def _translate(spans: Sequence[tuple[int, int, int]], runs: Runs) -> list[tuple[int, int, int]]:
    """Ascending ``(a, n)`` runs of one numbering as ``(b, n, a)`` pieces of another, where
    ``spans`` (``(a, b, count)``, ascending, covering the runs) map one onto the other."""
    out = []
    k = 0
    for a, n in runs:
        while n:
            while spans[k][0] + spans[k][2] <= a:
                k += 1
            start, b, size = spans[k]
            take = min(n, start + size - a)
            out.append((b + a - start, take, a))
            a += take
            n -= take
    return out


def _indexes(index_runs: Sequence[tuple[int, int]], offset: int) -> Sequence[int]:
    """Each record's index in its (parent) batch, without a list when one range does."""
    if len(index_runs) == 1:
        first, n = index_runs[0]
        return range(offset + first, offset + first + n)
    return [offset + i for first, n in index_runs for i in range(first, first + n)]
