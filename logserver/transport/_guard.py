"""Structural validation of one Thrift binary-protocol request before thriftpy2 decodes it.

thriftpy2's Cython decoder trusts every count and length it reads:

- ``skip`` loops ``count`` times over zero-width element types (``T_STOP``,
  ``T_VOID`` and undefined type ids), so a 25-byte frame claiming 2^31-1
  ``list<void>`` elements spins for seconds holding the GIL;
- a string length is allocated as claimed, and reading past the end of an
  in-memory buffer silently yields zero bytes, so a huge count of ``T_STOP``
  bytes decodes into millions of empty structs.

:func:`check_frame` walks the message generically (strict and non-strict
message headers, any field types) and refuses whatever would make the decoder
do more work than the bytes in the frame justify:

- a field, element, key or value type that is not a real wire type;
- a negative count or length, or one whose minimum encoded size exceeds the
  bytes left in the frame;
- nesting deeper than ``max_depth`` (the args struct counts as one level,
  each container and struct inside it as one more, as thriftpy2 counts);
- more structs and containers than one per :data:`OBJECT_COST` bytes (thriftpy2
  builds a Python object of ~150 bytes for each; a frame of empty structs
  would otherwise cost 100 times its size in memory and seconds of CPU).

A frame it accepts is consumed by thriftpy2 exactly up to :attr:`Message.end`
(the property tests check this against thriftpy2 itself), so decoding is
linear in the frame size.

The walk runs on every request, so the common shape is cheap: string fields
are handled inline in the struct loop and lists of fixed-width elements are
skipped in one step (see ``tests/transport/test_guard.py`` for the measured cost).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from logserver.errors import FrameRejectedError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "OBJECT_COST",
    "FrameRejectedError",
    "Message",
    "check_frame",
]

#: Nesting limit when the caller gives none; thriftpy2's own is 64.
DEFAULT_MAX_DEPTH = 32

#: Bytes of frame each struct or container must be paid for with (see module doc).
#: The densest valid ``LogEntry`` (two empty strings) is 15 bytes, so any real
#: batch passes; a frame also gets :data:`_OBJECT_SLACK` objects for free.
OBJECT_COST = 12
_OBJECT_SLACK = 256

# Thrift binary-protocol type ids that can appear on the wire.
T_STOP = 0
T_BOOL = 2
T_BYTE = 3
T_DOUBLE = 4
T_I16 = 6
T_I32 = 8
T_I64 = 10
T_STRING = 11
T_STRUCT = 12
T_MAP = 13
T_SET = 14
T_LIST = 15

CALL = 1
ONEWAY = 4
_VERSION_MASK = 0xFFFF0000
_VERSION_1 = 0x80010000

# Minimum encoded size per type id; 0 marks a type that is not a real wire type.
# Indexed by a byte (0..255), so a lookup never fails.
_MIN_SIZE = [0] * 256
for _t, _n in (
    (T_BOOL, 1),
    (T_BYTE, 1),
    (T_DOUBLE, 8),
    (T_I16, 2),
    (T_I32, 4),
    (T_I64, 8),
    (T_STRING, 4),
    (T_STRUCT, 1),
    (T_MAP, 6),
    (T_SET, 5),
    (T_LIST, 5),
):
    _MIN_SIZE[_t] = _n
# Encoded size of fixed-width types; 0 for variable-width and invalid ones.
_FIXED = [0] * 256
for _t in (T_BOOL, T_BYTE, T_DOUBLE, T_I16, T_I32, T_I64):
    _FIXED[_t] = _MIN_SIZE[_t]
_MIN: tuple[int, ...] = tuple(_MIN_SIZE)
_FIX: tuple[int, ...] = tuple(_FIXED)
del _t, _n, _MIN_SIZE, _FIXED

_i32 = struct.Struct(">i").unpack_from
# A field header followed by a string length: (type, length), the field id skipped.
_string_field = struct.Struct(">bxxi").unpack_from


@dataclass(frozen=True, slots=True)
class Message:
    """The header of an accepted (or rejected but readable) request."""

    #: The method name as sent (bytes: it is echoed back in the reply unchanged).
    name: bytes
    #: Thrift message type: 1 CALL, 4 ONEWAY (anything else is rejected).
    type: int
    seqid: int
    #: Whether the header was strict (versioned) or Scribe's classic non-strict form.
    strict: bool
    #: Offset just past the args struct: where thriftpy2 stops reading.
    end: int = 0

    @property
    def method(self) -> str:
        """The method name for logs (undecodable bytes replaced)."""
        return self.name.decode("utf-8", "replace")


class _Reject(Exception):
    """Internal: raised by the walk, turned into FrameRejectedError with the header."""


def check_frame(frame: bytes | bytearray, max_depth: int = DEFAULT_MAX_DEPTH) -> Message:
    """Validate one framed request (without its 4-byte length prefix).

    Returns the message header; raises :class:`FrameRejectedError` (and nothing
    else) when thriftpy2 must not be given these bytes.
    """
    end = len(frame)
    header, pos = _read_header(frame, end)
    if header.type not in (CALL, ONEWAY):
        raise FrameRejectedError(f"message type {header.type} is not a call", header)
    budget = (end + _OBJECT_SLACK * OBJECT_COST) // OBJECT_COST
    try:
        args_end, _ = _walk_struct(frame, pos, end, max_depth, budget)
    except _Reject as e:
        raise FrameRejectedError(str(e), header) from None
    except (struct.error, IndexError):
        # Bounds are checked before each read; this is the safety net for a missed one.
        raise FrameRejectedError("truncated frame", header) from None
    except RecursionError:
        # Only reachable with a caller's max_depth near Python's own limit.
        raise FrameRejectedError("nesting too deep", header) from None
    return Message(header.name, header.type, header.seqid, header.strict, args_end)


def _read_header(frame: bytes | bytearray, end: int) -> tuple[Message, int]:
    if end < 4:
        raise FrameRejectedError(f"frame of {end} bytes is too short for a message header")
    first = _i32(frame, 0)[0]
    if first < 0:
        if first & _VERSION_MASK != _VERSION_1:
            raise FrameRejectedError(f"bad protocol version 0x{first & 0xFFFFFFFF:08x}")
        mtype = first & 0xFF
        if end < 8:
            raise FrameRejectedError("truncated message header")
        size = _i32(frame, 4)[0]
        pos = 8
        if size < 0 or size > end - pos - 4:
            raise FrameRejectedError(f"method name length {size} does not fit the frame")
        name = bytes(frame[pos : pos + size])
        pos += size
        strict = True
    else:
        size = first
        pos = 4
        if size > end - pos - 5:
            raise FrameRejectedError(f"method name length {size} does not fit the frame")
        name = bytes(frame[pos : pos + size])
        pos += size
        mtype = frame[pos]
        pos += 1
        strict = False
    seqid = _i32(frame, pos)[0]
    return Message(name, mtype, seqid, strict), pos + 4


def _walk_struct(
    buf: bytes | bytearray, pos: int, end: int, depth: int, budget: int
) -> tuple[int, int]:
    """Walk one struct starting at ``pos``; return (offset after its STOP, budget left)."""
    if depth <= 0:
        raise _Reject("nesting too deep")
    depth -= 1
    while True:
        if pos >= end:
            raise _Reject("truncated struct")
        ftype = buf[pos]
        if ftype == T_STRING:
            # The common field (LogEntry is two of them): handled inline.
            pos += 7
            if pos > end:
                raise _Reject("truncated string field")
            n = _i32(buf, pos - 4)[0]
            if n < 0 or n > end - pos:
                raise _Reject(f"string length {n} exceeds the {end - pos} bytes left")
            pos += n
        elif ftype == T_STOP:
            return pos + 1, budget
        else:
            fixed = _FIX[ftype]
            if fixed:
                pos += 3 + fixed
                if pos > end:
                    raise _Reject("truncated field")
            elif _MIN[ftype] == 0:
                raise _Reject(f"invalid field type {ftype}")
            else:
                pos += 3
                pos, budget = _walk_value(buf, pos, end, ftype, depth, budget)


def _walk_value(
    buf: bytes | bytearray, pos: int, end: int, ttype: int, depth: int, budget: int
) -> tuple[int, int]:
    """Walk one value of a known-valid type; return (offset after it, budget left)."""
    if ttype == T_STRING:
        if pos + 4 > end:
            raise _Reject("truncated string")
        n = _i32(buf, pos)[0]
        pos += 4
        if n < 0 or n > end - pos:
            raise _Reject(f"string length {n} exceeds the {end - pos} bytes left")
        return pos + n, budget
    fixed = _FIX[ttype]
    if fixed:
        pos += fixed
        if pos > end:
            raise _Reject("truncated value")
        return pos, budget
    budget -= 1
    if budget < 0:
        raise _Reject(f"more than one struct or container per {OBJECT_COST} bytes")
    if ttype == T_STRUCT:
        return _walk_struct(buf, pos, end, depth, budget)
    if ttype == T_MAP:
        return _walk_map(buf, pos, end, depth, budget)
    return _walk_list(buf, pos, end, depth, budget)


def _walk_list(
    buf: bytes | bytearray, pos: int, end: int, depth: int, budget: int
) -> tuple[int, int]:
    if depth <= 0:
        raise _Reject("nesting too deep")
    depth -= 1
    if pos + 5 > end:
        raise _Reject("truncated list header")
    etype = buf[pos]
    count = _i32(buf, pos + 1)[0]
    pos += 5
    min_size = _MIN[etype]
    if min_size == 0:
        raise _Reject(f"invalid element type {etype}")
    if count < 0:
        raise _Reject(f"negative element count {count}")
    if count * min_size > end - pos:
        raise _Reject(f"{count} elements of type {etype} cannot fit in the {end - pos} bytes left")
    fixed = _FIX[etype]
    if fixed:
        return pos + count * fixed, budget
    if etype == T_STRING:
        for _ in range(count):
            if pos + 4 > end:
                raise _Reject("truncated string")
            n = _i32(buf, pos)[0]
            pos += 4
            if n < 0 or n > end - pos:
                raise _Reject(f"string length {n} exceeds the {end - pos} bytes left")
            pos += n
        return pos, budget
    # Structs and containers: every element is a Python object; pay for all up front
    # so that the walk itself stays bounded too.
    budget -= count
    if budget < 0:
        raise _Reject(f"more than one struct or container per {OBJECT_COST} bytes")
    if etype == T_STRUCT:
        return _walk_structs(buf, pos, end, count, depth, budget)
    walk = _walk_map if etype == T_MAP else _walk_list
    for _ in range(count):
        pos, budget = walk(buf, pos, end, depth, budget)
    return pos, budget


def _walk_structs(
    buf: bytes | bytearray, pos: int, end: int, count: int, depth: int, budget: int
) -> tuple[int, int]:
    """Walk ``count`` structs: the elements of every Log and Append batch.

    Fast path for LogEntry's shape (two string fields, then STOP). Anything
    else, or anything wrong, is walked again from the element's start by the
    generic walk, so the fast path changes the speed, never the verdict.
    """
    string_field = _string_field  # locals: this loop is the guard's hot spot
    fast = depth > 0
    for _ in range(count):
        p = pos + 7
        if fast and p <= end:
            t, n = string_field(buf, pos)
            if t == 11 and 0 <= n <= end - p:
                p += n + 7
                if p <= end:
                    t, n = string_field(buf, p - 7)
                    if t == 11 and 0 <= n <= end - p:
                        p += n
                        if p < end and buf[p] == 0:
                            pos = p + 1
                            continue
        pos, budget = _walk_struct(buf, pos, end, depth, budget)
    return pos, budget


def _walk_map(
    buf: bytes | bytearray, pos: int, end: int, depth: int, budget: int
) -> tuple[int, int]:
    if depth <= 0:
        raise _Reject("nesting too deep")
    depth -= 1
    if pos + 6 > end:
        raise _Reject("truncated map header")
    ktype = buf[pos]
    vtype = buf[pos + 1]
    count = _i32(buf, pos + 2)[0]
    pos += 6
    kmin = _MIN[ktype]
    vmin = _MIN[vtype]
    if kmin == 0 or vmin == 0:
        raise _Reject(f"invalid map key/value types {ktype}/{vtype}")
    if count < 0:
        raise _Reject(f"negative map size {count}")
    if count * (kmin + vmin) > end - pos:
        raise _Reject(f"{count} map entries cannot fit in the {end - pos} bytes left")
    kfixed = _FIX[ktype]
    vfixed = _FIX[vtype]
    if kfixed and vfixed:
        return pos + count * (kfixed + vfixed), budget
    for _ in range(count):
        pos, budget = _walk_value(buf, pos, end, ktype, depth, budget)
        pos, budget = _walk_value(buf, pos, end, vtype, depth, budget)
    return pos, budget
