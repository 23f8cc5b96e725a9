"""SIGKILL in the middle of writes, again and again, to the only server there is."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from logclient import LogClient
from logserver.reader import connect
from logserver.tools.launcher import LogServerProcess
from logwire.serverset import Endpoint
from tests.delivery import Producer, progress, wait_known, zk_client
from tests.helpers import number_of
from tests.readback import read_server

ServerFactory = Callable[..., LogServerProcess]

KILLS = 16
PAGE = 5000
TRUNCATED = re.compile(r"(\d+) bytes truncated")


def numbers_from(server: LogServerProcess, position: int, until: int) -> tuple[list[int], int]:
    """The numbers of the ``crash-`` records from ``position`` on that are below ``until``, and
    the position of the first record at or above it (or the end of the log)."""
    numbers: list[int] = []
    with connect(Endpoint.parse(server.endpoint), timeout=10) as client:
        for _ in range(until // PAGE + 2):  # what is below ``until`` fits in these pages
            result = client.Read("app", position, PAGE)
            for record in result.records:
                number = number_of(record.message, "crash")
                assert number is not None, record
                if number >= until:
                    return numbers, record.position
                numbers.append(number)
            position = result.next_position
            if result.end_of_log:
                return numbers, position
    raise AssertionError(f"more records below {until} than {until} from position {position}")


def truncated_bytes(server: LogServerProcess) -> list[int]:
    """Bytes each recovery of the server (one per start) cut from torn tails, from its log."""
    log = (server.log_path or server.data_dir / "logserver.log").read_text(errors="replace")
    return [int(m) for m in TRUNCATED.findall(log)]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigkill_of_the_only_server_many_times_keeps_every_acknowledged_record_once(
    logserver_factory: ServerFactory,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """A client logs numbered records continuously to ONE server, which is SIGKILLed (while
    batches are being written and synced) and restarted on the same port and data directory
    16 times. After every restart the server holds every record the client had been told was
    stored before the kill: recovery cut only what was never acknowledged. At the end the
    server holds every record logged exactly once (raw, without dedup: a resent batch the
    server already had is acknowledged as a duplicate, not stored again), in logging order."""
    server = logserver_factory()
    client = zk_client(clients, zk_hosts, zk_path, tmp_path)
    wait_known(client, 1)
    checked_to, position = 0, 0
    with Producer(client, "crash", per_second=5000) as producer:
        for _ in range(KILLS):
            progress(client, 1000)
            # flush() returning True means every record logged before it was acknowledged;
            # the producer keeps logging meanwhile, so a batch is in flight at the kill.
            flushed = producer.count
            assert client.flush(30), client.stats()
            server.kill()
            # Acknowledged = stored: the server replies only after the batch is synced. One
            # batch is in flight at a time, in logging order, so these are numbers 0..acked-1.
            acked = client.stats().acknowledged
            assert acked >= flushed
            server.start()
            # What was checked before is not read again: had recovery cut into it, reading
            # from its end would fail or start at another record.
            numbers, position = numbers_from(server, position, until=acked)
            assert numbers == list(range(checked_to, acked)), "recovery cut acknowledged records"
            checked_to = acked
        progress(client, 1000)
        expected = producer.stop()
    assert client.flush(60), client.stats()
    stored = [r.message.decode() for r in read_server(server.endpoint, "app")]
    assert len(stored) == len(expected)
    assert stored == expected
    stats = client.stats()
    assert stats.dropped == 0
    assert stats.failovers >= KILLS
    cuts = truncated_bytes(server)
    assert len(cuts) == KILLS + 1
    print(
        f"{KILLS} kills: {len(expected)} records, {stats.batches_retried} batches resent, "
        f"{stats.duplicates} acknowledged as duplicates, recoveries cut {sum(cuts)} bytes "
        f"({sum(1 for c in cuts if c)} torn tails)"
    )
