"""The on-disk format of segments since format version 2: a header, then blocks.

A batch's records that go to one category are stored as one **block**: the
batch's identity and receive time once, and the records in columns (one
big-endian u32 length per record, then the messages), compressed as a whole
(:mod:`logwire.compression`). Version 1 segments (one self-describing record
after another, :mod:`logserver.storage._format`) are still read; a segment
holds one format only.

This module holds what every part of the format shares: its version, the
marker, and the segment header (made here, read by :func:`segment_format`).
One block's bytes are laid out and checked by
:mod:`logserver.storage._blockcodec` (which documents the block layout); blocks
are found in a segment file, and a reader resynchronises after damage, in
:mod:`logserver.storage._blockscan`.

Segment (little-endian)::

    header  magic        8  b"\\x89LSEG\\r\\n\\x1a"
            version      2  u16, 2
            reserved     2  0
            marker      16  random, chosen when the category's first version-2 segment is made
            check        4  u32, zlib.crc32 of the 28 bytes before
    block*                  (see :mod:`logserver.storage._blockcodec`)

Positions. A block at offset ``b`` spans at least ``count`` bytes (its padding
sees to it, and only a block of many tiny, very compressible records needs
any), so record ``i`` of the block has its own position ``b + i``: positions
stay byte offsets in the category's stream, as in version 1, and segment
bases, retention by bytes and read positions work the same in both formats.

What the format guarantees:

- **Complete or detected.** The check covers every byte of a block but the
  marker (which must equal the segment's): a torn write or flipped bits
  anywhere in the header, the index runs, the payload or the padding make the
  block invalid. A write is one or more blocks, the last with END; recovery
  cuts a last segment back to the end of its last complete write.
- **No forged blocks, without damage.** Blocks are found by their lengths, one
  after another from the header: the bytes of a message are never looked at
  as a block, whatever they are.
- **No forged blocks after damage, against anyone who cannot read the files.**
  Past a damaged range, the next block is found by searching for the
  segment's 16-byte marker and accepted only if its header, lengths, index
  runs and check are valid. The marker comes from ``os.urandom`` and never
  leaves the server: ``ReadBlocks`` ships a block's fields and payload, not
  its framing, and segment files are readable by the server's user and group
  only. A client can rebuild any block it can read byte for byte but for the
  marker (``tests/storage/test_compressed.py`` stores such copies, made with
  every marker a client could know, inside a message and damages the block
  before them); to have one taken for a real block after damage it must guess
  128 random bits. A damaged segment *header* is read with markers the server
  wrote, never with one found in the data
  (:func:`logserver.storage._blockscan.probe_format`). Version 1 segments,
  whose record magic is public, only have their weaker guarantee (text
  messages cannot contain that magic; arbitrary bytes can).
- **Readable in the future.** The version in the header tells a reader which
  format follows; a segment of a version this code does not know is never
  repaired or truncated (see :func:`segment_format`).
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import NamedTuple

from logserver.storage._format import MAGIC as V1_MAGIC

__all__ = [
    "FORMAT_VERSION",
    "MARKER_BYTES",
    "SEGMENT_HEADER_BYTES",
    "SEGMENT_MAGIC",
    "SegmentFormat",
    "new_marker",
    "segment_format",
    "segment_header",
]

SEGMENT_MAGIC = b"\x89LSEG\r\n\x1a"
FORMAT_VERSION = 2
MARKER_BYTES = 16

_SEGMENT_HEAD = struct.Struct("<8sHH16s")
_SEGMENT_CHECK = struct.Struct("<I")
SEGMENT_HEADER_BYTES = _SEGMENT_HEAD.size + _SEGMENT_CHECK.size  # 32

_crc32 = zlib.crc32


def new_marker() -> bytes:
    """A fresh random marker for a category's segments."""
    return os.urandom(MARKER_BYTES)


def segment_header(marker: bytes) -> bytes:
    """The 32 bytes a version-2 segment starts with."""
    head = _SEGMENT_HEAD.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, marker)
    return head + _SEGMENT_CHECK.pack(_crc32(head))


class SegmentFormat(NamedTuple):
    """What a segment's first bytes say about it."""

    version: int
    """1 (records), 2 (blocks), 0 (empty or a torn header: no format yet), or a newer
    version this code does not know."""
    marker: bytes = b""
    data_start: int = 0
    """Where the first record or block starts."""


def segment_format(first: bytes) -> SegmentFormat:
    """The format of a segment from its first :data:`SEGMENT_HEADER_BYTES` bytes (fewer if
    the file is shorter).

    A file that starts like neither format, or whose version-2 header fails its
    check, is version 0: nothing in it can be trusted, which for a last segment
    means a torn first write, cut back to nothing. A header whose check passes
    with a version above :data:`FORMAT_VERSION` is returned as that version: the
    caller must leave such a file alone.
    """
    if first.startswith(V1_MAGIC):
        return SegmentFormat(1)
    if len(first) < SEGMENT_HEADER_BYTES or not first.startswith(SEGMENT_MAGIC):
        return SegmentFormat(0)
    _magic, version, _reserved, marker = _SEGMENT_HEAD.unpack_from(first)
    (check,) = _SEGMENT_CHECK.unpack_from(first, _SEGMENT_HEAD.size)
    if check != _crc32(first[: _SEGMENT_HEAD.size]) or version < 2:
        return SegmentFormat(0)
    return SegmentFormat(version, marker, SEGMENT_HEADER_BYTES)
