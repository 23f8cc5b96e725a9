"""What a client must know when it runs inside uWSGI (all of it read from the ``uwsgi`` module).

uWSGI embeds Python and forks its workers from C, which differs from every
other pre-fork server in three ways that matter to a client with threads:

- **A thread in the master can deadlock the workers.** Without
  ``--lazy-apps`` the app (and so its client) is loaded in the master, which
  then forks the workers; unless ``--py-call-uwsgi-fork-hooks`` (uWSGI >=
  2.0.21) is set, it forks without taking the GIL first, so a worker forked
  while one of the master's threads held the GIL waits for it for ever (uWSGI
  issue 2387: the worker never serves a request, and a stop waits out
  ``--worker-reload-mercy``). Python's fork hooks (``os.register_at_fork``) do
  not run either. So a client made in such a master starts no thread there
  (:func:`master_forks_later`): each worker starts its own on first use, and
  the first worker to use it also sends what the master logged.
- **Threads may not run.** Before uWSGI 2.0.27 Python threads are off unless
  ``--enable-threads``: the worker then holds the GIL while it waits for a
  request, and a client's sender thread only runs while a request runs Python
  code. The client warns.
- **The master never runs atexit handlers**, and a worker runs them only when
  it ends normally and idle: ``--skip-atexit`` ends workers with ``_exit()``
  (the client warns: what a worker had not sent is lost), and
  ``--skip-atexit-teardown`` skips Python's own atexit handlers but still calls
  ``uwsgi.atexit``, which the client chains (:func:`on_exit`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["check_once", "master_forks_later", "on_exit", "remove_on_exit"]

logger = logging.getLogger("logclient")

_FALSE = {b"", b"0", b"false", b"no", b"off", "", "0", "false", "no", "off"}
_checked_in: int | None = None
_exit_callbacks: list[Callable[[], None]] = []
_chained_in: int | None = None
_previous_atexit: Callable[[], None] | None = None


def _module() -> Any:
    """The ``uwsgi`` module when running inside uWSGI (it has ``opt``), else None."""
    uwsgi = sys.modules.get("uwsgi")
    return uwsgi if uwsgi is not None and hasattr(uwsgi, "opt") else None


def _option(uwsgi: Any, name: str) -> bool:
    """Whether uWSGI option ``name`` is on (a flag is True, a value is bytes such as b"true")."""
    value = uwsgi.opt.get(name)
    if value is None or value is False:
        return False
    if isinstance(value, list):  # an option given several times
        value = value[-1]
    if isinstance(value, bytes | str):
        return value.strip().lower() not in _FALSE
    return bool(value)


def master_forks_later() -> bool:
    """True in a uWSGI process that will fork workers from C without Python's fork hooks.

    That is the master (``--master``), or without a master the process that
    loads the app before it forks the other workers and becomes worker 1; and
    ``--py-call-uwsgi-fork-hooks`` is off (with it uWSGI takes the GIL before
    forking and runs Python's fork hooks, as ``os.fork()`` does).
    """
    uwsgi = _module()
    if uwsgi is None or _option(uwsgi, "py-call-uwsgi-fork-hooks"):
        return False
    try:
        master = int(uwsgi.masterpid())
        if master:
            return os.getpid() == master
        return int(uwsgi.worker_id()) == 0 and int(uwsgi.numproc) > 1
    except Exception:  # an embedding that lacks these calls: not a uWSGI we know
        return False


def check_once() -> None:
    """Warn (once per process) about uWSGI settings under which records wait or are lost."""
    global _checked_in
    uwsgi = _module()
    pid = os.getpid()
    if uwsgi is None or _checked_in == pid:
        return
    _checked_in = pid
    if not getattr(uwsgi, "has_threads", True):
        logger.warning(
            "logclient under uWSGI without --enable-threads: the worker holds the GIL while "
            "it waits for requests, so records are sent only while a request runs; "
            "pass --enable-threads"
        )
    if _option(uwsgi, "skip-atexit"):
        logger.warning(
            "logclient under uWSGI with --skip-atexit: workers end with _exit() and what a "
            "worker has not sent yet is lost; drop --skip-atexit or call close() yourself"
        )
    if master_forks_later():
        logger.info(
            "logclient in the uWSGI master without --py-call-uwsgi-fork-hooks or --lazy-apps: "
            "no thread here (one could deadlock the workers uWSGI forks); each worker starts "
            "its own client on first use, the first one also sends what the master logged"
        )


def _run_exit_callbacks() -> None:
    """What ``uwsgi.atexit`` runs once a client is made: the clients' closes, then the app's."""
    for each in list(_exit_callbacks):
        each()
    if _previous_atexit is not None:
        _previous_atexit()


def on_exit(callback: Callable[[], None]) -> None:
    """In a uWSGI worker, also run ``callback`` from ``uwsgi.atexit`` (chained, once each)."""
    global _chained_in, _previous_atexit
    uwsgi = _module()
    if uwsgi is None:
        return
    pid = os.getpid()
    if _chained_in != pid:
        # A child's copy of the list holds its parent's clients, which it must not close.
        _exit_callbacks.clear()
        _chained_in = pid
    if getattr(uwsgi, "atexit", None) is not _run_exit_callbacks:
        _previous_atexit = getattr(uwsgi, "atexit", None)
        uwsgi.atexit = _run_exit_callbacks
    if callback not in _exit_callbacks:
        _exit_callbacks.append(callback)


def remove_on_exit(callback: Callable[[], None]) -> None:
    """Forget ``callback`` (the client closed)."""
    if callback in _exit_callbacks:
        _exit_callbacks.remove(callback)
