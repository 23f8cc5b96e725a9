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
from typing import NamedTuple

from logserver.errors import InvalidPositionError, StorageUnavailableError
from logserver.storage._commit import GroupCommitter
from logserver.storage._disk import DiskIO
from logserver.storage._policy import StoragePolicy
from logserver.storage._segment import Segment, segment_name
from logserver.storage._stats import Counters
from logserver.storage._types import ReadBatch, SegmentRecord

__all__ = ["CategoryLog", "Written"]

log = logging.getLogger(__name__)

_RECENT_POSITIONS = 4096


class Written(NamedTuple):
    """A write that succeeded but is not yet published (readers cannot see it)."""

    segment: Segment
    start: int
    end: int


def _unavailable(what: str, exc: OSError) -> StorageUnavailableError:
    return StorageUnavailableError(f"{what}: {exc.strerror or exc}")


class CategoryLog:
    """The segments of one category, oldest first; the last one takes the writes."""

    def __init__(
        self,
        name: str,
        directory: Path,
        segments: list[Segment],
        *,
        policy: StoragePolicy,
        disk: DiskIO,
        committer: GroupCommitter,
        counters: Counters,
    ) -> None:
        self.name = name
        self.directory = directory
        self.lock = threading.Lock()
        for closed in segments[:-1]:
            closed.retired = True  # recovered: only the last segment takes writes
        # Replaced on change, never mutated: readers work on a snapshot without the lock.
        self._snapshot: tuple[list[Segment], list[int]] = (segments, [s.base for s in segments])
        self._policy = policy
        self._disk = disk
        self._committer = committer
        self._counters = counters
        # next_position values handed to readers: known boundaries, no need to verify them.
        self._recent: dict[int, None] = {}

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

    @classmethod
    def create(
        cls,
        name: str,
        directory: Path,
        *,
        policy: StoragePolicy,
        disk: DiskIO,
        committer: GroupCommitter,
        counters: Counters,
    ) -> CategoryLog:
        """A new, empty category (its first segment is created by the first write)."""
        try:
            disk.mkdir(directory)
            if policy.fsync != "never":
                disk.sync_path(directory.parent)
        except OSError as exc:
            raise _unavailable(f"cannot create category {name!r}", exc) from exc
        return cls(
            name,
            directory,
            [],
            policy=policy,
            disk=disk,
            committer=committer,
            counters=counters,
        )

    # ------------------------------------------------------------------ writes
    # All of these run with ``self.lock`` held.

    def write(self, data: bytes) -> Written:
        """Write ``data`` at the end of the active segment (rotating first if needed).

        On failure the file is cut back to where it was and StorageUnavailableError
        is raised: nothing of ``data`` remains.
        """
        segment = self._writable(len(data))
        start = segment.committed
        try:
            written = self._disk.pwrite(segment.fd, data, start)
            if written != len(data):
                raise OSError(0, f"short write ({written} of {len(data)} bytes)")
        except OSError as exc:
            self._counters.add("write_errors")
            self._cut(segment, start)
            raise _unavailable(f"writing to category {self.name!r} failed", exc) from exc
        return Written(segment, start, start + len(data))

    def undo(self, written: Written) -> None:
        """Remove a write that succeeded because a later part of its batch failed."""
        self._cut(written.segment, written.start)

    def publish(self, written: Written) -> None:
        """Make a write visible (with fsync="always", readers see it once it is durable)."""
        segment = written.segment
        segment.note_write(written.start, written.end)
        if self._policy.fsync != "always":
            segment.readable = written.end

    def _cut(self, segment: Segment, length: int) -> None:
        try:
            self._disk.ftruncate(segment.fd, length)
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
        there is none yet; open the descriptor on the first write after a restart."""
        segments = self._snapshot[0]
        active = segments[-1] if segments else None
        if active is None:
            return self._rotate(None, 0)
        if (
            active.retired
            or active.sync_failed
            or (active.committed and active.committed + nbytes > self._policy.segment_bytes)
        ):
            return self._rotate(active, self._end_of(active))
        if active.fd < 0:
            try:
                active.fd = self._disk.open_segment(active.path, create=False)
            except OSError as exc:
                raise _unavailable(f"cannot open {active.path}", exc) from exc
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
        segment = Segment(base, path, 0, modified=time.time(), marks=[0])
        segment.fd = fd
        if old is not None:
            old.modified = time.time()
            self._committer.retire(old)
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
        deleted = 0
        for segment in segments[:drop]:
            try:
                segment.path.unlink(missing_ok=True)
            except OSError as exc:
                log.error("category %s: cannot delete %s: %s", self.name, segment.path, exc)
                break
            deleted += 1
        if deleted:
            self._replace(segments[deleted:])
            self._counters.add("segments_deleted", deleted)
            log.info(
                "category %s: retention deleted %d segment(s) up to position %d",
                self.name,
                deleted,
                segments[deleted].base,
            )
        return deleted

    # ------------------------------------------------------------------- reads

    def read(self, position: int, limit: int, max_bytes: int) -> ReadBatch:
        """Records from ``position`` (a record boundary; below the oldest kept record means
        from the oldest one), at most ``limit`` records and about ``max_bytes``."""
        for _ in range(8):
            snapshot = self._snapshot
            try:
                return self._read(snapshot, position, limit, max_bytes)
            except FileNotFoundError:
                if self._snapshot is snapshot:
                    raise
                # Retention deleted a segment under us: start again from the new snapshot.
        raise StorageUnavailableError(f"category {self.name!r} changes too fast to read")

    def _read(
        self,
        snapshot: tuple[list[Segment], list[int]],
        position: int,
        limit: int,
        max_bytes: int,
    ) -> ReadBatch:
        segments, bases = snapshot
        if not segments:
            if position == 0:
                return ReadBatch([], 0, True)
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
        records: list[SegmentRecord] = []
        used = 0
        while len(records) < limit and used < max_bytes:
            segment = segments[i]
            # Sealed first, then readable: once sealed, readable is final, so moving on to the
            # next segment cannot skip records that became readable in between.
            sealed = segment.sealed
            stop = segment.readable
            if off < stop:
                off, used = segment.read_into(self.name, records, off, stop, limit, max_bytes, used)
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
        return ReadBatch(records, next_position, end_of_log)

    def close(self) -> None:
        """Close descriptors (storage is closing: synced, no writer left)."""
        self._committer.close_all(self._snapshot[0])
