"""One thread per process watches every servers file that any :class:`~logclient.FileServers` reads.

A process with 200 clients on the same file has one thread ("logclient-files"),
one inotify instance with one watch per directory, and reads the file once
per change, not 200 times. The thread starts with the first file watched and
ends when the last is unwatched, so ``close()`` of the last source stops it.

How a change is noticed:

- **inotify** (Linux): the directory is watched; any write, rename or delete in
  it makes the thread ``stat`` the files it watches there (a rename of a
  symlink beside the file, as Kubernetes does, is noticed too). A ``stat``
  every :data:`SAFETY_INTERVAL_S` catches what inotify cannot see (a network
  file system, a directory replaced under the watch, a lost event).
- **polling** elsewhere (or where inotify cannot be had): a ``stat`` every
  ``poll_interval_s``. Either way the file is read only when its identity
  (device, inode, size, mtime) changed, or when the last read was unusable.

What is read goes to every subscriber as a :class:`Reading`, in order, on the
watcher thread; subscribers must not block (``LogClient``'s only updates its
pool). A first subscriber of a file gets its first reading on its own thread,
before :meth:`FileWatcher.watch` returns, so a client has its servers at once.

**fork()**: the child gets a copy of this state but not the thread, and may
get locks that the thread held at that moment; an inherited inotify
descriptor is the parent's instance (reading it would steal the parent's
events). So, like the client, the watcher starts afresh in the child on first
use: every public call (and every call of a :class:`~logclient.FileServers`)
compares the pid, and in a child replaces every lock, closes the inherited
descriptors and starts its own thread if anything is watched. No fork hook:
a hook must do the minimum (no logging, no lock another thread may hold, no
thread that would run while later hooks are still resetting their state), and
a pid check also catches a fork that ran no hooks (``fork()`` called from C,
as uWSGI does).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from logclient._forksafe import process_lock
from logclient._inotify import Inotify, InotifyEvent, open_inotify
from logwire.serversfile import MAX_FILE_BYTES, ServersFile, ServersFileError, parse

__all__ = ["SAFETY_INTERVAL_S", "FileWatcher", "Reading", "file_watcher"]

logger = logging.getLogger("logclient.discovery")

#: With inotify, how often a file is still looked at (what inotify cannot see).
SAFETY_INTERVAL_S = 5.0

_Key = tuple[object, ...]


@dataclass(frozen=True)
class Reading:
    """What one look at a servers file found: a usable document, or why not.

    ``document`` is None when the file is ``missing`` or unusable (``error``
    says why). ``mtime`` and ``inode`` (device, inode) are those of the file
    that was read, so that a reader can later tell the agent's heartbeat
    (a newer mtime on the same inode) from new content.
    """

    path: str
    document: ServersFile | None
    error: str | None
    missing: bool
    mtime: float | None
    inode: tuple[int, int] | None


class Subscriber(Protocol):
    """What the watcher calls: each new reading, and after fork() in the child."""

    def on_reading(self, reading: Reading) -> None:
        """A new reading of the file (on the watcher thread; must not block)."""
        ...

    def reinit_after_fork(self) -> None:
        """In the child after fork(), on first use: replace locks; no waiting."""
        ...


class _Entry:
    """One watched file (per path and mode): its subscribers and what was last read."""

    def __init__(self, path: str, use_inotify: bool) -> None:
        self.path = path
        self.directory = os.path.dirname(path) or "."
        self.name = os.fsencode(os.path.basename(path))
        self.use_inotify = use_inotify
        self.subscribers: dict[int, tuple[Subscriber, float]] = {}  # replaced, never mutated
        self.lock = threading.Lock()  # one look at the file at a time, deliveries in order
        # Guarded by lock:
        self.key: _Key | None = None
        self.reading: Reading | None = None
        self.retry = False
        self.logged_problem: str | None = None
        self.stale_logged = False
        # The watcher thread's (wd under the watcher's lock):
        self.wd: int | None = None
        self.dirty = True
        self.next_check = 0.0

    def __repr__(self) -> str:
        mode = "inotify" if self.wd is not None else "poll"
        return f"<watched {self.path} {mode} subscribers={len(self.subscribers)}>"

    @property
    def poll_interval_s(self) -> float:
        return min((interval for _, interval in self.subscribers.values()), default=1.0)


class FileWatcher:
    """The process's one watcher (see the module's docstring); get it with :func:`file_watcher`."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._wake_event = threading.Event()
        self._tokens = itertools.count(1)
        # Guarded by _lock:
        self._entries: dict[tuple[str, bool], _Entry] = {}
        self._by_token: dict[int, _Entry] = {}
        self._thread: threading.Thread | None = None
        self._inotify: Inotify | None = None
        self._inotify_failed = False
        self._pipe: tuple[int, int] | None = None
        self._wd_dir: dict[int, str] = {}

    def __repr__(self) -> str:
        with self._lock:
            thread = self._thread.name if self._thread is not None else None
            return f"<FileWatcher pid={self._pid} thread={thread} {list(self._entries.values())}>"

    # ------------------------------------------------------------------ public

    def watch(
        self, path: str, subscriber: Subscriber, *, inotify: bool, poll_interval_s: float
    ) -> int:
        """Watch ``path`` for ``subscriber``; it has its first reading when this returns.

        Returns a token for :meth:`unwatch`.
        """
        self.check_fork()
        token = next(self._tokens)
        with self._lock:
            entry = self._entries.get((path, inotify))
            if entry is None:
                entry = self._entries[(path, inotify)] = _Entry(path, inotify)
            entry.subscribers = {**entry.subscribers, token: (subscriber, poll_interval_s)}
            self._by_token[token] = entry
            lock = entry.lock
        with lock:
            if entry.reading is None:
                self._look(entry, force=True)
            else:
                subscriber.on_reading(entry.reading)
        with self._lock:
            if self._thread is None:
                self._start_thread()
        self._wake()
        return token

    def unwatch(self, token: int, timeout: float) -> None:
        """Stop delivering to ``token``'s subscriber; the last one stops the thread (bounded)."""
        self.check_fork()
        with self._lock:
            entry = self._by_token.pop(token, None)
            if entry is None:
                return
            entry.subscribers = {t: s for t, s in entry.subscribers.items() if t != token}
            if not entry.subscribers:
                del self._entries[(entry.path, entry.use_inotify)]
                self._forget_watch(entry)
            thread = self._thread if not self._entries else None
        self._wake()
        if thread is None or thread is threading.current_thread():
            return
        deadline = time.monotonic() + timeout
        while thread.is_alive():
            with self._lock:
                if self._entries:
                    return  # watched again meanwhile: the thread carries on for them
            if time.monotonic() >= deadline:
                logger.warning("the servers file watcher did not stop within %.1fs", timeout)
                return
            thread.join(0.05)

    def mode(self, token: int) -> str:
        """``inotify`` or ``poll``: how ``token``'s file is watched right now."""
        with self._lock:
            entry = self._by_token.get(token)
            return "inotify" if entry is not None and entry.wd is not None else "poll"

    def check_fork(self) -> None:
        """In a child after fork(), on first use: start afresh (see :meth:`_enter_child`)."""
        if self._pid != os.getpid():
            with process_lock("files"):
                if self._pid != os.getpid():
                    self._enter_child()

    def _enter_child(self) -> None:
        """In a child after fork(): new locks, no inherited descriptors, a thread of its own.

        Takes no lock that a thread of the parent could have held: those are
        the ones it replaces.
        """
        self._lock = threading.Lock()
        self._wake_event = threading.Event()
        inotify, self._inotify = self._inotify, None
        if inotify is not None:
            inotify.close()  # the parent's instance: its events are the parent's
        pipe, self._pipe = self._pipe, None
        for fd in pipe or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._inotify_failed = False
        self._wd_dir = {}
        self._thread = None
        for entry in self._entries.values():
            entry.lock = threading.Lock()
            entry.wd = None
            entry.dirty = True
            entry.key = None  # the parent's thread may have been half-way through a look
            entry.retry = False
            for subscriber, _ in entry.subscribers.values():
                subscriber.reinit_after_fork()
        self._pid = os.getpid()
        if self._entries:
            self._start_thread()

    # ------------------------------------------------------------ the thread

    def _start_thread(self) -> None:
        """Under ``_lock`` (or alone in a fresh child)."""
        thread = threading.Thread(target=self._run, name="logclient-files", daemon=True)
        self._thread = thread
        thread.start()

    def _wake(self) -> None:
        self._wake_event.set()
        pipe = self._pipe
        if pipe is not None:
            with contextlib.suppress(OSError):  # full: a wake-up is already pending
                os.write(pipe[1], b"x")

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._lock:
                if self._thread is not me:
                    return  # replaced (after a fork in which this object was copied)
                if not self._entries:
                    self._thread = None
                    self._close_inotify()
                    return
                entries = list(self._entries.values())
                self._arm(entries)
            try:
                for entry in entries:
                    if entry.dirty or entry.next_check <= time.monotonic():
                        with entry.lock:
                            self._look(entry)
                timeout = min(e.next_check for e in entries) - time.monotonic()
                self._wait(max(0.0, timeout))
            except Exception:  # never let one bad look end the watching
                logger.exception("watching servers files failed; retrying")
                self._wake_event.wait(1.0)

    def _arm(self, entries: list[_Entry]) -> None:
        """Under ``_lock``: an inotify watch on the directory of every entry that wants one."""
        wanted = [e for e in entries if e.use_inotify and e.wd is None]
        if not wanted:
            return
        if self._inotify is None and not self._inotify_failed:
            try:
                self._inotify = open_inotify()
            except OSError as exc:
                # Typically EMFILE: one instance per watching process, and this user's
                # are used up (fs.inotify.max_user_instances). Polling works as well, later.
                logger.info("cannot use inotify (%s); polling servers files with stat", exc)
                self._inotify_failed = True
            if self._inotify is None:
                if not self._inotify_failed:
                    logger.info("inotify is not available; polling servers files with stat")
                self._inotify_failed = True
            else:
                self._pipe = os.pipe()
                os.set_blocking(self._pipe[0], False)
                os.set_blocking(self._pipe[1], False)
        if self._inotify is None:
            return
        for entry in wanted:
            existing = [wd for wd, d in self._wd_dir.items() if d == entry.directory]
            if existing:
                entry.wd = existing[0]
            else:
                try:
                    entry.wd = self._inotify.add_watch(entry.directory)
                except OSError as exc:
                    entry.wd = None  # e.g. the directory does not exist yet: poll for now
                    logger.debug("cannot watch %s (%s); polling it", entry.directory, exc)
                    continue
                self._wd_dir[entry.wd] = entry.directory
            entry.dirty = True  # anything that changed before the watch existed

    def _forget_watch(self, entry: _Entry) -> None:
        """Under ``_lock``: drop the directory's watch if no other entry uses it."""
        wd, entry.wd = entry.wd, None
        if wd is None or any(e.wd == wd for e in self._entries.values()):
            return
        self._wd_dir.pop(wd, None)
        if self._inotify is not None:
            self._inotify.remove_watch(wd)

    def _close_inotify(self) -> None:
        """Under ``_lock``, as the thread ends."""
        inotify, self._inotify = self._inotify, None
        if inotify is not None:
            inotify.close()
        pipe, self._pipe = self._pipe, None
        for fd in pipe or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wd_dir = {}
        self._inotify_failed = False

    def _wait(self, timeout: float) -> None:
        inotify, pipe = self._inotify, self._pipe
        if inotify is None or pipe is None:
            self._wake_event.wait(timeout)
            self._wake_event.clear()
            return
        try:
            ready, _, _ = select.select([inotify.fd, pipe[0]], [], [], timeout)
        except (OSError, ValueError):  # a descriptor closed under us: look again
            return
        self._wake_event.clear()
        if pipe[0] in ready:
            with contextlib.suppress(OSError):
                os.read(pipe[0], 4096)
        if inotify.fd in ready:
            self._handle(inotify.read())

    def _handle(self, events: list[InotifyEvent]) -> None:
        with self._lock:
            for event in events:
                if event.overflow:
                    for entry in self._entries.values():
                        entry.dirty = True
                    continue
                directory = self._wd_dir.get(event.wd)
                if directory is None:
                    continue
                gone = event.watch_gone
                if gone:
                    del self._wd_dir[event.wd]
                for entry in self._entries.values():
                    if entry.wd == event.wd:
                        entry.dirty = True
                        if gone:
                            entry.wd = None  # poll until the directory is back

    # ------------------------------------------------------------- one look

    def _look(self, entry: _Entry, force: bool = False) -> None:
        """Under ``entry.lock``: stat the file, read it if it changed, deliver what is new."""
        entry.dirty = False
        now = time.monotonic()
        entry.next_check = now + (
            max(SAFETY_INTERVAL_S, entry.poll_interval_s)
            if entry.wd is not None
            else entry.poll_interval_s
        )
        try:
            st = os.stat(entry.path)
            key: _Key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            key, st = ("missing",), None
        except OSError as exc:
            key, st = ("error", exc.errno), None
        if key == entry.key and not entry.retry and not force:
            self._note_age(entry, st)
            return
        reading, key = _read(entry.path, key)
        same_problem = entry.retry and key == entry.key and reading.error == entry.logged_problem
        entry.key = key
        entry.retry = reading.document is None and not reading.missing
        if same_problem and not force:
            return  # the same unusable file, read again: nothing new to say
        entry.reading = reading
        self._log(entry, reading)
        for subscriber, _ in list(entry.subscribers.values()):
            try:
                subscriber.on_reading(reading)
            except Exception:
                logger.exception("servers file subscriber %r failed", subscriber)

    def _log(self, entry: _Entry, reading: Reading) -> None:
        """Once per problem, and once when it is over; per file, not per subscriber."""
        problem = "missing" if reading.missing else reading.error
        if problem != entry.logged_problem:
            if reading.missing:
                logger.warning("servers file %s is missing; keeping the servers known", entry.path)
            elif problem is not None:
                logger.warning(
                    "servers file %s is unusable (%s); keeping the last good list",
                    entry.path,
                    problem,
                )
            elif entry.logged_problem is not None:
                logger.info("servers file %s is usable again", entry.path)
            entry.logged_problem = problem
        document = reading.document
        if document is not None:
            stale = document.is_stale(time.time(), reading.mtime)
            if stale and not entry.stale_logged:
                logger.warning(
                    "servers file %s is stale (agent state %s, age %.0fs); using it anyway",
                    entry.path,
                    document.state,
                    document.age(time.time(), reading.mtime),
                )
            elif not stale and entry.stale_logged:
                logger.info("servers file %s is current again", entry.path)
            entry.stale_logged = stale

    def _note_age(self, entry: _Entry, st: os.stat_result | None) -> None:
        """An unchanged file: say once when the agent stopped refreshing it."""
        reading = entry.reading
        if reading is None or reading.document is None or st is None:
            return
        if entry.stale_logged or not reading.document.is_stale(time.time(), st.st_mtime):
            return
        entry.stale_logged = True
        logger.warning(
            "servers file %s was not refreshed for %.0fs (is the discovery agent running?); "
            "using it anyway",
            entry.path,
            reading.document.age(time.time(), st.st_mtime),
        )


def _read(path: str, key: _Key) -> tuple[Reading, _Key]:
    """Read and parse ``path``; the key is that of the file actually read."""
    if key[0] == "missing":
        return Reading(path, None, None, True, None, None), key
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return Reading(path, None, None, True, None, None), ("missing",)
    except OSError as exc:
        return Reading(path, None, f"cannot read it: {exc}", False, None, None), key
    inode = (st.st_dev, st.st_ino)
    try:
        document = parse(data)
    except ServersFileError as exc:
        return Reading(path, None, str(exc), False, st.st_mtime, inode), key
    return Reading(path, document, None, False, st.st_mtime, inode), key


_WATCHER: FileWatcher | None = None


def file_watcher() -> FileWatcher:
    """The process's one :class:`FileWatcher` (made on first use; a child uses its copy)."""
    global _WATCHER
    watcher = _WATCHER
    if watcher is not None:
        return watcher
    with process_lock("files"):
        if _WATCHER is None:
            _WATCHER = FileWatcher()
        return _WATCHER
