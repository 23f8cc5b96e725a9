"""A logserver's registration in ZooKeeper: one ephemeral sequential znode per live process.

The node is ``<zk_path>/member_NNNNNNNNNN`` and its data is
:meth:`logwire.serverset.Member.to_json` (Finagle's ServerSet shape), so
existing ServerSet tooling can read it.

What this module guarantees, and why (``docs/zookeeper.md`` has the facts behind it):

- **One node per process.** The node data carries the process's UUID
  (``Member.process_id``). Before creating, we look for a child with that id
  *and* ``ephemeralOwner ==`` our current session id and adopt it: a create
  whose reply was lost and that is then retried never leaves two nodes (the
  same idea as Curator's "protected" mode).
- **No ghost of our previous incarnation.** An ephemeral node with our endpoint
  owned by another session is a leftover of a restarted process that ZooKeeper
  has not expired yet (KAFKA-7165); we delete it when we first register, if it
  already existed when we first read the path (a node that appears later, even
  while our first create is being retried, is a newcomer). Later
  re-registrations only log such a node: a ghost exists only right after a
  restart, and deleting a *live* twin (two processes misconfigured with one
  endpoint) on every re-registration would make them delete each other forever.
- **Re-registration** after the session is LOST (on the next CONNECTED with a
  new session) and when our node is deleted by someone else; *not* after a mere
  SUSPENDED/reconnect that kept the session (CURATOR-320).
- **Never block kazoo's threads.** State listeners and watch callbacks only set
  a flag; the work runs on this object's own registration thread.
- **A ZooKeeper outage never raises into the server.** It is logged and retried
  forever with a backoff capped at ``retry_max_delay_s``. Only errors
  retrying soon cannot fix (no auth, bad path or ACL) become :class:`RegistrationError`
  (:class:`RegistrationDeniedError` when ZooKeeper says NoAuth), raised from
  :meth:`Registration.wait_registered`; the thread then tries again only every
  ``_FATAL_RETRY_DELAY_S`` seconds, in case an operator fixes the ACL.
- **Digest auth means an ACL.** With ``auth=("digest", "user:password")`` the
  path (and every parent we create) and our node get
  :func:`~logserver.registry.registration_acl`: that identity may do everything,
  anyone may only read. A path that already exists keeps its ACL; if anyone
  may create or delete under it we log ``registration_path_open``. The
  password is never logged, nor put in node data or exception messages.

The lifecycle is here; the rest is in small modules of its own:
:mod:`logserver.registry._nodes` (the path, which node is ours, ghosts),
:mod:`logserver.registry._access` (ACLs, errors an operator must fix); the
kazoo client is made and stopped by :mod:`logwire.zkclient`, as every kazoo
client of this project is.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog
from kazoo.client import KazooClient
from kazoo.exceptions import AuthFailedError, ConnectionClosedError, KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.hosts import collect_hosts
from kazoo.protocol.states import KazooState, KeeperState, ZnodeStat
from kazoo.recipe.watchers import DataWatch
from kazoo.retry import ForceRetryError, KazooRetry
from kazoo.retry import InterruptedError as RetryInterruptedError
from kazoo.security import ACL

from logserver.errors import RegistrationError
from logserver.registry._access import FATAL, check_path_acl, digest_identity, fatal_error
from logserver.registry._auth import denied_as
from logserver.registry._nodes import (
    NODE_PREFIX,
    create_node,
    handle_same_endpoint,
    keep_one,
    read_children,
    validate_zk_path,
)
from logserver.registry._nodes import hex_session as _hex
from logwire.serverset import Member
from logwire.zkclient import new_client, retry_backoff, stop_client, zk_retry
from logwire.zktls import ZkTLSPolicy

__all__ = [
    "NODE_PREFIX",
    "Registration",
    "validate_zk_path",
]

log = structlog.get_logger(__name__)

# After an error retrying soon cannot fix (NoAuth...), how long until the next try.
_FATAL_RETRY_DELAY_S = 30.0
# How often the registration thread repeats "still cannot reach ZooKeeper".
_UNREACHABLE_LOG_INTERVAL = 5.0


class _Stopping(Exception):
    """Internal: deregister() was called; unwind the registration thread."""


class Registration:
    """Keep one ephemeral sequential node for ``member`` under ``zk_path``, whatever happens.

    ``start()`` returns at once; the node appears as soon as ZooKeeper answers
    (:meth:`wait_registered`). ``deregister()`` deletes the node and closes the
    session, both bounded. The object is single-use: it cannot be started again
    after ``deregister()``.

    ``registered`` is True while we believe our node exists: from its creation
    (or adoption) until the session is LOST, the node is seen deleted, or we
    deregister. It stays True while the connection is merely SUSPENDED, because
    ZooKeeper keeps the node until the session expires.
    """

    def __init__(
        self,
        zk_hosts: str,
        zk_path: str,
        member: Member,
        *,
        session_timeout_s: float = 10.0,
        retry_max_delay_s: float = 1.0,
        auth: tuple[str, str] | None = None,
        tls: ZkTLSPolicy | None = None,
    ) -> None:
        try:
            collect_hosts(zk_hosts)
            validate_zk_path(zk_path)
        except (ValueError, AttributeError) as exc:
            raise RegistrationError(
                f"invalid ZooKeeper address {zk_hosts!r} {zk_path!r}: {exc}"
            ) from exc
        if session_timeout_s <= 0 or retry_max_delay_s <= 0:
            raise RegistrationError("session_timeout_s and retry_max_delay_s must be positive")
        if not member.process_id:
            raise RegistrationError("member.process_id must be set: it identifies our node")
        self._acl: list[ACL] | None = None
        self._auth_user: str | None = None
        if auth is not None:
            self._acl, self._auth_user = digest_identity(auth)
        self._acl_checked = False
        self.tls = tls
        self.zk_hosts = zk_hosts
        self.zk_path = zk_path
        self.member = member
        self._data = member.to_json()
        self._retry_max_delay_s = retry_max_delay_s
        self._client = new_client(
            zk_hosts,
            session_timeout_s=session_timeout_s,
            retry_max_delay_s=retry_max_delay_s,
            auth=auth,
            tls=tls,
        )
        self._lock = threading.Lock()
        self._registered_cond = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._closed = False
        # Guarded by _lock:
        self._node: str | None = None  # full path of our node
        self._node_session: int | None = None  # session that owns it
        self._registered = False
        self._error: RegistrationError | None = None
        self._registrations = 0  # how many times a node was created or adopted
        # Owned by the registration thread: the pzxid of the first read of the path.
        self._ghost_horizon: int | None = None

    # ------------------------------------------------------------------ public

    def __repr__(self) -> str:
        with self._lock:
            node, session, registered = self._node, self._node_session, self._registered
        state = "DEREGISTERED" if self._closed else self._client.state if self._started else "NEW"
        current = self._client.client_id
        return (
            f"<Registration {self.zk_path} endpoint={self.member.endpoint} "
            f"node={node.rsplit('/', 1)[-1] if node else None} registered={registered} "
            f"state={state} session={_hex(current[0] if current else session)} "
            f"auth={self._auth_user} tls={self.tls is not None}>"
        )

    def start(self) -> None:
        """Connect and register in the background; returns at once (idempotent)."""
        with self._lock:
            if self._closed:
                raise RegistrationError("registration was deregistered; create a new one")
            if self._started:
                return
            self._started = True
        self._client.add_listener(self._on_state)
        self._thread = threading.Thread(
            target=self._run, name=f"zk-registration{self.zk_path}", daemon=True
        )
        self._wake.set()
        self._client.start_async()
        self._thread.start()
        log.info(
            "registration_started",
            hosts=self.zk_hosts,
            path=self.zk_path,
            endpoint=str(self.member.endpoint),
            process_id=self.member.process_id,
        )

    def wait_registered(self, timeout: float) -> bool:
        """Wait until our node exists; False on timeout.

        Raises :class:`RegistrationError` if registration failed in a way retrying
        will not fix (the last attempt's error; a later success clears it).
        """
        deadline = time.monotonic() + timeout
        with self._registered_cond:
            while not self._registered:
                if self._error is not None:
                    raise self._error
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._registered_cond.wait(remaining)
            return True

    @property
    def client(self) -> KazooClient:
        """The kazoo client of our session, for other records this server keeps in ZooKeeper
        (the data inventory): one session per server. Its owner stops it (:meth:`deregister`)."""
        return self._client

    @property
    def acl(self) -> list[ACL] | None:
        """The ACL our nodes get (None without digest auth): for the server's other records."""
        return self._acl

    @property
    def node_path(self) -> str | None:
        """The full path of our node, or None while we have none."""
        with self._lock:
            return self._node

    @property
    def registered(self) -> bool:
        """True while we believe our node exists (see the class docstring)."""
        with self._lock:
            return self._registered

    @property
    def session_id(self) -> int | None:
        """The session that owns our node (None when unregistered)."""
        with self._lock:
            return self._node_session if self._registered else None

    @property
    def registrations(self) -> int:
        """How many times a node was created or adopted (1 + re-registrations)."""
        with self._lock:
            return self._registrations

    def deregister(self, timeout: float = 5.0) -> None:
        """Delete our node, then close the session; bounded by ``timeout``; idempotent.

        Safe to call from any thread; the kazoo client is stopped on a helper
        thread so that a hanging ``stop()`` (kazoo #582) cannot hang the caller.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            node = self._node
            self._node = None
            self._registered = False
            self._registered_cond.notify_all()
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        self._connected.set()  # wakes _wait_connected(), which then sees _stopping
        if not self._started:
            return
        if node is not None and self._client.connected:
            # Half the budget at most: a session close removes the node anyway.
            try:
                self._client.delete_async(node).get(timeout=max(0.0, timeout / 2))
                log.info("deregistered", node=node)
            except NoNodeError:
                log.info("deregistered", node=node, already_gone=True)
            except (KazooException, KazooTimeoutError) as exc:
                log.warning("deregister_delete_failed", node=node, error=repr(exc))
        stopper = stop_client(
            self._client,
            deadline=deadline,
            name=f"zk-registration-stop{self.zk_path}",
            on_error=_stop_failed,
        )
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if stopper.is_alive() or (self._thread is not None and self._thread.is_alive()):
            log.warning("deregister_timeout", timeout_s=timeout, path=self.zk_path)

    # ---------------------------------------------------------- kazoo threads

    def _on_state(self, state: str) -> None:
        """Runs on kazoo's connection thread: only flags and log lines here."""
        if self._stopping.is_set():
            return
        if state == KazooState.CONNECTED:
            self._connected.set()
            client_id = self._client.client_id
            session = client_id[0] if client_id else None
            with self._lock:
                known = self._node_session
            log.info("zookeeper_connected", session=_hex(session), path=self.zk_path)
            if session != known:
                self._wake.set()  # a new session: our node (if any) went with the old one
        elif state == KazooState.SUSPENDED:
            self._connected.clear()
            log.warning("zookeeper_suspended", path=self.zk_path)
        elif state == KazooState.LOST:
            self._connected.clear()
            if self._client.client_state == KeeperState.AUTH_FAILED:
                log.error("zookeeper_auth_failed", hosts=self.zk_hosts)
            with self._registered_cond:
                node = self._node
                self._node = None
                self._registered = False
            log.warning("zookeeper_session_lost", node=node, path=self.zk_path)
            self._wake.set()

    def _watch_node(self, node: str) -> None:
        """Re-register when someone deletes our node (a DataWatch: it re-reads after reconnects)."""

        def on_change(data: bytes | None, stat: ZnodeStat | None, event: Any = None) -> bool | None:
            with self._lock:
                current = self._node == node
                if current and stat is None and not self._stopping.is_set():
                    self._node = None
                    self._registered = False
            if not current or self._stopping.is_set():
                return False  # stale watch: stop it
            if stat is None:
                log.warning("registration_node_deleted", node=node)
                self._wake.set()
                return False
            return None

        DataWatch(self._client, node, on_change)

    # -------------------------------------------------------- registration thread

    def _run(self) -> None:
        backoff = retry_backoff(self._retry_max_delay_s)
        while not self._stopping.is_set():
            self._wake.wait()
            if self._stopping.is_set():
                break
            self._wake.clear()
            try:
                self._reconcile()
                backoff = backoff.reset()
            except (_Stopping, RetryInterruptedError, ConnectionClosedError):
                break
            except FATAL as exc:
                error = fatal_error(exc, self.zk_path, self.zk_hosts)
                with self._registered_cond:
                    self._error = error
                    self._registered_cond.notify_all()
                log.error(
                    "registration_failed",
                    path=self.zk_path,
                    error=str(error),
                    retry_in_s=_FATAL_RETRY_DELAY_S,
                )
                if self._stopping.wait(_FATAL_RETRY_DELAY_S):
                    break
                self._wake.set()
            except Exception as exc:  # an outage must never kill the thread
                delay = backoff.delay()
                log.warning("registration_retry", path=self.zk_path, error=repr(exc), delay_s=delay)
                if self._stopping.wait(delay):
                    break
                backoff = backoff.next()
                self._wake.set()
        log.debug("registration_thread_exit", path=self.zk_path)

    def _wait_connected(self) -> None:
        """Block until connected, logging ``zookeeper_unreachable`` while we are not.

        An operator then sees why a server is not registered yet. Raises
        AuthFailedError if ZooKeeper rejected our credentials: waiting longer
        would not help. deregister() sets ``_connected`` too, to end this wait
        at once.
        """
        started = time.monotonic()
        next_log = started + 1.0
        while not self._connected.wait(max(0.0, next_log - time.monotonic())):
            if self._client.client_state == KeeperState.AUTH_FAILED:
                raise AuthFailedError("ZooKeeper rejected our credentials")
            waited = time.monotonic() - started
            next_log += _UNREACHABLE_LOG_INTERVAL
            log.warning(
                "zookeeper_unreachable",
                hosts=self.zk_hosts,
                path=self.zk_path,
                waited_s=round(waited, 1),
                state=self._client.state,
            )
        if self._stopping.is_set():
            raise _Stopping

    def _retrying(self) -> KazooRetry:
        return zk_retry(self._retry_max_delay_s, interrupt=self._stopping.is_set)

    def _reconcile(self) -> None:
        """Make sure exactly one node of ours exists in the current session."""
        self._wait_connected()
        retry = self._retrying()
        with denied_as("CREATE", f"{self.zk_path} or a parent"):
            retry(self._client.ensure_path, self.zk_path, acl=self._acl)
        if not self._acl_checked:
            retry(self._check_path_acl)
        # The whole find-or-create step is what gets retried, never a bare create.
        node, session, adopted, ghosts = retry(self._find_or_create)
        with self._registered_cond:
            if self._stopping.is_set():
                return
            changed = node != self._node
            self._node, self._node_session, self._registered = node, session, True
            self._error = None
            if changed:
                self._registrations += 1
            self._registered_cond.notify_all()
        if changed:
            log.info(
                "registered",
                node=node,
                session=_hex(session),
                adopted=adopted,
                ghosts_deleted=ghosts,
                endpoint=str(self.member.endpoint),
            )
            self._watch_node(node)

    def _check_path_acl(self) -> None:
        """Once: warn if, although we use an ACL, anyone may create or delete under the path."""
        if self._auth_user is not None:
            check_path_acl(self._client, self.zk_path, self._auth_user)
        self._acl_checked = True

    def _find_or_create(self) -> tuple[str, int, bool, int]:
        """One attempt: adopt our node of this session or create it; delete ghosts.

        Returns (node path, owning session id, adopted, ghosts deleted). Any
        ConnectionLoss makes the caller retry the whole step, which then finds
        a node whose create reply was lost instead of creating a second one.
        A retry of the first registration deletes no node younger than the
        first read of the path (``_ghost_horizon``): none of those can be a
        leftover of our previous incarnation.
        """
        if self._stopping.is_set():
            raise _Stopping
        client_id = self._client.client_id
        if client_id is None:
            raise ForceRetryError("not connected")
        session = client_id[0]
        with self._lock:
            current = self._node
            first_registration = self._registrations == 0
        children = read_children(self._client, self.zk_path, self.member, session)
        horizon = None
        if first_registration:
            if self._ghost_horizon is None:
                self._ghost_horizon = children.pzxid
            horizon = self._ghost_horizon
        ghosts = handle_same_endpoint(
            self._client, children.same_endpoint, self.member.endpoint, horizon
        )
        if children.mine:
            return keep_one(self._client, children.mine, current), session, True, ghosts
        if self._stopping.is_set():
            raise _Stopping
        node = self._create_node()
        stat = self._client.exists(node)
        if stat is None or stat.ephemeralOwner != session:
            # The session changed under us; the next attempt sorts it out.
            raise ForceRetryError(f"{node} is not owned by session {_hex(session)}")
        return node, session, False, ghosts

    def _create_node(self) -> str:
        """The bare create (a seam: tests make its reply get 'lost')."""
        return create_node(self._client, self.zk_path, self._data, self._acl)


def _stop_failed(exc: Exception) -> None:
    log.warning("zookeeper_close_failed", error=repr(exc))
