"""Compressing a batch's columns: one codec for the client, the server's storage and readers.

The *columns* of a batch (or of one stored block) are those of ``AppendPacked``
(:mod:`logwire.packed`) laid end to end: one big-endian u32 length per record,
then the messages back to back. Compressed, they travel in
``AppendCompressed``, sit on disk as a block's payload, and come back in
``ReadBlocks`` as the very same bytes: a server that gets a one-category
batch compressed stores the client's bytes without decompressing and
compressing again, and a reader decompresses once.

Codecs are numbered as in ``log.thrift``'s ``Codec`` enum and the block
header: ``NONE`` (0, the columns as they are) and ``ZSTD`` (1, one Zstandard
frame that declares its content size). Incompressible columns (random bytes,
payloads already compressed) are kept raw: :func:`compress_columns` never
returns more bytes than it was given.

Decompression is where a hostile peer can make a server work or allocate: a
frame of a few kilobytes can expand to gigabytes. :func:`decompress` refuses
a frame before allocating unless it declares its content size, that size is
the one the sender declared, and both are within the caller's cap; it also
refuses bytes after the frame, so one payload is exactly one frame.

This module imports ``zstandard`` only when a Zstandard frame is made or
read, and nothing of logclient or logserver.
"""

from __future__ import annotations

import sys
import threading
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate, chain, pairwise
from typing import TYPE_CHECKING, Literal

from logwire.errors import CompressionError

if TYPE_CHECKING:
    import zstandard

__all__ = [
    "CODEC_NAMES",
    "MAX_LEVEL",
    "MIN_LEVEL",
    "NONE",
    "ZSTD",
    "Algorithm",
    "CompressionError",
    "CompressionPolicy",
    "codec_name",
    "column_lengths",
    "column_messages",
    "compress_columns",
    "decompress",
    "join_columns",
]

NONE = 0
ZSTD = 1
CODEC_NAMES = {NONE: "none", ZSTD: "zstd"}
Algorithm = Literal["zstd", "none"]
_ALGORITHMS: dict[str, int] = {"none": NONE, "zstd": ZSTD}
#: Zstandard's levels: negative ones trade ratio for speed, 22 is the slowest.
MIN_LEVEL, MAX_LEVEL = -7, 22
_BIG_ENDIAN = sys.byteorder == "big"


@dataclass(frozen=True)
class CompressionPolicy:
    """How a batch's columns are compressed: the client's for ``AppendCompressed``, the
    server's for blocks it builds itself (Scribe's ``Log``, ``Append``, ``AppendPacked``).

    ``algorithm``: ``"zstd"`` (the default) or ``"none"``. ``level``: Zstandard's
    level. Measured on this project's machines (``python -m bench.corpus``, batches
    of 8,600 records): level 1, the default, stores ``/var/log`` lines in 0.13 of
    their size at about 520 MB/s on one core and ``LogServerHandler`` JSON lines in
    0.12; level 3 gains 2 % of the size for a fifth of the speed, level 6 12 % for
    four fifths of it.
    Columns smaller than ``min_bytes`` are not compressed: a tiny batch
    gains a few bytes and costs a call.
    """

    algorithm: Algorithm = "zstd"
    level: int = 1
    min_bytes: int = 256

    def __post_init__(self) -> None:
        if self.algorithm not in _ALGORITHMS:
            raise ValueError(
                f"compression algorithm must be one of {sorted(_ALGORITHMS)}, not {self.algorithm!r}"
            )
        if (
            not isinstance(self.level, int)
            or isinstance(self.level, bool)
            or not MIN_LEVEL <= self.level <= MAX_LEVEL
        ):
            raise ValueError(
                f"compression level must be an int in {MIN_LEVEL}..{MAX_LEVEL}, not {self.level!r}"
            )
        if not isinstance(self.min_bytes, int) or self.min_bytes < 0:
            raise ValueError(f"min_bytes must be an int >= 0, not {self.min_bytes!r}")

    @property
    def enabled(self) -> bool:
        """Whether anything is compressed at all."""
        return self.algorithm != "none"

    @property
    def codec(self) -> int:
        """The codec number (``NONE`` or ``ZSTD``)."""
        return _ALGORITHMS[self.algorithm]


