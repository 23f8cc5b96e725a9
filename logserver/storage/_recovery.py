"""What :meth:`Storage.open` does before the first append: find segments, repair tails,
rebuild the deduplication index from the records themselves, and make what it read durable.

Repair is deliberately narrow. Only the *last* segment of a category can have
been written when the process died, and there only the bytes after the last
complete write (the last record or block carrying the END flag) are removed: a
torn record or block, garbage, or whole records of a write that never finished
(never acknowledged). Damage anywhere else is logged and skipped by readers,
never truncated, because valid records after it may have been acknowledged.

After a crash, every category's last segment is read whole (the one a crash
can tear); after a clean close, the record it left (:mod:`._clean`) says which
last segments are complete, and those are not. Then older segments, **newest
first across all categories** (by modification time), while the bytes read
stay within ``dedup_scan_bytes`` *in total*: restart time and memory follow
that budget, not the number of categories. A batch stored before that horizon
is not remembered, and a retry of it is stored again (at least once, never
lost; readers show it once, see :class:`~logserver.storage._dedup.DedupIndex`).

**Syncing what was read.** A process killed between ``pwrite`` and the group
fdatasync leaves bytes in the page cache that no sync has made durable yet; the
batch was never acknowledged, but the index rebuilt here would answer its resend
"duplicate", and a power cut after that answer would lose it. So after a crash
(and with ``fsync`` other than ``"never"``, which promises nothing of the kind),
every segment whose records fed the index is fdatasynced before
:func:`recover` returns, which is before the storage takes an append or a read
and before the server listens: nothing is ever answered from bytes that are not
durable. It costs one fdatasync per segment read (about a millisecond each on
this project's VMs when nothing is dirty). Older segments that were not read
are not synced: no answer relies on them (a reader may see a record of theirs
that a power cut right after the restart would take back; with
``fsync="always"`` such a record belongs to a batch that was never
acknowledged, so its resend is stored again anyway).

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from logserver.errors import StorageUnavailableError
from logserver.storage._blocks import (
    FORMAT_VERSION,
    SEGMENT_HEADER_BYTES,
    SegmentFormat,
    segment_format,
)
from logserver.storage._blockscan import probe_format
from logserver.storage._clean import LastSegments
from logserver.storage._dedup import SequenceWindow
from logserver.storage._disk import DiskIO
from logserver.storage._format import Damage, WriteRun, pread_at
from logserver.storage._policy import StoragePolicy
from logserver.storage._segment import Segment
from logserver.storage._timeindex import SegmentIndex
from logwire.categories import category_problem

__all__ = ["Recovered", "RecoveryReport", "load_segments", "recover"]

log = logging.getLogger(__name__)

_SEGMENT_FILE = re.compile(r"(\d{20})\.seg\Z")


def _header_of(path: Path) -> SegmentFormat:
    """What a segment's first bytes say (version 0: no valid header)."""
    with open(path, "rb") as f:
        return segment_format(f.read(SEGMENT_HEADER_BYTES))


def _probe(path: Path, size: int, siblings: list[bytes]) -> SegmentFormat:
    """The format of a segment whose header is damaged, from what follows (see
    ``_blockscan.probe_format``), trying the markers of the category's other segments too."""
    with open(path, "rb") as f:
        first = f.read(SEGMENT_HEADER_BYTES)
        found = probe_format(pread_at(f.fileno()), size, first, siblings)
    log.error(
        "segment %s: its first bytes are no valid header; read as format %d",
        path,
        found.version,
    )
    return found


