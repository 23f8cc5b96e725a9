"""What must hold for FileServers: the servers the host's agent lists in a file, kept current
without ZooKeeper, one watcher thread per process, the last good list through any bad file."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from logclient import DiscoveryError, FileServers, FileServersStats
from logclient._filewatch import file_watcher
from logserver.tools.launcher import wait_for
from logwire.serverset import Endpoint

from .conftest import Feeder, FileServersFactory

A, B, C = Endpoint("10.0.0.1", 9090), Endpoint("10.0.0.2", 9090), Endpoint("10.0.0.3", 9090)
MODES = [pytest.param(True, id="inotify"), pytest.param(False, id="poll")]


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "logclient-files"]


@pytest.mark.parametrize("inotify", MODES)
def test_reads_the_file_at_start_and_follows_each_replacement(
    feeder: Feeder, file_servers: FileServersFactory, inotify: bool
) -> None:
    """start() reads the file before it returns (a new client has its servers before its first
    record); every later replacement reaches servers() and the listeners, which run on the shared
    watcher thread; stats say how it is watched."""
    feeder.write([A, B])
    source = file_servers(feeder.path, start=False, inotify=inotify, poll_interval_s=0.05)
    told: list[tuple[frozenset[Endpoint], str]] = []
    source.subscribe(lambda s: told.append((s, threading.current_thread().name)))
    source.start()
    assert source.servers() == {A, B}
    assert told == [({A, B}, "MainThread")]

    feeder.write([B, C])
    assert source.wait_for(lambda s: s == {B, C}, 10)
    feeder.write([])
    assert source.wait_for(lambda s: s == frozenset(), 10)  # a usable empty list is the truth
    wait_for(lambda: len(told) == 3, 10, what="the listener to be told")  # told after the change
    assert told[1:] == [({B, C}, "logclient-files"), (frozenset(), "logclient-files")]
    stats = source.stats()
    assert (stats.mode, stats.answered, stats.updates, stats.bad_reads) == (
        "inotify" if inotify else "poll",
        True,
        3,
        0,
    )
    assert (stats.agent_state, stats.serial, stats.stale, stats.problem) == (
        "current",
        3,
        False,
        None,
    )


@pytest.mark.parametrize("inotify", MODES)
def test_keeps_the_last_good_list_through_missing_torn_and_garbage_files(
    feeder: Feeder,
    file_servers: FileServersFactory,
    inotify: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A deleted, torn, garbage, wrongly shaped or newer-version file never replaces the servers
    known: each is counted and logged once, and the next usable file is taken at once."""
    caplog.set_level(logging.INFO, "logclient.discovery")
    feeder.write([A, B])
    source = file_servers(feeder.path, inotify=inotify, poll_interval_s=0.05)
    good = feeder.document([A, B]).to_json()

    def survives(change: object, says: str) -> None:
        bad_before = source.stats().bad_reads
        if isinstance(change, bytes):
            feeder.write_raw(change)
        else:
            feeder.path.unlink()
        stats_when(
            source,
            lambda s: (
                s.problem is not None
                and says in s.problem
                and (says == "missing" or s.bad_reads > bad_before)
            ),
        )
        assert source.servers() == {A, B}

    survives(None, "missing")
    assert source.stats().missing
    survives(good[: len(good) // 2], "not JSON")  # torn
    survives(b"\x00\x01garbage\xff", "not JSON")
    survives(b'{"hello": "world"}', "format")
    survives(good.replace(b'"version": 1', b'"version": 2'), "version 2")
    survives(good.replace(b'"port": 9090', b'"port": 0'), "bad server port")

    feeder.write([C])
    assert source.wait_for(lambda s: s == {C}, 10)
    stats = source.stats()
    assert (stats.problem, stats.missing, stats.servers) == (None, False, 1)
    messages = [r.getMessage() for r in caplog.records if str(feeder.path) in r.getMessage()]
    assert sum("is missing" in m for m in messages) == 1
    assert sum("unusable" in m for m in messages) == 5
    assert sum("usable again" in m for m in messages) == 1


def stats_when(
    source: FileServers, condition: Callable[[FileServersStats], bool], timeout: float = 10.0
) -> FileServersStats:
    """Wait until the source's stats satisfy ``condition``; those stats."""

    def check() -> FileServersStats | None:
        stats = source.stats()
        return stats if condition(stats) else None

    return wait_for(check, timeout, what=f"stats of {source!r} to satisfy the condition")


@pytest.mark.parametrize("inotify", MODES)
def test_a_file_and_directory_that_appear_later_are_picked_up(
    tmp_path: Path, file_servers: FileServersFactory, inotify: bool
) -> None:
    """Started before the agent ever wrote (not even the directory exists), the source is empty
    and says the file is missing; once the agent writes, the servers arrive."""
    path = tmp_path / "later" / "servers.json"
    source = file_servers(path, inotify=inotify, poll_interval_s=0.05)
    stats = source.stats()
    assert (source.servers(), stats.answered, stats.missing) == (frozenset(), False, True)
    feeder = Feeder(path)
    try:
        feeder.write([A])
        assert source.wait_for(lambda s: s == {A}, 10)
        if inotify:  # the directory exists now: from polling to a watch
            assert stats_when(source, lambda s: s.mode == "inotify")
    finally:
        feeder.writer.release()


def test_the_directory_deleted_and_recreated_is_followed(
    feeder: Feeder, file_servers: FileServersFactory
) -> None:
    """The watch on a deleted directory ends; the source polls until it is back, watches again,
    and reads the new file (its last good list stays meanwhile)."""
    feeder.write([A])
    source = file_servers(feeder.path, poll_interval_s=0.05)
    assert stats_when(source, lambda s: s.mode == "inotify")
    feeder.writer.release()
    shutil.rmtree(feeder.path.parent)
    assert stats_when(source, lambda s: s.missing and s.mode == "poll")
    assert source.servers() == {A}
    again = Feeder(feeder.path)
    try:
        again.write([B])
        assert source.wait_for(lambda s: s == {B}, 10)
        assert stats_when(source, lambda s: s.mode == "inotify")
    finally:
        again.writer.release()
    feeder.writer.acquire()  # the fixture releases it


def test_a_symlink_swapped_beside_the_file_is_noticed_at_once(
    tmp_path: Path, file_servers: FileServersFactory
) -> None:
    """The way Kubernetes updates a mounted file (the path is a symlink through ``..data``,
    which is renamed to point at a new directory): any change in the directory makes the watcher
    look at the file, so this is seen through inotify, not at the next safety stat."""
    root = tmp_path / "mount"
    root.mkdir()
    for version, servers in (("v1", [A]), ("v2", [B])):
        (root / version).mkdir()
        feeder = Feeder(root / version / "servers.json")
        feeder.write(servers)
        feeder.writer.release()
    (root / "..data").symlink_to("v1")
    (root / "servers.json").symlink_to("..data/servers.json")
    source = file_servers(root / "servers.json", poll_interval_s=3600)
    assert source.servers() == {A}
    (root / "..data_tmp").symlink_to("v2")
    os.replace(root / "..data_tmp", root / "..data")
    assert source.wait_for(lambda s: s == {B}, 4)  # the safety stat would take 5 s or more


def test_a_file_listing_another_path_is_refused(
    feeder: Feeder, file_servers: FileServersFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A source told which registration path it wants never takes another path's servers (it
    would send to another cluster); it logs that once, as an error."""
    feeder.write([A], zk_path="/other-cluster")
    source = file_servers(feeder.path, zk_path="/logservers", poll_interval_s=0.05)
    assert source.servers() == frozenset()
    stats = source.stats()
    assert stats.problem is not None and "/other-cluster" in stats.problem
    feeder.write([B], zk_path="/other-cluster")
    assert stats_when(source, lambda s: s.bad_reads >= 2)
    refusals = [r for r in caplog.records if "refusing servers file" in r.getMessage()]
    assert [r.levelname for r in refusals] == ["ERROR"]
    feeder.write([C], zk_path="/logservers")
    assert source.wait_for(lambda s: s == {C}, 10)


def test_a_stale_list_is_used_and_reported(
    feeder: Feeder, file_servers: FileServersFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The agent's ``stale`` state and an old, unrefreshed file both make the list stale in the
    stats and the log; the servers are used all the same. The agent's heartbeat (a newer mtime
    on the same file) makes an old write fresh again."""
    caplog.set_level(logging.INFO, "logclient.discovery")
    feeder.write([A], state="stale")
    source = file_servers(feeder.path, poll_interval_s=0.05)
    stats = source.stats()
    assert (source.servers(), stats.stale, stats.agent_state) == ({A}, True, "stale")

    long_ago = time.time() - 3600
    feeder.write([B], written_at=long_ago, heartbeat_s=1.0)
    os.utime(feeder.path, (long_ago, long_ago))
    assert source.wait_for(lambda s: s == {B}, 10)
    stats = source.stats()
    assert stats.stale and stats.agent_state == "current" and stats.age_s is not None
    assert stats.age_s >= 3599
    os.utime(feeder.path)  # the heartbeat
    stats = source.stats()
    assert not stats.stale and stats.age_s is not None and stats.age_s < 60
    assert any("is stale" in r.getMessage() for r in caplog.records)


def test_one_watcher_thread_for_every_source_in_the_process(
    feeder: Feeder, tmp_path: Path, file_servers: FileServersFactory
) -> None:
    """Twenty sources on one file and five on another share one thread; every source sees each
    change; the thread ends when the last source closes, and close() is bounded and idempotent."""
    other = Feeder(tmp_path / "other" / "servers.json")
    try:
        feeder.write([A])
        other.write([B])
        sources = [file_servers(feeder.path) for _ in range(20)]
        sources += [file_servers(other.path, poll_interval_s=0.05) for _ in range(5)]
        assert len(watcher_threads()) == 1
        feeder.write([C])
        other.write([C])
        assert all(s.wait_for(lambda x: x == {C}, 10) for s in sources)
        for source in sources[:-1]:
            source.close(5)
        assert len(watcher_threads()) == 1
        started = time.monotonic()
        sources[-1].close(5)
        assert watcher_threads() == [] and time.monotonic() - started < 5
        sources[-1].close(5)
        assert sources[-1].servers() == {C}  # the last known servers stay readable
        with pytest.raises(DiscoveryError, match="closed"):
            sources[-1].start()
    finally:
        other.writer.release()


def test_registrations_reach_member_listeners(
    feeder: Feeder, file_servers: FileServersFactory
) -> None:
    """The servers' member nodes and order come through as KnownServer; a server registered anew
    on the same endpoint (restarted) is news to member listeners, not to endpoint listeners."""
    from logclient.discovery import KnownServer
    from logwire.serversfile import ListedServer

    def write(*listed: ListedServer) -> None:
        document = feeder.document([s.endpoint for s in listed]).evolve(registrations=listed)
        feeder.writer.write(document)

    write(ListedServer(A, "member_0000000003", 3), ListedServer(B, "member_0000000001", 1))
    source = file_servers(feeder.path, poll_interval_s=0.05)
    assert source.members() == (
        KnownServer(A, "member_0000000003", 3),
        KnownServer(B, "member_0000000001", 1),
    )
    endpoint_calls: list[frozenset[Endpoint]] = []
    member_calls: list[tuple[KnownServer, ...]] = []
    source.subscribe(endpoint_calls.append)
    source.subscribe_members(member_calls.append)
    write(ListedServer(A, "member_0000000009", 9), ListedServer(B, "member_0000000001", 1))
    wait_for(lambda: member_calls, 10, what="the new registration")
    assert member_calls == [
        (KnownServer(A, "member_0000000009", 9), KnownServer(B, "member_0000000001", 1))
    ]
    assert endpoint_calls == []


def test_answered_only_once_a_usable_file_was_read(
    feeder: Feeder, file_servers: FileServersFactory
) -> None:
    """Before a usable file, an empty list means "not known yet" (``answered`` is False);
    a usable file with no servers means "none"."""
    source = file_servers(feeder.path, poll_interval_s=0.05)
    assert (source.servers(), source.answered) == (frozenset(), False)
    feeder.write_raw(b"garbage")
    assert stats_when(source, lambda s: s.bad_reads >= 1) and not source.answered
    feeder.write([])
    wait_for(lambda: source.answered, 10, what="the usable file")
    assert source.servers() == frozenset()


@pytest.mark.parametrize(
    ("path", "kwargs", "says"),
    [
        ("", {}, "invalid servers file path"),
        ("bad\x00path", {}, "invalid servers file path"),
        (42, {}, "must be a path"),
        ("/x", {"poll_interval_s": 0}, "poll_interval_s"),
        ("/x", {"poll_interval_s": 86400}, "poll_interval_s"),
        ("/x", {"zk_path": "logservers"}, "zk_path"),
    ],
)
def test_bad_arguments_are_refused_at_once(
    path: object, kwargs: dict[str, object], says: str
) -> None:
    """A FileServers that could never work is a DiscoveryError where it is made."""
    with pytest.raises(DiscoveryError, match=says):
        FileServers(path, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ fork


def _in_child(body: object, timeout: int = 20) -> int:
    """Run ``body()`` in a forked child, bounded by an alarm; its exit status (0: it held)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.alarm(timeout)
            code = 0 if body() else 2  # type: ignore[operator]
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.process
def test_a_forked_child_keeps_following_the_file_and_so_does_the_parent(
    feeder: Feeder, file_servers: FileServersFactory, tmp_path: Path
) -> None:
    """A source made before fork() works in the child (gunicorn --preload): the child gets a
    watcher thread of its own and sees later changes; the child's inotify is its own, so the
    parent (which reads its own events) sees them too."""
    feeder.write([A])
    source = file_servers(feeder.path)
    ready, go = tmp_path / "child-ready", tmp_path / "go"

    def child() -> bool:
        if source.servers() != {A} or len(watcher_threads()) != 1:
            return False
        ready.touch()
        return source.wait_for(lambda s: s == {B}, 15) and source.stats().mode == "inotify"

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.alarm(20)
            code = 0 if child() else 2
        finally:
            os._exit(code)
    try:
        deadline = time.monotonic() + 15
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        feeder.write([B])
        assert source.wait_for(lambda s: s == {B}, 10)
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    go.touch()


@pytest.mark.process
def test_a_fork_while_the_watcher_holds_its_locks_does_not_hang_the_child(
    feeder: Feeder, file_servers: FileServersFactory
) -> None:
    """If fork() happens while the watcher thread is in the middle of a look (holding the
    watcher's, the file's and the membership's locks), the child still works. Nothing runs in
    a fork hook (no thread, no lock, no logging): the child has no watcher thread until its
    first call; that call (stats() here) replaces every lock, restarts the watching, and the
    child sees the next change. An unstarted source made before the fork gets locks of its own
    too; the parent carries on."""
    feeder.write([A])
    source = file_servers(feeder.path)
    idle = FileServers(feeder.path)
    watcher = file_watcher()
    (entry,) = watcher._entries.values()
    held = [watcher._lock, entry.lock, source._members._lock, source._lock, idle._lock]
    for lock in held:
        lock.acquire()
    try:

        def child() -> bool:
            if watcher_threads():
                return False  # started by a fork hook
            if source.stats().servers != 1 or len(watcher_threads()) != 1:
                return False
            if "NOT_STARTED" not in repr(idle):
                return False
            feeder.write([C])
            return source.wait_for(lambda s: s == {C}, 10)

        code = _in_child(child)
    finally:
        for lock in reversed(held):
            lock.release()
    assert code == 0
    assert source.wait_for(lambda s: s == {C}, 10)  # and the parent carries on


@pytest.mark.process
def test_a_fork_that_bypassed_the_hooks_is_caught_by_the_pid_check(
    feeder: Feeder, file_servers: FileServersFactory
) -> None:
    """A child made by a fork() that ran no Python at-fork hooks (C code calling fork())
    re-initialises on its first call, through the pid check."""
    feeder.write([A])
    source = file_servers(feeder.path)

    def child() -> bool:
        watcher = file_watcher()
        watcher._pid = -1  # as if the hook had not run in this child
        watcher._thread = None
        if source.servers() != {A} or watcher._thread is None:
            return False
        feeder.write([B])
        return source.wait_for(lambda s: s == {B}, 10)

    assert _in_child(child) == 0


def test_a_document_of_the_source_is_what_the_file_said(
    feeder: Feeder, file_servers: FileServersFactory
) -> None:
    """document() gives the last usable file's content (for a health page)."""
    written = feeder.write([A, B])
    source = file_servers(feeder.path)
    assert source.document() == written
    assert json.loads(feeder.path.read_bytes())["serial"] == written.serial


@pytest.mark.process
def test_watching_starts_no_process_behind_the_apps_back(feeder: Feeder) -> None:
    """A library must not spawn children: an app that reaps with ``waitpid(-1)`` would reap
    them (a pre-fork master counts its workers that way) and ``subprocess`` would lose track of
    them. A fresh process that watches a file, inotify and all, starts no process."""
    feeder.write([A])
    script = (
        "import os, subprocess, sys\n"
        "spawned = []\n"
        "real_init = subprocess.Popen.__init__\n"
        "def tripwire(self, *args, **kwargs):\n"
        "    spawned.append(args[0] if args else kwargs.get('args'))\n"
        "    real_init(self, *args, **kwargs)\n"
        "subprocess.Popen.__init__ = tripwire\n"
        "from logclient import FileServers\n"
        f"source = FileServers({str(feeder.path)!r})\n"
        "source.start()\n"
        "assert source.wait_for(lambda s: len(s) == 1, 10)\n"
        "import time\n"
        "deadline = time.monotonic() + 10\n"
        "while source.stats().mode != 'inotify' and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "print(source.stats().mode, spawned)\n"
        "source.close()\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "inotify []"


def test_without_an_inotify_instance_the_file_is_polled(
    feeder: Feeder,
    file_servers: FileServersFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each watching process needs an inotify instance and Linux allows 128 per user by
    default: past that (EMFILE), the file is polled with stat, changes still arrive, and the log
    says why once."""
    import errno

    import logclient._filewatch as filewatch

    def exhausted() -> None:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    caplog.set_level(logging.INFO, "logclient.discovery")
    monkeypatch.setattr(filewatch, "open_inotify", exhausted)
    feeder.write([A])
    source = file_servers(feeder.path, poll_interval_s=0.05)
    feeder.write([B])
    assert source.wait_for(lambda s: s == {B}, 10)
    assert source.stats().mode == "poll"
    said = [r.getMessage() for r in caplog.records if "cannot use inotify" in r.getMessage()]
    assert len(said) == 1 and "Too many open files" in said[0]
