"""The ``AppendPacked`` and ``Append`` calls on the wire, encoded by hand; replies decoded by thriftpy2.

Why by hand: building one thriftpy2 ``LogEntry`` object per record and letting
the protocol walk them costs ~3.6 µs per record on the sender thread, which
shares the GIL with the application. Encoding the framed, strict-binary
message directly with cached per-category prefixes costs a fraction of that.
The bytes are exactly what thriftpy2 would write for
``LogService.Append(AppendBatch(...))`` and ``LogService.AppendPacked(PackedBatch(...))``:
unit tests compare them.

``AppendCompressed`` (the columns compressed, see :mod:`logwire.compression`)
is what the client sends with compression on, ``AppendPacked`` (the records in
columns, see :mod:`logwire.packed`) without; each is for servers that know it,
``Append`` for servers that predate both.

The reply is read as one frame whose length is checked against a cap before
anything is allocated (thriftpy2 allocates whatever a length prefix claims),
then decoded with thriftpy2's Cython protocol. Its method name and sequence id
must match the call: a reply that belongs to another call is an error, never
an answer.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import chain
from typing import Any

from logwire.compression import NONE, CompressionPolicy, compress_columns, join_columns
from logwire.packed import category_runs, pack_lengths

__all__ = [
    "MAX_REPLY_BYTES",
    "decode_append_reply",
    "encode_append_call",
    "encode_compressed_call",
    "encode_packed_call",
]

#: A reply to Append is a few dozen bytes (or a declared exception with a reason).
MAX_REPLY_BYTES = 1 << 20

_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")

# Thrift binary protocol type ids.
_STOP, _I64_T, _STRING, _STRUCT, _LIST = 0, 10, 11, 12, 15
_CALL = 1
_VERSION_1 = 0x80010000


def _call_head(method: bytes) -> bytes:
    return _U32.pack(_VERSION_1 | _CALL) + _I32.pack(len(method)) + method


_CALL_HEAD = _call_head(b"Append")
_PACKED_CALL_HEAD = _call_head(b"AppendPacked")
_COMPRESSED_CALL_HEAD = _call_head(b"AppendCompressed")


def _field(ttype: int, fid: int) -> bytes:
    return struct.pack(">bh", ttype, fid)


_ARG_BATCH = _field(_STRUCT, 1)
_F_PRODUCER = _field(_STRING, 1)
_F_SEQUENCE = _field(_I64_T, 2)
_F_ENTRIES = _field(_LIST, 3) + struct.pack(">b", _STRUCT)
_F_CATEGORY = _field(_STRING, 1)
_F_MESSAGE = _field(_STRING, 2)
_F_RUNS = _field(_LIST, 3) + struct.pack(">b", _STRUCT)
_F_LENGTHS = _field(_STRING, 4)
_F_MESSAGES = _field(_STRING, 5)
_F_RUN_COUNT = _field(8, 2)  # i32
_F_CODEC = _field(8, 4)  # i32 (a Thrift enum)
_F_RAW_BYTES = _field(_I64_T, 5)
_F_COLUMNS = _field(_STRING, 6)
_END_ENTRY = b"\x00"
_TAIL = b"\x00\x00"  # ends AppendBatch, then Append_args

_prefixes: dict[str, bytes] = {}
_MAX_CACHED_CATEGORIES = 10_000


def _entry_prefix(category: str) -> bytes:
    """The bytes between two messages: the previous LogEntry's end, this one's fields up
    to the message length (cached per category)."""
    prefix = _prefixes.get(category)
    if prefix is None:
        cat = category.encode("utf-8")
        prefix = _END_ENTRY + _F_CATEGORY + _I32.pack(len(cat)) + cat + _F_MESSAGE
        if len(_prefixes) < _MAX_CACHED_CATEGORIES:
            _prefixes[category] = prefix
    return prefix


def _batch_head(call_head: bytes, seqid: int, producer: str, sequence: int) -> list[bytes]:
    """The message header and the batch struct's first two fields (both calls share them)."""
    encoded = producer.encode("utf-8")
    return [
        call_head,
        _I32.pack(seqid),
        _ARG_BATCH,
        _F_PRODUCER,
        _I32.pack(len(encoded)),
        encoded,
        _F_SEQUENCE,
        _I64.pack(sequence),
    ]


