"""Reading chosen batches of a category: what ``ReadBatches`` serves to ``logserver repair``.

Repair knows, from the holdings (:mod:`logserver.storage._holdings`), which
sequences of which producers a server must send, and between which positions
they lie. The server walks the blocks there by their headers and ships only
the blocks of the batches asked for, payloads as stored: a block that is not
wanted costs a header parse and its check, never a decompression or a byte on
the wire.

A batch's records of one category are one write (one or more blocks, the last
marked END), and an answer never ends inside one: repair stores each batch
part it receives whole, in one write of its own, so a batch is never half
copied. Each answer reads about ``max_scan_bytes`` of the segments at most and
holds about ``max_bytes`` of payloads; ``next_position`` says where to go on.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from logserver.storage._blockscan import walk_blocks
from logserver.storage._format import Damage, pread_at
from logserver.storage._reading import Producers, stored_block, v1_block, writes_v1
from logserver.storage._segment import Segment
from logserver.storage._types import StoredBlock

__all__ = ["Wanted", "WantedBlocks", "read_wanted"]


class Wanted:
    """The batches asked for: per producer, sorted disjoint ``(first, last)`` sequence ranges."""

    __slots__ = ("_ranges",)

    def __init__(self, ranges: Mapping[str, Sequence[tuple[int, int]]]) -> None:
        self._ranges: dict[bytes, tuple[list[int], list[int]]] = {}
        for producer, pairs in ranges.items():
            ordered = sorted(pairs)
            self._ranges[producer.encode("utf-8", "surrogatepass")] = (
                [a for a, _ in ordered],
                [b for _, b in ordered],
            )

    def __repr__(self) -> str:
        return f"<Wanted producers={len(self._ranges)}>"

    def __contains__(self, key: tuple[bytes, int]) -> bool:
        producer, sequence = key
        found = self._ranges.get(producer)
        if found is None:
            return False
        firsts, lasts = found
        i = bisect_right(firsts, sequence) - 1
        return i >= 0 and sequence <= lasts[i]


@dataclass(frozen=True)
class WantedBlocks:
    """What one :func:`read_wanted` found, and where the next one starts."""

    blocks: list[StoredBlock]
    next_position: int
    #: ``stop`` (or the end of the readable data) was reached: nothing more to read.
    done: bool


def read_wanted(
    category: str,
    segments: list[Segment],
    wanted: Wanted,
    position: int,
    stop: int,
    max_bytes: int,
    max_scan_bytes: int,
) -> WantedBlocks:
    """The blocks of ``wanted`` batches from ``position`` (0, a block's position, or a
    ``next_position`` this returned) up to ``stop`` (exclusive).

    FileNotFoundError when retention deleted a segment meanwhile (the caller starts again).
    """
    blocks: list[StoredBlock] = []
    used = scanned = 0
    bases = [s.base for s in segments]
    first = max(0, bisect_right(bases, position) - 1)
    for segment in segments[first:]:
        if segment.base >= stop:
            break
        sealed = segment.sealed  # before readable: once sealed, readable is final
        readable = segment.readable
        offset = max(0, position - segment.base)
        for found, end in _writes(category, segment, wanted, offset, readable):
            blocks.extend(found)
            used += sum(len(b.payload) for b in found)
            scanned += end - offset
            offset = end
            at = segment.base + end
            if at >= stop:
                return WantedBlocks(blocks, at, True)
            if used >= max_bytes or scanned >= max_scan_bytes:
                return WantedBlocks(blocks, at, False)
        position = segment.base + readable
        if not sealed:
            break  # the active segment: nothing after it yet
    return WantedBlocks(blocks, position, True)


def _writes(
    category: str, segment: Segment, wanted: Wanted, offset: int, stop: int
) -> Iterator[tuple[list[StoredBlock], int]]:
    """Each write (or damaged range) from file offset ``offset`` on: the blocks of wanted
    batches in it, and the offset where it ends. Reads a fresh descriptor."""
    wanted_here: list[StoredBlock] = []
    producers = Producers()
    fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        read = pread_at(fd)
        if segment.version >= 2:
            marks = segment.view(category).marks
            start = marks[max(0, bisect_right(marks, offset) - 1)]
            for item in walk_blocks(read, segment.marker, start, stop, 8 << 20):
                if isinstance(item, Damage):
                    if item.end > offset:
                        yield [], item.end
                    continue
                if item.offset < offset:
                    continue
                if item.producer and (item.producer, item.sequence) in wanted:
                    wanted_here.append(stored_block(category, segment.base, item, producers))
                if item.ends_write:
                    yield wanted_here, item.end
                    wanted_here = []
        elif segment.version == 1:
            for frames in writes_v1(read, 0, stop):
                if isinstance(frames, Damage):
                    if frames.end > offset:
                        yield [], frames.end
                    continue
                if frames[0].offset < offset:
                    continue
                key = (frames[0].producer, frames[0].sequence)
                found = (
                    [v1_block(category, segment.base, frames, producers)]
                    if frames[0].producer and key in wanted
                    else []
                )
                yield found, frames[-1].end
    finally:
        os.close(fd)
