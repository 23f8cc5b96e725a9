"""One logserver process: storage, the Thrift port and the ZooKeeper registration.

Start order matters for "nothing acknowledged is lost": storage is recovered
before the port listens, and the port listens before the server registers, so
a client that finds the server in ZooKeeper can use it at once. Shutdown runs
the other way: deregister first (clients stop choosing us), refuse new batches,
finish in-flight ones, sync, exit 0.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import threading
import time
import uuid
from pathlib import Path
from types import FrameType

import structlog

from logserver import __version__
from logserver.config import ServerConfig
from logserver.errors import ConfigError, RegistrationError
from logserver.memory import keep_freed_memory
from logserver.metrics import Metrics
from logserver.registry import InventoryPublisher, Registration, read_auth_file
from logserver.service import LogServiceHandler
from logserver.storage import Storage, StoragePolicy
from logserver.transport import ServerTLS, ThriftServer, WireLimits
from logwire.compression import CompressionPolicy
from logwire.inventory import InventoryRecord
from logwire.serverset import Endpoint, Member
from logwire.zktls import ZkTLSPolicy

__all__ = ["LogServer"]

log = structlog.get_logger(__name__)


class LogServer:
    """Runs until SIGTERM/SIGINT, then shuts down gracefully."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.process_id = uuid.uuid4().hex
        self._stop = threading.Event()
        self._storage: Storage | None = None
        self._transport: ThriftServer | None = None
        self._registration: Registration | None = None
        self._inventory: InventoryPublisher | None = None
        self._handler: LogServiceHandler | None = None

    def __repr__(self) -> str:
        return (
            f"<LogServer {self.config.advertised}:{self.config.port} data={self.config.data_dir} "
            f"transport={self._transport!r} registration={self._registration!r}>"
        )

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        """Signal handler: ask the main loop to shut down."""
        if signum is not None:
            log.info("signal received, shutting down", signal=signal.Signals(signum).name)
        self._stop.set()

    def run(self) -> int:
        """Serve until asked to stop; return the process exit status."""
        cfg = self.config
        started = time.monotonic()
        tls = _server_tls(cfg)
        zk_auth, zk_tls = _zookeeper_security(cfg)
        policy = StoragePolicy(
            fsync=cfg.fsync,
            fsync_interval_s=cfg.fsync_interval_s,
            segment_bytes=cfg.segment_bytes,
            retention_age_s=cfg.retention_hours * 3600 if cfg.retention_hours else None,
            retention_bytes=cfg.retention_bytes,
            max_message_bytes=cfg.max_message_bytes,
            drop_synced_pages=cfg.page_cache == "drop",
            compression=CompressionPolicy(cfg.compression, cfg.compression_level),  # type: ignore[arg-type]
            # A compressed batch may decode to what the server would take uncompressed.
            max_batch_bytes=cfg.max_frame_bytes,
            segment_format=cfg.segment_format,
            max_batch_categories=cfg.max_batch_categories,
            max_categories=cfg.max_categories,
            max_open_segments=cfg.max_open_segments,
            dedup_scan_bytes=cfg.dedup_scan_bytes,
            max_producers=cfg.max_producers,
        )
        problem = keep_freed_memory()
        if problem is not None:
            log.info("malloc thresholds left as they are", reason=problem)
        _raise_fd_limit(cfg.max_connections + cfg.max_open_segments)
        self._storage = Storage.open(cfg.data_dir, policy)
        recovery = self._storage.recovery
        log.info(
            "storage recovered",
            server_id=self._storage.server_id,
            zone=cfg.zone or None,
            data_dir=str(cfg.data_dir),
            elapsed_s=round(time.monotonic() - started, 3),
            categories=recovery.categories,
            segments=recovery.segments,
            clean_categories=recovery.clean_categories,
            scanned_segments=recovery.scanned_segments,
            scanned_bytes=recovery.scanned_bytes,
            synced_segments=recovery.synced_segments,
            truncated_bytes=recovery.truncated_bytes,
            producers=recovery.producers,
        )

        metrics = Metrics()
        self._handler = LogServiceHandler(
            self._storage,
            server_id=self._storage.server_id,
            version=__version__,
            metrics=metrics,
            process_id=self.process_id,
            zone=cfg.zone or "",
            repair_identities=cfg.repair_identities,
        )
        limits = WireLimits(
            max_frame_bytes=cfg.max_frame_bytes,
            max_connections=cfg.max_connections,
            max_connections_per_peer=cfg.max_connections_per_peer,
            max_inflight_bytes=cfg.max_inflight_bytes,
            idle_timeout_s=cfg.idle_timeout_s,
        )
        self._transport = ThriftServer(self._handler, cfg.host, cfg.port, limits, tls=tls)
        try:
            self._transport.start()
        except BaseException:
            self._storage.close()
            raise
        port = self._transport.port
        additional: dict[str, Endpoint] = {}
        if cfg.metrics_port is not None:
            metrics_port = metrics.serve(cfg.metrics_host, cfg.metrics_port)
            additional["metrics"] = Endpoint(cfg.advertised, metrics_port)
            log.info("metrics endpoint", host=cfg.metrics_host, port=metrics_port)

        member = Member(
            endpoint=Endpoint(cfg.advertised, port),
            additional=additional,
            process_id=self.process_id,
            pid=os.getpid(),
            version=__version__,
            started_at=time.time(),
            tls=tls is not None,
            server_id=self._storage.server_id,
            zone=cfg.zone or "",
        )
        self._registration = Registration(
            cfg.zk,
            cfg.zk_path,
            member,
            session_timeout_s=cfg.session_timeout_s,
            auth=zk_auth,
            tls=zk_tls,
        )
        self._registration.start()
        self._inventory = InventoryPublisher(
            self._registration.client,
            cfg.zk_path,
            lambda: self._inventory_record(member),
            acl=self._registration.acl,
            interval_s=cfg.inventory_interval_s,
        )
        self._inventory.start()
        if cfg.ready_file is not None:
            _write_ready_file(cfg.ready_file, cfg.advertised, port)

        registered = False
        while not self._stop.wait(1.0 if registered else 0.1):
            if registered:
                continue
            try:
                registered = self._registration.wait_registered(0)
            except RegistrationError:
                # Refused before it ever registered (NoAuth: no or wrong credentials,
                # a rogue or misconfigured process): exit loudly rather than serve
                # unseen. Later refusals (after a session loss) keep the server
                # serving the clients it has while the registry retries.
                self._shutdown()
                raise
        return self._shutdown()

    def _inventory_record(self, member: Member) -> InventoryRecord:
        """What this server holds now, for its record in the data inventory."""
        assert self._storage is not None
        return InventoryRecord(
            server_id=member.server_id,
            endpoint=member.endpoint,
            categories=self._storage.category_sizes(),
            last_seen=time.time(),
            started_at=member.started_at,
            zone=member.zone,
            data_dir=str(Path(self.config.data_dir).resolve()),
        )

    def _shutdown(self) -> int:
        """Deregister, refuse new batches, finish in-flight ones, sync, close."""
        cfg = self.config
        assert self._registration and self._handler and self._transport and self._storage
        if self._inventory is not None:
            # Its last record says "stopped"; bounded, so deregistering is never held up long.
            self._inventory.stop(timeout=1.0)
        self._registration.deregister(timeout=5.0)
        log.info("deregistered")
        self._handler.drain()
        self._transport.stop_accepting()
        idle = self._transport.wait_idle(cfg.drain_timeout_s)
        if not idle:
            log.warning("in-flight requests did not finish in time", timeout_s=cfg.drain_timeout_s)
        self._transport.close(timeout=2.0)
        self._storage.close()
        log.info("stopped", clean=idle)
        return 0


