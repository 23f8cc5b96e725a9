"""What ``flush()`` may say: True only once every record logged before the call is settled
(acknowledged by a server, or dropped by policy and counted), never while one is queued,
in flight, waiting to be resent or only in the spool.

Two levels: the settlement rule alone (any order of acknowledgements and drops), and a
real sender driven by a scripted transport through any sequence of acknowledgements,
failures before and after storing, refusals, spills and drops.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logclient import (
    BatchPolicy,
    FailoverPolicy,
    LogClient,
    QueuePolicy,
    SpoolPolicy,
    StaticServers,
)
from logclient._batch import Batch
from logclient._connection import Acknowledgement, Connection
from logclient._settlement import Settlement
from logclient.errors import BatchRejectedError, ServerUnavailableError
from logserver.tools.launcher import wait_for
from logwire.batchid import canonical_key
from logwire.serverset import Endpoint
from tests.helpers import numbered

# ------------------------------------------------------------- the rule alone


@st.composite
def _histories(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, bool]]]:
    """Batch sizes, and the order in which batches settle (index, dropped?)."""
    sizes = draw(st.lists(st.integers(1, 5), min_size=1, max_size=25))
    order = draw(st.permutations(range(len(sizes))))
    settled = draw(st.integers(0, len(sizes)))
    drops = draw(st.lists(st.booleans(), min_size=len(sizes), max_size=len(sizes)))
    return sizes, [(i, drops[i]) for i in order[:settled]]


@given(_histories(), st.integers(0, 130))
def test_the_frontier_is_the_longest_settled_prefix(
    history: tuple[list[int], list[tuple[int, bool]]], target: int
) -> None:
    """Whatever order batches settle in, every record up to the frontier is settled and the
    record after it is not; a wait for ``target`` succeeds exactly when records 1..target are
    settled; a drop is reported for a target exactly when a dropped batch starts below it."""
    sizes, settled = history
    settlement = Settlement()
    bounds = []
    start = 0
    for size in sizes:
        settlement.formed(start, start + size)
        bounds.append((start, start + size))
        start += size
    done: set[int] = set()
    first_drop: int | None = None
    for index, dropped in settled:
        begin, end = bounds[index]
        if dropped:
            settlement.note_dropped(begin)
            first_drop = begin + 1 if first_drop is None else min(first_drop, begin + 1)
        settlement.settle(end)
        settlement.settle(end)  # a resend acknowledged twice settles once
        done.update(range(begin + 1, end + 1))

    frontier = 0
    while frontier + 1 in done:
        frontier += 1
    assert settlement.frontier == frontier
    assert settlement.unsettled(start) == start - len(done)
    target = min(target, start)
    assert settlement.wait(target, timeout=0) == all(r in done for r in range(1, target + 1))
    assert settlement.dropped_before(target) == (first_drop is not None and first_drop <= target)


def test_batches_must_be_formed_in_order() -> None:
    """A batch that does not follow the previous one is a bug, refused loudly."""
    settlement = Settlement()
    settlement.formed(0, 3)
    with pytest.raises(ValueError):
        settlement.formed(4, 6)
    with pytest.raises(ValueError):
        settlement.formed(3, 3)


def test_a_waiter_is_released_when_the_sender_is_gone() -> None:
    """wait() returns False when ``alive`` says the sender died, not after its timeout."""
    settlement = Settlement()
    settlement.formed(0, 1)
    assert not settlement.wait(1, timeout=None, alive=lambda: False)


# --------------------------------------------------- a sender, scripted


@dataclass
class _Script:
    """What the scripted server does with each call, in turn (then "ack" forever)."""

    outcomes: list[str]
    stored: dict[tuple[str, int, int], bytes] = field(default_factory=dict)
    refused: set[bytes] = field(default_factory=set)
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> str:
        with self.lock:
            self.calls += 1
            return self.outcomes.pop(0) if self.outcomes else "ack"


class _ScriptedConnection:
    def __init__(self, endpoint: Endpoint, script: _Script) -> None:
        self.endpoint = endpoint
        self.calls = 0
        self.last_used = 0.0
        self._script = script

    def append(self, batch: Batch) -> Acknowledgement:
        self.calls += 1
        outcome = self._script.next()
        server = str(self.endpoint)
        if outcome == "fail_before":
            raise ServerUnavailableError(server, "scripted: reset", phase="call")
        if outcome == "too_large":
            if batch.count == 1:
                self._script.refused.add(batch.messages[0])
            raise BatchRejectedError(server, "scripted: too large", kind="too_large")
        for index, message in enumerate(batch.messages):
            self._script.stored.setdefault(
                canonical_key(batch.producer, batch.sequence, index), message
            )
        if outcome == "fail_after":
            raise ServerUnavailableError(server, "scripted: answer lost", phase="call")
        return Acknowledgement(duplicate=False, stored=batch.count)

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class _ScriptedTransport:
    def __init__(self, script: _Script) -> None:
        self._script = script

    def connect(self, endpoint: Endpoint, policy: FailoverPolicy) -> Connection:
        return _ScriptedConnection(endpoint, self._script)


_OUTCOMES = st.sampled_from(["ack", "ack", "fail_before", "fail_after", "too_large"])


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    outcomes=st.lists(_OUTCOMES, max_size=30),
    chunks=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    spool_bytes=st.sampled_from([600, 3000, 1_000_000]),
)
def test_flush_is_true_only_when_everything_logged_before_is_settled(
    tmp_path_factory: pytest.TempPathFactory,
    outcomes: list[str],
    chunks: list[int],
    spool_bytes: int,
) -> None:
    """A real sender through any sequence of acknowledgements, failures before and after
    storing (resends), refusals as too large (splits; a single record refused is dropped),
    and spills to a small spool that drops with overflow='drop': whenever flush() says
    True, every record logged before the call is stored or counted as dropped, and with
    require_acknowledged=True it is stored."""
    script = _Script(list(outcomes))
    spool_dir = tmp_path_factory.mktemp("spool")
    client = LogClient(
        servers=StaticServers(["127.0.0.1:7"]),
        transport=_ScriptedTransport(script),
        batching=BatchPolicy(max_records=8, linger_s=0.001, max_in_flight=1),
        failover=FailoverPolicy(
            down_backoff_s=0.0, max_down_backoff_s=0.0, probe_interval_s=0.01, jitter=0.0
        ),
        queue=QueuePolicy(max_records=10_000, overflow="drop"),
        spool=SpoolPolicy(directory=spool_dir, spill_after_s=0, max_bytes=spool_bytes, fsync=False),
    )
    try:
        logged: list[bytes] = []
        for chunk_index, size in enumerate(chunks):
            for message in numbered(f"c{chunk_index}", size):
                client.log("app", message)
                logged.append(message.encode())
            strict = client.flush(0.2, require_acknowledged=True)
            settled = client.flush(0.0)
            _check(script, logged, client, settled=settled, strict=strict)
        assert client.flush(20)
        _check(
            script, logged, client, settled=True, strict=client.flush(0, require_acknowledged=True)
        )
        assert client.stats().unsettled == 0
    finally:
        client.close(5)


def _check(
    script: _Script, logged: list[bytes], client: LogClient, *, settled: bool, strict: bool
) -> None:
    stored = set(script.stored.values())
    missing = [m for m in logged if m not in stored]
    if strict:
        assert not missing, f"flush(require_acknowledged=True) True with {len(missing)} missing"
        assert settled
    if settled:
        assert len(missing) <= client.stats().dropped, (missing, client.stats())


def test_flush_is_false_while_records_are_only_in_the_spool(tmp_path: Path) -> None:
    """The reported case: overflow='drop', a small spool and no server. Records are spilled,
    later batches are dropped because the spool is full; flush() must not say True while the
    spooled ones wait (it did: a dropped batch used to settle every older one)."""
    client = LogClient(
        servers=StaticServers(["127.0.0.1:1"]),
        batching=BatchPolicy(max_records=20, linger_s=0.001),
        failover=FailoverPolicy(connect_timeout_s=0.2, down_backoff_s=0.1, probe_interval_s=0.05),
        queue=QueuePolicy(max_records=1000, overflow="drop"),
        spool=SpoolPolicy(directory=tmp_path / "spool", spill_after_s=0, max_bytes=20_000),
    )
    try:
        for message in numbered("m", 1000):
            client.log("app", message.ljust(100, "x"))

        def spooled_and_dropped() -> bool:
            s = client.stats()
            return s.spooled > 0 and s.dropped > 0 and s.queued == 0 and s.in_flight == 0

        wait_for(spooled_and_dropped, 20, what="records spooled and later ones dropped")
        assert not client.flush(0.5)
        stats = client.stats()
        assert stats.acknowledged == 0
        assert stats.unsettled == stats.spooled
    finally:
        client.close(2)
