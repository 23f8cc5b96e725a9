"""Producers: which ids a server accepts, and that every id logclient derives is one of them."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logclient._batch import Batch
from logwire.batchid import MAX_PRODUCER_LENGTH, canonical_key, producer_problem


@pytest.mark.parametrize(
    "producer",
    [
        uuid.uuid4().hex,
        "app-1",
        "with space",
        "p@0",
        "p@12@3",
        "p@7~x2",
        "p@7~x2@0",
        "d~" + "0" * 32,
        "x" * MAX_PRODUCER_LENGTH,
    ],
)
def test_valid_producers(producer: str) -> None:
    """Printable ASCII, with "@" only before a parent's sequence (what splits make)."""
    assert producer_problem(producer) is None


@pytest.mark.parametrize(
    ("producer", "problem"),
    [
        ("", "empty"),
        ("x" * (MAX_PRODUCER_LENGTH + 1), "longer than"),
        ("café", "printable ASCII"),
        ("tab\there", "printable ASCII"),
        ("\ufffd", "printable ASCII"),
        ("@5", "may not start"),
        ("app@host", "reserved"),
        ("p@", "reserved"),
        ("p@-1", "reserved"),
        ("p@007", "reserved"),
        ("p@9223372036854775808", "64-bit"),
    ],
)
def test_invalid_producers_say_why(producer: str, problem: str) -> None:
    """Each refusal names its reason; "app@host" would read back as a split of "app"."""
    reason = producer_problem(producer)
    assert reason is not None and problem in reason


@given(
    st.lists(st.sampled_from(["split-first", "split-second", "without"]), max_size=30),
    st.integers(min_value=0, max_value=2**63 - 1),
)
def test_every_producer_logclient_derives_is_valid(steps: list[str], sequence: int) -> None:
    """Splits and category removals, nested in any order (and digested past the length
    limit), always give an id the server accepts."""
    batch = Batch(
        producer=uuid.uuid4().hex,
        sequence=sequence,
        categories=["a", "b", "a", "c"] * 8,
        messages=[b"m"] * 32,
        nbytes=0,
        end_ordinal=0,
    )
    for step in steps:
        if len(batch.messages) < 2:
            break
        if step == "without":
            batch = batch.without_category(batch.categories[0])
        else:
            first, second = batch.split()
            batch = first if step == "split-first" else second
        assert producer_problem(batch.producer) is None, batch.producer
        canonical_key(batch.producer, batch.sequence, 0)