def encode_append_call(
    seqid: int,
    producer: str,
    sequence: int,
    categories: Sequence[str],
    messages: Sequence[bytes],
) -> bytes:
    """The framed bytes of ``Append(AppendBatch(producer, sequence, entries))``,
    the entries being the records ``categories[i], messages[i]``.

    Each entry is laid out as (end of the previous entry + this one's field
    headers and category), message length, message: three parts per entry,
    placed by slice assignment from C-level ``map`` calls, so there is no
    Python bytecode per record (a quarter of the cost of a loop).
    """
    n = len(messages)
    head = b"".join((*_batch_head(_CALL_HEAD, seqid, producer, sequence), _F_ENTRIES, _I32.pack(n)))
    if not n:
        return _I32.pack(len(head) + len(_TAIL)) + head + _TAIL
    distinct = set(categories)
    parts: list[bytes]
    if len(distinct) == 1:
        parts = [_entry_prefix(distinct.pop())] * (3 * n)
    else:
        prefix_of = {category: _entry_prefix(category) for category in distinct}
        parts = [b""] * (3 * n)
        parts[0::3] = map(prefix_of.__getitem__, categories)
    parts[0] = head + parts[0][1:]  # the first entry has no previous one to end
    parts[1::3] = map(_I32.pack, map(len, messages))
    parts[2::3] = messages
    parts.append(_END_ENTRY + _TAIL)
    body_len = sum(map(len, parts))
    parts[0] = _I32.pack(body_len) + parts[0]
    return b"".join(parts)


def _runs_fields(runs: list[tuple[str, int]]) -> list[bytes]:
    """The ``runs`` field (``list<CategoryRun>``), as PackedBatch and CompressedBatch share it."""
    parts = [_F_RUNS, _I32.pack(len(runs))]
    for category, count in runs:
        cat = category.encode("utf-8")
        parts += (_F_CATEGORY, _I32.pack(len(cat)), cat, _F_RUN_COUNT, _I32.pack(count), _END_ENTRY)
    return parts


def encode_packed_call(
    seqid: int,
    producer: str,
    sequence: int,
    categories: Sequence[str],
    messages: Sequence[bytes],
) -> bytes:
    """The framed bytes of ``AppendPacked(PackedBatch(producer, sequence, ...))``.

    Per record there is only C-level work (see :func:`logwire.packed.pack_entries`):
    about a sixth of :func:`encode_append_call`'s cost, and the server decodes it
    without a loop per record either.
    """
    lengths = pack_lengths(messages)
    size = sum(map(len, messages))
    parts = [
        b"",  # frame length, filled in below
        *_batch_head(_PACKED_CALL_HEAD, seqid, producer, sequence),
        *_runs_fields(category_runs(categories)),
        _F_LENGTHS,
        _I32.pack(len(lengths)),
        lengths,
        _F_MESSAGES,
        _I32.pack(size),
    ]
    parts[0] = _I32.pack(sum(map(len, parts)) + size + len(_TAIL))
    # One join straight into the frame: a large bytes object is fresh memory
    # (page faults), so copying the messages twice costs more than encoding them.
    return b"".join(chain(parts, messages, (_TAIL,)))


def encode_compressed_call(
    seqid: int,
    producer: str,
    sequence: int,
    categories: Sequence[str],
    messages: Sequence[bytes],
    policy: CompressionPolicy,
) -> bytes | None:
    """The framed bytes of ``AppendCompressed(CompressedBatch(...))``, or None when
    compressing does not make the batch smaller (random bytes, already-compressed
    payloads): such a batch is better sent as ``AppendPacked``.

    The columns are joined once and compressed (Zstandard releases the GIL, so the
    application's thread runs meanwhile); only the compressed bytes are copied into
    the frame.
    """
    columns = join_columns(pack_lengths(messages), messages)
    codec, payload = compress_columns(columns, policy)
    if codec == NONE:
        return None
    parts = [
        b"",  # frame length, filled in below
        *_batch_head(_COMPRESSED_CALL_HEAD, seqid, producer, sequence),
        *_runs_fields(category_runs(categories)),
        _F_CODEC,
        _I32.pack(codec),
        _F_RAW_BYTES,
        _I64.pack(len(columns)),
        _F_COLUMNS,
        _I32.pack(len(payload)),
        payload,
        _TAIL,
    ]
    parts[0] = _I32.pack(sum(map(len, parts)))
    return b"".join(parts)


def decode_append_reply(payload: bytes, seqid: int, method: str = "Append") -> Any:
    """Decode one reply frame's payload; returns ``<method>_result`` (caller inspects it).

    ``method`` is ``Append``, ``AppendPacked`` or ``AppendCompressed``. Raises TApplicationException
    for an application error, and ValueError when the reply is not the answer
    to call ``seqid`` of ``method``.
    """
    from thriftpy2.protocol import TCyBinaryProtocol
    from thriftpy2.thrift import TApplicationException, TMessageType
    from thriftpy2.transport.memory import TCyMemoryBuffer

    from logwire.idl import log_thrift

    protocol = TCyBinaryProtocol(TCyMemoryBuffer(payload))
    name, mtype, rseqid = protocol.read_message_begin()
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if name != method or rseqid != seqid:
        raise ValueError(f"reply to {name!r} #{rseqid} while waiting for {method!r} #{seqid}")
    if mtype == TMessageType.EXCEPTION:
        exc = TApplicationException()
        exc.read(protocol)
        raise exc
    result = getattr(log_thrift.LogService, f"{method}_result")()
    result.read(protocol)
    return result
