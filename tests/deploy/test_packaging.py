"""A plain ``pip install logservice`` is the client: an app gets logclient without the server's
and the demo's dependencies, and the server's commands say in one line which extra they need.

The wheel is built from this checkout and installed into a fresh virtualenv
(dependencies from the package index), as an application would install it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import logserver
import logwire

ROOT = Path(__file__).resolve().parents[2]
SERVER_AND_DEMO_ONLY = ("rich", "prometheus_client", "structlog", "matplotlib")

pytestmark = [pytest.mark.slow, pytest.mark.process, pytest.mark.timeout(600)]


def run(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv with the wheel of this checkout installed, no extras."""
    base = tmp_path_factory.mktemp("packaging")
    wheels = base / "wheels"
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, ROOT, cwd=base
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("logservice-*.whl")
    venv = base / "venv"
    made = run(sys.executable, "-m", "venv", venv, cwd=base)
    assert made.returncode == 0, made.stderr
    installed = run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=base)
    assert installed.returncode == 0, installed.stderr[-3000:]
    yield venv


def python(venv: Path, code: str) -> subprocess.CompletedProcess[str]:
    # Run outside the checkout, so that the installed packages are imported, not the sources.
    return run(venv / "bin" / "python", "-c", code, cwd=venv)


def test_the_plain_install_brings_only_the_client_dependencies(client_venv: Path) -> None:
    """thriftpy2, kazoo (and zstandard) come with it; structlog, prometheus-client, rich, matplotlib do not."""
    listed = run(
        client_venv / "bin" / "python", "-m", "pip", "list", "--format=json", cwd=client_venv
    )
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert {"logservice", "thriftpy2", "kazoo"} <= names
    assert names.isdisjoint({"structlog", "prometheus-client", "rich", "matplotlib"})


def test_an_app_imports_logclient_without_server_code_or_its_dependencies(
    client_venv: Path,
) -> None:
    """``import logclient`` (and a static server list) works and loads none of the server's
    dependencies, nor kazoo; the package is the installed one, not the checkout."""
    done = python(
        client_venv,
        f"""
import sys
import logclient
from logclient import LogClient, LogServerHandler, LogServerLoggerFactory, StaticServers
assert "site-packages" in logclient.__file__, logclient.__file__
heavy = {(*SERVER_AND_DEMO_ONLY, "kazoo", "logserver")!r}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
assert not loaded, loaded
print("ok")
""",
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_the_version_has_one_source(client_venv: Path) -> None:
    """The installed distribution's version is logwire's ``__version__``, which logserver repeats."""
    assert "version" not in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert logserver.__version__ == logwire.__version__
    done = python(
        client_venv,
        "import importlib.metadata, logwire, logserver;"
        "print(importlib.metadata.version('logservice'), logwire.__version__, logserver.__version__)",
    )
    assert done.stdout.split() == [logwire.__version__] * 3, done.stderr


def test_logserver_help_works_and_server_commands_name_their_extra(
    client_venv: Path, tmp_path: Path
) -> None:
    """``logserver --help`` works from a plain install; ``serve``, ``cluster start`` and ``demo``
    exit 1 with one line naming the extra to install, not a traceback."""
    logserver_cmd = client_venv / "bin" / "logserver"
    helped = run(logserver_cmd, "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "serve" in helped.stdout and "demo" in helped.stdout
    for args, extra in (
        (["serve", "--zk", "127.0.0.1:1", "--data-dir", str(tmp_path / "data")], "server"),
        (["cluster", "start", "--dir", str(tmp_path / "cluster")], "server"),
        (["demo", "--out", str(tmp_path / "demo")], "demo"),
    ):
        done = run(logserver_cmd, *args, cwd=tmp_path)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        (line,) = done.stderr.splitlines()
        assert f"pip install 'logservice[{extra}]'" in line, line
        assert done.stdout == ""
    assert not (tmp_path / "data").exists() and not (tmp_path / "cluster").exists()


def test_list_and_cat_work_from_the_plain_install(
    client_venv: Path, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    """The read-only commands need only the client's dependencies (thriftpy2, kazoo)."""
    logserver_cmd = client_venv / "bin" / "logserver"
    listed = run(logserver_cmd, "list", "--zk", zk_hosts, "--zk-path", zk_path, cwd=tmp_path)
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "", "")
    (tmp_path / "data").mkdir()
    cat = run(logserver_cmd, "cat", "app", "--data-dir", tmp_path / "data", cwd=tmp_path)
    assert (cat.returncode, cat.stdout, cat.stderr) == (0, "", "")


def test_structlog_integration_works_once_the_app_installs_structlog(client_venv: Path) -> None:
    """An app that has structlog (not a dependency of ours) routes its events into LogClient."""
    installed = run(
        client_venv / "bin" / "python", "-m", "pip", "install", "-q", "structlog", cwd=client_venv
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    done = python(
        client_venv,
        """
import structlog
from logclient import LogClient, LogServerLoggerFactory, SpoolPolicy, StaticServers
client = LogClient(servers=StaticServers(["127.0.0.1:1"]), spool=SpoolPolicy.disabled())
structlog.configure(
    processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
    logger_factory=LogServerLoggerFactory(client, category="app"),
)
structlog.get_logger("shop").info("order placed", order_id=42)
assert client.stats().logged == 1, client.stats()
client.close(timeout=1)
print("ok")
""",
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_the_discovery_agent_runs_from_the_plain_install(
    client_venv: Path, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    """The agent runs on app hosts, which have the plain install: it needs nothing more, writes
    the servers file, and on SIGTERM exits 0 leaving the list marked ``stopped``."""
    from logserver.tools.launcher import wait_for
    from logwire.serversfile import ServersFileError, parse

    file = tmp_path / "servers.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        agent = subprocess.Popen(
            [client_venv / "bin" / "logserver", "discovery-agent", "--zk", zk_hosts,
             "--zk-path", zk_path, "--file", file],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def written() -> object:
        assert agent.poll() is None, log.read_text()
        try:
            return parse(file.read_bytes())
        except (OSError, ServersFileError):
            return None

    try:
        document = wait_for(written, 30, what="the agent to write its file")
        assert (document.state, document.servers) == ("current", frozenset())  # type: ignore[attr-defined]
    finally:
        agent.terminate()
        assert agent.wait(20) == 0, log.read_text()
    assert parse(file.read_bytes()).state == "stopped"
    assert "agent_started" in log.read_text() and "Traceback" not in log.read_text()
