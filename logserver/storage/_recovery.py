"""What :meth:`Storage.open` does before the first append: find segments, repair tails,
and rebuild the deduplication index from the records themselves.

Repair is deliberately narrow. Only the *last* segment of a category can have
been written when the process died, and there only the bytes after the last
complete write (the last record or block carrying the END flag) are removed: a
torn record or block, garbage, or whole records of a write that never finished
(never acknowledged). Damage anywhere else is logged and skipped by readers,
never truncated, because valid records after it may have been acknowledged.

Each segment's format is read from its first bytes (``_blocks.segment_format``):
version 1 and 2 segments are scanned and served side by side. A segment of a
version newer than this code knows stops the open with StorageUnavailableError:
a newer server wrote it, and this one must neither repair nor truncate it.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from logserver.errors import StorageUnavailableError
from logserver.storage._blocks import (
    FORMAT_VERSION,
    SEGMENT_HEADER_BYTES,
    probe_format,
    segment_format,
)
from logserver.storage._dedup import SequenceWindow
from logserver.storage._disk import DiskIO
from logserver.storage._format import Damage, WriteRun, pread_at
from logserver.storage._policy import StoragePolicy
from logserver.storage._segment import Segment
from logwire.categories import category_problem

__all__ = ["Recovered", "load_segments", "recover"]

log = logging.getLogger(__name__)

_SEGMENT_FILE = re.compile(r"(\d{20})\.seg\Z")
_SCAN_CHUNK = 4 << 20
_MAX_PARTIAL = 100_000


def _format_of(path: Path, size: int) -> tuple[int, bytes]:
    with open(path, "rb") as f:
        first = f.read(SEGMENT_HEADER_BYTES)
        found = segment_format(first)
        if found.version == 0 and size > SEGMENT_HEADER_BYTES:
            found = probe_format(pread_at(f.fileno()), size, first)
            log.error(
                "segment %s: its first bytes are no valid header; read as format %d",
                path,
                found.version,
            )
    if found.version > FORMAT_VERSION:
        raise StorageUnavailableError(
            f"{path} has segment format {found.version}; this server reads formats 1 to "
            f"{FORMAT_VERSION}: run a newer server on this directory (it is left untouched)"
        )
    return found.version, found.marker


def load_segments(directory: Path, category: str) -> list[Segment]:
    """The segment files of one category directory, oldest first, with their sizes and formats.

    Raises StorageUnavailableError for a segment of a format this code does not know.
    """
    segments = []
    for entry in os.scandir(directory):
        match = _SEGMENT_FILE.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        st = entry.stat(follow_symlinks=False)
        version, marker = _format_of(Path(entry.path), st.st_size) if st.st_size else (0, b"")
        segments.append(
            Segment(
                int(match[1]),
                Path(entry.path),
                st.st_size,
                modified=st.st_mtime,
                marks=None,
                version=version,
                marker=marker,
            )
        )
    segments.sort(key=lambda s: s.base)
    for before, after in itertools.pairwise(segments):
        if before.base + before.committed > after.base:
            log.error(
                "category %s: segment %s overlaps %s; reads of it stop at the next one",
                category,
                before.path.name,
                after.path.name,
            )
    return segments


@dataclass
class _Tally:
    """Counts the records of each (producer, sequence) batch found, across categories."""

    max_producers: int
    window: int
    # producer -> (its window of complete batches, [newest received_ns])
    complete: dict[bytes, tuple[SequenceWindow, list[int]]] = field(
        default_factory=dict, repr=False
    )
    # (producer, sequence) of batches not yet complete -> [count, mask of indexes, received_ns]
    open: dict[tuple[bytes, int], list[int]] = field(default_factory=dict, repr=False)

    def feed(self, runs: Sequence[WriteRun]) -> None:
        """Add the records of one complete write."""
        for run in runs:
            self._add((run.producer, run.sequence), run.count, run.received_ns, run.bits)

    def _add(self, key: tuple[bytes, int], count: int, ns: int, bits: int) -> None:
        entry = self.open.get(key)
        if entry is None:
            if bits.bit_count() >= count:
                self._done(key, ns)
                return
            self.open[key] = [count, bits, ns]
            return
        entry[1] |= bits
        if entry[1].bit_count() >= entry[0]:
            del self.open[key]
            self._done(key, ns)

    def _done(self, key: tuple[bytes, int], ns: int) -> None:
        producer, sequence = key
        found = self.complete.get(producer)
        if found is None:
            found = self.complete[producer] = (SequenceWindow(), [ns])
        found[0].add(sequence, self.window)
        if ns > found[1][0]:
            found[1][0] = ns

    def stored(self) -> list[tuple[str, SequenceWindow]]:
        """Each producer's window, least recently seen first, the newest ``max_producers``."""
        newest = sorted(self.complete.items(), key=lambda item: item[1][1][0])
        return [(_text(p), window) for p, (window, _) in newest[-self.max_producers :]]

    def partial(self) -> list[tuple[str, int, int]]:
        """Batches only partly on disk: (producer, sequence, mask of indexes present)."""
        newest = sorted(self.open.items(), key=lambda item: item[1][2])[-_MAX_PARTIAL:]
        return [(_text(p), sequence, mask) for (p, sequence), (_, mask, _) in newest]


