"""What must hold for LogClient, against small real Thrift servers in this process.

The servers are ``InProcessLogServer`` (a unit-test helper speaking the real
protocol over real sockets); the real logserver is exercised in
``test_integration.py``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from logclient import (
    BatchPolicy,
    ClientClosedError,
    CompressionPolicy,
    DiscoveryError,
    InvalidCategoryError,
    LogClient,
    MessageTooLargeError,
    QueueFullError,
    QueuePolicy,
    SpoolLockedError,
    SpoolPolicy,
    StaticServers,
)
from logclient._spool import Spool
from logserver.tools.launcher import wait_for
from tests.helpers import numbered

from .conftest import FAST_FAILOVER, ClientFactory, InProcFactory
from .inproc_server import InProcessLogServer


def unique_messages(*servers: InProcessLogServer) -> list[bytes]:
    """Messages on all servers, each (producer, sequence, index) once, in producer order."""
    seen: dict[tuple[str, int, int], bytes] = {}
    for server in servers:
        for batch in server.batches():
            for i, (_, message) in enumerate(batch.entries):
                seen.setdefault((batch.producer, batch.sequence, i), message)
    return [seen[k] for k in sorted(seen)]


def copies(*servers: InProcessLogServer) -> int:
    return sum(len(b.entries) for s in servers for b in s.batches())


def log_all(client: LogClient, messages: list[str], category: str = "app") -> None:
    for message in messages:
        client.log(category, message)


def encoded(messages: list[str]) -> list[bytes]:
    return [m.encode() for m in messages]


# ----------------------------------------------------------------------- log()


def test_log_validates_category_and_size_before_queueing(make_client: ClientFactory) -> None:
    """A record no server could store is refused in log() and never queued."""
    client = make_client(batching=BatchPolicy(max_message_bytes=10, max_bytes=100))
    for bad in ("", "../etc", "a b", ".hidden", "x" * 200, "caf\u00e9"):
        with pytest.raises(InvalidCategoryError) as info:
            client.log(bad, "m")
        assert info.value.category == bad
    with pytest.raises(MessageTooLargeError) as too_large:
        client.log("app", "x" * 11)
    assert (too_large.value.size, too_large.value.limit) == (11, 10)
    with pytest.raises(TypeError):
        client.log("app", 42)  # type: ignore[arg-type]
    client.log("app", b"\x00\xff")
    client.log("app", "\u00fc\u00fc\u00fc")  # 6 bytes of UTF-8
    client.log("app", "\ud800")  # a lone surrogate is escaped, not an error
    assert client.stats().logged == 3


def test_log_returns_while_the_server_hangs(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """log() never waits on the network: with the only server hung in the middle of a call,
    thousands of log() calls return and are queued; they are delivered once it answers."""
    server = inproc()
    server.behaviour.mode = "hang"
    client = make_client(server, failover=replace(FAST_FAILOVER, rpc_timeout_s=30.0))
    client.log("app", "first")
    wait_for(lambda: server.calls == 1, 10.0, what="the sender to be stuck in a call")
    messages = numbered("m", 5000)
    log_all(client, messages)
    assert server.calls == 1, "still stuck in the first call"
    assert client.stats().queued >= 4900
    server.resume()
    assert client.flush(10)
    assert unique_messages(server) == [b"first", *encoded(messages)]


def test_everything_is_delivered_once_in_order_with_consecutive_sequences(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """Records arrive once each, in logging order; sequences count up by one per batch,
    all under one producer; flush() is True only once all are acknowledged."""
    a, b = inproc(), inproc()
    client = make_client(a, b)
    messages = numbered("m", 10_000)
    log_all(client, messages)
    assert client.flush(20)
    assert unique_messages(a, b) == encoded(messages)
    batches = sorted(a.batches() + b.batches(), key=lambda x: x.sequence)
    assert {x.producer for x in batches} == {client.producer}
    assert [x.sequence for x in batches] == list(range(len(batches)))
    assert all(len(x.entries) <= 100 for x in batches)
    stats = client.stats()
    assert (stats.logged, stats.acknowledged, stats.dropped, stats.queued) == (
        10_000,
        10_000,
        0,
        0,
    )
    assert a.batches() and b.batches(), "random choice uses both servers"


def test_the_old_producer_id_names_still_work_with_a_deprecation_warning(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """``LogClient.producer_id`` and ``ClientStats.producer_id`` (before docs/glossary.md named it
    ``producer``) give the producer, and warn that they are deprecated."""
    client = make_client(inproc())
    with pytest.warns(DeprecationWarning, match="LogClient.producer"):
        assert client.producer_id == client.producer
    stats = client.stats()
    with pytest.warns(DeprecationWarning, match="ClientStats.producer"):
        assert stats.producer_id == stats.producer == client.producer


def test_batches_go_compressed_and_older_servers_get_older_calls(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """The client sends AppendCompressed; a server that answers UNKNOWN_METHOD (one from
    before it) gets AppendPacked from then on, one from before that Append; nothing is
    lost or doubled, and an older server is not counted as down."""
    new = inproc("new")
    middle = inproc("middle", compressed=False)
    old = inproc("old", packed=False)
    for server in (new, middle, old):
        client = make_client(server)
        messages = numbered(server.name, 3_000)
        log_all(client, messages)
        assert client.flush(20)
        assert unique_messages(server) == encoded(messages)
        assert copies(server) == len(messages)
        assert client.stats().failovers == 0, "an older server is not counted as down"
    assert new.compressed_calls == len(new.batches()) > 0 and new.packed_calls == 0
    assert middle.compressed_calls == 0 and middle.packed_calls == len(middle.batches()) > 0
    assert old.packed_calls == old.compressed_calls == 0 and old.batches()


def test_compression_off_sends_append_packed(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    server = inproc()
    client = make_client(server, compression=CompressionPolicy(algorithm="none"))
    log_all(client, numbered("plain", 500))
    assert client.flush(20)
    assert server.compressed_calls == 0 and server.packed_calls > 0


def test_a_partial_batch_is_sent_after_the_linger(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """Without flush(), a batch that never fills leaves once its first record waited linger_s."""
    server = inproc()
    client = make_client(server, batching=BatchPolicy(max_records=1000, linger_s=0.05))
    log_all(client, ["a", "b", "c"])
    wait_for(lambda: len(server.messages()) == 3, 5, what="the lingering batch")
    assert len(server.batches()) == 1


# -------------------------------------------------------------------- failover


def test_a_killed_server_is_left_at_once_and_nothing_is_lost(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """When the current server dies (connections reset, port closed) the client resends the
    same batch to another server at once: every record arrives exactly once."""
    a, b = inproc(), inproc()
    client = make_client(a, b, choice="sticky")
    first = numbered("m", 500)
    log_all(client, first)
    assert client.flush(10)
    current = a if client.stats().current_server == str(a.endpoint) else b
    other = b if current is a else a
    current.stop()
    second = numbered("m", 500, start=500)
    log_all(client, second)
    assert client.flush(10)
    assert unique_messages(a, b) == encoded(first + second)
    stats = client.stats()
    assert stats.failovers >= 1 and stats.batches_retried >= 1
    assert stats.current_server == str(other.endpoint)
    assert str(current.endpoint) in stats.down_servers


def test_a_batch_resent_after_an_ambiguous_failure_keeps_its_identity(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """A server that stores a batch but loses the answer makes the client resend the same
    (producer, sequence) elsewhere: the copy is removed by dedup, nothing is doubled."""
    a, b = inproc(), inproc()
    a.behaviour.fail_next = ["drop_after_store"]
    b.behaviour.fail_next = ["drop_after_store"]
    client = make_client(a, b)
    messages = numbered("m", 300)
    log_all(client, messages)
    assert client.flush(10)
    assert unique_messages(a, b) == encoded(messages)
    assert copies(a, b) > len(messages), "a batch sits on both servers"
    keys_a = {(x.producer, x.sequence) for x in a.batches()}
    keys_b = {(x.producer, x.sequence) for x in b.batches()}
    assert keys_a & keys_b, "the resent batch kept its (producer, sequence)"


def test_a_hung_server_is_given_up_after_the_rpc_timeout(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """A server that accepts but never answers (SIGSTOP) costs one RPC timeout; then the
    batch goes elsewhere. When it wakes up and stores the stale batch, dedup still gives
    every record once."""
    a, b = inproc(), inproc()
    a.behaviour.mode = "hang"
    client = make_client(a, b, choice="round_robin")
    messages = numbered("m", 1000)
    started = time.monotonic()
    log_all(client, messages)
    assert client.flush(20)
    assert time.monotonic() - started < 15
    a.resume()
    wait_for(lambda: a.batches(), 10.0, what="the hung server to store what it held")
    assert unique_messages(a, b) == encoded(messages)
    assert client.stats().failovers >= 1


@pytest.mark.parametrize("mode", ["draining", "unavailable", "try_later", "drop"])
def test_a_server_that_refuses_for_now_is_avoided(
    inproc: InProcFactory, make_client: ClientFactory, mode: str
) -> None:
    """ServerDraining, StorageUnavailable, TRY_LATER or a dropped connection: the batch moves
    to another server and the refusing one is marked down."""
    a, b = inproc(), inproc()
    a.behaviour.mode = mode
    client = make_client(a, b, choice="round_robin")
    messages = numbered("m", 500)
    log_all(client, messages)
    assert client.flush(10)
    assert unique_messages(a, b) == encoded(messages)
    assert not a.batches()
    assert client.stats().failovers >= 1


def test_a_batch_too_large_for_the_server_is_split(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """BatchTooLarge: the batch is split (recursively) until the server takes it; nothing
    is lost or dropped."""
    server = inproc()
    server.behaviour.max_batch_records = 30
    client = make_client(server)
    messages = numbered("m", 300)
    log_all(client, messages)
    assert client.flush(10)
    assert sorted(server.messages()) == encoded(messages)
    assert all(len(x.entries) <= 30 for x in server.batches())
    assert client.stats().dropped == 0


def test_a_batch_too_large_for_one_server_goes_whole_to_another(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """Servers may have different frame limits: a batch one server refuses as too large goes
    whole to another that takes it, before anything is split or dropped."""
    small, large = inproc("small"), inproc("large")
    small.behaviour.max_batch_records = 30
    client = make_client(small, large, choice="round_robin")
    messages = numbered("m", 600)
    log_all(client, messages)
    assert client.flush(10, require_acknowledged=True)
    assert unique_messages(small, large) == encoded(messages)
    assert any(len(b.entries) > 30 for b in large.batches())
    assert all("@" not in b.producer for b in small.batches() + large.batches())  # no split
    assert client.stats().dropped == 0


def test_a_record_no_live_server_takes_is_dropped_and_flush_says_so(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """When every live server refuses it as too large, a batch is split, and a single record
    refused by all is dropped: flush() is True (settled) but flush(require_acknowledged=True)
    is False, and stats().dropped counts it."""
    a, b = inproc(), inproc()
    a.behaviour.max_batch_records = 0
    b.behaviour.max_batch_records = 0
    client = make_client(a, b)
    log_all(client, ["x", "y", "z"])
    assert client.flush(10)
    assert not client.flush(10, require_acknowledged=True)
    assert client.stats().dropped == 3
    assert client.stats().unsettled == 0

    b.behaviour.max_batch_records = None
    log_all(client, ["later"])
    assert client.flush(10)
    assert b.messages() == [b"later"]


def test_a_restarted_server_is_news_for_the_client(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """A server marked down that registers anew (restarted on its endpoint) is no longer
    down for the client, however long its backoff was, and takes the batches when the
    other server dies."""
    first, second = inproc("first"), inproc("second")
    source = StaticServers([second.endpoint, first.endpoint])
    slow_backoff = replace(FAST_FAILOVER, down_backoff_s=300.0, max_down_backoff_s=300.0)
    client = make_client(source=source, choice="leader", failover=slow_backoff)
    log_all(client, ["one"])
    assert client.flush(10)
    second.stop()
    log_all(client, ["two"])
    assert client.flush(10)
    assert str(second.endpoint) in client.stats().down_servers
    second.start()
    source.set([second.endpoint, first.endpoint], restarted=[second.endpoint])
    wait_for(
        lambda: str(second.endpoint) not in client.stats().down_servers,
        10,
        what="the new registration to clear the down state",
    )
    first.stop()
    log_all(client, ["three"])
    assert client.flush(10)
    assert second.messages() == [b"one", b"three"]


def test_records_no_server_accepts_are_dropped_counted_and_never_retried_forever(
    inproc: InProcFactory, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A category the server rejects drops only that category's records; a single record too
    large for the server is dropped; both are counted and logged; flush() still returns."""
    server = inproc()
    server.behaviour.bad_category = "secret"
    client = make_client(server)
    for i in range(20):
        client.log("secret" if i % 4 == 0 else "app", f"m{i}")
    assert client.flush(10)
    assert server.messages() == [f"m{i}".encode() for i in range(20) if i % 4]
    assert client.stats().dropped == 5

    server.behaviour.bad_category = None
    server.behaviour.max_batch_records = 0
    log_all(client, ["x", "y", "z"])
    assert client.flush(10)
    assert client.stats().dropped == 8
    assert "dropped" in caplog.text