def load_segments(directory: Path, category: str) -> list[Segment]:
    """The segment files of one category directory, oldest first, with their sizes and formats.

    Raises StorageUnavailableError for a segment of a format this code does not know.
    """
    found: list[tuple[int, Path, os.stat_result, SegmentFormat]] = []
    for entry in os.scandir(directory):
        match = _SEGMENT_FILE.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        st = entry.stat(follow_symlinks=False)
        path = Path(entry.path)
        header = _header_of(path) if st.st_size else SegmentFormat(0)
        if header.version > FORMAT_VERSION:
            raise StorageUnavailableError(
                f"{path} has segment format {header.version}; this server reads formats 1 to "
                f"{FORMAT_VERSION}: run a newer server on this directory (it is left untouched)"
            )
        found.append((int(match[1]), path, st, header))
    # The markers of the category's intact version-2 headers: what a damaged header's
    # segment is probed with, besides what its own first bytes may still hold.
    siblings = list(dict.fromkeys(h.marker for *_, h in found if h.version == FORMAT_VERSION))
    segments = []
    for base, path, st, header in found:
        if header.version == 0 and st.st_size > SEGMENT_HEADER_BYTES:
            header = _probe(path, st.st_size, siblings)
        segment = Segment(
            base,
            path,
            st.st_size,
            modified=st.st_mtime,
            index=None,
            version=header.version,
            marker=header.marker,
        )
        if header.version in (1, 2):
            segment.load_index()
        segments.append(segment)
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
    """Counts the records of each (producer, sequence) batch found, across categories.

    Memory stays bounded however many producers the segments hold: past twice
    ``max_producers`` producers (or partial batches) the least recently seen are
    forgotten, as the index itself would forget them. Forgetting only ever makes
    a retry be stored again, never answered "duplicate".
    """

    max_producers: int
    window: int
    max_partial: int = 100_000
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
            if len(self.open) > 2 * self.max_partial:
                self.open = dict(_newest(self.open.items(), lambda e: e[2], self.max_partial))
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
            if len(self.complete) > 2 * self.max_producers:
                self.complete = dict(
                    _newest(self.complete.items(), lambda e: e[1][0], self.max_producers)
                )
        found[0].add(sequence, self.window)
        if ns > found[1][0]:
            found[1][0] = ns

    def stored(self) -> list[tuple[str, SequenceWindow]]:
        """Each producer's window, least recently seen first, the newest ``max_producers``."""
        newest = _newest(self.complete.items(), lambda e: e[1][0], self.max_producers)
        return [(_text(p), window) for p, (window, _) in newest]

    def partial(self) -> list[tuple[str, int, int]]:
        """Batches only partly on disk: (producer, sequence, mask of indexes present)."""
        newest = _newest(self.open.items(), lambda e: e[2], self.max_partial)
        return [(_text(p), sequence, mask) for (p, sequence), (_, mask, _) in newest]


_K = TypeVar("_K")
_V = TypeVar("_V")


def _newest(
    items: Iterable[tuple[_K, _V]], received: Callable[[_V], int], keep: int
) -> list[tuple[_K, _V]]:
    """The ``keep`` items received last, oldest first."""
    return sorted(items, key=lambda item: received(item[1]))[-keep:]


def _text(producer: bytes) -> str:
    return producer.decode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class RecoveryReport:
    """What one :meth:`Storage.open` found and did, for its log line and for tests."""

    categories: int
    segments: int
    clean_categories: int
    """Categories whose last segment the clean-shutdown record vouched for (not read whole)."""
    scanned_segments: int
    scanned_bytes: int
    """Bytes read to repair tails and rebuild the dedup index (``dedup_scan_bytes`` bounds
    the part beyond the last segments of categories that were not closed cleanly)."""
    synced_segments: int
    """Segments fdatasynced before the first answer (see the module doc)."""
    truncated_bytes: int
    producers: int
    partial_batches: int


@dataclass
class Recovered:
    """What recovery found: per category, its segments; and the dedup state on disk."""

    segments: dict[str, list[Segment]]
    stored: list[tuple[str, SequenceWindow]]
    partial: list[tuple[str, int, int]]
    report: RecoveryReport


def _scan(segment: Segment, tally: _Tally, *, last: bool) -> tuple[int, list[Damage]]:
    """Verify a whole segment: feed complete writes to the tally, record boundary marks.

    Returns the end of the last complete write and the damaged ranges.
    """
    if segment.version == 0:  # empty, or not even a whole header: nothing to trust
        segment.index = SegmentIndex(0)
        return 0, [Damage(0, segment.committed)] if segment.committed else []
    fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        scan = segment.scan(pread_at(fd), segment.committed, tally.feed)
    finally:
        os.close(fd)
    if last:
        # The tail after the last complete write is about to be cut off: the index of
        # the last segment keeps complete writes only.
        index = scan.builder.build(with_tail=False)
        index.covered = scan.complete_end
        segment.index = index
        segment.index_saved = False
    else:
        if scan.tail:
            tally.feed(scan.tail)  # a closed segment's tail is final; count what is there
        if segment.index is None:  # no valid sidecar: this scan made the index
            index = scan.builder.build(with_tail=True)
            index.covered = segment.committed
            segment.index = index
            segment.save_index()
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