def codec_name(codec: int) -> str:
    """``"none"``, ``"zstd"``, or ``"codec <n>"`` for a number this version does not know."""
    return CODEC_NAMES.get(codec, f"codec {codec}")


# Compression contexts are not thread-safe and cost a few hundred microseconds to
# make: one per thread and level. Zstandard releases the GIL while it works.
_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    compressor = cache.get(level)
    if compressor is None:
        import zstandard

        compressor = cache[level] = zstandard.ZstdCompressor(
            level=level, write_content_size=True, write_checksum=False
        )
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if decompressor is None:
        import zstandard

        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor


def join_columns(lengths: bytes, messages: Iterable[bytes]) -> bytes:
    """The uncompressed columns: ``lengths`` (big-endian u32 per record), then the messages."""
    return b"".join(chain((lengths,), messages))


def compress_columns(columns: bytes, policy: CompressionPolicy) -> tuple[int, bytes]:
    """``(codec, payload)`` for ``columns``: compressed when that makes them smaller,
    else ``(NONE, columns)`` itself (incompressible data never grows)."""
    if not policy.enabled or len(columns) < policy.min_bytes:
        return NONE, columns
    compressed = _compressor(policy.level).compress(columns)
    if len(compressed) >= len(columns):
        return NONE, columns
    return ZSTD, compressed


def decompress(codec: int, payload: bytes | memoryview, raw_bytes: int, cap: int) -> bytes:
    """The columns a payload holds, exactly ``raw_bytes`` of them; CompressionError otherwise.

    Nothing over ``cap`` bytes is ever allocated: a Zstandard frame must declare its
    content size in its header, equal to ``raw_bytes``, and ``raw_bytes <= cap``.
    """
    if raw_bytes < 0 or raw_bytes > cap:
        raise CompressionError(f"columns of {raw_bytes} bytes exceed the limit of {cap} bytes")
    if codec == NONE:
        if len(payload) != raw_bytes:
            raise CompressionError(
                f"raw columns have {len(payload)} bytes, {raw_bytes} were declared"
            )
        return payload if type(payload) is bytes else bytes(payload)
    if codec != ZSTD:
        raise CompressionError(f"unknown codec {codec}")
    import zstandard

    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise CompressionError(f"not a Zstandard frame: {exc}") from exc
    if declared < 0:  # CONTENTSIZE_UNKNOWN or CONTENTSIZE_ERROR
        raise CompressionError("the Zstandard frame does not declare its content size")
    if declared != raw_bytes:
        raise CompressionError(
            f"the Zstandard frame holds {declared} bytes, {raw_bytes} were declared"
        )
    try:
        columns = _decompressor().decompress(payload, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise CompressionError(f"corrupt Zstandard frame: {exc}") from exc
    if len(columns) != raw_bytes:  # pragma: no cover - zstd checks the declared size itself
        raise CompressionError(f"decompressed to {len(columns)} bytes, {raw_bytes} declared")
    return columns


def column_lengths(columns: bytes | memoryview, count: int) -> array[int]:
    """The record lengths at the front of the columns, as native unsigned ints.

    CompressionError when the columns are shorter than ``count`` lengths, or the
    lengths do not add up to the bytes that follow them.
    """
    head = 4 * count
    if count < 0 or len(columns) < head:
        raise CompressionError(f"{len(columns)} bytes cannot hold {count} record lengths")
    lengths = array("I")
    if lengths.itemsize != 4:  # pragma: no cover - 'I' is 4 bytes on every platform we run on
        raise RuntimeError("no 4-byte unsigned array type on this platform")
    lengths.frombytes(columns[:head])
    if not _BIG_ENDIAN:
        lengths.byteswap()
    total = sum(lengths)
    if total != len(columns) - head:
        raise CompressionError(
            f"lengths add up to {total} bytes, the columns hold {len(columns) - head}"
        )
    return lengths


def column_messages(columns: bytes, count: int) -> list[bytes]:
    """The ``count`` messages of (uncompressed) columns, in record order.

    C-level passes only (``array``, ``accumulate``, one comprehension over ``zip``):
    no Python bytecode per record beyond the slice.
    """
    lengths = column_lengths(columns, count)
    head = 4 * count
    ends = list(accumulate(lengths, initial=head))
    return [columns[a:b] for a, b in pairwise(ends)]
