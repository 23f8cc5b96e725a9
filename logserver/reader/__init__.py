"""Reading a category back: from every server, merged by time, each record once.

The programmer's face of reading (``logserver cat`` is built on it)::

    import logserver

    with logserver.read("zk1:2181", "app", since="15m", grep="ERROR", follow=True) as reader:
        for record in reader:
            alert(record.time, record.message)

- :func:`read` / :class:`Reader`: records (:class:`Record`) or, for programs
  that print or filter millions, blocks in columns (:meth:`Reader.blocks`,
  :class:`RecordBlock`), with bounded memory whatever the category's size.
- :class:`ReadQuery`: a time range, the last N, a pattern, live or not.
- :class:`Sources`: which servers (and data directories) are read, and which
  cannot be (:class:`StaticSources`, :class:`ZooKeeperSources`); what went
  wrong while reading is in :attr:`Reader.report` (:class:`ReadReport`).
- One server's records as stored, one object each (for tests and tools):
  :func:`read_server`, :func:`read_data_dir`, :func:`merge_unique`; the
  registered servers: :func:`list_servers`; a connection: :func:`connect`.
"""

from logserver.reader._connect import connect
from logserver.reader._policy import ReaderPolicy
from logserver.reader._query import ReadQuery, parse_time
from logserver.reader._reader import Reader, TimeArg, read
from logserver.reader._records import Record, RecordBlock, format_time
from logserver.reader._registry import (
    RegisteredServer,
    list_servers,
    registered_servers,
    start_zookeeper,
)
from logserver.reader._report import ReadEvent, ReadReport
from logserver.reader._single import merge_unique, read_data_dir, read_server
from logserver.reader._sources import (
    Source,
    SourceListing,
    SourceProblem,
    Sources,
    StaticSources,
    ZooKeeperSources,
)

__all__ = [
    "ReadEvent",
    "ReadQuery",
    "ReadReport",
    "Reader",
    "ReaderPolicy",
    "Record",
    "RecordBlock",
    "RegisteredServer",
    "Source",
    "SourceListing",
    "SourceProblem",
    "Sources",
    "StaticSources",
    "TimeArg",
    "ZooKeeperSources",
    "connect",
    "format_time",
    "list_servers",
    "merge_unique",
    "parse_time",
    "read",
    "read_data_dir",
    "read_server",
    "registered_servers",
    "start_zookeeper",
]
