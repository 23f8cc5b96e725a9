"""What must hold for the on-disk spool: ordered, durable, checked, exclusive."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logclient import SpoolLockedError, SpoolPolicy
from logclient._batch import Batch, entry_size
from logclient._spool import Spool, SpoolFullError, decode_batch, encode_batch


def batch(producer: str, sequence: int, n: int = 3, end: int | None = None) -> Batch:
    entries = [("app", f"{producer}/{sequence}/{i}".encode()) for i in range(n)]
    return Batch.of(producer, sequence, entries, sum(entry_size(c, m) for c, m in entries), end)


def open_spool(directory: Path, **policy: object) -> Spool:
    return Spool.open(SpoolPolicy(directory=directory, **policy))  # type: ignore[arg-type]


def test_encoding_round_trips_identity_and_entries() -> None:
    """A spool file keeps producer, sequence, categories and bytes exactly."""
    original = Batch.of("p-1", 7, [("app", b"\x00\xffbinary"), ("d\u00e9j\u00e0", b"")], 0)
    decoded = decode_batch(encode_batch(original))
    assert (decoded.producer, decoded.sequence, decoded.entries) == (
        "p-1",
        7,
        original.entries,
    )


def test_batches_come_back_in_order_after_reopening(tmp_path: Path) -> None:
    """Appended batches survive closing the spool and come back oldest first, ids intact;
    a removed batch is gone for good."""
    spool = open_spool(tmp_path)
    for sequence in range(4):
        spool.append(batch("p", sequence))
    head = spool.head()
    assert head is not None and head.key == ("p", 0)
    spool.remove(head)
    spool.close()

    spool = open_spool(tmp_path)
    assert (spool.batches, spool.records) == (3, 9)
    keys = []
    while (head := spool.head()) is not None:
        keys.append(head.key)
        spool.remove(head)
    assert keys == [("p", 1), ("p", 2), ("p", 3)]
    assert (spool.batches, spool.records, spool.bytes) == (0, 0, 0)
    spool.append(batch("q", 0))
    assert spool.head().spool_id == 4  # type: ignore[union-attr]  # numbering goes on
    spool.close()


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_torn_or_corrupt_file_is_quarantined(tmp_path: Path, damage: str) -> None:
    """A spool file that fails its length check (at restart) or its checksum (when read for
    delivery) is moved to corrupt/, counted and logged; the good batches around it are still
    delivered, in order."""
    spool = open_spool(tmp_path)
    for sequence in range(3):
        spool.append(batch("p", sequence))
    spool.close()
    victim = sorted(tmp_path.glob("*.batch"))[1]
    data = bytearray(victim.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0x40
    else:
        data = bytearray(b"not a spool file at all")
    victim.write_bytes(bytes(data))

    spool = open_spool(tmp_path)
    keys = []
    while (head := spool.head()) is not None:
        keys.append(head.key)
        spool.remove(head)
    assert keys == [("p", 0), ("p", 2)]
    assert spool.corrupt_files == 1
    assert (tmp_path / "corrupt" / victim.name).exists()
    assert (spool.batches, spool.records, spool.bytes) == (0, 0, 0)
    spool.close()


def test_unfinished_temporary_files_are_removed_at_restart(tmp_path: Path) -> None:
    """A .tmp file (a write the process died in) is not a batch and is cleaned up."""
    spool = open_spool(tmp_path)
    spool.append(batch("p", 0))
    spool.close()
    (tmp_path / "0000000000000001.tmp").write_bytes(b"half a batch")
    spool = open_spool(tmp_path)
    assert spool.batches == 1
    assert not list(tmp_path.glob("*.tmp"))
    spool.close()


def test_a_spool_directory_has_one_live_owner(tmp_path: Path) -> None:
    """A second spool on a held directory raises SpoolLockedError; after close it is free."""
    first = open_spool(tmp_path)
    with pytest.raises(SpoolLockedError):
        open_spool(tmp_path)
    first.close()
    open_spool(tmp_path).close()


def test_default_spools_take_the_first_free_slot(tmp_path: Path) -> None:
    """Without a directory, live clients of one program get slot-0, slot-1...; a released
    slot (a dead process's) is taken again, with its batches."""
    policy = SpoolPolicy(name="app")
    first, second = Spool.open(policy), Spool.open(policy)
    assert (first.directory.name, second.directory.name) == ("slot-0", "slot-1")
    assert first.directory.parent == tmp_path / "state" / "logclient" / "app"
    first.append(batch("dead", 0))
    first.close()
    third = Spool.open(policy)
    assert third.directory.name == "slot-0" and third.batches == 1
    second.close()
    third.close()


def test_the_size_limit_is_enforced(tmp_path: Path) -> None:
    """A batch that would pass max_bytes is refused with SpoolFullError; nothing is written."""
    one = len(encode_batch(batch("p", 0)))
    spool = open_spool(tmp_path, max_bytes=2 * one + 10)
    spool.append(batch("p", 0))
    spool.append(batch("p", 1))
    with pytest.raises(SpoolFullError):
        spool.append(batch("p", 2))
    assert spool.batches == 2
    assert len(list(tmp_path.glob("*.batch"))) == 2
    spool.close()


def test_files_are_private_to_the_user(tmp_path: Path) -> None:
    """Spooled logs may be sensitive: files are created 0600."""
    spool = open_spool(tmp_path / "s")
    spool.append(batch("p", 0))
    (path,) = (tmp_path / "s").glob("*.batch")
    assert os.stat(path).st_mode & 0o777 == 0o600
    spool.close()


def v1_file(batch: Batch) -> bytes:
    """A spool file as logclient wrote it before the columnar format (LCSPOOL1)."""
    import struct
    import zlib

    encoded = batch.producer.encode("ascii")
    parts = [struct.pack(">HqI", len(encoded), batch.sequence, batch.count), encoded]
    for category, message in batch.entries:
        cat = category.encode("utf-8")
        parts += [struct.pack(">H", len(cat)), cat, struct.pack(">I", len(message)), message]
    body = b"".join(parts)
    return b"LCSPOOL1" + struct.pack(">I", len(body)) + body + struct.pack(">I", zlib.crc32(body))


def test_files_of_the_earlier_format_are_still_delivered(tmp_path: Path) -> None:
    """An upgraded app finds its old spool: LCSPOOL1 files are read (never written)."""
    old = Batch.of("p-old", 3, [("app", b"one"), ("d\u00e9j\u00e0", b""), ("app", b"\xff")], 0)
    decoded = decode_batch(v1_file(old))
    assert (decoded.producer, decoded.sequence, decoded.entries) == (
        old.producer,
        old.sequence,
        old.entries,
    )
    (tmp_path / f"{0:016d}.batch").write_bytes(v1_file(old))
    spool = open_spool(tmp_path)
    assert (spool.batches, spool.records) == (1, 3)
    head = spool.head()
    assert head is not None and head.entries == old.entries
    spool.append(batch("p-new", 0))
    assert encode_batch(batch("p", 0)).startswith(b"LCSPOOL2")
    spool.close()


@settings(max_examples=200, deadline=None)
@given(
    entries=st.lists(
        st.tuples(st.sampled_from(["app", "d\u00e9j\u00e0", "x"]), st.binary(max_size=40)),
        max_size=50,
    ),
    sequence=st.integers(0, 2**63 - 1),
)
def test_any_batch_round_trips_and_any_flipped_byte_is_caught(entries: list, sequence: int) -> None:
    """Property: what is spooled comes back exactly; a flipped byte is a ValueError."""
    original = Batch.of("p", sequence, entries, sum(entry_size(c, m) for c, m in entries))
    data = bytes(encode_batch(original))
    decoded = decode_batch(data)
    assert (decoded.sequence, decoded.entries, decoded.nbytes) == (
        sequence,
        entries,
        original.nbytes,
    )
    for i in range(0, len(data), max(1, len(data) // 7)):
        damaged = bytearray(data)
        damaged[i] ^= 0x40
        with pytest.raises(ValueError):
            decode_batch(bytes(damaged))
