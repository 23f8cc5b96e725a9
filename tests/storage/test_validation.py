"""Bad input is refused before anything is written, whole batch or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from logserver.errors import InvalidCategoryError
from logserver.storage import InvalidRequestError, MessageTooLargeError, StoragePolicy
from tests.storage.conftest import OpenStorage, messages, read_all

BAD_CATEGORIES: list[str | bytes] = [
    "",
    b"",
    "..",
    "a/../b",
    "a/b",
    "a\\b",
    "nul\x00byte",
    b"nul\x00byte",
    "tab\there",
    "line\nbreak",
    "del\x7f",
    ".hidden",
    "x" * 129,
    b"\xff\xfe",
    "caf\u00e9",
]


@pytest.mark.parametrize("category", BAD_CATEGORIES, ids=repr)
def test_invalid_categories_are_refused_and_nothing_is_written(
    open_storage: OpenStorage, data_dir: Path, category: str | bytes
) -> None:
    """A batch with one invalid category raises InvalidCategoryError (naming it) and stores
    none of its records, not even those for valid categories; no directory is created."""
    storage = open_storage()
    with pytest.raises(InvalidCategoryError) as caught:
        storage.append([("good", b"first"), (category, b"bad"), ("good", b"last")], "p", 1)
    assert caught.value.category == category
    assert storage.categories() == []
    assert read_all(storage, "good") == []
    assert sorted(p.name for p in (data_dir / "categories").iterdir()) == []
    assert storage.stats().records_stored == 0
    # The refused batch was not remembered: the same (producer, sequence) can still be stored.
    storage.append([("good", b"fixed")], "p", 1)
    assert messages(read_all(storage, "good")) == [b"fixed"]


def test_bytes_and_str_categories_are_the_same_category(open_storage: OpenStorage) -> None:
    """Categories arrive as bytes from the wire: b"web" and "web" name one category."""
    storage = open_storage()
    storage.append([(b"web", b"1"), ("web", b"2")])
    assert storage.categories() == ["web"]
    assert messages(read_all(storage, "web")) == [b"1", b"2"]
    assert messages(storage.read(b"web").records) == [b"1", b"2"]


def test_reading_an_invalid_category_is_refused(open_storage: OpenStorage) -> None:
    """read() validates the category like append() does."""
    storage = open_storage()
    with pytest.raises(InvalidCategoryError):
        storage.read("../etc")


def test_oversized_message_refuses_the_whole_batch(open_storage: OpenStorage) -> None:
    """A message over max_message_bytes raises MessageTooLargeError(limit, actual) and nothing
    of the batch is written; a message of exactly the limit is fine."""
    storage = open_storage(StoragePolicy(max_message_bytes=1000))
    with pytest.raises(MessageTooLargeError) as caught:
        storage.append([("c", b"ok"), ("c", b"x" * 1001), ("d", b"ok")])
    assert (caught.value.limit, caught.value.actual) == (1000, 1001)
    assert isinstance(caught.value, InvalidRequestError)
    assert storage.categories() == []
    storage.append([("c", b"x" * 1000)])
    assert messages(read_all(storage, "c")) == [b"x" * 1000]


def test_oversized_str_message_is_measured_in_utf8_bytes(open_storage: OpenStorage) -> None:
    """A str message is stored as UTF-8 and its encoded size is what the limit applies to."""
    storage = open_storage(StoragePolicy(max_message_bytes=10))
    with pytest.raises(MessageTooLargeError):
        storage.append([("c", "\u00e9" * 6)])  # 12 bytes in UTF-8
    storage.append([("c", "\u00e9" * 5)])
    assert messages(read_all(storage, "c")) == [("\u00e9" * 5).encode()]


def test_bad_arguments_are_refused(open_storage: OpenStorage) -> None:
    """Malformed entries, messages of the wrong type, oversized producers and sequences
    outside 64 bits raise before anything is written."""
    storage = open_storage()
    with pytest.raises(TypeError):
        storage.append([("c", b"ok"), ("c",)])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        storage.append([("c", 42)])  # type: ignore[list-item]
    with pytest.raises(InvalidRequestError):
        storage.append([("c", b"x")], "p" * 2000, 1)
    with pytest.raises(InvalidRequestError):
        storage.append([("c", b"x")], "p", 2**63)
    assert storage.categories() == []


def test_policy_is_validated() -> None:
    """A policy that cannot work is refused when it is made, not at the first append."""
    bad: dict[str, Any]
    for bad in (
        {"fsync": "sometimes"},
        {"fsync_interval_s": 0},
        {"segment_bytes": 100},
        {"retention_age_s": -1},
        {"retention_bytes": 0},
        {"dedup_window": 0},
        {"max_producers": 0},
        {"max_message_bytes": 0},
        {"max_message_bytes": 2**40},
    ):
        with pytest.raises(ValueError):
            StoragePolicy(**bad)
    assert "fsync='always'" in repr(StoragePolicy())
