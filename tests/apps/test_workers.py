"""What must hold for an app whose client is used from several processes: pre-fork servers
(gunicorn --preload, uWSGI without lazy-apps), a multiprocessing pool, a plain os.fork(), and
the start methods that do not fork the client (forkserver, spawn).

Everything is real: ZooKeeper, ``logserver serve`` processes (registered under the test's
path), the application servers serving HTTP over loopback, and what was stored is read back
from the servers. Each line the app logged must be stored exactly once.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from logserver.tools.launcher import free_port, wait_for
from tests.conftest import ServerFactory
from tests.readback import read_unique

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REQUESTS = 120
MAX_REQUESTS = 10
#: The worker processes of the pre-fork servers (gunicorn -w, uWSGI --processes).
WORKERS = 4


def _env(zk_hosts: str, zk_path: str, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        APP_ZK_HOSTS=zk_hosts,
        APP_ZK_PATH=zk_path,
        XDG_STATE_HOME=str(tmp_path / "state"),
        APP_MEET_DIR=str(tmp_path / "meet"),
        PYTHONPATH=str(ROOT),
    )
    return env


def _get(port: int, path: str, timeout: float = 30) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, (response.status, body)
        return body
    finally:
        conn.close()


def _up(port: int) -> bool:
    with contextlib.suppress(OSError, http.client.HTTPException):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/")
        conn.getresponse().read()
        conn.close()
        return True
    return False


def _in_threads(paths: list[str], port: int, threads: int, timeout: float) -> set[str]:
    """GET every one of ``paths``, spread over ``threads`` threads; the pids that answered."""
    pids: set[str] = set()
    errors: list[BaseException] = []

    def run(start: int) -> None:
        try:
            for path in paths[start::threads]:
                pids.add(_get(port, path, timeout))
        except BaseException as exc:
            errors.append(exc)

    running = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(2 * timeout)
    assert not any(t.is_alive() for t in running), "a request hung"
    assert not errors, errors
    return pids


def _serve_requests(port: int, count: int) -> None:
    """Serve requests 0 .. count-1, every worker some of them.

    The first WORKERS requests are sent at once and held in the app until all of them are
    there (``?together=``): a worker serves one request at a time, so they are served by
    WORKERS different workers, whichever way the kernel hands out connections and however
    slowly the workers start on a loaded machine. The others follow from 6 threads."""
    together = [f"/r/{n}?together={WORKERS}" for n in range(WORKERS)]
    pids = _in_threads(together, port, WORKERS, timeout=90)
    assert len(pids) == WORKERS, f"requests held together were served by {pids}"
    _in_threads([f"/r/{n}" for n in range(WORKERS, count)], port, 6, timeout=30)


def _messages(endpoints: list[str]) -> Counter[str]:
    """Each stored record's message (the JSON ``message`` of the handler's lines), counted."""
    found: Counter[str] = Counter()
    for record in read_unique(endpoints, "app"):
        text = record.message.decode()
        found[json.loads(text)["message"] if text.startswith("{") else text] += 1
    return found


def _run_server(
    argv: list[str], env: dict[str, str], port: int, log: Path
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(lambda: process.poll() is not None or _up(port), 60, what=f"{argv[0]} to serve")
    except BaseException:
        process.kill()
        raise
    assert process.poll() is None, log.read_text()[-3000:]
    return process


def _stop(process: subprocess.Popen[bytes], log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        pytest.fail(f"the server did not stop on SIGTERM:\n{log.read_text()[-3000:]}")


@pytest.fixture
def two_servers(logserver_factory: ServerFactory) -> list[str]:
    return [logserver_factory().endpoint, logserver_factory().endpoint]


def _check_requests(endpoints: list[str], log: Path, loads: int = 1) -> None:
    stored = _messages(endpoints)
    requests = {m: n for m, n in stored.items() if m.startswith("request ")}
    missing = [n for n in range(REQUESTS) if f"request {n}" not in requests]
    assert not missing, (
        f"{len(missing)} requests' lines lost; server log:\n{log.read_text()[-3000:]}"
    )
    assert set(requests.values()) == {1}, "a line stored more than once"
    assert len(requests) == REQUESTS
    loaded = {m: n for m, n in stored.items() if m.startswith("app loaded")}
    assert len(loaded) == loads, f"{loaded}; server log:\n{log.read_text()[-3000:]}"
    assert set(loaded.values()) == {1}, "a line stored more than once"


def test_gunicorn_preload_workers_deliver_every_request_once(
    two_servers: list[str], zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    """gunicorn --preload -w 4: the app (and its LogServerHandler's client) is made in the
    master, the workers are forked and each serves requests; every request's line reaches
    the servers exactly once after a graceful stop (SIGTERM: the workers end with sys.exit,
    atexit flushes)."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    process = _run_server(
        [
            str(BIN / "gunicorn"),
            "--preload",
            "-w",
            str(WORKERS),
            # Above the 60 s a request may be held (wsgi_app's together=): the master must not
            # take a held worker for a hung one.
            "--timeout",
            "120",
            "-b",
            f"127.0.0.1:{port}",
            "tests.apps.wsgi_app:application",
        ],
        _env(zk_hosts, zk_path, tmp_path),
        port,
        log,
    )
    try:
        _serve_requests(port, REQUESTS)
    finally:
        _stop(process, log)
    _check_requests(two_servers, log)