# ------------------------------------------------------------------ membership


def test_the_client_leaves_a_server_that_left_the_set(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """When the current server's endpoint disappears from the source, the next batch goes
    to another server."""
    a, b = inproc(), inproc()
    source = StaticServers([a.endpoint, b.endpoint])
    client = make_client(source=source, choice="sticky")
    log_all(client, numbered("m", 200))
    assert client.flush(10)
    current = a if client.stats().current_server == str(a.endpoint) else b
    other = b if current is a else a
    before = len(current.batches())
    source.set([other.endpoint])
    log_all(client, numbered("n", 200))
    assert client.flush(10)
    assert len(current.batches()) == before
    assert client.stats().known_servers == (str(other.endpoint),)


def test_a_server_that_joins_later_gets_traffic(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """With the default random choice a server added to the source after start gets batches."""
    a, b = inproc(), inproc()
    source = StaticServers([a.endpoint])
    client = make_client(source=source)
    log_all(client, numbered("m", 500))
    assert client.flush(10)
    source.set([a.endpoint, b.endpoint])
    for chunk in range(20):
        log_all(client, numbered(f"n{chunk}", 100))
        assert client.flush(10)
    assert len(b.batches()) >= 3


# --------------------------------------------------------------------- spooling


def test_with_no_server_records_spill_to_the_spool_and_are_delivered_later(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """No server for spill_after_s: queued records go to the spool; when a server comes
    back the spool is delivered, in order, and emptied."""
    server = inproc()
    server.stop()
    client = make_client(server, spool=SpoolPolicy(directory=None, spill_after_s=0.2))
    messages = numbered("m", 250)
    log_all(client, messages)
    wait_for(lambda: client.stats().spooled == 250, 10.0, what="all records in the spool")
    assert client.stats().queued == 0
    assert not client.flush(0.1)
    server.start()
    assert client.flush(15)
    assert server.messages() == encoded(messages)
    assert client.stats().spooled == 0


def test_close_without_server_spools_and_the_next_client_delivers_that_first(
    inproc: InProcFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    """close() with no server reachable spools at once (not after the whole timeout); a new
    client on the same spool directory delivers the old records first, then its own."""
    server = inproc()
    server.stop()
    spool_dir = tmp_path / "shared-spool"
    first = make_client(server, spool_dir=spool_dir)
    old = numbered("old", 150)
    log_all(first, old)
    started = time.monotonic()
    first.close(timeout=10)
    assert time.monotonic() - started < 5
    assert first.stats().spooled == 150

    server.start()
    second = make_client(server, spool_dir=spool_dir)
    new = numbered("new", 50)
    log_all(second, new)
    assert second.flush(10)
    assert server.messages() == encoded(old + new)
    producers = [x.producer for x in server.batches()]
    assert producers[0] == first.producer and producers[-1] == second.producer


def test_close_without_spool_counts_what_is_lost(make_client: ClientFactory) -> None:
    """No server and no spool: close() cannot keep the records; it counts and logs the loss."""
    client = make_client("127.0.0.1:1", spool=SpoolPolicy.disabled())
    log_all(client, numbered("m", 10))
    client.close(timeout=1)
    assert client.stats().dropped == 10


def test_queue_overflow_drop_is_counted(make_client: ClientFactory) -> None:
    """A full queue with overflow='drop' drops new records without raising, and counts them."""
    client = make_client(
        "127.0.0.1:1",
        spool=SpoolPolicy.disabled(),
        batching=BatchPolicy(max_records=1000, linger_s=60),
        queue=QueuePolicy(max_records=50, overflow="drop"),
    )
    log_all(client, numbered("m", 80))
    stats = client.stats()
    assert (stats.logged, stats.dropped, stats.queued) == (50, 30, 50)


def test_a_spool_directory_serves_one_live_client(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """A second client on a spool directory in use gets SpoolLockedError, starts no thread."""
    first = make_client("127.0.0.1:1", spool_dir=tmp_path / "s")
    with pytest.raises(SpoolLockedError):
        LogClient(servers=StaticServers([]), spool=SpoolPolicy(directory=tmp_path / "s"))
    first.close(timeout=1)
    make_client("127.0.0.1:1", spool_dir=tmp_path / "s")


# ------------------------------------------------------------------- lifecycle


def test_close_stops_threads_unregisters_atexit_and_refuses_logs(
    inproc: InProcFactory, tmp_path: Path
) -> None:
    """close() flushes, stops the sender thread and makes log() raise ClientClosedError; a
    second close() is a no-op. (The atexit hook is checked in test_process.py.)"""
    server = inproc()
    client = LogClient(
        servers=StaticServers([server.endpoint]), spool=SpoolPolicy(directory=tmp_path / "s")
    )
    assert any(t.name.startswith("logclient-sender") for t in threading.enumerate())
    log_all(client, numbered("m", 10))
    client.close()
    assert len(server.messages()) == 10
    assert not client._instance.sender.alive
    with pytest.raises(ClientClosedError):
        client.log("app", "late")
    client.close()
    assert client.stats().closed


def test_stats_and_repr_show_the_state(inproc: InProcFactory, make_client: ClientFactory) -> None:
    """stats() and the reprs show current server, known servers, queue, spool and counters."""
    server = inproc()
    client = make_client(server)
    log_all(client, numbered("m", 10))
    assert client.flush(5)
    stats = client.stats()
    assert stats.current_server == str(server.endpoint)
    assert stats.known_servers == (str(server.endpoint),)
    assert (stats.sent, stats.acknowledged, stats.failovers, stats.dropped) == (10, 10, 0, 0)
    text = repr(stats)
    for field in ("server=", "known=", "queued=", "spooled=", "acknowledged=", "failovers="):
        assert field in text
    assert str(server.endpoint) in repr(client) and "open" in repr(client)


def test_the_context_manager_closes(inproc: InProcFactory, tmp_path: Path) -> None:
    """Leaving the with block closes the client after delivering what was logged."""
    server = inproc()
    with LogClient(
        servers=StaticServers([server.endpoint]), spool=SpoolPolicy(directory=tmp_path / "s")
    ) as client:
        client.log("app", "hello")
    assert client.closed and server.messages() == [b"hello"]


def test_exactly_one_of_zk_hosts_or_servers() -> None:
    """A client needs one source of servers, not zero or two."""
    with pytest.raises(TypeError):
        LogClient()
    with pytest.raises(TypeError):
        LogClient("127.0.0.1:2181", servers=StaticServers([]))


def test_spool_survives_in_a_default_slot(inproc: InProcFactory, tmp_path: Path) -> None:
    """Without a spool directory the client uses a per-user slot under $XDG_STATE_HOME."""
    client = LogClient(servers=StaticServers([]), spool=SpoolPolicy(name="unit"))
    assert client.spool_directory == tmp_path / "state/logclient/unit/slot-0"
    client.log("app", "kept")
    client.close(timeout=2)
    spool = Spool.open(SpoolPolicy(name="unit"))
    assert spool.records == 1
    spool.close()


def test_a_nearly_full_queue_spills_before_spill_after_s(make_client: ClientFactory) -> None:
    """With no server, a queue that stays past its high-water mark goes to the spool after
    high_water_hold_s, long before spill_after_s: a producer logging more than the queue
    holds waits about that long, and is not refused."""
    client = make_client(
        "127.0.0.1:1",
        queue=QueuePolicy(max_records=1000, overflow="block", block_timeout_s=10),
        spool=SpoolPolicy(directory=None, spill_after_s=600, high_water=0.5, high_water_hold_s=0.3),
    )
    started = time.monotonic()
    log_all(client, numbered("m", 3000))
    assert time.monotonic() - started < 8, "log() waited past the hold"
    wait_for(lambda: client.stats().spooled + client.stats().queued == 3000, 10.0)
    assert client.stats().spooled >= 2000


def test_a_burst_the_server_takes_is_held_in_memory_not_spilled(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """A burst far larger than the queue, to a server that is taking batches: the queue is
    past high water for less than the hold, so log() waits for room and nothing goes
    through the disk (which would only make the burst slower)."""
    server = inproc()
    client = make_client(
        server,
        queue=QueuePolicy(max_records=2000, overflow="block", block_timeout_s=30),
        spool=SpoolPolicy(directory=None, high_water_hold_s=10),
    )
    messages = numbered("m", 20_000)
    log_all(client, messages)
    assert client.flush(20)
    assert sorted(server.messages()) == encoded(messages)
    assert client.stats().spilled == 0


def test_with_overflow_drop_a_queue_past_high_water_spills_at_once(
    make_client: ClientFactory,
) -> None:
    """overflow='drop': holding the queue would drop records, so it is spilled as soon as
    it passes high water, whatever high_water_hold_s says; nothing is dropped."""
    client = make_client(
        "127.0.0.1:1",
        queue=QueuePolicy(max_records=1000, overflow="drop", block_timeout_s=120),
        spool=SpoolPolicy(directory=None, spill_after_s=600, high_water_hold_s=60),
    )
    for i, m in enumerate(numbered("m", 3000)):
        client.log("app", m)
        if i % 200 == 199:
            # At most 999 queued (of 1000): only a queue held past high water (800)
            # could fill up and drop records.
            wait_for(lambda: client.stats().queued < 800, 5, what="the sender spilled")

    def kept() -> bool:
        s = client.stats()
        return s.spooled + s.queued + s.in_flight == 3000

    wait_for(kept, 10.0, what="every record spooled, queued or in the batch in hand")
    assert client.stats().dropped == 0


def test_a_full_spool_drops_with_overflow_drop_and_blocks_otherwise(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """Spool full and overflow='drop': batches that do not fit are dropped, counted and
    logged. With overflow='raise' nothing is dropped: records stay queued until the queue
    is full, then log() raises QueueFullError."""
    small = SpoolPolicy(directory=tmp_path / "a", spill_after_s=0, max_bytes=20_000)
    dropping = make_client(
        "127.0.0.1:1", spool=small, queue=QueuePolicy(max_records=500, overflow="drop")
    )
    log_all(dropping, numbered("m", 3000))

    def accounted() -> bool:
        s = dropping.stats()
        return s.queued == 0 and s.spooled + s.dropped + s.in_flight == 3000

    wait_for(accounted, 10.0, what="every record spooled, dropped or in the batch in hand")
    stats = dropping.stats()
    assert stats.spooled_bytes <= 20_000 and stats.dropped > 0

    raising = make_client(
        "127.0.0.1:1",
        spool=replace(small, directory=tmp_path / "b"),
        queue=QueuePolicy(max_records=500, overflow="raise"),
    )
    with pytest.raises(QueueFullError):
        for m in numbered("m", 3000):
            raising.log("app", m)
    assert raising.stats().dropped == 0


def test_a_restarted_server_is_not_marked_down_for_its_stale_connection(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """A kept connection that the server closed (restart, idle timeout) is retried once on a
    fresh connection: no failover, the server is not avoided."""
    server = inproc()
    client = make_client(server)
    log_all(client, numbered("a", 100))
    assert client.flush(5)
    server.restart()
    log_all(client, numbered("b", 100))
    assert client.flush(5)
    stats = client.stats()
    assert (stats.failovers, stats.down_servers) == (0, ())
    assert server.messages() == encoded(numbered("a", 100) + numbered("b", 100))


def test_zookeeper_problems_surface_as_logclient_errors(tmp_path: Path) -> None:
    """A malformed ZooKeeper address is a DiscoveryError (no kazoo exception escapes); an
    unreachable ZooKeeper does not block the constructor, log() or close()."""
    with pytest.raises(DiscoveryError):
        LogClient("", "/logservers", spool=SpoolPolicy.disabled())
    with pytest.raises(DiscoveryError):
        LogClient("127.0.0.1:2181", "no-leading-slash", spool=SpoolPolicy.disabled())
    started = time.monotonic()
    client = LogClient("127.0.0.1:1", "/logservers", spool=SpoolPolicy(directory=tmp_path / "s"))
    client.log("app", "kept for later")
    client.close(timeout=3)
    assert time.monotonic() - started < 8
    assert client.stats().spooled == 1
    wait_for(
        lambda: not [t for t in threading.enumerate() if t.name.startswith("logclient-")],
        10.0,
        what="discovery threads to stop",
    )
