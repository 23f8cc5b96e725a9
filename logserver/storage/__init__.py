"""Durable, append-only storage of log records, per category.

Layout: ``data_dir/categories/<category>/<base_position:020d>.seg``, where a
record's position is its byte offset in the category's stream (segment base +
offset in the file), so positions survive rotation and retention. Segments
hold blocks (format 2, :mod:`logserver.storage._blocks`): a batch's records in
one category, their metadata once, the records in compressed columns; segments
of format 1 (:mod:`logserver.storage._format`, one record after another) are
still read, and written when the policy says so.

Promises: an ``append`` that returned has its whole batch on disk (as durable
as the policy's ``fsync`` says; never lost to a killed process); a failed
``append`` left nothing behind; a batch retried with the same
(producer, sequence) is stored once, across restarts too, and is answered
"duplicate" only from bytes that are durable (a restart after a crash syncs
what it read first); a batch the bounded index forgot is stored again, never
lost. Storage knows nothing of Thrift or ZooKeeper.

Its errors are the :class:`~logserver.errors.StorageError` branch of
logserver's one exception tree (:mod:`logserver.errors`, which imports
nothing); they are re-exported here so that storage's users need one import.
"""

from logserver.errors import (
    BatchTooLargeError,
    InvalidCategoryError,
    InvalidPositionError,
    InvalidRequestError,
    MessageTooLargeError,
    StorageError,
    StorageLockedError,
    StorageUnavailableError,
)
from logserver.storage._batches import WantedBlocks
from logserver.storage._disk import DiskIO
from logserver.storage._holdings import HoldingsView, Spans
from logserver.storage._identity import SERVER_ID_FILE, read_server_id, server_id_problem
from logserver.storage._offline import (
    list_categories_offline,
    read_blocks_offline,
    read_category_offline,
)
from logserver.storage._policy import FsyncMode, StoragePolicy
from logserver.storage._restore import CopiedBlock, RestoreOutcome
from logserver.storage._stats import StorageStats
from logserver.storage._storage import Storage
from logserver.storage._types import (
    AppendOutcome,
    BlockBatch,
    CategoryStats,
    QueryBatch,
    ReadBatch,
    SegmentRecord,
    StoredBlock,
)

__all__ = [
    "SERVER_ID_FILE",
    "AppendOutcome",
    "BatchTooLargeError",
    "BlockBatch",
    "CategoryStats",
    "CopiedBlock",
    "DiskIO",
    "FsyncMode",
    "HoldingsView",
    "InvalidCategoryError",
    "InvalidPositionError",
    "InvalidRequestError",
    "MessageTooLargeError",
    "QueryBatch",
    "ReadBatch",
    "RestoreOutcome",
    "SegmentRecord",
    "Spans",
    "Storage",
    "StorageError",
    "StorageLockedError",
    "StoragePolicy",
    "StorageStats",
    "StorageUnavailableError",
    "StoredBlock",
    "WantedBlocks",
    "list_categories_offline",
    "read_blocks_offline",
    "read_category_offline",
    "read_server_id",
    "server_id_problem",
]
