"""``logserver cat``'s output formats, a block at a time, without a Python object per record.

- ``text``: the receive time (RFC 3339, UTC, microseconds), a space, the message.
- ``json``: one object a line: ``time`` (RFC 3339, UTC, nanoseconds),
  ``category``, ``message``, ``server``, ``producer``, ``sequence``, ``index``.
- ``raw``: the message bytes, byte for byte, each followed by a newline.

Messages that are not UTF-8 come out escaped in ``text`` and ``json``: each
byte that is not part of valid UTF-8 as ``\\xNN`` (Python's ``backslashreplace``).
``raw`` is the one to use for exact bytes.

Every record of a block shares its time and batch, so the parts of a line
that do not change are built once per block, and the lines are joined in C.
A pass or two over a block's message column in C tells whether any message
needs work; the usual log line (ASCII, no quote, backslash or control
character) then needs none, in either format. Only the blocks that do need it
escape message by message.
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
# What JSON must escape in a string: quote, backslash and control characters.
_JSON_ESCAPED = bytes(range(0x20)) + b'"\\'


def _region(block: RecordBlock) -> bytes:
    """The block's message column (a copy: a memcpy is far cheaper than any scan)."""
    columns = block.columns
    return columns.columns[4 * len(columns.lengths) :]


def _plain_json(region: bytes) -> bool:
    """Whether no message needs escaping in JSON: ASCII without quote, backslash or
    control character (two passes in C over the column)."""
    return region.isascii() and len(region.translate(None, _JSON_ESCAPED)) == len(region)


def _text(block: RecordBlock) -> bytes:
    prefix = format_time(block.received_ns).encode() + b" "
    messages = block.messages()
    if not _region(block).isascii():
        messages = [m.decode("utf-8", "backslashreplace").encode() for m in messages]
    return prefix + (b"\n" + prefix).join(messages) + b"\n"


def _raw(block: RecordBlock) -> bytes:
    return b"\n".join(block.messages()) + b"\n"


def _json(block: RecordBlock) -> bytes:
    head = (
        '{"time": "' + format_time(block.received_ns, 9) + '", "category": '
        + _escape(block.category) + ', "message": '
    )  # fmt: skip
    mid = (
        ', "server": ' + _escape(block.server) + ', "producer": ' + _escape(block.producer)
        + f', "sequence": {block.sequence}, "index": '
    )  # fmt: skip
    indexes = block.record_indexes()
    region = _region(block)
    if _plain_json(region):
        # Nothing to escape: each line is the opening, the message as it is, the middle,
        # its index and the close, joined in one go from pieces made once per block.
        opening = (head + '"').encode()
        n = len(indexes)
        if not n:
            return b""
        parts: list[bytes] = [b""] * (4 * n)
        parts[0::4] = block.messages()
        parts[1::4] = [('"' + mid).encode()] * n
        parts[2::4] = _index_bytes(indexes)
        parts[3::4] = [b"}\n" + opening] * n
        parts[-1] = b"}\n"
        return opening + b"".join(parts)
    line = head.replace("%", "%%") + "%s" + mid.replace("%", "%%") + "%d}\n"
    escaped = map(_escape, _str_messages(block, region))
    return "".join(map(line.__mod__, zip(escaped, indexes, strict=True))).encode()


#: ``b"0"``, ``b"1"``, ...: batch indexes as bytes, made once (a batch holds at most
#: 10,000 records with the client's default policy).
_INDEXES = [b"%d" % i for i in range(16384)]


def _index_bytes(indexes: list[int]) -> list[bytes]:
    first, last = indexes[0], indexes[-1]
    if last < len(_INDEXES) and last - first == len(indexes) - 1:  # one run
        return _INDEXES[first : last + 1]
    return [b"%d" % i for i in indexes]


def _str_messages(block: RecordBlock, region: bytes) -> list[str]:
    """The messages as text (bytes that are not UTF-8 escaped)."""
    if region.isascii():
        # ASCII: one decode of the column, then the same slices of the text.
        text = region.decode("ascii")
        return slice_column(text, block.columns.lengths, block.picked, 0)
    return [m.decode("utf-8", "backslashreplace") for m in block.messages()]


def formatter(kind: Format) -> Callable[[RecordBlock], bytes]:
    """The function that turns a block into its output bytes."""
    return {"text": _text, "json": _json, "raw": _raw}[kind]
