"""A server whose disk cannot take writes: it says so, stays up, and the client moves on.

Two real faults on a real filesystem the test mounts itself (tmpfs):

- **full**: the data directory is a 2 MiB tmpfs; a filler file takes the rest of it.
- **read-only**: the segments' filesystem is remounted read-only. Linux refuses
  ``mount -o remount,ro`` while any file on it is open for writing (EBUSY), and a
  running server keeps its active segment open; so the server is stopped
  (SIGTERM), the filesystem remounted read-only, and the server started again on
  it, as after an operator's restart on a disk that went read-only. The tmpfs is
  mounted on ``<data-dir>/categories``, so the data directory's lock file stays
  writable and the server can start.

In both cases the client logs continuously to two servers registered in
ZooKeeper; the other server has plenty of room.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from logclient import LogClient
from logserver.tools.launcher import LogServerProcess, wait_for
from logwire.idl import log_thrift
from tests.delivery import Producer, messages, progress, wait_known, zk_client

from .conftest import Mount, must
from .support import AckWatch, append_probe, numbers_on, scribe_log, status

ServerFactory = Callable[..., LogServerProcess]

OK = log_thrift.ResultCode.OK
TRY_LATER = log_thrift.ResultCode.TRY_LATER


class DiskFull:
    """The data directory is a small tmpfs; ``cause`` fills it with a file, ``heal`` deletes it."""

    def __init__(self) -> None:
        self.filler: Path | None = None

    def prepare(self, tmpfs: Mount, data_dir: Path) -> dict[str, object]:
        tmpfs(data_dir, "2m")
        # The server's own log goes elsewhere: this test is about its storage.
        return {"log_path": data_dir.parent / f"{data_dir.name}.log"}

    def cause(self, server: LogServerProcess) -> None:
        self.filler = server.data_dir / "filler"
        chunk = b"\0" * 65536
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for _ in range(2 * 2**20 // len(chunk) + 2):  # more than the whole tmpfs
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    return
            raise AssertionError("a 2 MiB tmpfs took more than 2 MiB")
        finally:
            os.close(fd)

    def heal(self, server: LogServerProcess) -> None:
        assert self.filler is not None
        self.filler.unlink()


class ReadOnly:
    """The segments' filesystem is remounted read-only (see the module docstring), then rw."""

    def __init__(self) -> None:
        self.mount: Path | None = None

    def prepare(self, tmpfs: Mount, data_dir: Path) -> dict[str, object]:
        self.mount = tmpfs(data_dir / "categories", "64m")
        return {}

    def cause(self, server: LogServerProcess) -> None:
        assert self.mount is not None
        assert server.terminate() == 0
        must("mount", "-o", "remount,ro", str(self.mount))
        server.start()

    def heal(self, server: LogServerProcess) -> None:
        assert self.mount is not None
        must("mount", "-o", "remount,rw", str(self.mount))


@pytest.mark.parametrize("fault", [DiskFull, ReadOnly], ids=["full", "read-only"])
def test_a_server_that_cannot_store_refuses_stays_up_and_the_client_moves_on(
    fault: type[DiskFull | ReadOnly],
    tmpfs: Mount,
    logserver_factory: ServerFactory,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """While its disk is full (or read-only) a server answers ``Append`` with the declared
    StorageUnavailable and Scribe's ``Log`` with TRY_LATER, keeps answering Ping and Status,
    and stores nothing once it has refused (a full filesystem may still take a small
    compressed batch into the last page of a segment before that); the client moves to the
    other server at once (a refusal is an answer, not a timeout) and keeps delivering. Once the disk takes writes again the server does too
    (a direct Append succeeds, and the client uses it again). Every message logged is stored
    exactly once after dedup."""
    disk = fault()
    victim = logserver_factory("victim", **disk.prepare(tmpfs, tmp_path / "victim"))
    roomy = logserver_factory("roomy")
    client = zk_client(clients, zk_hosts, zk_path, tmp_path)
    wait_known(client, 2)
    with Producer(client, "disk") as producer, AckWatch(client) as watch:
        wait_for(lambda: numbers_on(victim, "disk"), 20, what="records on the victim")
        watch.reset()
        disk.cause(victim)
        pid = victim.pid

        with pytest.raises(log_thrift.StorageUnavailable):
            append_probe(victim)
        assert scribe_log(victim) == TRY_LATER
        assert status(victim) == ("pong", "SERVING")

        failovers = client.stats().failovers
        progress(client, 3000)
        wait_for(
            lambda: client.stats().failovers > failovers,
            15,
            what="the client to try the victim and move on",
        )
        held = len(numbers_on(victim, "disk"))
        progress(client, 1000)
        stall = watch.longest_stall
        assert len(numbers_on(victim, "disk")) == held
        assert status(victim) == ("pong", "SERVING")

        disk.heal(victim)
        assert append_probe(victim).code == OK
        wait_for(
            lambda: len(numbers_on(victim, "disk")) > held,
            15,
            what="the client to deliver to the victim again",
        )
        expected = producer.stop()
    assert client.flush(60), client.stats()
    assert messages([victim.endpoint, roomy.endpoint]) == expected
    assert client.stats().dropped == 0
    assert victim.alive() and victim.pid == pid
    assert status(victim) == ("pong", "SERVING")
    # A refusal is an answer, not a timeout: the client moves on at once.
    assert stall < 1.0, watch
    print(f"{disk.__class__.__name__}: longest pause in acknowledgements {stall:.2f}s")
