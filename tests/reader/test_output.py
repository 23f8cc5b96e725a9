"""What ``logserver cat`` prints for a block: every format, every awkward byte, the same
lines whether the fast path (plain ASCII) or the escaping one is taken."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from logserver.reader._cli import PIPE_BYTES, widen_pipe
from logserver.reader._output import PIECE_RECORDS, formatter
from logserver.reader._reader import _last
from logserver.reader._records import RecordBlock, format_time, split_runs
from logwire.blocks import BlockColumns
from logwire.compression import column_lengths
from logwire.packed import pack_lengths

NS = 1_796_531_262_836_592_355
AWKWARD = [
    b"plain",
    b'a "quote" \\ back',
    b"ctl\x01\ttab",
    b"caf\xc3\xa9",
    b"\xff\xfe",
    b"100%d %s",
    b"",
]


def _block(
    messages: list[bytes], picked: list[tuple[int, int]] | None = None, first: int = 0
) -> RecordBlock:
    columns = pack_lengths(messages) + b"".join(messages)
    return RecordBlock(
        "c%s",
        "127.0.0.1:1%d",
        "p%",
        7,
        NS,
        BlockColumns(columns, column_lengths(columns, len(messages))),
        range(first, first + len(messages)),
        picked,
    )


@pytest.mark.parametrize("picked", [None, [(1, 2), (5, 2)]])
def test_every_format_shows_each_record_once_with_bytes_escaped(
    picked: list[tuple[int, int]] | None,
) -> None:
    """--raw is byte for byte; text and JSON escape what is not UTF-8 (backslashreplace);
    JSON has every field, also with % in names; only the picked records come out."""
    block = _block(AWKWARD, picked, first=3)
    chosen = [i for a, n in (picked or [(0, len(AWKWARD))]) for i in range(a, a + n)]
    raw = b"".join(formatter("raw")(block))
    assert raw == b"".join(AWKWARD[i] + b"\n" for i in chosen)
    stamp = format_time(NS)
    text = b"".join(formatter("text")(block)).decode()
    shown = [AWKWARD[i].decode("utf-8", "backslashreplace") for i in chosen]
    assert text == "".join(f"{stamp} {m}\n" for m in shown)
    lines = [json.loads(line) for line in b"".join(formatter("json")(block)).splitlines()]
    assert [(d["message"], d["index"]) for d in lines] == [
        (m, 3 + i) for m, i in zip(shown, chosen, strict=True)
    ]
    assert lines[0]["time"] == format_time(NS, 9) and lines[0]["time"].endswith("355Z")
    assert {(d["category"], d["server"], d["producer"], d["sequence"]) for d in lines} == {
        ("c%s", "127.0.0.1:1%d", "p%", 7)
    }


def test_the_plain_fast_path_prints_what_the_escaping_one_would() -> None:
    """A plain ASCII block (the fast path) and the same messages in a block that needs
    escaping (one awkward record more) print the same lines for the plain records."""
    plain = [b"GET /index.html 200 %d", b"x" * 300, b"{not json}"]
    fast = b"".join(formatter("json")(_block(plain))).splitlines()
    slow = b"".join(formatter("json")(_block([*plain, b'"']))).splitlines()[:3]
    assert fast == slow


@pytest.mark.parametrize("extra", [b"", b'"', "caf\u00e9".encode(), b"\xff"])
def test_a_block_larger_than_a_piece_prints_every_picked_record_once_in_order(
    extra: bytes,
) -> None:
    """Blocks are printed a piece of PIECE_RECORDS lines at a time: runs that cross the
    pieces' edges still print each picked record once, in order, with its own index, in
    every format and on the plain and the escaping paths alike."""
    messages = [b"line %d %s" % (i, b"x" * (i % 37)) for i in range(3 * PIECE_RECORDS + 7)]
    messages[PIECE_RECORDS + 1] += extra
    picked = [(3, PIECE_RECORDS + 5), (PIECE_RECORDS + 100, 1), (2 * PIECE_RECORDS - 2, 500)]
    block = _block(messages, picked, first=10)
    chosen = [i for a, n in picked for i in range(a, a + n)]
    raw = b"".join(formatter("raw")(block))
    assert raw == b"".join(messages[i] + b"\n" for i in chosen)
    shown = [messages[i].decode("utf-8", "backslashreplace") for i in chosen]
    stamp = format_time(NS)
    assert b"".join(formatter("text")(block)).decode() == "".join(f"{stamp} {m}\n" for m in shown)
    lines = [json.loads(line) for line in b"".join(formatter("json")(block)).splitlines()]
    assert [(d["message"], d["index"]) for d in lines] == [
        (m, 10 + i) for m, i in zip(shown, chosen, strict=True)
    ]


def test_runs_are_split_into_pieces_of_at_most_the_size_in_order() -> None:
    """split_runs keeps every record of the runs once, in order, at most `size` a piece."""
    runs = [(0, 5), (10, 1), (20, 7), (40, 0), (50, 3)]
    for size in (1, 2, 3, 5, 16, 100):
        pieces = list(split_runs(runs, size))
        flat = [i for piece in pieces for a, n in piece for i in range(a, a + n)]
        assert flat == [i for a, n in runs for i in range(a, a + n)], size
        assert all(0 < sum(n for _, n in piece) <= size for piece in pieces), size
        assert all(sum(n for _, n in piece) == size for piece in pieces[:-1]), size


def test_the_last_n_records_over_blocks() -> None:
    """-n keeps the last N records whatever the blocks' sizes, N=0 and N beyond all."""
    blocks = [_block([b"a%d" % i for i in range(k)], first=0) for k in (3, 1, 4)]
    everything = [m for b in blocks for m in b.messages()]
    for n in (0, 1, 2, 4, 5, 8, 20):
        kept = [m for b in _last(iter(blocks), n) for m in b.messages()]
        assert kept == (everything[-n:] if n else []), n


def test_cat_widens_the_pipe_it_writes_to_and_leaves_other_outputs_alone(tmp_path: Path) -> None:
    """``logserver cat`` asks for a 1 MiB pipe (fewer wake-ups of the reader of its output);
    a file or a size over the system's limit is no error and changes nothing."""
    read_end, write_end = os.pipe()
    try:
        assert fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) < PIPE_BYTES
        assert widen_pipe(write_end) == PIPE_BYTES
        assert fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ) == PIPE_BYTES
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        if os.geteuid() != 0:  # root may go past the limit
            assert widen_pipe(write_end, limit * 4) == PIPE_BYTES
    finally:
        os.close(read_end)
        os.close(write_end)
    with (tmp_path / "out").open("wb") as file:
        assert widen_pipe(file.fileno()) == 0
