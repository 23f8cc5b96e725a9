"""The column codec both ends share (logwire.compression): round trips, raw fallback, and the
refusals that keep a hostile payload from costing the server memory."""

from __future__ import annotations

import os

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from logwire.compression import (
    NONE,
    ZSTD,
    CompressionError,
    CompressionPolicy,
    column_messages,
    compress_columns,
    decompress,
    join_columns,
)
from logwire.packed import pack_lengths


def _columns(messages: list[bytes]) -> bytes:
    return join_columns(pack_lengths(messages), messages)


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(st.binary(max_size=300), min_size=1, max_size=50),
    level=st.sampled_from([-5, 1, 3]),
)
def test_round_trip_is_byte_exact(messages: list[bytes], level: int) -> None:
    """Any messages (non-UTF-8 included) come back byte for byte, and the payload is never
    larger than the columns (stored raw when compression does not pay)."""
    columns = _columns(messages)
    codec, payload = compress_columns(columns, CompressionPolicy(level=level, min_bytes=0))
    assert len(payload) <= len(columns)
    assert codec in (NONE, ZSTD)
    decoded = decompress(codec, payload, len(columns), cap=len(columns))
    assert column_messages(decoded, len(messages)) == messages


def test_log_lines_compress_and_random_bytes_stay_raw() -> None:
    """Text compresses; random bytes are kept as they are, so they never grow."""
    lines = [
        f"2026-12-04 08:04:{i % 60:02d} status installed libfoo{i}:amd64".encode()
        for i in range(500)
    ]
    codec, payload = compress_columns(_columns(lines), CompressionPolicy())
    assert codec == ZSTD and len(payload) < len(_columns(lines)) / 4
    noise = [os.urandom(100) for _ in range(3)]
    raw = b"".join(noise)  # no lengths column to squeeze: nothing to gain
    assert compress_columns(raw, CompressionPolicy()) == (NONE, raw)


def test_disabled_or_tiny_columns_are_not_compressed() -> None:
    columns = _columns([b"a" * 100] * 3)
    assert compress_columns(columns, CompressionPolicy(algorithm="none")) == (NONE, columns)
    assert compress_columns(columns, CompressionPolicy(min_bytes=10_000)) == (NONE, columns)


def test_a_bomb_is_refused_before_anything_is_allocated() -> None:
    """A tiny frame that expands to 64 MiB is refused when that exceeds the cap, whatever it
    declares: the frame's own content size is read from its header first."""
    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(64 * 2**20))
    assert len(bomb) < 10_000
    with pytest.raises(CompressionError, match="exceed the limit"):
        decompress(ZSTD, bomb, 64 * 2**20, cap=16 * 2**20)
    with pytest.raises(CompressionError, match="holds 67108864 bytes, 100 were declared"):
        decompress(ZSTD, bomb, 100, cap=16 * 2**20)


def test_frames_without_content_size_or_with_extra_bytes_are_refused() -> None:
    data = b"x" * 1000
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    with pytest.raises(CompressionError, match="does not declare its content size"):
        decompress(ZSTD, unsized, 1000, cap=10_000)
    sized = zstandard.ZstdCompressor().compress(data)
    with pytest.raises(CompressionError, match="corrupt"):
        decompress(ZSTD, sized + sized, 1000, cap=10_000)
    with pytest.raises(CompressionError, match="not a Zstandard frame"):
        decompress(ZSTD, b"definitely not zstd", 1000, cap=10_000)
    with pytest.raises(CompressionError, match="unknown codec"):
        decompress(7, sized, 1000, cap=10_000)
    with pytest.raises(CompressionError, match="declared"):
        decompress(NONE, data, 999, cap=10_000)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), raw=st.integers(0, 5000), codec=st.sampled_from([NONE, ZSTD]))
def test_garbage_never_decodes_to_a_wrong_size(data: bytes, raw: int, codec: int) -> None:
    """Whatever the bytes, decompress returns exactly the declared size or raises CompressionError."""
    try:
        out = decompress(codec, data, raw, cap=4096)
    except CompressionError:
        return
    assert len(out) == raw <= 4096


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(st.binary(max_size=40), min_size=1, max_size=20),
    flip=st.integers(0, 10_000),
)
def test_damaged_zstd_frames_fail_or_decode_to_the_declared_size(
    messages: list[bytes], flip: int
) -> None:
    """A damaged frame is refused or decodes to the declared size (the block check catches
    the rest); it never raises anything but CompressionError."""
    columns = _columns(messages)
    payload = bytearray(zstandard.ZstdCompressor().compress(columns))
    payload[flip % len(payload)] ^= 0x40
    try:
        out = decompress(ZSTD, bytes(payload), len(columns), cap=len(columns))
    except CompressionError:
        return
    assert len(out) == len(columns)


def test_lengths_must_add_up() -> None:
    columns = _columns([b"abc", b"de"])
    assert column_messages(columns, 2) == [b"abc", b"de"]
    with pytest.raises(CompressionError, match="add up"):
        column_messages(columns + b"!", 2)
    with pytest.raises(CompressionError, match="cannot hold"):
        column_messages(columns[:7], 2)


@pytest.mark.parametrize(
    "kwargs",
    [{"algorithm": "lz4"}, {"level": 23}, {"level": -8}, {"level": True}, {"min_bytes": -1}],
)
def test_policy_refuses_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CompressionPolicy(**kwargs)  # type: ignore[arg-type]
