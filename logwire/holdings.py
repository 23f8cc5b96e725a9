"""Holdings: what one server holds of a category, summarised without reading a record body.

For each producer, the sequences of the batches it holds records of in the
category, as **spans**: ``first..last`` (inclusive, every sequence between
held), with the records those batches have in the category and the positions
of the first and last of them. That is what ``Holdings`` (``log.thrift``)
answers, from an index the server keeps per category (built once from block
headers, then kept current by every write), and what ``logserver repair``
compares across servers: a sequence one server lacks is a batch to copy, and
the positions say where the source finds it (``ReadBatches``).

A producer whose batches all reach the category is one span however many
batches it sent; batches that skip the category (a producer logging to two
categories in turn) make gaps, so such a producer costs a span per run.

On the wire a producer's spans are big-endian i64 quintuples (first, last,
records, first position, last position), and the ranges asked for with
``ReadBatches`` big-endian i64 pairs (first, last): fixed-width columns, so
neither side does work per span in the Thrift codec.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

from logwire.errors import HoldingsError

__all__ = [
    "HoldingsError",
    "Span",
    "pack_ranges",
    "pack_spans",
    "unpack_ranges",
    "unpack_spans",
]

_SPAN = struct.Struct(">qqqqq")
_RANGE = struct.Struct(">qq")


class Span(NamedTuple):
    """Sequences ``first..last`` of one producer, all held in one category."""

    first: int
    last: int
    #: The records those batches have in the category, on this server.
    records: int
    #: Position of the first of those records (of the block of the lowest position).
    first_position: int
    #: Position of the last block of those batches (where a reader of them can stop).
    last_position: int

    @property
    def batches(self) -> int:
        return self.last - self.first + 1


def pack_spans(spans: Iterable[Span]) -> bytes:
    return b"".join(_SPAN.pack(*span) for span in spans)


def unpack_spans(data: bytes) -> list[Span]:
    """The spans of :func:`pack_spans`; HoldingsError unless ascending, disjoint and sane."""
    if len(data) % _SPAN.size:
        raise HoldingsError(f"{len(data)} bytes of spans, not a multiple of {_SPAN.size}")
    spans = [Span(*fields) for fields in _SPAN.iter_unpack(data)]
    floor = -1
    for span in spans:
        if (
            span.first <= floor
            or span.last < span.first
            or span.records < 0
            or span.first_position < 0
            or span.last_position < span.first_position
        ):
            raise HoldingsError(f"span {span} does not follow {floor} or does not hold together")
        floor = span.last
    return spans


def pack_ranges(ranges: Iterable[tuple[int, int]]) -> bytes:
    return b"".join(_RANGE.pack(first, last) for first, last in ranges)


def unpack_ranges(data: bytes) -> list[tuple[int, int]]:
    """The ranges of :func:`pack_ranges`; HoldingsError unless each is ``0 <= first <= last``."""
    if len(data) % _RANGE.size:
        raise HoldingsError(f"{len(data)} bytes of ranges, not a multiple of {_RANGE.size}")
    ranges = list(_RANGE.iter_unpack(data))
    for first, last in ranges:
        if not 0 <= first <= last:
            raise HoldingsError(f"range {first}..{last} is not 0 <= first <= last")
    return ranges