def _text(producer: bytes) -> str:
    return producer.decode("utf-8", "surrogatepass")


@dataclass
class Recovered:
    """What recovery found: per category, its segments; and the dedup state on disk."""

    segments: dict[str, list[Segment]]
    stored: list[tuple[str, SequenceWindow]]
    partial: list[tuple[str, int, int]]
    truncated_bytes: int = 0


def _scan(segment: Segment, tally: _Tally, *, last: bool) -> tuple[int, list[Damage]]:
    """Verify a whole segment: feed complete writes to the tally, record boundary marks.

    Returns the end of the last complete write and the damaged ranges.
    """
    if segment.version == 0:  # empty, or not even a whole header: nothing to trust
        segment.marks = [0]
        return 0, [Damage(0, segment.committed)] if segment.committed else []
    fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        scan = segment.scan(pread_at(fd), segment.committed, tally.feed)
    finally:
        os.close(fd)
    marks = scan.marks
    if last:  # the tail after the last complete write is about to be cut off
        marks = [m for m in marks if m < scan.complete_end] or [segment.data_start]
    elif scan.tail:
        tally.feed(scan.tail)  # a closed segment's tail is final; count what is there
    segment.marks = marks
    return scan.complete_end, scan.damages


def _repair_tail(
    category: str, segment: Segment, complete_end: int, damages: list[Damage], disk: DiskIO
) -> int:
    """Cut the last segment back to its last complete write; return the bytes removed."""
    size = segment.committed
    for damage in damages:
        if damage.end <= complete_end:
            segment.report(category, damage)
    if complete_end >= size:
        return 0
    torn = sum(d.end - d.offset for d in damages if d.end > complete_end)
    log.warning(
        "category %s segment %s: truncating %d bytes at offset %d "
        "(an unfinished write: %d bytes of whole records, %d bytes torn or damaged)",
        category,
        segment.path.name,
        size - complete_end,
        complete_end,
        size - complete_end - torn,
        torn,
    )
    try:
        fd = disk.open_segment(segment.path, create=False)
        try:
            disk.ftruncate(fd, complete_end)
            disk.fdatasync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageUnavailableError(
            f"cannot repair {segment.path}: {exc.strerror or exc}"
        ) from exc
    segment.committed = segment.readable = complete_end
    return size - complete_end


def recover(categories_dir: Path, policy: StoragePolicy, disk: DiskIO) -> Recovered:
    """Load every category, repair each last segment, and tally the batches on disk.

    Per category the last segment is always scanned; older ones newest first
    while the total stays within ``policy.dedup_scan_bytes``.
    """
    tally = _Tally(policy.max_producers, policy.dedup_window)
    found: dict[str, list[Segment]] = {}
    truncated = 0
    if categories_dir.is_dir():
        for entry in sorted(os.scandir(categories_dir), key=lambda e: e.name):
            if not entry.is_dir(follow_symlinks=False):
                continue
            problem = category_problem(entry.name)
            if problem is not None:
                log.warning("ignoring directory %s: %s", entry.path, problem)
                continue
            segments = load_segments(Path(entry.path), entry.name)
            if not segments:
                continue
            last = segments[-1]
            complete_end, damages = _scan(last, tally, last=True)
            truncated += _repair_tail(entry.name, last, complete_end, damages, disk)
            budget = policy.dedup_scan_bytes - last.committed
            for segment in reversed(segments[:-1]):
                if segment.committed > budget:
                    break
                budget -= segment.committed
                _, damages = _scan(segment, tally, last=False)
                for damage in damages:
                    segment.report(entry.name, damage)
            found[entry.name] = segments
    return Recovered(found, tally.stored(), tally.partial(), truncated)
