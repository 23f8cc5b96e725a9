"""What must hold for a client inside uWSGI, with a stand-in ``uwsgi`` module (the real
server is in tests/apps): no thread in a master that forks workers from C, the master's lines
sent once by the first worker, warnings for settings that lose or delay records, and the
``uwsgi.atexit`` chain.

The forks here are libc's ``fork()`` called through ctypes, as uWSGI forks: Python's fork
hooks do not run in the child.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from logclient import _uwsgi

from .conftest import InProcFactory
from .test_process import run_python

# A stand-in for the module uWSGI embeds: `master` is the master's pid (0: no master), the
# worker id is 0 in the master (or, without one, while the app loads) and 1.. in workers.
_FAKE_UWSGI = """
import ctypes, os, sys, types
uwsgi = types.ModuleType("uwsgi")
uwsgi.opt = {{"master": True, "processes": b"4"}}
uwsgi.opt.update({options})
uwsgi.numproc = 4
uwsgi.has_threads = 1
_master = os.getpid() if {with_master} else 0
_loader = os.getpid()
uwsgi.masterpid = lambda: _master
uwsgi.worker_id = lambda: 0 if os.getpid() == _loader and not worker_1 else 1
worker_1 = False
sys.modules["uwsgi"] = uwsgi
_libc = ctypes.CDLL(None, use_errno=True)

def c_fork():
    pid = _libc.fork()
    assert pid >= 0, ctypes.get_errno()
    return pid
"""


def _run_in_fake_uwsgi(
    endpoint: object,
    body: str,
    *,
    spool: str = "SpoolPolicy.disabled()",
    options: str = "{}",
    with_master: bool = True,
) -> None:
    """Run ``body`` in a new process under the stand-in uWSGI, with ``client`` made (in the
    master, or the loader without one) on a static list of ``endpoint``; it must pass."""
    script = (
        _FAKE_UWSGI.format(options=options, with_master=with_master)
        + "import threading\n"
        + "from logclient import LogClient, SpoolPolicy, StaticServers\n"
        + f"client = LogClient(servers=StaticServers([{str(endpoint)!r}]), spool={spool})\n"
        + body
        + "\nprint('ok')\n"
    )
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.fixture
def fake_uwsgi() -> Iterator[types.ModuleType]:
    """A stand-in ``uwsgi`` module in this process, removed afterwards."""
    module = types.ModuleType("uwsgi")
    module.opt = {"master": True, "processes": b"4"}  # type: ignore[attr-defined]
    module.masterpid = lambda: 1  # type: ignore[attr-defined]
    module.worker_id = lambda: 1  # type: ignore[attr-defined]
    module.numproc = 4  # type: ignore[attr-defined]
    module.has_threads = 1  # type: ignore[attr-defined]
    sys.modules["uwsgi"] = module
    try:
        yield module
    finally:
        sys.modules.pop("uwsgi", None)
        _uwsgi._exit_callbacks.clear()
        _uwsgi._checked_in = None
        _uwsgi._chained_in = None


@pytest.mark.process
def test_a_master_that_forks_from_c_gets_no_thread_and_its_lines_go_out_once(
    inproc: InProcFactory, tmp_path: Path
) -> None:
    """In a uWSGI master without --py-call-uwsgi-fork-hooks the client starts no thread (one
    could deadlock the workers) and takes no spool slot; flush() says False at once. Of the
    workers forked from C, the first to use the client sends the master's lines besides its
    own, the others (a worker respawned later too) only their own: each line is stored once."""
    server = inproc()
    _run_in_fake_uwsgi(
        server.endpoint,
        """
client.log("app", "master")
assert threading.active_count() == 1, threading.enumerate()
assert client.spool_directory is None
assert client.flush(5) is False
assert "deferred" in repr(client)
for n in range(3):
    pid = c_fork()
    if pid == 0:
        client.log("app", f"worker-{n}")
        assert client.flush(10)
        client.close()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
assert threading.active_count() == 1, threading.enumerate()
""",
        spool=f"SpoolPolicy(directory={str(tmp_path / 'spool')!r})",
    )
    assert sorted(server.messages()) == [b"master", b"worker-0", b"worker-1", b"worker-2"]


@pytest.mark.process
def test_a_master_that_closes_its_client_delivers_what_it_logged(inproc: InProcFactory) -> None:
    """close() in the master (no worker took its lines) starts the client just to deliver them,
    then stops every thread it started."""
    server = inproc()
    _run_in_fake_uwsgi(
        server.endpoint,
        """
