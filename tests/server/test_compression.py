"""Compression with real processes: byte-exact round trips, a SIGKILL in the middle of
compressed writes, a data directory of old and new segments, and old and new code talking
to each other (the old code is this repository's own, from before format 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from logclient import CompressionPolicy, LogClient, StaticServers
from logserver import reader
from logserver.tools.launcher import LogServerProcess
from logwire.compression import ZSTD, compress_columns, join_columns
from logwire.compression import CompressionPolicy as WirePolicy
from logwire.idl import log_thrift
from logwire.packed import pack_lengths
from logwire.serverset import Endpoint
from tests.oldcode import extract_old_tree, old_env
from tests.thrift_clients import connect

ServerFactory = Callable[..., LogServerProcess]

# Messages a reader must get back byte for byte: empty, not UTF-8, NUL bytes, the block
# marker's neighbourhood, a large one, and plain log lines.
AWKWARD = [
    b"",
    b"\xff\xfe\x00\x01 not utf-8 \xc3\x28",
    b"\x00" * 100,
    b"\x89LSEG\r\n\x1a" + bytes(range(256)),
    b"\x9eLS\xb7 version-1 magic inside a message",
    os.urandom(200_000),
    *[
        f"2026-12-06 02:11:{i % 60:02d} status installed pkg{i}:amd64 1.{i}".encode()
        for i in range(2000)
    ],
]


def _records(endpoint: str, category: str, method: str) -> list[bytes]:
    return [
        r.message for r in reader.read_server(Endpoint.parse(endpoint), category, method=method)
    ]


def _segments_bytes(server: LogServerProcess, category: str) -> int:
    return sum(p.stat().st_size for p in (server.data_dir / "categories" / category).glob("*.seg"))


def test_round_trips_are_byte_exact_through_every_call(
    logserver_factory: ServerFactory, clients: list[LogClient]
) -> None:
    """Whatever a client sends (compressed AppendCompressed, uncompressed AppendPacked, several
    categories in one batch, Scribe's Log) comes back byte for byte, through ReadBlocks and
    through the old Read; log lines take less room on disk than they hold."""
    server = logserver_factory()
    for compression in (CompressionPolicy(), CompressionPolicy(algorithm="none")):
        client = LogClient(servers=StaticServers([server.endpoint]), compression=compression)
        clients.append(client)
        for i, message in enumerate(AWKWARD):
            client.log("mixed" if i % 3 else "other", message)
        assert client.flush(30), client.stats()
        client.close(10)
    with connect(server.endpoint) as thrift:
        scribe = [log_thrift.LogEntry(category="scribe", message=m) for m in AWKWARD[:6]]
        assert thrift.Log(scribe) == log_thrift.ResultCode.OK
    expected_mixed = [m for i, m in enumerate(AWKWARD) if i % 3] * 2
    expected_other = [m for i, m in enumerate(AWKWARD) if not i % 3] * 2
    for method in ("blocks", "records"):
        assert _records(server.endpoint, "mixed", method) == expected_mixed
        assert _records(server.endpoint, "other", method) == expected_other
        assert _records(server.endpoint, "scribe", method) == AWKWARD[:6]
    lines = sum(len(m) for m in AWKWARD[6:])
    assert _segments_bytes(server, "mixed") < 200_000 * 2 + lines * 2 * 2 // 3 * 0.4


def test_compressed_batches_are_checked_before_they_are_stored(
    logserver_factory: ServerFactory,
) -> None:
    """A compressed batch that would not read back is refused and nothing is stored: a
    corrupt frame, a size that lies, a bomb past the frame limit; the connection serves on."""
    server = logserver_factory(extra_args=["--max-frame-bytes", str(1 << 20)])
    messages = [b"line %d" % i for i in range(1000)]
    columns = join_columns(pack_lengths(messages), messages)
    codec, payload = compress_columns(columns, WirePolicy())
    assert codec == ZSTD

    def batch(**change: object) -> object:
        fields = {
            "producer": "p",
            "sequence": 0,
            "runs": [log_thrift.CategoryRun(category="c", count=len(messages))],
            "codec": codec,
            "raw_bytes": len(columns),
            "columns": payload,
        } | change
        return log_thrift.CompressedBatch(**fields)

    bomb_columns = join_columns(pack_lengths([b"\x00" * (8 << 20)]), [b"\x00" * (8 << 20)])
    _, bomb = compress_columns(bomb_columns, WirePolicy())
    refused = {
        "corrupt frame": batch(columns=payload[:20] + bytes(len(payload) - 20)),
        "size that lies": batch(raw_bytes=len(columns) + 1),
        "runs that disagree": batch(runs=[log_thrift.CategoryRun(category="c", count=999)]),
        "unknown codec": batch(codec=9),
        "bomb": batch(
            runs=[log_thrift.CategoryRun(category="c", count=1)],
            raw_bytes=len(bomb_columns),
            columns=bomb,
        ),
    }
    with connect(server.endpoint) as client:
        for name, bad in refused.items():
            with pytest.raises((log_thrift.InvalidRequest, log_thrift.BatchTooLarge)):
                client.AppendCompressed(bad)
            assert client.Ping() == "pong", name
        assert client.Categories() == []
        assert client.AppendCompressed(batch()).stored == 1000
        assert client.AppendCompressed(batch()).duplicate
    assert _records(server.endpoint, "c", "blocks") == messages


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkill_in_the_middle_of_compressed_writes_loses_nothing_acknowledged(
    logserver_factory: ServerFactory, clients: list[LogClient]
) -> None:
    """A client sends large compressed batches without pause; the server is SIGKILLed at
    arbitrary moments (inside writes and syncs) and restarted. Every acknowledged record is
    there after each restart, and in the end every record is stored exactly once."""
    server = logserver_factory()
    client = LogClient(servers=StaticServers([server.endpoint]))
    clients.append(client)
    filler = os.urandom(1500).hex()  # compresses to about half: blocks of hundreds of KB
    logged = 0
    for round_ in range(8):
        for _ in range(3000):
            client.log("crash", f"{logged:08d} {filler}")
            logged += 1
        acked_before = client.stats().acknowledged
        server.kill()
        server.restart()
        stored = _records(server.endpoint, "crash", "blocks")
        numbers = [int(m[:8]) for m in stored]
        assert numbers == sorted(set(numbers)), f"round {round_}: duplicates or disorder"
        assert len(numbers) >= acked_before, f"round {round_}: acknowledged records lost"
    assert client.flush(60), client.stats()
    numbers = [int(m[:8]) for m in _records(server.endpoint, "crash", "blocks")]
    assert numbers == list(range(logged))


def test_a_data_directory_of_old_and_new_segments(
    logserver_factory: ServerFactory, clients: list[LogClient]
) -> None:
    """A server writing format 1 (as a server before compression did, or one set to write
    it for a downgrade), then the same directory under the default: old segments are served
    as they are, new batches go to a new format-2 segment, positions carry on, and a batch
    stored in the old format is still recognised as a duplicate after the switch."""
    server = logserver_factory(extra_args=["--segment-format", "1"])
    with connect(server.endpoint) as thrift:
        old = [log_thrift.LogEntry(category="c", message=b"old-%d" % i) for i in range(50)]
        assert not thrift.Append(log_thrift.AppendBatch("p", 0, old)).duplicate
    server.stop()
    server.extra_args = []
    server.start()
    with connect(server.endpoint) as thrift:
        assert thrift.Append(log_thrift.AppendBatch("p", 0, old)).duplicate
        new = [log_thrift.LogEntry(category="c", message=b"new-%d" % i) for i in range(50)]
        assert not thrift.Append(log_thrift.AppendBatch("p", 1, new)).duplicate
    expected = [b"old-%d" % i for i in range(50)] + [b"new-%d" % i for i in range(50)]
    for method in ("blocks", "records"):
        assert _records(server.endpoint, "c", method) == expected
    files = sorted((server.data_dir / "categories" / "c").glob("*.seg"))
    assert [f.read_bytes()[:4] for f in files] == [b"\x9eLS\xb7", b"\x89LSE"]


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract_old_tree(tmp_path_factory.mktemp("old-code"))


_OLD_CLIENT = """
import sys
from logclient import LogClient, StaticServers
client = LogClient(servers=StaticServers([sys.argv[1]]))
for i in range(int(sys.argv[2])):
    client.log("app", b"old-client-%06d \\xff" % i)
ok = client.flush(60)
client.close(10)
sys.exit(0 if ok else 1)
"""


@pytest.mark.slow
def test_an_old_client_against_a_new_server(
    logserver_factory: ServerFactory, old_tree: Path, tmp_path: Path
) -> None:
    """A LogClient from before compression (AppendPacked) stores into a new server, which
    compresses what it stores; everything reads back exactly."""
    server = logserver_factory()
    script = tmp_path / "old_client.py"
    script.write_text(_OLD_CLIENT)
    done = subprocess.run(
        [sys.executable, str(script), server.endpoint, "20000"],
        env={**os.environ, **old_env(old_tree)},
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    expected = [b"old-client-%06d \xff" % i for i in range(20000)]
    assert _records(server.endpoint, "app", "blocks") == expected
    assert _segments_bytes(server, "app") < sum(map(len, expected)) / 2


@pytest.mark.slow
def test_a_new_client_and_reader_against_an_old_server(
    logserver_factory: ServerFactory, old_tree: Path, clients: list[LogClient]
) -> None:
    """A server from before compression answers AppendCompressed and ReadBlocks with
    UNKNOWN_METHOD: the client resends the batch with AppendPacked and keeps using it with
    that server, the reader uses Read; nothing is lost or doubled."""
    server = logserver_factory(env=old_env(old_tree), cwd=old_tree)
    client = LogClient(servers=StaticServers([server.endpoint]))
    clients.append(client)
    for i in range(20000):
        client.log("app", b"new-client-%06d" % i)
    assert client.flush(60), client.stats()
    expected = [b"new-client-%06d" % i for i in range(20000)]
    assert _records(server.endpoint, "app", "auto") == expected
    with connect(server.endpoint) as thrift, pytest.raises(Exception, match=r"(?i)unknown method"):
        thrift.ReadBlocks("app", 0, 1000)
    files = sorted((server.data_dir / "categories" / "app").glob("*.seg"))
    assert files and all(f.read_bytes()[:4] == b"\x9eLS\xb7" for f in files)


@pytest.mark.slow
def test_an_old_server_started_on_an_old_directory_after_a_new_one_wrote_format_1(
    logserver_factory: ServerFactory, old_tree: Path
) -> None:
    """A downgrade: the new server set to --segment-format 1 writes what the old server
    reads, so the old code can take the directory over."""
    server = logserver_factory(extra_args=["--segment-format", "1"])
    with connect(server.endpoint) as thrift:
        entries = [log_thrift.LogEntry(category="c", message=b"m%d" % i) for i in range(100)]
        thrift.Append(log_thrift.AppendBatch("p", 0, entries))
    server.stop()
    server.extra_args = []
    server.env = old_env(old_tree)
    server.cwd = old_tree
    server.start()
    assert _records(server.endpoint, "c", "records") == [b"m%d" % i for i in range(100)]
