"""From the records of one category's part of a batch to block payloads, and back.

A block holds its records in columns (:mod:`logwire.compression`): the
big-endian u32 lengths, then the messages, compressed when that pays. This
module makes those payloads from records (``Log``, ``Append``,
``AppendPacked``: the server compresses), checks payloads a client
compressed itself (``AppendCompressed``: stored as they came when the batch
has one category), and turns a stored block back into messages.

A checked payload is one that decodes, within the cap, to columns whose
lengths add up and whose every message is within the size limit: storage
never writes a block it could not read back.
"""

from __future__ import annotations

import contextlib
import threading
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from itertools import accumulate, pairwise
from operator import add
from typing import NamedTuple

from logserver.errors import (
    BatchTooLargeError,
    InvalidRequestError,
    MessageTooLargeError,
    StorageUnavailableError,
)
from logwire.compression import (
    CompressionError,
    CompressionPolicy,
    column_lengths,
    column_messages,
    compress_columns,
    decompress,
    join_columns,
)
from logwire.packed import pack_lengths

__all__ = [
    "BLOCK_TARGET_BYTES",
    "DecodeBudget",
    "IndexRuns",
    "Payload",
    "check_payload",
    "decode_messages",
    "index_runs",
    "payloads",
    "slice_runs",
]

#: Records of one write are cut into blocks of about this many uncompressed bytes: a
#: reader decompresses a whole block to serve any record of it, so blocks stay small
#: enough to decode in a few milliseconds, and large enough to compress well.
BLOCK_TARGET_BYTES = 4 * 2**20

IndexRuns = list[tuple[int, int]]
"""``(first batch index, count)`` runs, ascending: which records of the batch a block holds."""


class Payload(NamedTuple):
    """A block's payload before it is framed: its records' batch indexes and columns."""

    index_runs: IndexRuns
    codec: int
    raw_bytes: int
    data: bytes

    @property
    def records(self) -> int:
        return sum(n for _, n in self.index_runs)


class DecodeBudget:
    """Bytes of compressed batches being decompressed and stored at once, server-wide.

    The transport bounds the bytes of request frames in flight; a compressed
    frame expands after that, up to ``max_batch_bytes`` each, so a thousand
    small frames could otherwise ask for a thousand times that. A batch
    reserves its declared size here before it is decompressed and gives it
    back once stored; one that finds no room within ``wait_s`` is refused with
    StorageUnavailableError (busy: the client tries again or elsewhere).
    """

    def __init__(self, limit: int, wait_s: float = 10.0) -> None:
        self._limit = limit
        self._wait_s = wait_s
        self._used = 0
        self._cond = threading.Condition(threading.Lock())

    def __repr__(self) -> str:
        return f"<DecodeBudget used={self._used} of {self._limit}>"

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` (at most the limit) while the block runs."""
        nbytes = min(max(nbytes, 0), self._limit)
        with self._cond:
            if not self._cond.wait_for(lambda: self._used + nbytes <= self._limit, self._wait_s):
                raise StorageUnavailableError(
                    f"busy: {self._used} bytes of compressed batches are being decoded "
                    f"(limit {self._limit}); try again"
                )
            self._used += nbytes
        try:
            yield
        finally:
            with self._cond:
                self._used -= nbytes
                self._cond.notify_all()


def index_runs(indexes: Sequence[int]) -> IndexRuns:
    """The runs of ascending batch indexes (one run for a ``range``)."""
    if isinstance(indexes, range) and indexes.step == 1:
        return [(indexes.start, len(indexes))] if len(indexes) else []
    runs: list[list[int]] = []
    for i in indexes:
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1][1] += 1
        else:
            runs.append([i, 1])
    return [(start, n) for start, n in runs]


def slice_runs(runs: IndexRuns, start: int, stop: int) -> IndexRuns:
    """The runs of records ``[start, stop)`` of those ``runs`` describe (record offsets)."""
    out: IndexRuns = []
    offset = 0
    for first, n in runs:
        lo, hi = max(start, offset), min(stop, offset + n)
        if lo < hi:
            out.append((first + lo - offset, hi - lo))
        offset += n
        if offset >= stop:
            break
    return out


def payloads(
    runs: IndexRuns, messages: Sequence[bytes], policy: CompressionPolicy
) -> list[Payload]:
    """The block payloads for one category's records of a batch, each of about
    :data:`BLOCK_TARGET_BYTES` uncompressed at most (a larger message gets a block of
    its own), compressed as ``policy`` says when that pays."""
    n = len(messages)
    # ends[k]: the columns' size for records [0, k) (messages and their lengths).
    ends = list(map(add, accumulate(map(len, messages), initial=0), range(0, 4 * n + 1, 4)))
    cuts = [0]
    while cuts[-1] < n:
        at = cuts[-1]
        # The most records from ``at`` whose columns fit the target; at least one.
        j = bisect_right(ends, ends[at] + BLOCK_TARGET_BYTES, lo=at + 1) - 1
        cuts.append(max(at + 1, j))
    out = []
    for a, b in pairwise(cuts):
        chunk = messages[a:b] if (a, b) != (0, n) else messages
        columns = join_columns(pack_lengths(chunk), chunk)
        codec, data = compress_columns(columns, policy)
        out.append(Payload(slice_runs(runs, a, b), codec, len(columns), data))
    return out


def check_payload(
    codec: int,
    data: bytes,
    raw_bytes: int,
    count: int,
    *,
    cap: int,
    max_message_bytes: int,
) -> bytes:
    """The columns a client's payload holds, after checking everything a block's reader
    relies on; InvalidRequestError (BatchTooLargeError over ``cap``, MessageTooLargeError
    for a message over the limit) otherwise.

    ``cap`` bounds what decompression may allocate: the declared ``raw_bytes`` and
    the frame's own content size must both be within it, so a small frame that
    would expand to gigabytes is refused before anything is allocated.
    """
    if raw_bytes > cap:  # the client can split such a batch
        raise BatchTooLargeError(
            f"compressed columns would decode to {raw_bytes} bytes, over {cap}", cap, raw_bytes
        )
    try:
        columns = decompress(codec, data, raw_bytes, cap)
        lengths = column_lengths(columns, count)
    except CompressionError as exc:
        raise InvalidRequestError(f"compressed columns: {exc}") from exc
    largest = max(lengths, default=0)
    if largest > max_message_bytes:
        raise MessageTooLargeError(max_message_bytes, largest)
    return columns


def decode_messages(
    codec: int, payload: bytes | memoryview, raw_bytes: int, count: int
) -> list[bytes]:
    """The messages of a stored block (checked when it was written, and by its check since).

    CompressionError if it does not decode after all (a bug, or damage the check
    missed: one in four billion)."""
    return column_messages(decompress(codec, payload, raw_bytes, raw_bytes), count)
