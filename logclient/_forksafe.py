"""Which process this is, cheaply: how a client made before ``fork()`` notices it is in a child.

Pre-fork servers (gunicorn ``--preload``, uWSGI without ``lazy-apps``, Celery's
prefork pool, ``multiprocessing`` with the fork start method) import the app,
and so make its client, in a parent that then forks workers. The child has a
copy of the client's memory but none of its threads, and may have locks that a
thread of the parent held at that moment. So a client checks, on every call,
whether it runs in the process it was made in, and if not starts afresh (see
``LogClient._enter_child``), lazily, on the child's first use.

The check on ``log()``'s path must cost next to nothing (``os.getpid()`` is a
system call, a fifth of a ``log()``): it compares with :data:`STATE.pid`,
which hooks keep current: ``os.register_at_fork(after_in_child=...)`` for
every fork made through Python, and uWSGI's post-fork hook, because uWSGI
forks its workers from C without running Python's fork hooks (unless
``--py-call-uwsgi-fork-hooks`` or ``--py-call-osafterfork``). The hooks only
store the new pid: a hook must not log or take a lock that another thread
could have held at fork time (CPython resets ``logging``'s locks in the child,
not ours), since a deadlocked child is worse than a lost line. The calls that
are not on the hot path (``flush()``, ``close()``, ``stats()``) check the real
pid, so a fork that ran no hook at all is still noticed there.
"""

from __future__ import annotations

import os
import sys
import threading

__all__ = ["STATE", "install", "process_lock"]


class _State:
    """The pid the hooks last saw (in the parent: this process's)."""

    __slots__ = ("pid",)

    def __init__(self) -> None:
        self.pid = os.getpid()


STATE = _State()
_installed_in: int | None = None
_locks: dict[int, threading.Lock] = {}


def _after_fork_in_child() -> None:
    """The fork hook: store the pid, nothing else (no lock, no logging, no thread)."""
    STATE.pid = os.getpid()


def install() -> None:
    """Set the hooks once per process (first client made); starts nothing."""
    global _installed_in
    pid = os.getpid()
    if _installed_in is not None:
        return
    _installed_in = pid
    STATE.pid = pid
    os.register_at_fork(after_in_child=_after_fork_in_child)
    _install_uwsgi_hook()


def _install_uwsgi_hook() -> None:
    """Inside uWSGI: run the hook in every worker it forks (its fork bypasses Python's hooks)."""
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None or not hasattr(uwsgi, "opt"):
        return
    try:
        import uwsgidecorators  # the chain apps share
    except Exception:
        uwsgidecorators = None
    chain = getattr(uwsgidecorators, "postfork_chain", None)
    if isinstance(chain, list):
        chain.append(_after_fork_in_child)
        return
    previous = getattr(uwsgi, "post_fork_hook", None)

    def hook() -> None:
        _after_fork_in_child()
        if previous is not None:
            previous()

    setattr(uwsgi, "post_fork_hook", hook)  # noqa: B010 - a C module's attribute


def process_lock() -> threading.Lock:
    """A lock of this process's own: never one a thread of a parent held at fork time.

    ``dict.setdefault`` is atomic under the GIL, so two threads of a new child
    get the same new lock.
    """
    pid = os.getpid()
    lock = _locks.get(pid)
    if lock is None:
        lock = _locks.setdefault(pid, threading.Lock())
        for other in [p for p in _locks if p != pid]:
            _locks.pop(other, None)
    return lock
