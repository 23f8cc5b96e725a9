"""Servers with different frame limits: batches are split, and read-back still shows each record once.

The case: a client sent a batch whole to a server with a large limit, which
stored it and died before answering (an ambiguous failure); the next server's
limit is smaller, so the client split the batch and that server stored the
halves under derived ids. Both copies are on disk. Here the halves come from a
real LogClient against a real ``logserver --max-frame-bytes 64k`` (which answers
BatchTooLarge, so the client splits rather than failing over), and the whole
batches are written to a second, default-limit server with the same
``(producer, sequence)``, as the client had sent them first. ``logserver cat``
over both must show every message once.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from logclient import LogClient, SpoolPolicy, StaticServers
from logserver.reader import connect
from logserver.tools.launcher import LogServerProcess
from logwire.batchid import canonical_key
from logwire.idl import log_thrift
from logwire.serverset import Endpoint
from tests.helpers import numbered
from tests.readback import read_server

pytestmark = pytest.mark.slow

ServerFactory = Callable[..., LogServerProcess]
SMALL_FRAME = 64 * 1024


def test_halves_of_a_split_batch_and_its_whole_copy_read_back_once(
    logserver_factory: ServerFactory, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    small = logserver_factory(
        "small",
        extra_args=["--max-frame-bytes", str(SMALL_FRAME), "--max-message-bytes", "4096"],
    )
    large = logserver_factory("large")
    messages = numbered("split", 6000)

    client = LogClient(
        servers=StaticServers([small.endpoint]),
        spool=SpoolPolicy(directory=tmp_path / "spool"),
    )
    try:
        for m in messages:
            client.log("app", m)
        assert client.flush(30)
        stats = client.stats()
    finally:
        client.close()
    assert stats.dropped == 0 and stats.failovers == 0, stats

    halves = read_server(small.endpoint, "app")
    assert sorted(r.message.decode() for r in halves) == sorted(messages)
    assert {r.producer for r in halves} != {stats.producer}, "nothing was split"
    assert all("@" in r.producer for r in halves if r.producer != stats.producer)

    # The whole batches, as the client first sent them, on the server with the large limit.
    whole: dict[tuple[str, int], dict[int, bytes]] = defaultdict(dict)
    for r in halves:
        producer, sequence, index = canonical_key(r.producer, r.sequence, r.index)
        whole[(producer, sequence)][index] = r.message
    assert all(producer == stats.producer for producer, _ in whole)
    with connect(Endpoint.parse(large.endpoint), 30) as thrift:
        for (producer, sequence), by_index in sorted(whole.items()):
            assert sorted(by_index) == list(range(len(by_index))), "a gap in a batch"
            entries = [log_thrift.LogEntry("app", by_index[i]) for i in range(len(by_index))]
            batch = log_thrift.AppendBatch(producer=producer, sequence=sequence, entries=entries)
            assert thrift.Append(batch).code == log_thrift.ResultCode.OK
    assert len(read_server(large.endpoint, "app")) == len(messages)

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "logserver",
            "cat",
            "--zk",
            zk_hosts,
            "--zk-path",
            zk_path,
            "app",
            "--raw",
        ],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.decode().splitlines()) == sorted(messages)
