"""Stored blocks as ``ReadBlocks`` ships them, and what a reader makes of one.

A ``StoredBlock`` (``log.thrift``) is one stored block as it sits on disk: its
batch's identity and receive time once, then ``count`` records in columns,
compressed as stored (:mod:`logwire.compression`). The server packs two
small columns here (:func:`pack_runs`, :func:`pack_positions`); a reader turns
a block into :class:`BlockColumns`: the decoded columns and one array of
lengths, so that a program can walk, filter or print records in columns
without a Python object per record, or ask for the messages as a list.

Nothing here trusts the server blindly: a block whose columns do not add up,
whose runs disagree with its count, or that would decompress past the reader's
cap raises :class:`~logwire.errors.BlockError` (or
:class:`~logwire.errors.CompressionError`).
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, pairwise
from typing import Any

from logwire.compression import column_lengths, decompress
from logwire.errors import BlockError

__all__ = [
    "DEFAULT_READ_CAP",
    "BlockColumns",
    "WireBlock",
    "pack_positions",
    "pack_runs",
    "run_indexes",
    "unpack_positions",
    "unpack_runs",
]

#: What one block may decompress to on a reader (a server's blocks hold at most a batch:
#: its frame limit, 16 MiB by default, or 4 MiB for the blocks it builds itself).
DEFAULT_READ_CAP = 256 * 2**20
_RUN = struct.Struct(">II")
_BIG_ENDIAN = sys.byteorder == "big"


def run_indexes(runs: Sequence[tuple[int, int]]) -> list[int]:
    """The batch index of each record that ``(first, count)`` runs describe, in order."""
    if len(runs) == 1:
        start, n = runs[0]
        return list(range(start, start + n))
    return list(chain.from_iterable(range(s, s + n) for s, n in runs))


def pack_runs(runs: Sequence[tuple[int, int]]) -> bytes:
    """``(first batch index, count)`` runs as big-endian u32 pairs."""
    return b"".join(_RUN.pack(start, n) for start, n in runs)


def unpack_runs(data: bytes, count: int) -> tuple[tuple[int, int], ...]:
    """The runs of :func:`pack_runs`; BlockError unless they are ascending, disjoint and add
    up to ``count``."""
    if len(data) % _RUN.size:
        raise BlockError(f"index runs of {len(data)} bytes, not a multiple of {_RUN.size}")
    runs = tuple(_RUN.iter_unpack(data))
    floor = total = 0
    for start, n in runs:
        if n < 1 or start < floor:
            raise BlockError(f"index runs {runs!r} are not ascending and disjoint")
        floor = start + n
        total += n
    if total != count:
        raise BlockError(f"index runs hold {total} records, the block {count}")
    return runs


def pack_positions(positions: Sequence[int]) -> bytes:
    """Record positions as big-endian i64."""
    packed = array("q", positions)
    if not _BIG_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def unpack_positions(data: bytes, count: int) -> array[int]:
    """The positions of :func:`pack_positions` (native ints); BlockError unless ``count``."""
    if len(data) != 8 * count:
        raise BlockError(f"{len(data)} bytes of positions for {count} records")
    positions = array("q")
    positions.frombytes(data)
    if not _BIG_ENDIAN:
        positions.byteswap()
    return positions


@dataclass(frozen=True, slots=True)
class BlockColumns:
    """A block's records in columns: ``lengths[i]`` bytes of ``columns`` from ``starts[i]``."""

    columns: bytes
    lengths: array[int]

    @property
    def starts(self) -> list[int]:
        """Where each message starts in ``columns`` (after the lengths)."""
        return list(accumulate(self.lengths[:-1], initial=4 * len(self.lengths)))

    def messages(self) -> list[bytes]:
        """The messages, one bytes object each."""
        ends = list(accumulate(self.lengths, initial=4 * len(self.lengths)))
        columns = self.columns
        return [columns[a:b] for a, b in pairwise(ends)]


@dataclass(frozen=True, slots=True)
class WireBlock:
    """One ``StoredBlock`` from a ``ReadBlocks`` answer, checked and ready to decode."""

    position: int
    producer: str
    sequence: int
    received_ns: int
    count: int
    batch_count: int
    index_runs: tuple[tuple[int, int], ...]
    codec: int
    raw_bytes: int
    payload: bytes
    positions: array[int] | None

    @classmethod
    def from_thrift(cls, block: Any) -> WireBlock:
        """Check a thriftpy2 ``StoredBlock``'s small columns (not yet its payload)."""
        count = block.count or 0
        if count < 1:
            raise BlockError(f"a block of {count} records")
        producer = block.producer or ""
        if isinstance(producer, bytes):
            producer = producer.decode("utf-8", "replace")
        return cls(
            position=block.position or 0,
            producer=producer,
            sequence=block.sequence if block.sequence is not None else -1,
            received_ns=block.received_ns or 0,
            count=count,
            batch_count=block.batch_count or count,
            index_runs=unpack_runs(block.index_runs or b"", count),
            codec=block.codec or 0,
            raw_bytes=block.raw_bytes or 0,
            payload=block.columns or b"",
            positions=unpack_positions(block.positions, count) if block.positions else None,
        )

    def decode(self, cap: int = DEFAULT_READ_CAP) -> BlockColumns:
        """The decoded columns (decompressed once, never past ``cap`` bytes)."""
        columns = decompress(self.codec, self.payload, self.raw_bytes, cap)
        return BlockColumns(columns, column_lengths(columns, self.count))

    def indexes(self) -> list[int]:
        """Each record's index in its batch."""
        return run_indexes(self.index_runs)

    def record_positions(self) -> Sequence[int]:
        """Each record's position (a read from it starts at that record)."""
        if self.positions is not None:
            return self.positions
        return range(self.position, self.position + self.count)
