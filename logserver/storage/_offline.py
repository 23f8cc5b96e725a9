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
from collections.abc import Iterator
from pathlib import Path

from logserver.errors import InvalidCategoryError
from logserver.storage._blocks import Block, walk_blocks
from logserver.storage._columns import decode_messages
from logserver.storage._format import Damage, Frame, ReadAt, pread_at, walk
from logserver.storage._recovery import load_segments
from logserver.storage._segment import Segment
from logserver.storage._types import SegmentRecord
from logwire.categories import category_problem

__all__ = ["list_categories_offline", "read_category_offline"]

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


def read_category_offline(data_dir: Path, category: str) -> Iterator[SegmentRecord]:
    """Every readable record of ``category`` in ``data_dir``, in position order."""
    problem = category_problem(category)
    if problem is not None:
        raise InvalidCategoryError(category, problem)
    directory = Path(data_dir) / CATEGORIES_DIR / category
    if not directory.is_dir():
        return
    segments = load_segments(directory, category)
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
