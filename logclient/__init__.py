"""logclient: send logs to the logservers, failing over without losing a line.

::

    from logclient import LogClient

    with LogClient("zk1:2181,zk2:2181", "/logservers") as client:
        client.log("app", "hello")        # never waits on the network
        client.flush(timeout=5)           # True once the servers acknowledged it

Servers come from ZooKeeper (``zk_hosts``), from the file the host's
discovery agent keeps (:class:`FileServers`, or the environment variable
``LOGCLIENT_SERVERS_FILE``: no ZooKeeper session per process), or a fixed
list (:class:`StaticServers`).

Also here: :class:`LogServerHandler` (stdlib ``logging``),
:class:`LogServerLoggerFactory` (structlog), the policies that tune batching,
failover, server choice, the memory queue, the disk spool, TLS to the
servers (``TLSPolicy``) and to ZooKeeper (``ZkTLSPolicy``), and the
exception tree (every error logclient raises derives from
:class:`LogClientError`). The library logs through the ``logclient`` loggers
and never configures logging; importing it starts no thread and does not load
kazoo or thriftpy2 (they load when a client starts).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from logclient._client import LogClient
from logclient._handler import JsonFormatter, LogServerHandler
from logclient._policies import (
    BatchPolicy,
    ChoicePolicy,
    FailoverPolicy,
    HedgePolicy,
    QueuePolicy,
    ReplicationPolicy,
    SpoolPolicy,
    TLSPolicy,
)
from logclient._stats import ClientStats
from logclient._structlog import LogServerLogger, LogServerLoggerFactory
from logclient.errors import (
    BatchRejectedError,
    ClientClosedError,
    DiscoveryError,
    InvalidCategoryError,
    LogClientError,
    MessageTooLargeError,
    QueueFullError,
    ServerError,
    ServerUnavailableError,
    SpoolError,
    SpoolLockedError,
)
from logwire.compression import CompressionPolicy
from logwire.zktls import ZkTLSPolicy

if TYPE_CHECKING:
    from logclient._fileservers import FileServers, FileServersStats
    from logclient._source import ServerSource, StaticServers
    from logclient.discovery import ZooKeeperServers

__all__ = [
    "BatchPolicy",
    "BatchRejectedError",
    "ChoicePolicy",
    "ClientClosedError",
    "ClientStats",
    "CompressionPolicy",
    "DiscoveryError",
    "FailoverPolicy",
    "FileServers",
    "FileServersStats",
    "HedgePolicy",
    "InvalidCategoryError",
    "JsonFormatter",
    "LogClient",
    "LogClientError",
    "LogServerHandler",
    "LogServerLogger",
    "LogServerLoggerFactory",
    "MessageTooLargeError",
    "QueueFullError",
    "QueuePolicy",
    "ReplicationPolicy",
    "ServerError",
    "ServerSource",
    "ServerUnavailableError",
    "SpoolError",
    "SpoolLockedError",
    "SpoolPolicy",
    "StaticServers",
    "TLSPolicy",
    "ZkTLSPolicy",
    "ZooKeeperServers",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())

_SOURCES = ("ServerSource", "StaticServers")
_FILE_SOURCES = ("FileServers", "FileServersStats")


def __getattr__(name: str) -> Any:
    # ZooKeeper discovery imports kazoo: load it only when an app asks for it. An app
    # with a static server list never does.
    if name in _SOURCES:
        from logclient import _source

        return getattr(_source, name)
    if name in _FILE_SOURCES:
        from logclient import _fileservers

        return getattr(_fileservers, name)
    if name == "ZooKeeperServers":
        from logclient import discovery

        return discovery.ZooKeeperServers
    raise AttributeError(f"module 'logclient' has no attribute {name!r}")
