"""Server configuration: flags, then environment variables, then a TOML file, then defaults.

Every flag ``--some-flag`` may also be given as ``LOGSERVER_SOME_FLAG`` in the
environment or ``some_flag = ...`` in the file named by ``--config`` (or
``LOGSERVER_CONFIG``). A flag beats the environment, which beats the file.

The names operators use (flags, variables, file keys: the *settings*) stay as
published. The fields of :class:`ServerConfig` follow docs/glossary.md:
durations end in ``_s`` and paths of files in ``_file``, so a few differ from
their setting (``--idle-timeout`` sets ``idle_timeout_s``, ``--tls-cert``
sets ``tls_cert_file``); :data:`FIELD_OF_SETTING` lists them.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from logserver.errors import ConfigError
from logserver.storage import FsyncMode
from logwire.compression import CompressionPolicy
from logwire.serverset import zone_problem

__all__ = [
    "FIELD_OF_SETTING",
    "SETTINGS",
    "PageCacheMode",
    "ServerConfig",
    "add_serve_arguments",
    "config_from_args",
]

#: What happens to a segment's pages once they are synced (``--page-cache``).
PageCacheMode = Literal["drop", "keep"]
_FSYNC: tuple[FsyncMode, ...] = get_args(FsyncMode)
_PAGE_CACHE: tuple[PageCacheMode, ...] = get_args(PageCacheMode)


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``logserver serve`` needs; validated on construction."""

    zk: str
    data_dir: Path
    zk_path: str = "/logservers"
    host: str = "127.0.0.1"
    port: int = 9090
    advertise_host: str | None = None
    zone: str | None = None
    fsync: FsyncMode = "always"
    fsync_interval_s: float = 1.0
    page_cache: PageCacheMode = "drop"
    segment_bytes: int = 64 * 2**20
    retention_hours: float | None = None
    retention_bytes: int | None = None
    max_frame_bytes: int = 16 * 2**20
    max_message_bytes: int = 2**20
    compression: str = "zstd"
    compression_level: int = 1
    segment_format: int = 2
    max_batch_categories: int = 1000
    max_categories: int = 10_000
    max_open_segments: int = 1024
    dedup_scan_bytes: int = 512 * 2**20
    max_producers: int = 100_000
    max_connections: int = 1024
    max_connections_per_peer: int = 256
    max_inflight_bytes: int | None = None
    idle_timeout_s: float = 60.0
    session_timeout_s: float = 10.0
    inventory_interval_s: float = 30.0
    drain_timeout_s: float = 10.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    ready_file: Path | None = None
    log_level: str = "info"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    tls_handshake_timeout_s: float = 5.0
    repair_identity: str | None = None
    zk_auth_file: Path | None = None
    zk_tls_ca_file: Path | None = None
    zk_tls_cert_file: Path | None = None
    zk_tls_key_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.zk:
            raise ConfigError("--zk is required (a ZooKeeper connection string host:port,...)")
        if not self.zk_path.startswith("/") or self.zk_path.endswith("/"):
            raise ConfigError(f"--zk-path must be absolute without a trailing '/': {self.zk_path}")
        if self.fsync not in _FSYNC:
            raise ConfigError(f"--fsync must be one of {', '.join(_FSYNC)}")
        if self.page_cache not in _PAGE_CACHE:
            raise ConfigError(f"--page-cache must be one of {', '.join(_PAGE_CACHE)}")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"--port out of range: {self.port}")
        if self.zone is not None and zone_problem(self.zone) is not None:
            raise ConfigError(f"--zone: {zone_problem(self.zone)}")
        if self.max_message_bytes > self.max_frame_bytes:
            raise ConfigError("--max-message-bytes cannot exceed --max-frame-bytes")
        for name in (
            "max_batch_categories",
            "max_categories",
            "max_open_segments",
            "max_producers",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{_flag(name)} must be >= 1")
        if self.dedup_scan_bytes < 0:
            raise ConfigError("--dedup-scan-bytes must be >= 0")
        if self.max_connections < 1 or self.max_connections_per_peer < 1:
            raise ConfigError("--max-connections and --max-connections-per-peer must be >= 1")
        if self.max_inflight_bytes is not None and self.max_inflight_bytes < self.max_frame_bytes:
            raise ConfigError(
                "--max-inflight-bytes must be at least --max-frame-bytes "
                "(a frame that size could never be read)"
            )
        for name in (
            "fsync_interval_s",
            "idle_timeout_s",
            "session_timeout_s",
            "drain_timeout_s",
            "tls_handshake_timeout_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_flag(name)} must be > 0")
        try:
            CompressionPolicy(self.compression, self.compression_level)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ConfigError(f"--compression/--compression-level: {exc}") from None
        if not 2.0 <= self.inventory_interval_s <= 3600:
            raise ConfigError("--inventory-interval must be within 2..3600 seconds")
        if self.segment_format not in (1, 2):
            raise ConfigError(f"--segment-format must be 1 or 2, not {self.segment_format}")
        if self.segment_bytes < 4096:
            raise ConfigError("--segment-bytes must be at least 4096")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ConfigError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        if self.repair_identity is not None and self.tls_client_ca_file is None:
            raise ConfigError("--repair-identity needs mutual TLS (--tls-client-ca)")
        if (self.zk_tls_cert_file is None) != (self.zk_tls_key_file is None):
            raise ConfigError("--zk-tls-cert and --zk-tls-key go together")
        for name in (
            "tls_cert_file",
            "tls_key_file",
            "tls_client_ca_file",
            "zk_auth_file",
            "zk_tls_ca_file",
            "zk_tls_cert_file",
            "zk_tls_key_file",
        ):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{_flag(name)}: no such file: {path}")

    @property
    def repair_identities(self) -> frozenset[str]:
        """The client identities ``--repair-identity`` lists."""
        return frozenset(i.strip() for i in (self.repair_identity or "").split(",") if i.strip())

    @property
    def advertised(self) -> str:
        """The host clients should connect to (what goes into ZooKeeper)."""
        if self.advertise_host:
            return self.advertise_host
        if self.host in ("0.0.0.0", "::", ""):
            import socket

            return socket.getfqdn()
        return self.host


# (setting, type, help) in the order ``--help`` shows them; defaults come from ServerConfig.
_FLAGS: list[tuple[str, Any, str]] = [
    ("zk", str, "ZooKeeper connection string, host:port[,host:port...] (required)"),
    ("zk_path", str, "registration path"),
    ("host", str, "address to listen on"),
    ("port", int, "port to listen on; 0 picks a free one and registers it"),
    ("advertise_host", str, "host name clients use (default: --host, or the FQDN for 0.0.0.0)"),
    (
        "zone",
        str,
        "the failure domain this server is in (an availability zone, a rack), registered "
        "for clients: the copies of a batch go to different zones first",
    ),
    ("data_dir", Path, "where the segments live (required)"),
    ("fsync", str, "always: acknowledge after fsync (default); interval; never"),
    ("fsync_interval", float, "seconds between syncs with --fsync interval"),
    (
        "page_cache",
        str,
        "drop: drop segment pages from the page cache once synced (default); keep",
    ),
    ("segment_bytes", int, "rotate a category's segment at this size"),
    ("retention_hours", float, "delete closed segments older than this"),
    ("retention_bytes", int, "per category: delete oldest closed segments above this total"),
    ("max_frame_bytes", int, "refuse Thrift frames larger than this, before reading them"),
    ("max_message_bytes", int, "refuse single messages larger than this"),
    (
        "compression",
        str,
        "zstd: compress the blocks this server makes (default); none. Batches that arrive "
        "compressed are stored as they came",
    ),
    ("compression_level", int, "Zstandard level, -7..22 (default 1: fast, 0.13 on log lines)"),
    (
        "segment_format",
        int,
        "2: blocks, compressed (default); 1: what servers before compression write, "
        "for handing the data directory back to one. Both are read",
    ),
    (
        "max_batch_categories",
        int,
        "distinct categories in one batch at most (BatchTooLarge: clients split the batch)",
    ),
    ("max_categories", int, "categories this server creates at most (InvalidCategory beyond)"),
    (
        "max_open_segments",
        int,
        "segment files held open at most, however many categories (least recently used "
        "closed first)",
    ),
    (
        "dedup_scan_bytes",
        int,
        "on start, read at most this many bytes of the newest segments (all categories "
        "together) to rebuild deduplication; older batches resent are stored again",
    ),
    (
        "max_producers",
        int,
        "producers deduplication remembers at most (least recently used forgotten: "
        "a batch of theirs resent is stored again)",
    ),
    (
        "max_connections",
        int,
        "open connections at most; beyond, the one idle longest is closed to make room",
    ),
    (
        "max_connections_per_peer",
        int,
        "connections from one peer address at most; beyond, its one idle longest makes room",
    ),
    (
        "max_inflight_bytes",
        int,
        "request bytes being read or processed at once, server-wide; a frame that finds no "
        "room in time is answered busy (default: 4 x --max-frame-bytes)",
    ),
    ("idle_timeout", float, "close a connection idle this many seconds"),
    ("session_timeout", float, "ZooKeeper session timeout, seconds"),
    (
        "inventory_interval",
        float,
        "seconds between updates of this server's record in the data inventory in ZooKeeper "
        "(what it holds, last seen); a new category is written within about 2.5 s",
    ),
    ("drain_timeout", float, "on SIGTERM, wait this long for in-flight batches"),
    ("metrics_port", int, "serve Prometheus metrics on this port (off by default)"),
    ("metrics_host", str, "address for the metrics endpoint"),
    ("ready_file", Path, "write host/port/pid JSON here once listening"),
    ("log_level", str, "debug, info, warning, error"),
    ("tls_cert", Path, "PEM certificate (chain) for TLS on the Thrift port"),
    ("tls_key", Path, "PEM private key for --tls-cert"),
    ("tls_client_ca", Path, "PEM CA bundle: require client certificates signed by it (mutual TLS)"),
    ("tls_handshake_timeout", float, "seconds a client has to finish the TLS handshake"),
    (
        "repair_identity",
        str,
        "with mutual TLS: the client certificate identities (comma-separated) that may store "
        "copies with their original batch ids (logserver repair's Restore); nobody else may",
    ),
    (
        "zk_auth_file",
        Path,
        "file holding 'user:password' for ZooKeeper digest auth; "
        "registration nodes then get an ACL: only this identity writes, anyone reads",
    ),
    ("zk_tls_ca", Path, "PEM CA bundle: connect to ZooKeeper over TLS, verifying it"),
    ("zk_tls_cert", Path, "PEM client certificate for ZooKeeper TLS"),
    ("zk_tls_key", Path, "PEM private key for --zk-tls-cert"),
]


#: The settings whose ServerConfig field has another name (a unit or ``_file`` suffix).
FIELD_OF_SETTING: dict[str, str] = {
    "fsync_interval": "fsync_interval_s",
    "idle_timeout": "idle_timeout_s",
    "session_timeout": "session_timeout_s",
    "inventory_interval": "inventory_interval_s",
    "drain_timeout": "drain_timeout_s",
    "tls_cert": "tls_cert_file",
    "tls_key": "tls_key_file",
    "tls_client_ca": "tls_client_ca_file",
    "tls_handshake_timeout": "tls_handshake_timeout_s",
    "zk_tls_ca": "zk_tls_ca_file",
    "zk_tls_cert": "zk_tls_cert_file",
    "zk_tls_key": "zk_tls_key_file",
}
#: Every setting: a flag ``--name``, a variable ``LOGSERVER_NAME``, a file key ``name``.
SETTINGS: tuple[str, ...] = tuple(name for name, _, _ in _FLAGS)
_SETTING_OF_FIELD = {field: setting for setting, field in FIELD_OF_SETTING.items()}


def _flag(field: str) -> str:
    """The flag that sets ServerConfig's ``field`` (for error messages)."""
    return "--" + _SETTING_OF_FIELD.get(field, field).replace("_", "-")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every serve flag; defaults stay None so that env and file can fill the gaps."""
    parser.add_argument("--config", type=Path, help="a TOML file with any of these settings")
    for name, kind, help_text in _FLAGS:
        flag = "--" + name.replace("_", "-")
        env = "LOGSERVER_" + name.upper()
        parser.add_argument(flag, type=kind, default=None, help=f"{help_text} [env {env}]")


def config_from_args(
    args: argparse.Namespace, environ: dict[str, str] | None = None
) -> ServerConfig:
    """Merge flags, environment and the TOML file into a validated ServerConfig."""
    environ = dict(os.environ if environ is None else environ)
    file_path = args.config or (
        Path(environ["LOGSERVER_CONFIG"]) if environ.get("LOGSERVER_CONFIG") else None
    )
    file_values: dict[str, Any] = {}
    if file_path is not None:
        try:
            file_values = tomllib.loads(Path(file_path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {file_path}: {exc}") from exc
        file_values = {k.replace("-", "_"): v for k, v in file_values.items()}
    unknown = set(file_values) - set(SETTINGS)
    if unknown:
        raise ConfigError(f"unknown settings in {file_path}: {', '.join(sorted(unknown))}")
    kinds = {name: kind for name, kind, _ in _FLAGS}
    values: dict[str, Any] = {}
    for name in SETTINGS:
        field = FIELD_OF_SETTING.get(name, name)
        flag_value = getattr(args, name, None)
        env_value = environ.get("LOGSERVER_" + name.upper())
        try:
            if flag_value is not None:
                values[field] = flag_value
            elif env_value not in (None, ""):
                values[field] = kinds[name](env_value)
            elif name in file_values:
                values[field] = kinds[name](file_values[name])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid value for {name}: {exc}") from exc
    for required in ("zk", "data_dir"):
        if required not in values:
            raise ConfigError(f"--{required.replace('_', '-')} is required")
    return ServerConfig(**values)