client.log("app", "master")
client.close()
assert client.stats().acknowledged == 1, client.stats()
assert threading.active_count() == 1, threading.enumerate()
""",
    )
    assert server.messages() == [b"master"]


@pytest.mark.process
def test_without_a_master_the_loader_becomes_worker_1_and_lines_still_go_out_once(
    inproc: InProcFactory,
) -> None:
    """uWSGI without --master loads the app in what becomes worker 1, forks the others from
    C, then serves: the client waits for worker 1's first call after loading, and the
    loading-time lines go out once (sent by whichever process claimed them first)."""
    server = inproc()
    _run_in_fake_uwsgi(
        server.endpoint,
        """
client.log("app", "loaded")
pid = c_fork()
if pid == 0:
    client.log("app", "worker-2")
    client.close()
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
worker_1 = True
client.log("app", "worker-1")
assert client.flush(10)
client.close()
""",
        with_master=False,
    )
    assert sorted(server.messages()) == [b"loaded", b"worker-1", b"worker-2"]


@pytest.mark.process
def test_with_uwsgi_fork_hooks_the_master_runs_its_client(inproc: InProcFactory) -> None:
    """--py-call-uwsgi-fork-hooks: uWSGI forks as os.fork() does, so the master's client
    starts its thread and sends at once, like any other."""
    server = inproc()
    _run_in_fake_uwsgi(
        server.endpoint,
        """
client.log("app", "master")
assert client.flush(10)
client.close()
""",
        options='{"py-call-uwsgi-fork-hooks": True}',
    )
    assert server.messages() == [b"master"]


@pytest.mark.parametrize(
    ("opt", "forks_later"),
    [
        ({"master": True}, True),
        ({"master": True, "py-call-uwsgi-fork-hooks": True}, False),
        ({"master": True, "py-call-uwsgi-fork-hooks": b"true"}, False),
        ({"master": True, "py-call-uwsgi-fork-hooks": b"false"}, True),
        ({"master": True, "py-call-osafterfork": True}, True),
    ],
)
def test_which_uwsgi_processes_must_not_start_threads(
    fake_uwsgi: types.ModuleType, opt: dict[str, object], forks_later: bool
) -> None:
    """Only --py-call-uwsgi-fork-hooks makes uWSGI's fork safe for threads
    (--py-call-osafterfork runs Python's hooks, but after the worker waited for the GIL)."""
    import os

    fake_uwsgi.opt = opt  # type: ignore[attr-defined]
    fake_uwsgi.masterpid = lambda: os.getpid()  # type: ignore[attr-defined]
    assert _uwsgi.master_forks_later() is forks_later
    fake_uwsgi.masterpid = lambda: os.getpid() + 1  # type: ignore[attr-defined]
    assert _uwsgi.master_forks_later() is False  # a worker


def test_without_uwsgi_nothing_is_deferred() -> None:
    assert "uwsgi" not in sys.modules
    assert _uwsgi.master_forks_later() is False


def test_settings_that_delay_or_lose_records_are_named_once(
    fake_uwsgi: types.ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    """Threads off (uWSGI < 2.0.27 without --enable-threads) and --skip-atexit each get one
    warning per process, naming the option."""
    fake_uwsgi.has_threads = 0  # type: ignore[attr-defined]
    fake_uwsgi.opt = {"master": True, "skip-atexit": True}  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="logclient"):
        _uwsgi.check_once()
        _uwsgi.check_once()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2, messages
    assert "--enable-threads" in messages[0]
    assert "--skip-atexit" in messages[1]


def test_uwsgi_atexit_closes_the_clients_then_calls_the_apps_own(
    fake_uwsgi: types.ModuleType,
) -> None:
    """--skip-atexit-teardown skips Python's atexit but calls uwsgi.atexit: the client chains
    it (before the app's own hook, which still runs) and unchains itself when closed."""
    calls: list[str] = []
    fake_uwsgi.atexit = lambda: calls.append("app")  # type: ignore[attr-defined]

    def first() -> None:
        calls.append("first")

    def second() -> None:
        calls.append("second")

    _uwsgi.on_exit(first)
    _uwsgi.on_exit(second)
    _uwsgi.on_exit(first)
    _uwsgi.remove_on_exit(second)
    fake_uwsgi.atexit()  # type: ignore[attr-defined]
    assert calls == ["first", "app"]
