"""Closing a client when its process ends, whichever way an app server ends it.

A client holds records in memory; its process must close it (deliver them,
or spool what no server takes) before it goes. Three hooks run Python code
at the end of a process, and the client registers with each:

- ``atexit``: a normal exit, ``sys.exit()``, a gunicorn worker returning
  from its loop;
- ``multiprocessing``'s finalizers: a ``multiprocessing`` worker ends with
  ``os._exit()`` after running ``multiprocessing.util``'s finalizers, not
  ``atexit``; the fork start method clears the parent's finalizers in the
  worker, so a client started in the worker (or inherited and started
  afresh there) registers its own;
- ``uwsgi.atexit``, which :mod:`logclient._uwsgi` chains: a uWSGI worker
  with ``--skip-atexit-teardown`` runs it but not Python's ``atexit``.

A process that ends without any of them (``os._exit()`` with no finalizer,
SIGKILL, SIGTERM with no handler, which is what ``Pool.terminate()`` sends)
loses what its client held only in memory; the spool keeps the rest for the
next process that takes its slot.
"""

from __future__ import annotations

import atexit
import sys
from collections.abc import Callable

from logclient import _uwsgi

__all__ = ["close_at_exit", "forget_at_exit"]


def close_at_exit(close: Callable[[], None]) -> None:
    """Call ``close`` when this process ends (see the module docstring for how).

    Once per process the client starts in: a child that starts a client
    afresh registers it again, for its own hooks.
    """
    atexit.register(close)
    _uwsgi.on_exit(close)
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(None, close, exitpriority=10)


def forget_at_exit(close: Callable[[], None]) -> None:
    """``close`` has run: nothing of it runs at exit any more (a ``multiprocessing``
    finalizer cannot be taken back; calling it again finds the client closed)."""
    atexit.unregister(close)
    _uwsgi.remove_on_exit(close)
