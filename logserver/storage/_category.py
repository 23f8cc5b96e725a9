"""One category's log: its segments, appends, rotation, retention and reads.

Writers hold the category's lock for a whole batch (the caller takes the locks
of all the batch's categories, in name order, so a batch spanning categories
can be cut back everywhere if one write fails). Readers take no lock: the
segment list is replaced, never mutated, and they read a snapshot of it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from bisect import bisect_right
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from logserver.errors import InvalidPositionError, StorageUnavailableError
from logserver.storage._blocks import FORMAT_VERSION, new_marker, segment_header
from logserver.storage._changes import Changes
from logserver.storage._commit import GroupCommitter
from logserver.storage._descriptors import Descriptors
from logserver.storage._disk import DiskIO
from logserver.storage._holdings import CategoryHoldings
from logserver.storage._policy import StoragePolicy
from logserver.storage._reading import TimeRange
from logserver.storage._segment import Segment, segment_name
from logserver.storage._stats import Counters
from logserver.storage._timeindex import SegmentIndex, index_path
from logserver.storage._types import BlockBatch, ReadBatch, SegmentRecord, StoredBlock

__all__ = ["CategoryLog", "Written"]

log = logging.getLogger(__name__)

_RECENT_POSITIONS = 4096
_T = TypeVar("_T", SegmentRecord, StoredBlock)


class Written(NamedTuple):
    """A write that succeeded but is not yet published (readers cannot see it)."""

    segment: Segment
    start: int
    end: int
    received_ns: int = 0
    records: int = 0
    latest_ns: int = 0


def _unavailable(what: str, exc: OSError) -> StorageUnavailableError:
    return StorageUnavailableError(f"{what}: {exc.strerror or exc}")


class CategoryLog:
    """The segments of one category, oldest first; the last one takes the writes.

    ``marker`` is the random resync marker of the category's version-2 segments
    (``_blocks``): the newest such segment's, or a new one. Blocks are encoded
    with it before the category's lock is taken, and every new segment's header
    carries it. A segment holds one format only: when the writer's format
    (``StoragePolicy.segment_format``) is not the active segment's, the next
    write rotates to a new segment.
    """

    def __init__(
        self,
        name: str,
        directory: Path,
        segments: list[Segment],
        *,
        policy: StoragePolicy,
        disk: DiskIO,
        committer: GroupCommitter,
        descriptors: Descriptors,
        counters: Counters,
        changes: Changes | None = None,
    ) -> None:
        self.name = name
        self.directory = directory
        self.lock = threading.Lock()
        for closed in segments[:-1]:
            closed.retired = True  # recovered: only the last segment takes writes
        markers = [s.marker for s in segments if s.version >= FORMAT_VERSION]
        self.marker = markers[-1] if markers else new_marker()
        # Replaced on change, never mutated: readers work on a snapshot without the lock.
        self._snapshot: tuple[list[Segment], list[int]] = (segments, [s.base for s in segments])
        self._policy = policy
        self._disk = disk
        self._committer = committer
        self._descriptors = descriptors
        self._counters = counters
        self._changes = changes or Changes()
        # next_position values handed to readers: known boundaries, no need to verify them.
        self._recent: dict[int, None] = {}
        #: Which batches the category holds (built on first use; see ``_holdings``).
        self.holdings = CategoryHoldings()

    def __repr__(self) -> str:
        segments = self._snapshot[0]
        active = segments[-1] if segments else None
        return (
            f"<CategoryLog {self.name!r} segments={len(segments)} "
            f"bytes={self.disk_bytes()} active={active!r}>"
        )

    @property
    def segments(self) -> list[Segment]:
        """A snapshot of the segments, oldest first."""
        return self._snapshot[0]

    def disk_bytes(self) -> int:
        """Bytes in this category's segments."""
        return sum(s.committed for s in self._snapshot[0])

    def prepare(self) -> None:
        """Create the first segment of a category that has none, before a batch takes its
        locks: the file's creation (and its directory's sync) then holds up no writer of the
        batch's other categories."""
        if self._snapshot[0]:
            return
        with self.lock:
            if not self._snapshot[0]:
                self._rotate(None, 0)

    # ------------------------------------------------------------------ writes
    # All of these run with ``self.lock`` held.

    def write(
        self, data: bytes, received_ns: int = 0, records: int = 0, latest_ns: int = 0
    ) -> Written:
        """Write ``data`` (``records`` records received at ``received_ns``, or from then to
        ``latest_ns`` for copies of several batches) at the end of the active segment
        (rotating first if needed).

        On failure the file is cut back to where it was and StorageUnavailableError
        is raised: nothing of ``data`` remains.
        """
        segment = self._writable(len(data))
        start = segment.committed
        if start == 0 and segment.version >= FORMAT_VERSION:
            # The header goes to disk with the first block, in one write: a segment is
            # empty or starts with a header (a torn one is cut back to nothing at open).
            data = segment_header(self.marker) + data
        try:
            with self._descriptors.writing(segment) as fd:
                written = self._disk.pwrite(fd, data, start)
            if written != len(data):
                raise OSError(0, f"short write ({written} of {len(data)} bytes)")
        except OSError as exc:
            self._counters.add("write_errors")
            self._cut(segment, start)
            raise _unavailable(f"writing to category {self.name!r} failed", exc) from exc
        return Written(
            segment, start, start + len(data), received_ns, records, max(latest_ns, received_ns)
        )

    def undo(self, written: Written) -> None:
        """Remove a write that succeeded because a later part of its batch failed."""
        self._cut(written.segment, written.start)

    def publish(self, written: Written) -> None:
        """Make a write visible (with fsync="always", readers see it once it is durable)."""
        segment = written.segment
        segment.note_write(
            written.start, written.end, written.received_ns, written.records, written.latest_ns
        )
        if self._policy.fsync != "always":
            segment.readable = written.end
            self._changes.published()

    def _cut(self, segment: Segment, length: int) -> None:
        try:
            with self._descriptors.writing(segment) as fd:
                self._disk.ftruncate(fd, length)
        except OSError as exc:
            # The partial bytes stay in the file, past ``committed`` where nobody reads them;
            # retire the segment so the next write starts a new one after them.
            log.error(
                "category %s: cannot cut %s back to %d bytes (%s); rotating",
                self.name,
                segment.path.name,
                length,
                exc,
            )
            self._committer.retire(segment)

    def _writable(self, nbytes: int) -> Segment:
        """The segment the next ``nbytes`` go to: rotate when full, after a failure, or when
        there is none yet. Its descriptor is opened by the write (see ``Descriptors``)."""
        segments = self._snapshot[0]
        active = segments[-1] if segments else None
        if active is None:
            return self._rotate(None, 0)
        fmt = self._policy.segment_format
        if active.committed == 0 and not active.retired:
            active.adopt_format(fmt, self.marker)  # nothing in it yet: it takes ours
        if (
            active.retired
            or active.sync_failed
            or active.version != fmt
            or (fmt >= FORMAT_VERSION and active.marker != self.marker)
            or (active.committed and active.committed + nbytes > self._policy.segment_bytes)
        ):
            return self._rotate(active, self._end_of(active))
        return active

    def _end_of(self, segment: Segment) -> int:
        """Where the next segment starts: after every byte of this one, even bytes a failed
        cut left behind, so positions never overlap."""
        try:
            size = segment.path.stat().st_size
        except OSError:
            size = 0
        return segment.base + max(segment.committed, size)

    def _rotate(self, old: Segment | None, base: int) -> Segment:
        path = self.directory / segment_name(base)
        try:
            fd = self._disk.open_segment(path, create=True)
        except OSError as exc:
            raise _unavailable(f"cannot create segment {path}", exc) from exc
        try:
            if self._policy.fsync != "never":
                self._disk.sync_path(self.directory)  # the new name must survive a power loss
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise _unavailable(f"cannot sync directory {self.directory}", exc) from exc
        fmt = self._policy.segment_format
        segment = Segment(
            base,
            path,
            0,
            modified=time.time(),
            index=None,
            version=fmt,
            marker=self.marker if fmt >= FORMAT_VERSION else b"",
        )
        segment.index = SegmentIndex(segment.data_start)
        self._descriptors.adopt(segment, fd)
        if old is not None:
            old.modified = time.time()
            self._committer.retire(old)
            old.save_index()  # closed: its index is final
            log.info("category %s: rotated to %s", self.name, path.name)
        self._replace([*self._snapshot[0], segment])
        if old is not None:
            self._retain(time.time())
        return segment

    def _replace(self, segments: list[Segment]) -> None:
        self._snapshot = (segments, [s.base for s in segments])

    # --------------------------------------------------------------- retention

    def enforce_retention(self, now: float) -> int:
        """Delete closed segments beyond the retention limits; return how many."""
        with self.lock:
            return self._retain(now)

    def _retain(self, now: float) -> int:
        """Delete the oldest closed segments beyond the limits, stopping at the first one whose
        bytes are not all durable yet (see :meth:`_deletable`); return how many."""
        policy = self._policy
        segments = self._snapshot[0]
        closed = len(segments) - 1  # the active (last) segment is never deleted
        drop = 0
        if policy.retention_age_s is not None:
            while drop < closed and now - segments[drop].modified > policy.retention_age_s:
                drop += 1
        if policy.retention_bytes is not None:
            total = sum(s.committed for s in segments[drop:])
            while drop < closed and total > policy.retention_bytes:
                total -= segments[drop].committed
                drop += 1
        # Oldest first, up to the first segment whose round has not finished: a later pass
        # (the next rotation, or the background check) deletes it and what follows.
        drop = next((i for i in range(drop) if not self._deletable(segments[i])), drop)
        if not drop:
            return 0
        # The new snapshot first, then the files: a reader holding the old snapshot that
        # finds a file gone sees that the snapshot changed and starts again from the new
        # one (see _retrying); the other order let it fail on a file already unlinked
        # while the snapshot still listed it.
        self._replace(segments[drop:])
        self.holdings.invalidate()  # the batches of the deleted segments are held no more
        deleted = 0
        for segment in segments[:drop]:
            segment.deleted = True
            try:
                self._disk.unlink(segment.path)
                index_path(segment.path).unlink(missing_ok=True)
            except OSError as exc:
                # Out of the snapshot already: never read again; a restart finds the file
                # and retention deletes it then.
                log.error("category %s: cannot delete %s: %s", self.name, segment.path, exc)
                continue
            deleted += 1
        self._counters.add("segments_deleted", deleted)
        log.info(
            "category %s: retention deleted %d segment(s) up to position %d",
            self.name,
            deleted,
            segments[drop].base,
        )
        return deleted

    def _deletable(self, segment: Segment) -> bool:
        """Whether retention may delete a closed segment now: once its last commit round has
        finished, so that no round counts a deleted file as synced and no batch is
        acknowledged whose bytes are already gone (a ``retention_bytes`` below
        ``segment_bytes`` makes every rotation want to delete the segment just retired, whose
        batches may still wait for their fdatasync). A failed sync is final (its batches were
        refused); with fsync="never" no round is waited for, so nothing holds deletion back.
        """
        return (
            segment.synced >= segment.committed
            or segment.sync_failed
            or self._policy.fsync == "never"
        )

    # ------------------------------------------------------------------- reads

    def read(self, position: int, limit: int, max_bytes: int) -> ReadBatch:
        """Records from ``position`` (a record boundary; below the oldest kept record means
        from the oldest one), at most ``limit`` records and about ``max_bytes``."""
        records: list[SegmentRecord] = []

        def fill(segment: Segment, off: int, stop: int, used: int) -> tuple[int, int]:
            return segment.read_into(self.name, records, off, stop, limit, max_bytes, used)

        next_position, end_of_log = self._retrying(
            position,
            lambda snapshot: self._read(snapshot, position, records, limit, max_bytes, fill),
        )
        return ReadBatch(records, next_position, end_of_log)

    def read_blocks(
        self, position: int, max_bytes: int, times: TimeRange | None = None
    ) -> BlockBatch:
        """Whole stored blocks from the one holding ``position`` (a record boundary, as for
        :meth:`read`) until their payloads reach about ``max_bytes`` (at least one); with
        ``times``, only blocks received in that range (the index skips the rest)."""
        blocks: list[StoredBlock] = []

        def fill(segment: Segment, off: int, stop: int, used: int) -> tuple[int, int]:
            return segment.blocks_into(self.name, blocks, off, stop, max_bytes, used, times)

        next_position, end_of_log = self._retrying(
            position,
            lambda snapshot: self._read(snapshot, position, blocks, 2**63, max_bytes, fill),
        )
        return BlockBatch(blocks, next_position, end_of_log)

    def _retrying(self, position: int, read: Any) -> tuple[int, bool]:
        for _ in range(8):
            snapshot = self._snapshot
            try:
                result: tuple[int, bool] = read(snapshot)
                return result
            except FileNotFoundError:
                if self._snapshot is snapshot:
                    raise
                # Retention deleted a segment under us: start again from the new snapshot.
        raise StorageUnavailableError(f"category {self.name!r} changes too fast to read")

    def _read(
        self,
        snapshot: tuple[list[Segment], list[int]],
        position: int,
        out: list[_T],
        limit: int,
        max_bytes: int,
        fill: Any,
    ) -> tuple[int, bool]:
        """Fill ``out`` from ``position`` on with ``fill(segment, offset, stop, used)`` until
        ``limit`` items or ``max_bytes``; return (next position, end of log)."""
        out.clear()  # a retry after retention starts again
        segments, bases = snapshot
        if not segments:
            if position == 0:
                return 0, True
            raise InvalidPositionError(self.name, position, "beyond the end of the log")
        i, off = 0, 0
        if position >= segments[0].base:
            i = bisect_right(bases, position) - 1
            segment = segments[i]
            off = position - segment.base
            if off > segment.readable:
                raise InvalidPositionError(self.name, position, "beyond the end of the data")
            if (
                off not in (0, segment.readable)
                and position not in self._recent
                and not segment.is_boundary(self.name, off)
            ):
                raise InvalidPositionError(self.name, position)
        used = 0
        while len(out) < limit and used < max_bytes:
            segment = segments[i]
            # Sealed first, then readable: once sealed, readable is final, so moving on to the
            # next segment cannot skip records that became readable in between.
            sealed = segment.sealed
            stop = segment.readable
            if off < stop:
                off, used = fill(segment, off, stop, used)
                if off < stop:
                    break  # limit or max_bytes reached
                continue  # more may have become readable meanwhile
            if sealed and i + 1 < len(segments):
                i, off = i + 1, 0
                continue
            break
        segment = segments[i]
        more_segments = i + 1 < len(segments) and segment.sealed
        end_of_log = off >= segment.readable and not more_segments
        next_position = segment.base + off
        recent = self._recent
        if len(recent) >= _RECENT_POSITIONS:
            recent.clear()
        recent[next_position] = None
        return next_position, end_of_log

    def oldest_position(self) -> int:
        """Where the oldest kept segment starts (a read from before it starts there)."""
        segments = self._snapshot[0]
        return segments[0].base if segments else 0

    def end_position(self) -> int:
        """Where the readable data ends now."""
        segments = self._snapshot[0]
        if not segments:
            return 0
        last = segments[-1]
        return last.base + last.readable

    def tail_position(self, n: int) -> int:
        """The position of the ``n``-th last record (the oldest one's when there are fewer):
        from the segments' record counts, then a walk of at most one stretch."""
        segments = self._snapshot[0]
        remaining = n
        for segment in reversed(segments):
            index = segment.ensure_index(self.name)
            total = index.records
            if total < remaining:
                remaining -= total
                continue
            k = bisect_right(index.before, total - remaining) - 1
            skip = total - index.before[k] - remaining
            found = segment.record_after(self.name, index.offsets[k], skip)
            position = min(segment.base + found, segment.base + segment.readable)
            if len(self._recent) >= _RECENT_POSITIONS:
                self._recent.clear()
            self._recent[position] = None
            return position
        return self.oldest_position()

    def stats(self) -> tuple[int, int, int, int]:
        """(records, bytes, first receive time, last receive time) from the indexes."""
        records = size = first = last = 0
        for segment in self._snapshot[0]:
            index = segment.ensure_index(self.name)
            records += index.records
            size += segment.committed
            if index.first_ns and (not first or index.first_ns < first):
                first = index.first_ns
            last = max(last, index.last_ns)
        return records, size, first, last

    def close(self) -> None:
        """Close descriptors and save the indexes not saved yet (storage is closing:
        synced, no writer left)."""
        segments = self._snapshot[0]
        self._committer.close_all(segments)
        for segment in segments:
            if segment.readable == segment.committed:
                segment.save_index()
