"""The one way this project makes and stops a kazoo client (docs/zookeeper.md has the facts).

- **Made** by :func:`new_client` with a retry policy (:func:`zk_retry`) whose
  backoff is capped, for connecting and for commands alike. kazoo retries
  forever by default and lets its backoff grow to an hour (``max_delay=3600``):
  after a long outage the gap before a reconnect would reach minutes. Ours
  starts at 50 ms and doubles to ``retry_max_delay_s`` (1 s by default).
  TLS comes from a :class:`~logwire.zktls.ZkTLSPolicy`, credentials from an
  ``auth`` pair (``("digest", "user:password")``).
- **Stopped** by :func:`stop_client`: ``stop()`` then ``close()`` on a helper
  thread, waited for until a deadline at most. kazoo's ``stop()`` can hang
  (kazoo #582, #426), and it must never run on one of kazoo's own threads
  (connection or event thread), where it would wait for itself.

This module imports kazoo, so only code that talks to ZooKeeper imports it:
``logwire`` as a package does not, and neither does ``from logclient import
StaticServers``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

from logwire.backoff import Backoff
from logwire.zktls import ZkTLSPolicy

__all__ = [
    "RETRY_INITIAL_DELAY_S",
    "RETRY_MAX_DELAY_S",
    "new_client",
    "retry_backoff",
    "stop_client",
    "zk_retry",
]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

# The first retry waits this long; every retry after doubles it, up to the cap.
RETRY_INITIAL_DELAY_S = 0.05
# The cap (about 1 s): reconnects stay quick after an outage of any length.
RETRY_MAX_DELAY_S = 1.0
# kazoo adds up to this fraction of the delay at random, so clients spread out.
_RETRY_MAX_JITTER = 0.2


def zk_retry(
    max_delay_s: float = RETRY_MAX_DELAY_S, *, interrupt: Callable[[], bool] | None = None
) -> KazooRetry:
    """A fresh ``KazooRetry`` that tries forever with a backoff capped at ``max_delay_s``.

    ``interrupt`` (e.g. ``stopping.is_set``) ends a retry at once when it
    returns True: kazoo then raises its ``InterruptedError``. A ``KazooRetry``
    counts its attempts in itself, so every call site wants its own (kazoo's
    ``copy()``), which is why this makes a new one each time.
    """
    if not max_delay_s > 0:
        raise ValueError(f"max_delay_s must be positive, not {max_delay_s!r}")
    return KazooRetry(
        max_tries=-1,
        delay=RETRY_INITIAL_DELAY_S,
        max_delay=max_delay_s,
        max_jitter=_RETRY_MAX_JITTER,
        interrupt=interrupt,
    )


def retry_backoff(max_delay_s: float = RETRY_MAX_DELAY_S) -> Backoff:
    """The backoff of our own retry loops around kazoo calls: :func:`zk_retry`'s, without jitter.

    For work that kazoo's retry does not cover (a watch that cannot be set, an
    update that failed): 50 ms, doubled after every failure up to
    ``max_delay_s`` (a cap below 50 ms is the first delay too).
    """
    return Backoff(initial_s=min(RETRY_INITIAL_DELAY_S, max_delay_s), max_s=max_delay_s)


def new_client(
    zk_hosts: str,
    *,
    session_timeout_s: float = 10.0,
    retry_max_delay_s: float = RETRY_MAX_DELAY_S,
    auth: tuple[str, str] | None = None,
    tls: ZkTLSPolicy | None = None,
    read_only: bool = False,
) -> KazooClient:
    """A kazoo client, not started, retrying connections and commands as :func:`zk_retry` does.

    ``session_timeout_s`` is what we ask for; ZooKeeper clamps it to
    2..20 x its ``tickTime``. ``read_only`` lets the client use a server that
    lost its quorum (for tools that only read).
    """
    if tls is not None and not isinstance(tls, ZkTLSPolicy):
        raise TypeError(f"tls must be a ZkTLSPolicy, not {type(tls).__name__}")
    return KazooClient(
        hosts=zk_hosts,
        timeout=session_timeout_s,
        connection_retry=zk_retry(retry_max_delay_s),
        command_retry=zk_retry(retry_max_delay_s),
        auth_data=[auth] if auth else None,
        read_only=read_only,
        **(tls.kazoo_kwargs() if tls is not None else {}),
    )


def stop_client(
    client: KazooClient,
    *,
    deadline: float,
    name: str = "zk-client-stop",
    on_error: Callable[[Exception], None] | None = None,
) -> threading.Thread:
    """Stop and close ``client`` on a helper thread; wait for it until ``deadline`` at most.

    ``deadline`` is a ``time.monotonic()`` value. Returns the helper thread,
    still alive if the stop did not finish in time (a daemon thread: it cannot
    keep the process alive). An exception from ``stop()``/``close()`` goes to
    ``on_error`` (by default it is logged): when shutting down there is no one
    to raise it to. Safe from any thread but kazoo's own.
    """
    stopper = threading.Thread(
        target=_stop, args=(client, on_error or _log_error), name=name, daemon=True
    )
    stopper.start()
    stopper.join(max(0.0, deadline - time.monotonic()))
    return stopper


def _stop(client: KazooClient, on_error: Callable[[Exception], None]) -> None:
    try:
        client.stop()
        client.close()
    except Exception as exc:  # shutting down: nothing to propagate to
        on_error(exc)


def _log_error(exc: Exception) -> None:
    logger.warning("error while closing a ZooKeeper client: %r", exc)