_UWSGI_VARIANTS = {
    # The app loaded in the master, workers forked from C without Python's fork hooks: the
    # master's client starts nothing; each worker starts its own, the first also sends the
    # master's lines.
    "forked-app": [],
    # The same with workers recycled after 10 requests: respawned workers (forked from the
    # master long after the first) deliver their own lines and never resend the master's.
    "recycled-workers": ["--max-requests", str(MAX_REQUESTS), "--min-worker-lifetime", "0"],
    # Python's atexit handlers do not run in a worker that ends; uwsgi.atexit still does.
    "skip-atexit-teardown": ["--skip-atexit-teardown"],
    # uWSGI takes the GIL and runs Python's fork hooks around its fork: the master's client
    # runs there as under gunicorn --preload.
    "fork-hooks": ["--py-call-uwsgi-fork-hooks"],
    # Each worker loads the app itself: no client crosses a fork.
    "lazy-apps": ["--lazy-apps"],
}


def _uwsgi_workers(stats: Path) -> list[dict[str, object]]:
    """The workers as uWSGI's stats server (``--stats``, a unix socket) describes them."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(stats))
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    workers: list[dict[str, object]] = json.loads(data)["workers"]
    return workers


def _idle(workers: list[dict[str, object]], recycle_after: int | None) -> bool:
    """Every worker alive and waiting for a request (and, when workers are recycled, none
    about to end): uWSGI skips the atexit handlers of a worker stopped while busy, and a
    worker signalled before it is ready to accept may still run the master's handler."""
    return all(
        int(str(w["pid"])) > 0
        and w["status"] == "idle"
        and w.get("accepting") == 1
        and (recycle_after is None or int(str(w["delta_requests"])) < recycle_after)
        for w in workers
    )


@pytest.mark.parametrize("variant", list(_UWSGI_VARIANTS))
def test_uwsgi_workers_deliver_every_request_once(
    two_servers: list[str], zk_hosts: str, zk_path: str, tmp_path: Path, variant: str
) -> None:
    """uWSGI with a master and 4 workers, each serving requests, stopped with SIGTERM and
    --die-on-term once they are idle: every request's line is stored exactly once, and so is every line the app logged
    while it was loaded (once per load: in the master, or in each worker with lazy-apps)."""
    port = free_port()
    log = tmp_path / "uwsgi.log"
    stats = tmp_path / "stats.sock"
    argv = [
        str(BIN / "uwsgi"),
        "--stats",
        str(stats),
        "--http-socket",
        f"127.0.0.1:{port}",
        "--master",
        "--processes",
        str(WORKERS),
        "--enable-threads",
        "--die-on-term",
        "--need-app",
        "--module",
        "tests.apps.wsgi_app:application",
        "--chdir",
        str(ROOT),
        *_UWSGI_VARIANTS[variant],
    ]
    lazy = variant == "lazy-apps"
    process = _run_server(argv, _env(zk_hosts, zk_path, tmp_path), port, log)
    try:
        # Every worker ready (with lazy-apps each loads the app when it starts).
        wait_for(
            lambda: (
                log.read_text().count("WSGI app 0 (mountpoint='') ready")
                >= (WORKERS if lazy else 1)
                and log.read_text().count("spawned uWSGI worker") >= WORKERS
            ),
            60,
            what=f"{WORKERS} uWSGI workers",
        )
        _serve_requests(port, REQUESTS)
        recycle_after = MAX_REQUESTS if variant == "recycled-workers" else None
        wait_for(lambda: _idle(_uwsgi_workers(stats), recycle_after), 60, what="idle uWSGI workers")
    finally:
        _stop(process, log)
    _check_requests(two_servers, log, loads=WORKERS if lazy else 1)


@pytest.mark.parametrize(
    "mode",
    [
        "fork-pool",
        "os-fork",
        "forkserver",
        "spawn",
    ],
)
def test_worker_processes_deliver_every_line_once(
    two_servers: list[str], zk_hosts: str, zk_path: str, tmp_path: Path, mode: str
) -> None:
    """A multiprocessing pool with the fork start method whose parent made the client (close()
    and join(): the workers end through os._exit after multiprocessing's finalizers), children
    of a plain os.fork() ending with sys.exit, and forkserver/spawn pools whose workers make
    their own clients: every line is stored once, the parent's too."""
    tasks = 40
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.apps.mp_app",
            mode,
            zk_hosts,
            zk_path,
            str(tmp_path / "spool"),
            str(tasks),
        ],
        cwd=ROOT,
        env=_env(zk_hosts, zk_path, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("DONE"), result.stdout
    stored = _messages(two_servers)
    expected = {f"task {n}" for n in range(tasks)} | {"parent-after"}
    if mode in ("fork-pool", "os-fork"):
        expected.add("parent-before")
    assert set(stored) == expected
    assert set(stored.values()) == {1}
