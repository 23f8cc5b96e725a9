"""A small WSGI app, as a pre-fork server runs it: its logging config adds a LogServerHandler
at import (so, under ``gunicorn --preload`` or uWSGI without ``lazy-apps``, in the parent that
then forks the workers).

Environment: ``APP_ZK_HOSTS``, ``APP_ZK_PATH``; the spool is the default one (a free slot
under ``$XDG_STATE_HOME``), which every worker can take, also when each imports the app
(uWSGI ``--lazy-apps``).
``GET /r/<id>`` logs ``request <id>`` (category ``app``) and answers the worker's pid.
``GET /r/<id>?together=<n>`` first waits (up to 60 s, else 503) until ``n`` such requests
are being served at once, counted by files in ``$APP_MEET_DIR``: a worker serves one request
at a time, so ``n`` requests that met were served by ``n`` different workers.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from logclient import BatchPolicy, LogServerHandler, SpoolPolicy

# logclient's warnings go to stderr (the server's log), for a reader of a failed test. Not its
# INFO lines: a thread of the master writing to stderr just as the server forks leaves that
# worker's stderr locked for ever (CPython resets logging's locks at fork, not io's), and
# discovery's threads say at INFO when they connect, which is when the workers are forked.
_own = logging.StreamHandler()
_own.setFormatter(logging.Formatter("%(process)d %(name)s %(levelname)s %(message)s"))
logging.getLogger("logclient").addHandler(_own)
logging.getLogger("logclient").setLevel(logging.WARNING)

handler = LogServerHandler(
    category="app",
    zk_hosts=os.environ["APP_ZK_HOSTS"],
    zk_path=os.environ["APP_ZK_PATH"],
    batching=BatchPolicy(linger_s=0.01),
    spool=SpoolPolicy(),
)
log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.addHandler(handler)
log.propagate = False
log.info("app loaded in %d", os.getpid())


def _meet(together: int, request: str) -> bool:
    """Wait until ``together`` requests are here (each leaves a file); False after 60 s."""
    directory = Path(os.environ["APP_MEET_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{request}-{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while len(os.listdir(directory)) < together:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def application(
    environ: dict[str, Any], start_response: Callable[[str, list[tuple[str, str]]], Any]
) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if not path.startswith("/r/"):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    if "together" in query and not _meet(int(query["together"][0]), path[3:]):
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"the other requests did not come within 60 s\n"]
    log.info("request %s", path[3:])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
