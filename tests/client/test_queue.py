"""What must hold for the memory queue between log() and the sender."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logclient import BatchPolicy, ClientClosedError, QueueFullError, QueuePolicy
from logclient._queue import RecordQueue


class CountingEvent(threading.Event):
    """An Event that counts set() calls: how often producers rang the sender."""

    def __init__(self) -> None:
        super().__init__()
        self.rings = 0

    def set(self) -> None:
        self.rings += 1
        super().set()


def take(queue: RecordQueue, max_records: int, max_bytes: int) -> tuple[list, int, int]:
    """``take(queue, )`` with the records paired up: ``(entries, nbytes, end_ordinal)``."""
    categories, messages, nbytes, end = queue.take(max_records, max_bytes)
    assert len(categories) == len(messages)
    return list(zip(categories, messages, strict=True)), nbytes, end


def make_queue(**policy: object) -> RecordQueue:
    queue = RecordQueue(QueuePolicy(**policy), BatchPolicy(max_records=10))  # type: ignore[arg-type]
    queue.doorbell = CountingEvent()
    return queue


def test_records_come_out_in_order_in_batches_with_ordinals() -> None:
    """take() returns the oldest records first, at most a batch, and the ordinal of the last."""
    queue = make_queue()
    for i in range(25):
        queue.put("app", b"m%d" % i)
    first, nbytes, end = take(queue, 10, 1 << 20)
    assert [m for _, m in first] == [b"m%d" % i for i in range(10)]
    assert (end, queue.accepted, len(queue)) == (10, 25, 15)
    assert nbytes == sum(3 + len(m) + 16 for _, m in first)
    rest, _, end = take(queue, 100, 1 << 20)
    assert [m for _, m in rest] == [b"m%d" % i for i in range(10, 25)]
    assert (end, len(queue), queue.nbytes) == (25, 0, 0)


def test_take_respects_the_byte_limit_but_always_takes_one() -> None:
    """A batch stops before passing max_bytes, yet a single large record still goes."""
    queue = make_queue()
    for _ in range(5):
        queue.put("a", b"x" * 100)
    entries, nbytes, _ = take(queue, 100, 250)
    assert len(entries) == 2 and nbytes == 2 * 117
    entries, _, _ = take(queue, 100, 10)
    assert len(entries) == 1


def test_producers_ring_only_when_the_sender_asked() -> None:
    """An idle sender is woken by the first record only; a lingering one when a batch is full;
    between arm() calls no producer rings at all, so log() costs no Event per call."""
    queue = make_queue()
    doorbell = queue.doorbell
    assert isinstance(doorbell, CountingEvent)
    for _ in range(1000):
        queue.put("app", b"x")
    assert doorbell.rings == 0  # the sender never armed: it is busy

    take(queue, 2000, 1 << 30)
    assert queue.arm(1, 1)  # idle sender: wake me on the first record
    for _ in range(50):
        queue.put("app", b"x")
    assert doorbell.rings == 1

    take(queue, 2000, 1 << 30)
    assert queue.arm(10, 1 << 30)  # lingering: wake me when 10 are queued
    for _ in range(9):
        queue.put("app", b"x")
    assert doorbell.rings == 1
    queue.put("app", b"x")
    assert doorbell.rings == 2
    assert not queue.arm(10, 1 << 30), "already 10 queued: the sender must not wait"


def test_overflow_drop_counts_every_dropped_record() -> None:
    """With overflow='drop' a full queue drops the new record and counts it."""
    queue = make_queue(max_records=3, overflow="drop")
    for i in range(5):
        queue.put("app", b"%d" % i)
    assert (len(queue), queue.dropped, queue.accepted) == (3, 2, 3)


def test_overflow_raise_raises_queue_full() -> None:
    """With overflow='raise' a full queue raises QueueFullError and keeps what it had."""
    queue = make_queue(max_records=2, overflow="raise")
    queue.put("app", b"1")
    queue.put("app", b"2")
    with pytest.raises(QueueFullError):
        queue.put("app", b"3")
    assert len(queue) == 2


def test_overflow_block_waits_for_room_then_gives_up() -> None:
    """With overflow='block' a producer waits until the sender takes records; after
    block_timeout_s without room it raises QueueFullError."""
    queue = make_queue(max_records=1, overflow="block", block_timeout_s=0.2)
    queue.put("app", b"1")
    with pytest.raises(QueueFullError):
        queue.put("app", b"2")

    queue = make_queue(max_records=1, overflow="block", block_timeout_s=10)
    queue.put("app", b"1")
    done = threading.Event()

    def producer() -> None:
        queue.put("app", b"3")
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert not done.wait(0.05)
    assert take(queue, 1, 100)[0] == [("app", b"1")]
    assert done.wait(5)
    thread.join(5)
    assert [m for _, m in take(queue, 10, 100)[0]] == [b"3"]


def test_close_refuses_new_records_and_releases_blocked_producers() -> None:
    """After close() put() raises ClientClosedError, also for a producer blocked on a full queue."""
    queue = make_queue(max_records=1, overflow="block", block_timeout_s=30)
    queue.put("app", b"1")
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            queue.put("app", b"2")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=producer)
    thread.start()
    queue.close()
    thread.join(5)
    assert len(errors) == 1 and isinstance(errors[0], ClientClosedError)
    with pytest.raises(ClientClosedError):
        queue.put("app", b"3")


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), max_size=80),
    max_records=st.integers(1, 30),
    max_bytes=st.integers(1, 2000),
)
def test_take_cuts_batches_exactly_like_the_simple_rule(
    sizes: list[int], max_records: int, max_bytes: int
) -> None:
    """Property: each batch is the longest head within both limits (at least one
    record), in order, and the byte counts add up to what was queued."""
    queue = make_queue(max_records=1000, max_bytes=1 << 20)
    queued = [("c" * (i % 3 + 1), b"m" * size) for i, size in enumerate(sizes)]
    for category, message in queued:
        queue.put(category, message)
    taken: list = []
    while len(queue):
        entries, nbytes, end = take(queue, max_records, max_bytes)
        expected, total = [], 0
        for category, message in queued[len(taken) :]:
            size = len(category) + len(message) + 16
            if len(expected) == max_records or (expected and total + size > max_bytes):
                break
            expected.append((category, message))
            total += size
        assert (entries, nbytes) == (expected, total)
        taken += entries
        assert end == len(taken)
    assert taken == queued and queue.nbytes == 0
