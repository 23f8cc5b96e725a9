"""Reading a data directory without the server: for tools, and for a server that is down.

No lock is taken and nothing is repaired, so this is safe on a live server's
directory too. A torn tail is tolerated the way recovery would treat it: in a
category's last segment only records of complete writes (up to the last
record or block carrying the END flag) are returned; damaged ranges are
skipped. Both segment formats are read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from logserver.errors import InvalidCategoryError
from logserver.storage._blockcodec import Block
from logserver.storage._blockscan import walk_blocks
from logserver.storage._columns import decode_messages
from logserver.storage._format import Damage, Frame, ReadAt, pread_at, walk
from logserver.storage._reading import SegmentView, read_blocks
from logserver.storage._recovery import load_segments
from logserver.storage._segment import Segment
from logserver.storage._types import SegmentRecord, StoredBlock
from logwire.categories import category_problem

__all__ = ["list_categories_offline", "read_blocks_offline", "read_category_offline"]

log = logging.getLogger(__name__)

CATEGORIES_DIR = "categories"


def list_categories_offline(data_dir: Path) -> list[str]:
    """The categories with at least one segment in ``data_dir``, sorted."""
    root = Path(data_dir) / CATEGORIES_DIR
    if not root.is_dir():
        return []
    names = []
    for entry in os.scandir(root):
        if (
            entry.is_dir(follow_symlinks=False)
            and category_problem(entry.name) is None
            and load_segments(Path(entry.path), entry.name)
        ):
            names.append(entry.name)
    return sorted(names)


def _segments(data_dir: Path, category: str) -> list[Segment]:
    """The segments of ``category`` in ``data_dir`` (none when it has no directory)."""
    problem = category_problem(category)
    if problem is not None:
        raise InvalidCategoryError(category, problem)
    directory = Path(data_dir) / CATEGORIES_DIR / category
    if not directory.is_dir():
        return []
    return load_segments(directory, category)


def read_category_offline(data_dir: Path, category: str) -> Iterator[SegmentRecord]:
    """Every readable record of ``category`` in ``data_dir``, in position order."""
    segments = _segments(data_dir, category)
    producers: dict[bytes, str] = {}
    for number, segment in enumerate(segments):
        last = number == len(segments) - 1
        try:
            fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # deleted by retention since we listed it
        try:
            size = os.fstat(fd).st_size
            items = _items(segment, pread_at(fd), size)
            pending: list[Frame | Block] = []
            for item in items:
                if isinstance(item, Damage):
                    log.warning(
                        "category %s segment %s: skipping %d damaged bytes at offset %d",
                        category,
                        segment.path.name,
                        item.end - item.offset,
                        item.offset,
                    )
                    continue
                pending.append(item)
                if item.ends_write or not last:
                    yield from _records(category, segment.base, pending, producers)
                    pending.clear()
        finally:
            os.close(fd)


def read_blocks_offline(
    data_dir: Path, category: str, page_bytes: int = 4 * 2**20
) -> Iterator[list[StoredBlock]]:
    """Every readable block of ``category`` in ``data_dir``, in position order, a page
    (about ``page_bytes`` of stored payload) at a time. In the last segment only
    complete writes count, as in :func:`read_category_offline`."""
    segments = _segments(data_dir, category)
    for number, segment in enumerate(segments):
        try:
            fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # deleted by retention since we listed it
        try:
            read = pread_at(fd)
            stop = os.fstat(fd).st_size
            if number == len(segments) - 1 and segment.version in (1, 2):
                stop = segment.scan(read, stop, _ignore_writes).complete_end
            view = SegmentView(
                segment.base,
                segment.version,
                segment.marker,
                segment.data_start,
                [segment.data_start],
            )
            offset = 0
            while offset < stop:
                out: list[StoredBlock] = []
                after, _ = read_blocks(
                    read, view, category, out, offset, stop, page_bytes, 0, _warn(category, segment)
                )
                if out:
                    yield out
                if after <= offset:
                    break
                offset = after
        finally:
            os.close(fd)


def _ignore_writes(runs: object) -> None:
    pass


def _warn(category: str, segment: Segment) -> Callable[[Damage], None]:
    def report(damage: Damage) -> None:
        log.warning(
            "category %s segment %s: skipping %d damaged bytes at offset %d",
            category,
            segment.path.name,
            damage.end - damage.offset,
            damage.offset,
        )

    return report


def _items(segment: Segment, read: ReadAt, size: int) -> Iterator[Frame | Block | Damage]:
    if segment.version == 1:
        return walk(read, 0, size)
    if segment.version >= 2:
        return walk_blocks(read, segment.marker, segment.data_start, size)
    return iter([Damage(0, size)] if size else [])


def _records(
    category: str, base: int, items: list[Frame | Block], producers: dict[bytes, str]
) -> Iterator[SegmentRecord]:
    for f in items:
        producer = producers.get(f.producer)
        if producer is None:
            producer = producers[f.producer] = f.producer.decode("utf-8", "replace")
        if isinstance(f, Frame):
            yield SegmentRecord(
                category,
                f.message,
                producer,
                f.sequence,
                f.batch_index,
                f.batch_count,
                f.received_ns,
                base + f.offset,
            )
            continue
        messages = decode_messages(f.codec, f.payload, f.raw_bytes, f.records)
        for i, (message, index) in enumerate(zip(messages, f.indexes(), strict=True)):
            yield SegmentRecord(
                category,
                message,
                producer,
                f.sequence,
                index,
                f.batch_count,
                f.received_ns,
                base + f.offset + i,
            )
