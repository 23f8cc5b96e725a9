"""Decoding the two hot calls, ``Log`` and ``Append``, without building an object per record.

thriftpy2 builds a ``LogEntry`` object for every record of a batch (about
0.5 us each), after :mod:`logserver.transport._guard` has already walked every
byte of the frame. For a frame in the exact shape thriftpy2's and Apache
Thrift's clients write for these two calls, :func:`decode_fast` does the walk
and the decode in one pass and returns the records as ``(category, message)``
bytes pairs, which is what storage takes.

It accepts only this shape (a CALL, strict or non-strict header)::

    Log_args    { 1: list<LogEntry> }                                 STOP
    Append_args { 1: AppendBatch { 1: string, 2: i64, 3: list<LogEntry> } STOP } STOP
    LogEntry    { 1: string, 2: string }                               STOP

with every field present, in this order, of exactly these types. Anything
else (a missing, extra, reordered or differently typed field, a oneway
message, a truncated frame, a length that does not fit) returns ``None``: the
caller then takes the general route (the guard, then thriftpy2), which
decides what such a frame means. So this module changes the speed of a valid
frame, never the verdict on any frame, and it cannot be made to do more work
than the bytes in the frame pay for (every record consumes at least 15 bytes,
and the claimed count is checked against the bytes left before the loop).
Every frame it accepts, the guard accepts too with ``max_depth >= MIN_DEPTH``
(a record costs more bytes than :data:`~logserver.transport._guard.OBJECT_COST`),
and thriftpy2 decodes it to the same values; ``tests/transport/test_wire_fast.py``
checks both properties on random and mutated frames.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from logserver.transport._guard import CALL, FrameRejectedError, Message, _read_header

__all__ = ["MIN_DEPTH", "FastCall", "decode_fast"]

#: Nesting a server must allow for the fast shapes (args, AppendBatch, list, LogEntry):
#: with a smaller ``max_depth`` the guard refuses them, so the fast path must not run.
MIN_DEPTH = 4

_ENTRY_MIN = 15  # two empty string fields and STOP
# A field header and a string length; the length unsigned, so that a negative one
# (as thriftpy2 reads it) becomes a huge one that fails the bounds checks.
_string_field = struct.Struct(">bhI").unpack_from
_length = struct.Struct(">I").unpack_from
_LIST_OF_STRUCTS = struct.Struct(">bhbi").unpack_from  # field header, element type, count
_STRUCT_FIELD = struct.Struct(">bh").unpack_from
_I64_FIELD = struct.Struct(">bhq").unpack_from
_T_STRING, _T_I64, _T_STRUCT, _T_LIST = 11, 10, 12, 15


class FastCall(NamedTuple):
    """A decoded Log or Append call."""

    message: Message
    #: ``"Log"`` or ``"Append"``, as thriftpy2 names the call.
    api: str
    records: list[tuple[bytes, bytes]]
    #: Append only (``None`` for Log).
    producer: bytes | None = None
    sequence: int | None = None


def decode_fast(frame: bytes) -> FastCall | None:
    """Decode a Log or Append call of the exact common shape, or return None (see module doc)."""
    end = len(frame)
    try:
        header, pos = _read_header(frame, end)
    except FrameRejectedError:
        return None
    if header.type != CALL:
        return None
    try:
        if header.name == b"Log":
            records, pos = _entries(frame, pos, end, 1)
            if frame[pos] != 0:
                return None
            return FastCall(_ended(header, pos + 1), "Log", records)
        if header.name == b"Append":
            ftype, fid = _STRUCT_FIELD(frame, pos)
            if ftype != _T_STRUCT or fid != 1:
                return None
            ftype, fid, n = _string_field(frame, pos + 3)
            if ftype != _T_STRING or fid != 1:
                return None
            p = pos + 10
            q = p + n
            ftype, fid, sequence = _I64_FIELD(frame, q)
            if ftype != _T_I64 or fid != 2 or q > end:
                return None
            producer = frame[p:q]
            records, pos = _entries(frame, q + 11, end, 3)
            if frame[pos] != 0 or frame[pos + 1] != 0:
                return None
            return FastCall(_ended(header, pos + 2), "Append", records, producer, sequence)
    except (struct.error, IndexError, _NotFast):
        # Out of bounds or off the shape: the general route decides.
        return None
    return None


class _NotFast(Exception):
    """Internal: the frame leaves the fast shape."""


def _ended(header: Message, end: int) -> Message:
    return Message(header.name, header.type, header.seqid, header.strict, end)


def _entries(
    buf: bytes, pos: int, end: int, field_id: int
) -> tuple[list[tuple[bytes, bytes]], int]:
    """Decode field ``field_id``, a ``list<LogEntry>``, at ``pos``; return records and offset after."""
    ftype, fid, etype, count = _LIST_OF_STRUCTS(buf, pos)
    pos += 8
    if ftype != _T_LIST or fid != field_id or etype != _T_STRUCT or count < 0:
        raise _NotFast
    if count * _ENTRY_MIN > end - pos:
        raise _NotFast
    field = _string_field  # locals: this loop is the hot spot
    length = _length
    records: list[tuple[bytes, bytes]] = []
    add = records.append
    # The bytes of the last entry up to its message length (both field headers, the
    # category): batches mostly repeat one category, so an entry starting with them
    # needs one C-level comparison instead of a header decode, and shares the
    # category's bytes object (hashed once in storage's check).
    prefix = b"\xff"  # matches no entry: the first one takes the full decode
    skip = 0
    category = b""
    for _ in range(count):
        if buf.startswith(prefix, pos):
            r = pos + skip + 4
            # Raises struct.error when the length runs past the end of the frame.
            s = r + length(buf, r - 4)[0]
            # Raises IndexError when the message runs past it (s >= end).
            if buf[s] != 0:
                raise _NotFast
            add((category, buf[r:s]))
            pos = s + 1
            continue
        t1, f1, n1 = field(buf, pos)
        p = pos + 7
        q = p + n1
        # Raises struct.error when the category runs past the end of the frame.
        t2, f2, n2 = field(buf, q)
        r = q + 7
        s = r + n2
        if buf[s] != 0 or t1 != 11 or t2 != 11 or f1 != 1 or f2 != 2:
            raise _NotFast
        category = buf[p:q]
        add((category, buf[r:s]))
        skip = q + 3 - pos
        prefix = buf[pos : q + 3]
        pos = s + 1
    return records, pos
