"""Former home of the reader: it is :mod:`logserver.reader` now (kept so that older
imports keep working; new code imports from there)."""

from logserver.reader import (
    Record,
    RegisteredServer,
    connect,
    list_servers,
    merge_unique,
    read_data_dir,
    read_server,
    registered_servers,
    start_zookeeper,
)

__all__ = [
    "Record",
    "RegisteredServer",
    "connect",
    "list_servers",
    "merge_unique",
    "read_data_dir",
    "read_server",
    "registered_servers",
    "start_zookeeper",
]
