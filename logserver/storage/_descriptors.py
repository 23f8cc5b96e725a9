"""The segment files storage holds open for writing: at most a set number, least recently used closed first.

Each category writes to one segment at a time, and used to keep its file open
for good: one ``Log`` call naming 20,000 categories left a server holding
19,999 descriptors, and a few more such calls ran it out of them, after which
even ``accept()`` failed. Here a segment's descriptor is opened when a write
needs it and stays open while it is among the ``limit`` most recently used;
beyond that the least recently used one is closed, and opened again by the
next write to it (an ``open`` costs a few microseconds; a category that is
written to all the time never leaves the set).

A descriptor is never closed while someone uses it: a writer inside
:meth:`Descriptors.writing` (a ``pwrite`` or ``ftruncate``), or a sync that
pinned it (:meth:`Descriptors.pin`, the group committer's ``fdatasync``). A
segment that takes no more writes (*retired*: rotated, or failed) is closed as
soon as nobody uses it. Syncing a segment whose descriptor is closed is done by
name (``fdatasync`` works per file, not per descriptor), so closing one never
loses durability.

Every open, close and pin of a segment descriptor goes through this one object,
under its lock.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from logserver.storage._disk import DiskIO
from logserver.storage._segment import Segment

__all__ = ["Descriptors"]

log = logging.getLogger(__name__)


class Descriptors:
    """Open segment descriptors, at most ``limit`` of them unpinned."""

    def __init__(self, disk: DiskIO, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, not {limit}")
        self._disk = disk
        self._limit = limit
        self._lock = threading.Lock()
        # Open descriptors, least recently used first.
        self._open: dict[Segment, None] = {}
        self.opened = 0
        self.closed = 0

    def __repr__(self) -> str:
        return (
            f"<Descriptors open={len(self._open)} limit={self._limit} "
            f"opened={self.opened} closed={self.closed}>"
        )

    def __len__(self) -> int:
        return len(self._open)

    @contextmanager
    def writing(self, segment: Segment) -> Iterator[int]:
        """The segment's descriptor, opened if need be, kept open inside the ``with``.

        Raises OSError when the file cannot be opened.
        """
        fd = self.pin(segment, reopen=True)
        try:
            yield fd
        finally:
            self.unpin(segment)

    def adopt(self, segment: Segment, fd: int) -> None:
        """A new segment's descriptor (its file was just created): the most recently used."""
        with self._lock:
            segment.fd = fd
            self._open[segment] = None
            self.opened += 1
            self._trim()

    def pin(self, segment: Segment, *, reopen: bool = False) -> int:
        """Keep the segment's descriptor open until :meth:`unpin`; return it, or -1 if it is
        closed (and ``reopen`` is false: a sync then works by name)."""
        with self._lock:
            if segment.fd < 0:
                if not reopen:
                    return -1
                segment.fd = self._disk.open_segment(segment.path, create=False)
                self.opened += 1
            segment.pins += 1
            self._open.pop(segment, None)
            self._open[segment] = None
            self._trim()
            return segment.fd

    def unpin(self, segment: Segment) -> None:
        with self._lock:
            segment.pins -= 1
            if segment.pins == 0 and segment.retired:
                self._close(segment)
            else:
                self._trim()

    def retire(self, segment: Segment) -> None:
        """The segment takes no more writes: close its descriptor once nobody uses it."""
        with self._lock:
            segment.retired = True
            if segment.pins == 0:
                self._close(segment)

    def close_all(self, segments: Iterable[Segment]) -> None:
        """Close these segments' descriptors (storage is closing: synced, no writer left)."""
        with self._lock:
            for segment in segments:
                if segment.pins == 0:
                    self._close(segment)

    def _trim(self) -> None:
        """Close least recently used descriptors nobody uses while over the limit (lock held)."""
        excess = len(self._open) - self._limit
        if excess <= 0:
            return
        victims = []
        for segment in self._open:
            if segment.pins == 0:
                victims.append(segment)
                if len(victims) == excess:
                    break
        for segment in victims:
            self._close(segment)

    def _close(self, segment: Segment) -> None:
        self._open.pop(segment, None)
        if segment.fd >= 0:
            fd, segment.fd = segment.fd, -1
            self.closed += 1
            try:
                os.close(fd)
            except OSError as exc:  # the data was synced or its error reported; nothing to do
                log.warning("closing %s failed: %s", segment.path, exc)
