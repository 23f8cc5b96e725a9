"""A batch's records in columns (``PackedBatch`` in ``log.thrift``): packing and unpacking.

Why columns: in a ``list<LogEntry>`` each message's length sits in front of
it, so a reader must walk the entries one by one, which in Python is a loop
of bytecode per record (about 1 µs, more than half of a server's work per
record). In columns, the lengths are one array, the messages one blob and
the categories a handful of runs, so both ends do the per-record work in C
(``array``, ``accumulate``, ``map``, ``zip``, ``bytes.join``).

Both sides use this module: logclient to pack, logserver to unpack. It
imports neither Thrift nor anything of either package.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Sequence
from itertools import accumulate, chain, groupby, repeat
from operator import itemgetter
from typing import NamedTuple

from logwire.errors import PackedError

__all__ = [
    "PackedColumns",
    "PackedError",
    "category_runs",
    "expand_runs",
    "pack_entries",
    "pack_lengths",
    "record_count",
    "unpack_messages",
    "unpack_records",
]

_CATEGORY = itemgetter(0)
_MESSAGE = itemgetter(1)
_BIG_ENDIAN = sys.byteorder == "big"


class PackedColumns(NamedTuple):
    """``runs``: ``(category, count)`` in record order; ``lengths``: big-endian u32 per
    record; ``messages``: the messages concatenated."""

    runs: list[tuple[str, int]]
    lengths: bytes
    messages: bytes


def _u32_array(values: Iterable[int]) -> array[int]:
    lengths = array("I", values)
    if lengths.itemsize != 4:  # pragma: no cover - 'I' is 4 bytes on every platform we run on
        lengths = array("L", lengths)
        if lengths.itemsize != 4:
            raise RuntimeError("no 4-byte unsigned array type on this platform")
    return lengths


def pack_lengths(messages: Iterable[bytes]) -> bytes:
    """The ``lengths`` column: one big-endian u32 per message."""
    lengths = _u32_array(map(len, messages))
    if not _BIG_ENDIAN:
        lengths.byteswap()
    return lengths.tobytes()


def category_runs(categories: Iterable[str]) -> list[tuple[str, int]]:
    """The ``runs`` column: ``(category, count)`` for each run of equal categories."""
    return [(category, len(list(group))) for category, group in groupby(categories)]


def pack_entries(entries: Sequence[tuple[str, bytes]]) -> PackedColumns:
    """The columns of ``(category, message)`` records (messages as bytes).

    (logclient's encoder uses :func:`pack_lengths` and :func:`category_runs`
    and joins the messages straight into the frame: one copy, not two.)
    """
    messages = list(map(_MESSAGE, entries))
    return PackedColumns(
        category_runs(map(_CATEGORY, entries)), pack_lengths(messages), b"".join(messages)
    )


def record_count(lengths: bytes) -> int:
    """How many records a ``lengths`` column describes; PackedError when it is torn."""
    count, rest = divmod(len(lengths), 4)
    if rest:
        raise PackedError(f"lengths has {len(lengths)} bytes, not a multiple of 4")
    return count


def unpack_messages(
    runs: Sequence[tuple[str, int]], lengths: bytes, messages: bytes
) -> list[bytes]:
    """The messages, in record order; PackedError when the columns disagree.

    For a reader that keeps the columns (logserver's storage takes the runs and
    the messages as they are); :func:`unpack_records` pairs them up. Callers
    check :func:`record_count` against their limits first: the list costs
    memory per record whatever the messages weigh.
    """
    count = record_count(lengths)
    sizes = array("I", lengths) if lengths else array("I")
    if sizes.itemsize != 4:  # pragma: no cover - see _u32_array
        raise RuntimeError("no 4-byte unsigned array type on this platform")
    if not _BIG_ENDIAN:
        sizes.byteswap()
    ends = list(accumulate(sizes))
    total = ends[-1] if ends else 0
    if total != len(messages):
        raise PackedError(f"lengths add up to {total} bytes, messages has {len(messages)}")
    run_total = 0
    for category, n in runs:
        if not isinstance(n, int) or n < 1:
            raise PackedError(f"run of category {category!r} has count {n!r}, not >= 1")
        run_total += n
    if run_total != count:
        raise PackedError(f"runs add up to {run_total} records, lengths to {count}")
    # One comprehension over C-level iterators: faster than map(getitem, ...) with
    # slices. The starts have one element more than the ends (the last one unused).
    starts = chain((0,), ends)
    return [messages[a:b] for a, b in zip(starts, ends, strict=False)]


def unpack_records(
    runs: Sequence[tuple[str, int]], lengths: bytes, messages: bytes
) -> list[tuple[str, bytes]]:
    """The ``(category, message)`` records; PackedError when the columns disagree.

    Callers check :func:`record_count` against their limits first: the record
    list costs memory per record whatever the messages weigh.
    """
    unpacked = unpack_messages(runs, lengths, messages)
    return list(zip(expand_runs(runs), unpacked, strict=True))


def expand_runs(runs: Sequence[tuple[str, int]]) -> list[str]:
    """The category of every record, from the ``runs`` column (C-level)."""
    if len(runs) == 1:
        return [runs[0][0]] * runs[0][1]
    return list(chain.from_iterable(repeat(category, n) for category, n in runs))
