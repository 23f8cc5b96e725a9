"""Category bombs: categories are capped per batch and per server, and open files whatever
their number.

Before, one ``Log`` call naming 20,000 categories left the server holding
19,999 open descriptors (a few more such calls and segment creation and even
``accept()`` failed), and each new category cost a directory fsync under the
storage lock that every category creation waited for.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from thriftpy2.thrift import TApplicationException

from logclient import LogClient
from logserver.tools.launcher import LogServerProcess
from logwire.idl import log_thrift
from tests.delivery import Producer, messages
from tests.hostile.conftest import Attacker, PeakSampler, open_fds
from tests.thrift_clients import connect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BOMB = 20_000


def entries(count: int, prefix: str) -> list[object]:
    return [log_thrift.LogEntry(category=f"{prefix}-{i:06d}", message=b"x") for i in range(count)]


def test_with_default_flags_a_20000_category_batch_is_refused_at_once(
    logserver_factory: Callable[..., LogServerProcess],
) -> None:
    """Append naming 20,000 categories gets BatchTooLarge (limit 1,000: logclient splits such
    a batch), Log an application error naming the limit; no category is created and no file
    opened, and the server goes on serving."""
    server = logserver_factory()
    assert server.pid is not None
    before = open_fds(server.pid)
    with connect(server.endpoint) as client:
        with pytest.raises(log_thrift.BatchTooLarge) as refused:
            client.Append(
                log_thrift.AppendBatch(producer="bomb", sequence=0, entries=entries(BOMB, "b"))
            )
        assert (refused.value.limit, refused.value.actual) == (1000, BOMB)
        with pytest.raises(TApplicationException, match=r"too many categories.*limit 1000"):
            client.Log(entries(BOMB, "l"))
        assert client.Categories() == []
        assert client.Ping() == "pong"
    assert open_fds(server.pid) <= before + 2


def test_a_20000_category_batch_leaves_the_server_under_4096_open_files(
    logserver_factory: Callable[..., LogServerProcess],
    attackers: Callable[..., Attacker],
    good_client: Callable[[LogServerProcess], LogClient],
) -> None:
    """With the caps raised to let it in, one Append of 20,000 categories is stored while the
    server never holds 4,096 descriptors (at most --max-open-segments segment files), and a
    LogClient logging throughout has every record acknowledged, none spilled."""
    server = logserver_factory(
        fsync="never",  # the test is about descriptors; bench measures the cost of syncs
        extra_args=["--max-batch-categories", str(BOMB), "--max-categories", "100000"],
    )
    pid = server.pid
    assert pid is not None
    client = good_client(server)
    with PeakSampler(lambda: open_fds(pid)) as fds, Producer(client, "good") as producer:
        bomb = attackers("categories", port=server.port, categories=BOMB).result(timeout=240)
        expected = producer.stop()
    assert client.flush(60), client.stats()
    stats = client.stats()
    print(f"server peak fds {fds.peak} (bound 4096); bomb {bomb}; client {stats}")
    assert bomb["answer"] == f"stored {BOMB}", bomb
    assert fds.peak < 4096
    assert fds.peak < 1024 + 128  # the open segments, connections and the server's own
    assert (stats.spilled, stats.dropped) == (0, 0), stats
    assert messages([server.endpoint]) == expected
    with connect(server.endpoint) as reader:
        assert len(reader.Categories()) == BOMB + 1


def test_a_server_creates_at_most_max_categories(
    logserver_factory: Callable[..., LogServerProcess],
) -> None:
    """Batch after batch of new categories: past --max-categories a new one is refused with
    InvalidCategory naming it (logclient drops only that category's records), while existing
    categories keep taking records."""
    server = logserver_factory(fsync="never", extra_args=["--max-categories", "2500"])
    with connect(server.endpoint) as client:
        for sequence in range(2):
            batch = entries(1000, f"wave{sequence}")
            client.Append(log_thrift.AppendBatch(producer="p", sequence=sequence, entries=batch))
        with pytest.raises(log_thrift.InvalidCategory, match="max-categories") as refused:
            client.Append(
                log_thrift.AppendBatch(producer="p", sequence=2, entries=entries(1000, "wave2"))
            )
        assert refused.value.category == "wave2-000500"
        client.Append(
            log_thrift.AppendBatch(producer="p", sequence=3, entries=entries(500, "wave2"))
        )
        with pytest.raises(log_thrift.InvalidCategory):
            client.Append(
                log_thrift.AppendBatch(producer="p", sequence=4, entries=entries(1, "late"))
            )
        again = [log_thrift.LogEntry(category="wave0-000000", message=b"still")]
        stored = client.Append(log_thrift.AppendBatch(producer="p", sequence=5, entries=again))
        assert stored.stored == 1
        assert len(client.Categories()) == 2500
