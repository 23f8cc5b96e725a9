"""One segment file: where it sits in the category's stream, its format, and what of it is readable."""

from __future__ import annotations

import logging
import os
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from logserver.storage._blocks import SEGMENT_HEADER_BYTES
from logserver.storage._blockscan import scan_blocks, walk_blocks
from logserver.storage._format import Damage, ReadAt, Scan, WriteRun, pread_at, scan_writes, walk
from logserver.storage._reading import (
    BlockCursor,
    SegmentView,
    TimeRange,
    read_blocks,
    read_records,
)
from logserver.storage._timeindex import MARK_SPACING, SegmentIndex, index_path
from logserver.storage._types import SegmentRecord, StoredBlock

__all__ = ["MARK_SPACING", "SEGMENT_SUFFIX", "Segment", "segment_name"]

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".seg"


def _ignore(runs: Sequence[WriteRun]) -> None:
    pass


def segment_name(base: int) -> str:
    """The file name of the segment whose first byte is at stream position ``base``."""
    return f"{base:020d}{SEGMENT_SUFFIX}"


@contextmanager
def _reader(path: Path) -> Iterator[ReadAt]:
    """A positional reader on a fresh read-only descriptor (never the writer's, which rotation
    may close under us)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield pread_at(fd)
    finally:
        os.close(fd)


class Segment:
    """A segment of a category and its state.

    ``committed`` counts bytes of complete writes (a failed write is cut off
    before it is counted). ``readable`` is what readers may see: with
    fsync="always" it follows ``committed`` only once the bytes are durable, so
    a reader never sees a record that a crash could take back. ``synced``: the
    bytes a sync made durable (all of a recovered segment's, which recovery
    synced or found synced); retention deletes no segment with ``synced <
    committed``, whose last commit round has not finished (see
    ``CategoryLog``). ``deleted``: retention removed the file, on purpose.

    ``version`` is the segment's format (1: records, 2: blocks after a header
    holding ``marker``; the data starts at ``data_start``). A new version-2 segment
    is created empty: its header goes to disk with its first block, in one write.

    Writers change a segment only under their category's lock; ``fd`` and
    ``pins`` (who uses the descriptor now) change only under the lock of
    :class:`~logserver.storage._descriptors.Descriptors`; the group committer
    changes ``readable``/``sync_failed`` under its own lock, and ``cached_from``
    as the one leader of a sync. Readers only read ints, which are replaced
    atomically.
    """

    __slots__ = (
        "_reported",
        "base",
        "cached_from",
        "committed",
        "data_start",
        "deleted",
        "fd",
        "index",
        "index_saved",
        "marker",
        "modified",
        "path",
        "pins",
        "readable",
        "retired",
        "sync_failed",
        "synced",
        "version",
    )

    def __init__(
        self,
        base: int,
        path: Path,
        size: int,
        *,
        modified: float,
        index: SegmentIndex | None,
        version: int = 1,
        marker: bytes = b"",
    ) -> None:
        self.base = base
        self.version = version
        self.marker = marker
        self.data_start = SEGMENT_HEADER_BYTES if version >= 2 else 0
        self.path = path
        self.fd = -1
        self.committed = size
        self.readable = size
        self.synced = size
        self.deleted = False
        # Where the page cache may still hold this file's synced bytes (see the
        # group committer's drop_synced_pages): everything before is dropped.
        self.cached_from = 0
        self.modified = modified
        # Built on first use (or loaded from its sidecar): see _timeindex.
        self.index = index
        self.index_saved = False
        self.retired = False
        self.pins = 0
        self.sync_failed = False
        self._reported: set[int] = set()

    def __repr__(self) -> str:
        flags = "".join(
            (
                " retired" if self.retired else "",
                " sync-failed" if self.sync_failed else "",
                " deleted" if self.deleted else "",
            )
        )
        return (
            f"<Segment {self.path.name} v{self.version} committed={self.committed} "
            f"readable={self.readable} synced={self.synced} fd={self.fd}{flags}>"
        )

    def adopt_format(self, version: int, marker: bytes) -> None:
        """Give an empty segment (no byte written yet) the writer's format."""
        assert self.committed == 0, self
        self.version = version
        self.marker = marker if version >= 2 else b""
        self.data_start = SEGMENT_HEADER_BYTES if version >= 2 else 0
        self.index = SegmentIndex(self.data_start)

    @property
    def sealed(self) -> bool:
        """No more records will become readable here: readers move on to the next segment.

        Final once true: a retired segment gets no writes, and ``readable`` never moves
        after a failed sync."""
        return self.retired and (self.readable >= self.committed or self.sync_failed)

    def note_write(
        self, start: int, end: int, received_ns: int = 0, records: int = 0, latest_ns: int = 0
    ) -> None:
        """Publish a complete write ``[start, end)`` of ``records`` records received at
        ``received_ns`` (up to ``latest_ns``: copies of several batches) (the writer holds
        the category lock): per write, never per record."""
        self.committed = end
        index = self.index
        if index is not None:
            # A first write carries the segment header.
            index.note(max(start, self.data_start), end, received_ns, records, latest_ns)
            self.index_saved = False

    def save_index(self) -> None:
        """Write the index's sidecar if it changed since (a closed segment, or shutdown)."""
        index = self.index
        if index is None or self.index_saved:
            return
        if index.save(index_path(self.path), self.marker):
            self.index_saved = True
        else:
            log.warning("cannot write the index of %s; it is rebuilt when needed", self.path)

    def load_index(self) -> None:
        """Take the index from the sidecar when it describes this segment as it is."""
        loaded = SegmentIndex.load(index_path(self.path), self.marker, self.committed)
        if loaded is not None:
            self.index = loaded
            self.index_saved = True

    def report(self, category: str, damage: Damage) -> None:
        """Log a damaged range once: records after it are still served."""
        if damage.offset not in self._reported:
            self._reported.add(damage.offset)
            log.error(
                "category %s segment %s: %d damaged bytes at offset %d skipped",
                category,
                self.path.name,
                damage.end - damage.offset,
                damage.offset,
            )

    def view(self, category: str) -> SegmentView:
        """What a reader needs: format, marker and the index (built on first use)."""
        index = self.index if self.index is not None else self._index(category)
        return SegmentView(
            self.base, self.version, self.marker, self.data_start, index.offsets, index
        )

    def ensure_index(self, category: str) -> SegmentIndex:
        """The index, built (by a scan of the segment) if need be."""
        return self.index if self.index is not None else self._index(category)

    def reporter(self, category: str) -> Callable[[Damage], None]:
        return lambda damage: self.report(category, damage)

    def is_boundary(self, category: str, offset: int) -> bool:
        """Whether a record starts at ``offset`` (or the readable data ends there).

        The start of a damaged range counts: a reader whose next record was damaged
        after it got the position skips the damage instead of being stuck."""
        if offset in (0, self.readable):
            return True
        view = self.view(category)
        with _reader(self.path) as read:
            if self.version >= 2:
                found = BlockCursor.locate(read, view, offset, self.readable, _ignore_damage)
                return found is not None
            start = view.marks[bisect_right(view.marks, offset) - 1]
            for item in walk(read, start, self.readable, chunk=2 * MARK_SPACING):
                if item.offset >= offset:
                    return item.offset == offset
        return False

    def record_after(self, category: str, mark: int, skip: int) -> int:
        """The offset of the record ``skip`` records after the one at ``mark`` (a mark of the
        index), or the end of the readable data when there are not that many."""
        stop = self.readable
        with _reader(self.path) as read:
            if self.version >= 2:
                for item in walk_blocks(read, self.marker, mark, stop, chunk=1 << 18):
                    if isinstance(item, Damage):
                        continue
                    if skip < item.records:
                        return item.offset + skip
                    skip -= item.records
            elif self.version == 1:
                for frame in walk(read, mark, stop, chunk=1 << 18):
                    if isinstance(frame, Damage):
                        continue
                    if not skip:
                        return frame.offset
                    skip -= 1
        return stop

    def scan(self, read: ReadAt, stop: int, on_write: Callable[[Sequence[WriteRun]], None]) -> Scan:
        """Verify the segment up to ``stop`` (see ``scan_writes`` and ``scan_blocks``)."""
        if self.version >= 2:
            return scan_blocks(
                read, self.marker, self.data_start, stop, on_write, mark_spacing=MARK_SPACING
            )
        return scan_writes(read, stop, on_write, mark_spacing=MARK_SPACING)

    def _index(self, category: str) -> SegmentIndex:
        """Index a segment that has none yet (first use; saved once the segment is closed)."""
        readable = self.readable
        with _reader(self.path) as read:
            scan = self.scan(read, readable, _ignore)
        for damage in scan.damages:
            self.report(category, damage)
        index = scan.builder.build(with_tail=True)
        index.covered = readable
        if self.index is None:
            self.index = index
            if self.sealed and readable == self.committed:
                self.save_index()
        return self.index

    def read_into(
        self,
        category: str,
        out: list[SegmentRecord],
        offset: int,
        stop: int,
        limit: int,
        max_bytes: int,
        used: int,
    ) -> tuple[int, int]:
        """Append records from ``offset`` up to ``stop`` to ``out`` until ``limit`` records or
        ``max_bytes`` (the first record of a read always fits); return (next offset, bytes used)."""
        view = self.view(category)
        with _reader(self.path) as read:
            return read_records(
                read,
                view,
                category,
                out,
                offset,
                stop,
                limit,
                max_bytes,
                used,
                self.reporter(category),
            )

    def blocks_into(
        self,
        category: str,
        out: list[StoredBlock],
        offset: int,
        stop: int,
        max_bytes: int,
        used: int,
        times: TimeRange | None = None,
    ) -> tuple[int, int]:
        """Append whole blocks from the one holding ``offset`` up to ``stop`` to ``out`` until
        their payloads reach ``max_bytes`` (only those received in ``times``, skipping the
        stretches that hold none without reading them); return (next offset, bytes used)."""
        view = self.view(category)
        with _reader(self.path) as read:
            return read_blocks(
                read,
                view,
                category,
                out,
                offset,
                stop,
                max_bytes,
                used,
                self.reporter(category),
                times,
            )


def _ignore_damage(damage: Damage) -> None:
    pass
