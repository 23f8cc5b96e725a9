"""``logserver cat``'s output formats, a block at a time, without a Python object per record.

- ``text``: the receive time (RFC 3339, UTC, microseconds), a space, the message.
- ``json``: one compact object a line (no spaces, as ``jq -c`` and ``journalctl -o
  json`` print): ``time`` (RFC 3339, UTC, nanoseconds), ``category``, ``message``,
  ``server``, ``producer``, ``sequence``, ``index``.
- ``raw``: the message bytes, byte for byte, each followed by a newline.

Messages that are not UTF-8 come out escaped in ``text`` and ``json``: each
byte that is not part of valid UTF-8 as ``\\xNN`` (Python's ``backslashreplace``).
``raw`` is the one to use for exact bytes.

Every record of a block shares its time and batch, so the parts of a line
that do not change are built once per block, and the lines are joined in C, a
piece of :data:`PIECE_RECORDS` lines at a time.
A pass or two over a block's message column in C tells whether any message
needs work; the usual log line (ASCII, no quote, backslash or control
character) then needs none, in either format. Only the blocks that do need it
escape message by message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import Literal, TypeVar

from logserver.reader._records import RecordBlock, cut, format_time, split_runs

__all__ = ["Format", "formatter"]

Format = Literal["text", "json", "raw"]
_Column = TypeVar("_Column", bytes, str)

#: Records formatted and written at a time. A piece of about 512 lines (60-150 KB) is
#: made and written while its messages and output are still in the CPU's cache; a whole
#: block's output in one go (megabytes, in fresh pages) took a third longer in JSON.
PIECE_RECORDS = 512

_escape: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring", None) or (
    json.encoder.py_encode_basestring
)
# A table for ``bytes.translate`` that maps each byte a JSON string may hold as it is
# (printable ASCII but the quote and the backslash) to 1 and every other to 0: one pass
# in C over a block's message column, then a ``find`` (memchr) of a 0.
_JSON_PLAIN = bytes(int(0x20 <= c < 0x80 and c not in b'"\\') for c in range(256))


def _region(block: RecordBlock) -> bytes:
    """The block's message column (a copy: a memcpy is far cheaper than any scan)."""
    columns = block.columns
    return columns.columns[4 * len(columns.lengths) :]


def _plain_json(region: bytes) -> bool:
    """Whether no message needs escaping in JSON: printable ASCII without quote or
    backslash."""
    return region.translate(_JSON_PLAIN).find(0) < 0


def _text(block: RecordBlock) -> Iterator[bytes]:
    prefix = format_time(block.received_ns).encode() + b" "
    separator = b"\n" + prefix
    escape = not _region(block).isascii()
    for messages in _pieces(block):
        if escape:
            messages = [m.decode("utf-8", "backslashreplace").encode() for m in messages]
        yield prefix + separator.join(messages) + b"\n"


def _raw(block: RecordBlock) -> Iterator[bytes]:
    for messages in _pieces(block):
        yield b"\n".join(messages) + b"\n"


def _json(block: RecordBlock) -> Iterator[bytes]:
    head = (
        '{"time":"' + format_time(block.received_ns, 9) + '","category":'
        + _escape(block.category) + ',"message":'
    )  # fmt: skip
    mid = (
        ',"server":' + _escape(block.server) + ',"producer":' + _escape(block.producer)
        + f',"sequence":{block.sequence},"index":'
    )  # fmt: skip
    region = _region(block)
    if _plain_json(region):
        # Nothing to escape: a piece is its first line's opening, then for each line the
        # message as it is, the middle, its index and the close with the next opening:
        # joined in one go from parts made once per block.
        opening = (head + '"').encode()
        middle = ('"' + mid).encode()
        between = b"}\n" + opening
        for messages, indexes in _indexed(block, _pieces(block)):
            n = len(messages)
            parts: list[bytes] = [b""] * (4 * n + 1)
            parts[0] = opening
            parts[1::4] = messages
            parts[2::4] = [middle] * n
            parts[3::4] = _index_bytes(indexes)
            parts[4::4] = [between] * n
            parts[-1] = b"}\n"
            yield b"".join(parts)
        return
    line = head.replace("%", "%%") + "%s" + mid.replace("%", "%%") + "%d}\n"
    for texts, indexes in _indexed(block, _str_pieces(block, region)):
        escaped = map(_escape, texts)
        yield "".join(map(line.__mod__, zip(escaped, indexes, strict=True))).encode()


def _pieces(block: RecordBlock) -> Iterator[list[bytes]]:
    """The shown messages, :data:`PIECE_RECORDS` at a time."""
    lengths = block.columns.lengths
    return _cut_pieces(block, block.columns.columns, 4 * len(lengths))


def _str_pieces(block: RecordBlock, region: bytes) -> Iterator[list[str]]:
    """The same pieces as text (bytes that are not UTF-8 escaped)."""
    if region.isascii():
        # ASCII: one decode of the column, then the same slices of the text.
        return _cut_pieces(block, region.decode("ascii"), 0)
    return (
        [m.decode("utf-8", "backslashreplace") for m in messages] for messages in _pieces(block)
    )


def _cut_pieces(block: RecordBlock, column: _Column, start: int) -> Iterator[list[_Column]]:
    ends = list(accumulate(block.columns.lengths, initial=start))
    for runs in split_runs(block.runs(), PIECE_RECORDS):
        yield cut(column, ends, runs)


def _indexed(
    block: RecordBlock, pieces: Iterator[list[_Column]]
) -> Iterator[tuple[list[_Column], list[int]]]:
    """Each piece with its records' batch indexes (only JSON prints them)."""
    indexes = block.record_indexes()
    done = 0
    for items in pieces:
        yield items, indexes[done : done + len(items)]
        done += len(items)


#: ``b"0"``, ``b"1"``, ...: batch indexes as bytes, made once (a batch holds at most
#: 10,000 records with the client's default policy).
_INDEXES = [b"%d" % i for i in range(16384)]


def _index_bytes(indexes: list[int]) -> list[bytes]:
    first, last = indexes[0], indexes[-1]
    if last < len(_INDEXES) and last - first == len(indexes) - 1:  # one run
        return _INDEXES[first : last + 1]
    return [b"%d" % i for i in indexes]


def formatter(kind: Format) -> Callable[[RecordBlock], Iterator[bytes]]:
    """The function that turns a block into its output, a piece at a time (write each
    piece as it comes)."""
    return {"text": _text, "json": _json, "raw": _raw}[kind]