# Descriptors beyond connections and open segments: a reader's file per read in
# flight (at most one per connection, counted in the connections' share), ZooKeeper,
# the listening and wake-up sockets, the log, the data directory's lock.
_FD_HEADROOM = 1024


def _raise_fd_limit(planned: int) -> None:
    """Raise the soft limit on open files to the hard limit, and say what it is.

    Every connection is a descriptor, and so is every open segment file
    (``planned``: ``--max-connections`` plus ``--max-open-segments``); the
    usual soft limit (1024) is below the first alone, and running out makes
    ``accept()`` and segment creation fail.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open file limit", soft=soft, hard=hard, error=str(exc))
    needed = planned + _FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "open file limit is low for --max-connections and --max-open-segments",
            soft=soft,
            hard=hard,
            needed=needed,
        )
    else:
        log.info("open file limit", soft=soft, hard=hard)


def _server_tls(cfg: ServerConfig) -> ServerTLS | None:
    """The Thrift port's TLS settings, checked (files loaded) before storage is touched."""
    if cfg.tls_cert_file is None or cfg.tls_key_file is None:
        return None
    tls = ServerTLS(
        cert_file=cfg.tls_cert_file,
        key_file=cfg.tls_key_file,
        client_ca_file=cfg.tls_client_ca_file,
        handshake_timeout_s=cfg.tls_handshake_timeout_s,
    )
    tls.context()  # a bad certificate or key fails now, with a clear ConfigError
    return tls


def _zookeeper_security(cfg: ServerConfig) -> tuple[tuple[str, str] | None, ZkTLSPolicy | None]:
    """Digest credentials and TLS for the ZooKeeper session, read before storage is touched."""
    auth = read_auth_file(cfg.zk_auth_file) if cfg.zk_auth_file is not None else None
    zk_tls = None
    if cfg.zk_tls_ca_file is not None:
        try:
            zk_tls = ZkTLSPolicy(cfg.zk_tls_ca_file, cfg.zk_tls_cert_file, cfg.zk_tls_key_file)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    elif cfg.zk_tls_cert_file is not None:
        raise ConfigError(
            "--zk-tls-cert needs --zk-tls-ca (the CA that signed ZooKeeper's certificate)"
        )
    return auth, zk_tls


def _write_ready_file(path: Path, host: str, port: int) -> None:
    """Atomically write where we listen, for launchers (port 0 picks the port)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"host": host, "port": port, "pid": os.getpid()}))
    os.replace(tmp, path)
