"""What a reader yields: records one by one (:class:`Record`), or a block's worth in
columns (:class:`RecordBlock`) for programs that print or filter millions of them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain
from typing import TypeVar

from logwire.blocks import BlockColumns

_Column = TypeVar("_Column", bytes, str)

__all__ = [
    "Record",
    "RecordBlock",
    "cut",
    "format_time",
    "messages_of",
    "slice_column",
    "split_runs",
]


def format_time(ns: int, digits: int = 6) -> str:
    """``ns`` (since the epoch) as RFC 3339 UTC with ``digits`` fractional digits."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if digits <= 0:
        return f"{stamp}Z"
    return f"{stamp}.{fraction:09d}"[: len(stamp) + 1 + digits] + "Z"


def messages_of(
    columns: BlockColumns, picked: Sequence[tuple[int, int]] | None = None
) -> list[bytes]:
    """The messages of a block's columns (only the ``(first, count)`` runs of ``picked``),
    sliced in C: no Python bytecode per record."""
    return slice_column(columns.columns, columns.lengths, picked, 4 * len(columns.lengths))


def slice_column(
    data: _Column, lengths: Sequence[int], picked: Sequence[tuple[int, int]] | None, start: int
) -> list[_Column]:
    """``data`` cut into consecutive pieces of ``lengths`` from ``start`` (bytes, or the
    same column decoded as ASCII text), only the runs of ``picked``."""
    ends = list(accumulate(lengths, initial=start))
    if picked is None:
        return list(map(data.__getitem__, map(slice, ends[:-1], ends[1:])))
    return cut(data, ends, picked)


def cut(data: _Column, ends: list[int], runs: Sequence[tuple[int, int]]) -> list[_Column]:
    """The items of ``data`` in the ``(first, count)`` runs, item i being
    ``data[ends[i]:ends[i + 1]]`` (sliced in C)."""
    out: list[_Column] = []
    for first, n in runs:
        out += map(data.__getitem__, map(slice, ends[first : first + n], ends[first + 1 :]))
    return out


def split_runs(runs: Sequence[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    """``(first, count)`` runs in pieces of at most ``size`` records, in order."""
    piece: list[tuple[int, int]] = []
    room = size
    for first, count in runs:
        while count:
            take = min(count, room)
            piece.append((first, take))
            first += take
            count -= take
            room -= take
            if not room:
                yield piece
                piece, room = [], size
    if piece:
        yield piece


@dataclass(frozen=True, slots=True)
class Record:
    """One stored record, shown once however many servers hold it.

    ``producer``, ``sequence`` and ``index`` name it: for a record of a split
    half they are those of the batch the client first made (``logwire.batchid``),
    so a record has one name on every server. ``producer`` is empty and
    ``sequence`` -1 for records that came through Scribe's ``Log``.
    ``received_ns`` is when the server it was read from received its batch;
    ``server`` is that server's endpoint (or data directory).
    """

    category: str
    message: bytes
    received_ns: int
    server: str
    producer: str
    sequence: int
    index: int

    @property
    def time(self) -> dt.datetime:
        """``received_ns`` as an aware UTC datetime (microseconds)."""
        return dt.datetime.fromtimestamp(self.received_ns / 1e9, dt.UTC)

    @property
    def key(self) -> tuple[str, int, int] | None:
        """The record's identity across servers; None for Scribe records."""
        if not self.producer:
            return None
        return self.producer, self.sequence, self.index


@dataclass(frozen=True, slots=True)
class RecordBlock:
    """Records of one stored block that a reader shows, in columns.

    All share the category, server, batch and receive time; ``indexes[i]`` is
    record i's index in its batch and :meth:`messages` their messages. Made
    without a Python object per record: a program that only prints (as
    ``logserver cat`` does) joins the messages, and never builds a
    :class:`Record`.
    """

    category: str
    server: str
    producer: str
    sequence: int
    received_ns: int
    columns: BlockColumns
    indexes: Sequence[int]
    picked: Sequence[tuple[int, int]] | None = None
    """None: every record of ``columns``; else ``(first, count)`` runs of them."""

    def __len__(self) -> int:
        if self.picked is None:
            return len(self.columns.lengths)
        return sum(n for _, n in self.picked)

    def messages(self) -> list[bytes]:
        """The messages, in order."""
        return messages_of(self.columns, self.picked)

    def runs(self) -> Sequence[tuple[int, int]]:
        """The shown records as ``(first, count)`` runs of the block's columns."""
        if self.picked is None:
            return ((0, len(self.columns.lengths)),)
        return self.picked

    def tail(self, n: int) -> RecordBlock:
        """The block with only its last ``n`` records."""
        total = len(self)
        if n >= total:
            return self
        drop = total - n
        kept: list[tuple[int, int]] = []
        for first, count in self.runs():
            if drop >= count:
                drop -= count
                continue
            kept.append((first + drop, count - drop))
            drop = 0
        return self._with(kept)

    def _with(self, picked: list[tuple[int, int]]) -> RecordBlock:
        return RecordBlock(
            self.category,
            self.server,
            self.producer,
            self.sequence,
            self.received_ns,
            self.columns,
            self.indexes,
            picked,
        )

    def record_indexes(self) -> list[int]:
        """Each shown record's index in its batch."""
        if self.picked is None:
            return list(self.indexes)
        indexes = self.indexes
        return list(chain.from_iterable(indexes[a : a + n] for a, n in self.picked))

    def records(self) -> Iterator[Record]:
        """The records one by one."""
        for message, index in zip(self.messages(), self.record_indexes(), strict=True):
            yield Record(
                self.category,
                message,
                self.received_ns,
                self.server,
                self.producer,
                self.sequence,
                index,
            )
