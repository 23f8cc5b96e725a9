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
which ``os.register_at_fork(after_in_child=...)`` keeps current for every fork
made through Python. The hook only stores the new pid: a hook must not log or
take a lock that another thread could have held at fork time (CPython resets
``logging``'s locks in the child, not ours), since a deadlocked child is worse
than a lost line. uWSGI forks its workers from C without running that hook
(unless ``--py-call-uwsgi-fork-hooks``); a client in its master starts nothing
there (see :mod:`logclient._uwsgi`) and so always takes the slow path, which
reads the real pid. The calls that are not on the hot path (``flush()``,
``close()``, ``stats()``) check the real pid too.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import threading

__all__ = ["STATE", "Inheritance", "install", "process_lock"]


class _State:
    """The pid the hook last saw (in the parent: this process's)."""

    __slots__ = ("pid",)

    def __init__(self) -> None:
        self.pid = os.getpid()


STATE = _State()
_installed = False
_locks: dict[tuple[int, str], threading.Lock] = {}


def _after_fork_in_child() -> None:
    """The fork hook: store the pid, nothing else (no lock, no logging, no thread)."""
    STATE.pid = os.getpid()


def install() -> None:
    """Once per process, on the thread that makes the first client, before it starts a thread.

    Sets the fork hook, and imports now what the client's threads would
    otherwise import on first use: a ``fork()`` while a thread is importing a
    module leaves the child with that module half made and its import lock
    held for ever. ``socket.getaddrinfo`` encodes a host name with the
    ``idna`` codec, whose module is imported on the first lookup: a child
    forked while kazoo's connection thread made that first lookup got
    ``LookupError: unknown encoding: idna``, and its ZooKeeper session never
    started.
    """
    global _installed
    STATE.pid = os.getpid()
    if _installed:
        return
    _installed = True
    codecs.lookup("idna")
    os.register_at_fork(after_in_child=_after_fork_in_child)


def process_lock(name: str = "client") -> threading.Lock:
    """A lock of this process's own: never one a thread of a parent held at fork time.

    One per ``name`` (the clients share one, the servers file watcher has its
    own, as a client may restart the watcher while it holds its lock).
    ``dict.setdefault`` is atomic under the GIL, so two threads of a new child
    get the same new lock.
    """
    key = (os.getpid(), name)
    lock = _locks.get(key)
    if lock is None:
        lock = _locks.setdefault(key, threading.Lock())
        for other in [k for k in list(_locks) if k[0] != key[0]]:
            _locks.pop(other, None)
    return lock


class Inheritance:
    """Lets exactly one child of this process claim something the parent leaves behind.

    A pipe holding one byte, made in the parent: the children share it, and a
    read of one byte is atomic, so the first child to :meth:`claim` gets it and
    every other (later, or forked later) gets nothing. Nothing is written
    after that, so a child forked hours later (a respawned worker) never
    claims again. Costs the parent one descriptor while it holds the claim.
    """

    def __init__(self) -> None:
        read, write = os.pipe()
        os.write(write, b"\1")
        os.close(write)
        os.set_blocking(read, False)
        self._read: int | None = read

    def __repr__(self) -> str:
        return f"<Inheritance fd={self._read}>"

    def claim(self) -> bool:
        """In a child: True for the first caller of all the parent's children."""
        if self._read is None:
            return False
        try:
            return os.read(self._read, 1) == b"\1"
        except OSError:  # BlockingIOError: an earlier child took it
            return False

    def close(self) -> None:
        """Drop this process's descriptor (in a child after :meth:`claim`, or when done)."""
        fd, self._read = self._read, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
