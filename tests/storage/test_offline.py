"""Reading a data directory without the server (and without its lock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from logserver.errors import InvalidCategoryError
from logserver.storage import StoragePolicy, list_categories_offline, read_category_offline
from tests.storage.conftest import OpenStorage, messages, read_all, segment_files


def test_offline_reader_matches_the_live_storage(open_storage: OpenStorage, data_dir: Path) -> None:
    """While the server runs (lock held), the offline reader sees the same records, across
    segments, with the same positions."""
    storage = open_storage(StoragePolicy(segment_bytes=4096))
    for i in range(100):
        storage.append([("a", f"a{i}".encode() * 20), ("b", b"b")], "p", i)
    assert list(read_category_offline(data_dir, "a")) == read_all(storage, "a")
    assert list_categories_offline(data_dir) == ["a", "b"]
    assert list(read_category_offline(data_dir, "missing")) == []


def test_offline_reader_tolerates_a_torn_tail_without_repairing(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """A dead server's torn tail: the offline reader returns the complete writes, skips the
    unfinished one, and leaves the file as it is (repair is for the server's recovery)."""
    storage = open_storage()
    storage.append([("c", b"one")])
    storage.append([("c", b"two"), ("c", b"three")])
    storage.close()
    (segment,) = segment_files(data_dir, "c")
    torn = segment.read_bytes()[:-5] + b"\x00" * 3
    segment.write_bytes(torn)
    assert messages(list(read_category_offline(data_dir, "c"))) == [b"one"]
    assert segment.read_bytes() == torn


def test_offline_reader_validates_the_category(data_dir: Path) -> None:
    """The category becomes a path: an invalid one is refused, never resolved."""
    with pytest.raises(InvalidCategoryError):
        list(read_category_offline(data_dir, "../../etc"))
    assert list_categories_offline(data_dir) == []
