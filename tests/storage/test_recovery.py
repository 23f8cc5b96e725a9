"""Recovery at open: torn tails are cut, damage in the middle is skipped, never truncated."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from logserver.storage import InvalidPositionError, StoragePolicy, read_category_offline
from tests.storage.conftest import OpenStorage, messages, read_all, segment_files


def _fill(open_storage: OpenStorage, category: str, count: int, **policy: object) -> list[int]:
    """Append ``count`` one-record batches; return each record's position, then close."""
    storage = open_storage(StoragePolicy(**policy))  # type: ignore[arg-type]
    for i in range(count):
        storage.append([(category, f"record-{i:03d}".encode())], "p", i)
    positions = [r.position for r in read_all(storage, category)]
    storage.close()
    return positions


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(b"\x00" * 7, id="zeros"),
        pytest.param(b"garbage that is not a record", id="garbage"),
        pytest.param(b"\x9eLS\xb7\xff\xff", id="magic-then-nonsense"),
    ],
)
def test_garbage_tail_is_truncated(
    open_storage: OpenStorage,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
    damage: bytes,
) -> None:
    """Bytes after the last complete record (a torn write) are cut off at open and logged;
    every complete record stays and appends continue right after it."""
    _fill(open_storage, "c", 5)
    (segment,) = segment_files(data_dir, "c")
    good_size = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(damage)

    with caplog.at_level(logging.WARNING, logger="logserver.storage"):
        storage = open_storage()
    assert segment.stat().st_size == good_size
    assert any("truncating" in r.getMessage() for r in caplog.records)
    assert messages(read_all(storage, "c")) == [f"record-{i:03d}".encode() for i in range(5)]
    storage.append([("c", b"after")])
    assert read_all(storage, "c")[-1].position == good_size


def test_partial_last_record_is_truncated(open_storage: OpenStorage, data_dir: Path) -> None:
    """A record cut anywhere (header, producer, message) is removed; the ones before remain."""
    positions = _fill(open_storage, "c", 3)
    (segment,) = segment_files(data_dir, "c")
    full = segment.read_bytes()
    for cut in range(positions[2] + 1, len(full)):
        segment.write_bytes(full[:cut])
        storage = open_storage()
        assert messages(read_all(storage, "c")) == [b"record-000", b"record-001"], cut
        storage.close()
        assert segment.stat().st_size == positions[2]


def test_unfinished_write_is_removed_whole(
    open_storage: OpenStorage, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch whose write was torn after some complete records (never acknowledged) is removed
    whole, so the client's retry stores every record exactly once."""
    storage = open_storage()
    storage.append([("c", b"acknowledged")], "p", 1)
    storage.append([("c", f"r{i}".encode()) for i in range(10)], "p", 2)
    storage.close()
    (segment,) = segment_files(data_dir, "c")
    segment.write_bytes(segment.read_bytes()[:-10])  # the last record of the batch is torn

    with caplog.at_level(logging.WARNING, logger="logserver.storage"):
        again = open_storage()
    assert messages(read_all(again, "c")) == [b"acknowledged"]
    assert again.append([("c", f"r{i}".encode()) for i in range(10)], "p", 2).stored == 10
    assert messages(read_all(again, "c")) == [b"acknowledged"] + [
        f"r{i}".encode() for i in range(10)
    ]


def test_damage_in_the_middle_keeps_later_records(
    open_storage: OpenStorage, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt record followed by valid ones: nothing is truncated (the later records may
    have been acknowledged); readers skip the damaged range and an error is logged."""
    positions = _fill(open_storage, "c", 10)
    (segment,) = segment_files(data_dir, "c")
    size = segment.stat().st_size
    data = bytearray(segment.read_bytes())
    data[positions[4] + 30] ^= 0xFF  # flip a bit inside record 4
    segment.write_bytes(bytes(data))

    with caplog.at_level(logging.ERROR, logger="logserver.storage"):
        storage = open_storage()
        got = read_all(storage, "c")
    assert segment.stat().st_size == size
    assert messages(got) == [f"record-{i:03d}".encode() for i in range(10) if i != 4]
    assert [r.position for r in got] == positions[:4] + positions[5:]
    assert any("damaged" in r.getMessage() for r in caplog.records)
    # The damaged record's own position still works (the damage is skipped), and so does the
    # next record's; positions inside the damaged range are not boundaries.
    assert messages(storage.read("c", positions[4], limit=1).records) == [b"record-005"]
    assert messages(storage.read("c", positions[5], limit=1).records) == [b"record-005"]
    with pytest.raises(InvalidPositionError):
        storage.read("c", positions[4] + 1)
    storage.append([("c", b"new")])
    assert messages(read_all(storage, "c"))[-1] == b"new"
    # The offline reader skips it the same way.
    assert messages(list(read_category_offline(data_dir, "c"))) == messages(read_all(storage, "c"))


def test_damage_in_an_older_segment_is_skipped(open_storage: OpenStorage, data_dir: Path) -> None:
    """Damage in a closed segment (not scanned at open) is found and skipped when read."""
    positions = _fill(open_storage, "c", 200, segment_bytes=4096)
    assert len(segment_files(data_dir, "c")) >= 3
    first = segment_files(data_dir, "c")[0]
    data = bytearray(first.read_bytes())
    data[positions[3] + 20] ^= 0x55
    first.write_bytes(bytes(data))
    storage = open_storage(StoragePolicy(segment_bytes=4096, dedup_scan_bytes=0))
    got = messages(read_all(storage, "c"))
    assert got == [f"record-{i:03d}".encode() for i in range(200) if i != 3]


def test_empty_and_foreign_files_are_tolerated(open_storage: OpenStorage, data_dir: Path) -> None:
    """An empty segment (crash right after rotation), stray files and invalid directory names
    do not stop open()."""
    _fill(open_storage, "c", 3, segment_bytes=4096)
    directory = data_dir / "categories" / "c"
    end = sum(p.stat().st_size for p in segment_files(data_dir, "c"))
    (directory / f"{end:020d}.seg").touch()
    (directory / "notes.txt").write_text("not a segment")
    (data_dir / "categories" / ".hidden").mkdir()
    storage = open_storage()
    assert storage.categories() == ["c"]
    storage.append([("c", b"more")])
    assert messages(read_all(storage, "c"))[-1] == b"more"