def recover(
    categories_dir: Path,
    policy: StoragePolicy,
    disk: DiskIO,
    clean: LastSegments | None = None,
) -> Recovered:
    """Load every category, repair each last segment, tally the batches on disk within the
    scan budget, and sync what was read (see the module doc).

    ``clean``: the record a clean close left (:func:`._clean.take_clean`), if any.
    Raises StorageUnavailableError if a tail cannot be repaired or a sync fails.
    """
    tally = _Tally(policy.max_producers, policy.dedup_window)
    found: dict[str, list[Segment]] = {}
    if categories_dir.is_dir():
        for entry in sorted(os.scandir(categories_dir), key=lambda e: e.name):
            if not entry.is_dir(follow_symlinks=False):
                continue
            problem = category_problem(entry.name)
            if problem is not None:
                log.warning("ignoring directory %s: %s", entry.path, problem)
                continue
            segments = load_segments(Path(entry.path), entry.name)
            if segments:
                found[entry.name] = segments
    clean = clean or {}
    truncated = 0
    scanned: list[Segment] = []
    unsynced: list[Segment] = []  # read, and not known to be durable
    budget = policy.dedup_scan_bytes
    trusted = {name for name, segments in found.items() if _vouched(clean.get(name), segments[-1])}
    for name, segments in found.items():
        if name in trusted:
            continue
        last = segments[-1]
        complete_end, damages = _scan(last, tally, last=True)
        truncated += _repair_tail(name, last, complete_end, damages, disk)
        budget -= last.committed
        scanned.append(last)
        unsynced.append(last)
    rest = [
        (name, segment)
        for name, segments in found.items()
        for segment in (segments if name in trusted else segments[:-1])
    ]
    # Newest first; within one modification time (coarse: a few ms) the later segment first.
    rest.sort(key=lambda item: (item[1].modified, item[1].base), reverse=True)
    for name, segment in rest:
        if segment.committed > budget:
            break
        budget -= segment.committed
        _, damages = _scan(segment, tally, last=False)
        for damage in damages:
            segment.report(name, damage)
        scanned.append(segment)
        if name not in trusted:
            unsynced.append(segment)
    for name in trusted:
        last = found[name][-1]
        if last.index is None:
            # Vouched for, past the budget and without a valid sidecar: appends go on in
            # it, and its time index must hold every write before them (a later first-use
            # index would miss the writes made meanwhile). One read of this segment.
            last.ensure_index(name)
    synced = _sync_read(unsynced, disk) if policy.fsync != "never" else 0
    stored, partial = tally.stored(), tally.partial()
    report = RecoveryReport(
        categories=len(found),
        segments=sum(len(segments) for segments in found.values()),
        clean_categories=len(trusted),
        scanned_segments=len(scanned),
        scanned_bytes=sum(segment.committed for segment in scanned),
        synced_segments=synced,
        truncated_bytes=truncated,
        producers=len(stored),
        partial_batches=len(partial),
    )
    return Recovered(found, stored, partial, report)


def _vouched(record: tuple[str, int] | None, last: Segment) -> bool:
    """Whether the clean-shutdown record describes this last segment as it is on disk."""
    return (
        record is not None
        and record == (last.path.name, last.committed)
        and (last.version != 0 or last.committed == 0)
    )


def _sync_read(segments: list[Segment], disk: DiskIO) -> int:
    """fdatasync each segment (by name); StorageUnavailableError if one fails."""
    for segment in segments:
        try:
            disk.sync_path(segment.path)
        except OSError as exc:
            raise StorageUnavailableError(
                f"cannot make recovered {segment.path} durable: {exc.strerror or exc}"
            ) from exc
    return len(segments)
