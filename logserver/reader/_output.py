"""``logserver cat``'s output formats, a block at a time, without a Python object per record.

- ``text``: the receive time (RFC 3339, UTC, microseconds), a space, the message.
- ``json``: one object a line: ``time`` (RFC 3339, UTC, nanoseconds),
  ``category``, ``message``, ``server``, ``producer``, ``sequence``, ``index``.
- ``raw``: the message bytes, byte for byte, each followed by a newline.

Messages that are not UTF-8 come out escaped in ``text`` and ``json``: each
byte that is not part of valid UTF-8 as ``\\xNN`` (Python's ``backslashreplace``).
``raw`` is the one to use for exact bytes.

Every record of a block shares its time and batch, so the parts of a line
that do not change are built once per block, and the messages are joined in
C: a block whose messages are ASCII (the usual log line) needs no check per
record, and JSON escapes each message with the json module's C encoder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Literal

from logserver.reader._records import RecordBlock, format_time, slice_column

__all__ = ["Format", "formatter"]

Format = Literal["text", "json", "raw"]

_escape: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring", None) or (
    json.encoder.py_encode_basestring
)


def _text_messages(block: RecordBlock) -> list[bytes]:
    """The messages, with bytes that are not UTF-8 escaped."""
    messages = block.messages()
    if _ascii(block):
        return messages
    return [m.decode("utf-8", "backslashreplace").encode() for m in messages]


def _ascii(block: RecordBlock) -> bool:
    """Whether every message of the block is ASCII (one check of the whole column)."""
    columns = block.columns
    return columns.columns[4 * len(columns.lengths) :].isascii()


def _str_messages(block: RecordBlock) -> list[str]:
    """The messages as text (bytes that are not UTF-8 escaped)."""
    if _ascii(block):
        # ASCII: one decode of the column, then the same slices of the text.
        columns = block.columns
        n = len(columns.lengths)
        text = columns.columns[4 * n :].decode("ascii")
        return slice_column(text, columns.lengths, block.picked, 0)
    return [m.decode("utf-8", "backslashreplace") for m in block.messages()]


def _text(block: RecordBlock) -> bytes:
    prefix = format_time(block.received_ns).encode() + b" "
    return prefix + (b"\n" + prefix).join(_text_messages(block)) + b"\n"


def _raw(block: RecordBlock) -> bytes:
    return b"\n".join(block.messages()) + b"\n"


def _json(block: RecordBlock) -> bytes:
    head = (
        '{"time": "'
        + format_time(block.received_ns, 9)
        + '", "category": '
        + _escape(block.category)
        + ', "message": '
    )
    mid = (
        ', "server": '
        + _escape(block.server)
        + ', "producer": '
        + _escape(block.producer)
        + f', "sequence": {block.sequence}, "index": '
    )
    line = head.replace("%", "%%") + "%s" + mid.replace("%", "%%") + "%d}\n"
    escaped = map(_escape, _str_messages(block))
    return "".join(map(line.__mod__, zip(escaped, block.record_indexes(), strict=True))).encode()


def formatter(kind: Format) -> Callable[[RecordBlock], bytes]:
    """The function that turns a block into its output bytes."""
    return {"text": _text, "json": _json, "raw": _raw}[kind]
