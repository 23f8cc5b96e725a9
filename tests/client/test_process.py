"""What must hold for an application process that embeds logclient (real subprocesses)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from logclient import SpoolPolicy
from logclient._spool import Spool

from .conftest import InProcFactory

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_logwire_loads_kazoo_only_for_its_zookeeper_client() -> None:
    """Every logwire module but zkclient (and idl, which is thriftpy2's) imports nothing heavy:
    the backoff, ServerSet and TLS policy are usable without kazoo; zkclient brings kazoo."""
    result = run_python(
        """
        import sys
        import logwire, logwire.backoff, logwire.batchid, logwire.categories, logwire.packed
        import logwire.serverset, logwire.zktls
        heavy = ("kazoo", "thriftpy2", "structlog", "logserver", "logclient")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
        assert not loaded, loaded
        import logwire.zkclient
        assert "kazoo.client" in sys.modules
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_importing_logclient_is_cheap_and_quiet() -> None:
    """An app importing logclient loads no server code (logserver), no kazoo or thriftpy2,
    and starts no thread."""
    result = run_python(
        """
        import sys, threading
        import logclient
        from logclient import LogClient, LogServerHandler, LogServerLoggerFactory
        loaded = sorted(m for m in sys.modules
                        if m.split(".")[0] in ("logserver", "kazoo", "thriftpy2", "structlog"))
        assert not loaded, loaded
        assert threading.active_count() == 1, threading.enumerate()
        import logging
        assert any(isinstance(h, logging.NullHandler)
                   for h in logging.getLogger("logclient").handlers)
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_a_running_client_never_imports_server_code(inproc: InProcFactory) -> None:
    """Also with a client started, connected and sending, no logserver module is loaded."""
    server = inproc()
    result = run_python(
        f"""
        import sys
        from logclient import LogClient, SpoolPolicy, StaticServers
        with LogClient(servers=StaticServers(["{server.endpoint}"]),
                       spool=SpoolPolicy.disabled()) as client:
            client.log("app", "hello")
            assert client.flush(10)
        assert not any(m.startswith("logserver") for m in sys.modules)
        # A static server list needs no ZooKeeper client.
        assert not any(m.startswith("kazoo") for m in sys.modules)
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert server.messages() == [b"hello"]


def test_records_are_delivered_at_exit_without_close(inproc: InProcFactory) -> None:
    """An app that exits without close() still delivers what it logged (atexit flush)."""
    server = inproc()
    result = run_python(
        f"""
        from logclient import LogClient, SpoolPolicy, StaticServers, BatchPolicy
        client = LogClient(servers=StaticServers(["{server.endpoint}"]),
                           spool=SpoolPolicy.disabled(), batching=BatchPolicy(linger_s=5))
        for i in range(1000):
            client.log("app", f"m{{i}}")
        """
    )
    assert result.returncode == 0, result.stderr
    assert server.messages() == [f"m{i}".encode() for i in range(1000)]


def test_records_are_spooled_at_exit_when_no_server_answers(tmp_path: Path) -> None:
    """An app exiting without close() while no server is reachable keeps its records in the
    spool, promptly (it does not wait out the whole close timeout)."""
    spool_dir = tmp_path / "spool"
    result = run_python(
        f"""
        import time
        from logclient import LogClient, SpoolPolicy, StaticServers
        client = LogClient(servers=StaticServers(["127.0.0.1:1"]),
                           spool=SpoolPolicy(directory="{spool_dir}"))
        for i in range(500):
            client.log("app", f"m{{i}}")
        """,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    spool = Spool.open(SpoolPolicy(directory=spool_dir))
    assert spool.records == 500
    spool.close()


def test_a_closed_client_leaves_no_atexit_hook() -> None:
    """close() unregisters the exit hook: nothing of the client runs at interpreter exit."""
    result = run_python(
        """
        from logclient import LogClient, SpoolPolicy, StaticServers
        from logclient import _client
        original = _client.LogClient._atexit
        def traced(self):
            print("ATEXIT RAN")
            original(self)
        _client.LogClient._atexit = traced
        open_client = LogClient(servers=StaticServers([]), spool=SpoolPolicy.disabled())
        closed = LogClient(servers=StaticServers([]), spool=SpoolPolicy.disabled())
        closed.close()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ATEXIT RAN") == 1  # the open one only


def test_a_client_inherited_through_fork_works_in_the_child(
    inproc: InProcFactory, tmp_path: Path
) -> None:
    """fork() does not copy the sender thread: the child's copy of the client starts afresh on
    first use (a producer, queue, spool slot and sender of its own), delivers what the child
    logged when it exits, and never sends what the parent logged before the fork; the
    parent's client is unaffected and keeps its spool."""
    server = inproc()
    spool = tmp_path / "spool"
    result = run_python(
        f"""
        import os, sys
        from logclient import LogClient, SpoolPolicy, StaticServers
        client = LogClient(servers=StaticServers(["{server.endpoint}"]),
                           spool=SpoolPolicy(directory="{spool}"))
        client.log("app", "parent-before")
        pid = os.fork()
        if pid == 0:
            client.log("app", "child")
            assert client.spool_directory.parent.name == "forked", client.spool_directory
            sys.exit(0)  # atexit delivers
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        client.log("app", "parent-after")
        assert client.flush(10)
        assert client.spool_directory == __import__("pathlib").Path("{spool}")
        client.close()
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert sorted(server.messages()) == [b"child", b"parent-after", b"parent-before"]
    producers = {b.producer for b in server.batches()}
    assert len(producers) == 2
