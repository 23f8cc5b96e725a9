"""The kazoo client a registration runs on: made, waited for and stopped (docs/zookeeper.md says why).

- **Made** with a retry policy whose backoff is capped (kazoo's default grows
  to an hour between reconnects after a long outage), for connecting and for
  commands alike.
- **Waited for** with a log line while ZooKeeper is unreachable, so that an
  operator sees why a server is not registered yet; AUTH_FAILED ends the wait.
- **Stopped** on a helper thread within a bound: kazoo's ``stop()`` can hang
  (kazoo #582, #426) and must never run on kazoo's own threads.

Events are logged under the registry's logger name, which operators filter on.
"""

from __future__ import annotations

import threading
import time

import structlog
from kazoo.client import KazooClient
from kazoo.exceptions import AuthFailedError
from kazoo.protocol.states import KeeperState
from kazoo.retry import KazooRetry

from logwire.zktls import ZkTLSPolicy

__all__ = ["new_client", "stop_client", "wait_connected"]

log = structlog.get_logger("logserver.registry")

# How often wait_connected() repeats "still cannot reach ZooKeeper".
_UNREACHABLE_LOG_INTERVAL = 5.0


def new_client(
    zk_hosts: str,
    *,
    session_timeout: float,
    connect_retry_max_delay: float,
    auth: tuple[str, str] | None,
    tls: ZkTLSPolicy | None,
) -> tuple[KazooClient, KazooRetry]:
    """A kazoo client (not started) and the retry policy it uses, for the caller's own retries."""
    retry = KazooRetry(max_tries=-1, delay=0.05, max_delay=connect_retry_max_delay, max_jitter=0.2)
    client = KazooClient(
        hosts=zk_hosts,
        timeout=session_timeout,
        connection_retry=retry.copy(),
        command_retry=retry.copy(),
        auth_data=[auth] if auth else None,
        **(tls.kazoo_kwargs() if tls is not None else {}),
    )
    return client, retry


def wait_connected(
    client: KazooClient, connected: threading.Event, *, zk_hosts: str, zk_path: str
) -> None:
    """Block until ``connected`` is set, logging ``zookeeper_unreachable`` while it is not.

    Raises AuthFailedError if ZooKeeper rejected our credentials: waiting
    longer would not help. Whoever stops the registration sets ``connected``
    too, to end this wait at once, and then checks why it ended.
    """
    started = time.monotonic()
    next_log = started + 1.0
    while not connected.wait(max(0.0, next_log - time.monotonic())):
        if client.client_state == KeeperState.AUTH_FAILED:
            raise AuthFailedError("ZooKeeper rejected our credentials")
        waited = time.monotonic() - started
        next_log += _UNREACHABLE_LOG_INTERVAL
        log.warning(
            "zookeeper_unreachable",
            hosts=zk_hosts,
            path=zk_path,
            waited_s=round(waited, 1),
            state=client.state,
        )


def stop_client(client: KazooClient, *, name: str, deadline: float) -> threading.Thread:
    """Stop and close ``client`` on a helper thread, waiting for it until ``deadline`` at most.

    Returns the helper thread: still alive if the stop did not finish in time.
    """
    stopper = threading.Thread(target=_stop, args=(client,), name=name, daemon=True)
    stopper.start()
    stopper.join(max(0.0, deadline - time.monotonic()))
    return stopper


def _stop(client: KazooClient) -> None:
    try:
        client.stop()
        client.close()
    except Exception as exc:  # shutting down: nothing to propagate to
        log.warning("zookeeper_close_failed", error=repr(exc))
