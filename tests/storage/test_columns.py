"""``append_columns`` (a batch as category runs plus messages) stores exactly what ``append``
stores for the same records paired up, and refuses what ``append`` refuses."""

from __future__ import annotations

from itertools import groupby
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logserver.errors import InvalidCategoryError
from logserver.storage import InvalidRequestError, MessageTooLargeError, Storage, StoragePolicy
from tests.storage.conftest import OpenStorage, read_all

_records = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c.d"]), st.binary(max_size=30)), max_size=40
)


def _columns(records: list[tuple[str, bytes]]) -> tuple[list[tuple[str, int]], list[bytes]]:
    runs = [(c, len(list(g))) for c, g in groupby(c for c, _ in records)]
    return runs, [m for _, m in records]


def _stored(storage: Storage) -> list[tuple[str, bytes, str, int, int, int]]:
    return [
        (r.category, r.message, r.producer, r.sequence, r.index, r.count)
        for category in sorted(storage.categories())
        for r in read_all(storage, category)
    ]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(_records, min_size=1, max_size=4))
def test_columns_store_what_pairs_store(
    open_storage: OpenStorage, tmp_path_factory: pytest.TempPathFactory, batches: list
) -> None:
    """Same records, same producer and sequences: the same records, categories, indexes
    and dedup answers, whether given as pairs or as columns."""
    pairs = open_storage(path=tmp_path_factory.mktemp("pairs"))
    columns = open_storage(path=tmp_path_factory.mktemp("columns"))
    for sequence, records in enumerate([*batches, batches[0]]):  # the last one is a retry
        by_pairs = pairs.append(records, producer="p", sequence=sequence % len(batches))
        runs, messages = _columns(records)
        by_columns = columns.append_columns(
            runs, messages, producer="p", sequence=sequence % len(batches)
        )
        assert by_columns == by_pairs
    assert _stored(columns) == _stored(pairs)


@pytest.mark.parametrize(
    ("runs", "messages", "error"),
    [
        ([("a", 2)], [b"x"], InvalidRequestError),  # runs say 2 records, there is 1
        ([("a", 1), ("b", 0)], [b"x"], InvalidRequestError),
        ([("a", -1), ("b", 2)], [b"x"], InvalidRequestError),
        ([("a", True)], [b"x"], InvalidRequestError),
        ([("a/..", 1)], [b"x"], InvalidCategoryError),
        ([("a", 1), ("", 1)], [b"x", b"y"], InvalidCategoryError),
        ([("a", 1)], [b"x" * 2000], MessageTooLargeError),
        ([("a", 1)], [12], TypeError),
    ],
)
def test_bad_columns_are_refused_and_nothing_is_written(
    open_storage: OpenStorage, data_dir: Path, runs: list, messages: list, error: type
) -> None:
    storage = open_storage(StoragePolicy(max_message_bytes=1024))
    with pytest.raises(error):
        storage.append_columns(runs, messages, producer="p", sequence=0)
    assert storage.categories() == []
    # The batch was refused before its id was claimed: a good retry is stored.
    assert storage.append_columns([("a", 1)], [b"ok"], producer="p", sequence=0).stored == 1
