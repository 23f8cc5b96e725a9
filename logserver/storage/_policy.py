"""How storage trades durability, disk use and memory: one frozen, validated policy."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from logserver.storage._blocks import FORMAT_VERSION
from logserver.storage._format import MAX_MESSAGE_BYTES
from logwire.compression import CompressionPolicy

__all__ = ["FsyncMode", "StoragePolicy"]

FsyncMode = Literal["always", "interval", "never"]
_FSYNC_MODES = ("always", "interval", "never")
_MIN_SEGMENT_BYTES = 4096


@dataclass(frozen=True)
class StoragePolicy:
    """What storage promises and how much it keeps.

    ``fsync`` decides what an acknowledgement means. ``"always"``: the batch's
    bytes reached the disk (concurrent batches share one fdatasync: group
    commit). ``"interval"``: a background thread syncs every
    ``fsync_interval_s``, so a power loss may lose that much; a killed process
    loses nothing, because every write goes straight to the kernel.
    ``"never"``: only the kernel decides (and :meth:`Storage.sync`).

    Retention only ever deletes closed segments, oldest first; the segment a
    category is writing to is never deleted, so a category always keeps its
    newest data whatever the limits say.

    Deduplication remembers, per producer, its batches among the
    ``dedup_window`` sequence numbers below its highest (a bitmap:
    ``dedup_window / 8`` bytes) and up to 16 ranges further down, for at most
    ``max_producers`` producers (least recently used forgotten first): at
    most about 2.5 KB a producer with the default window, a few hundred bytes
    for one that counts up (so at most about 250 MB for 100,000). At open it is rebuilt from the segments, newest first
    across all categories, while the bytes read stay within
    ``dedup_scan_bytes`` *in total* (after a crash, every category's last
    segment is read whole besides: it is the one a crash can tear; after a
    clean close it need not be). A retry older than all that is stored again:
    at least once, never lost.

    What a client may cost in categories: at most ``max_batch_categories``
    distinct ones per batch and ``max_categories`` in all (each is a directory
    and a log kept in memory); at most ``max_open_segments`` segment files are
    open at once, however many categories there are.

    ``drop_synced_pages``: once a sync made bytes durable, drop them from the
    page cache (``posix_fadvise(DONTNEED)``). A log server writes a stream that
    is rarely read back soon; cached, it would crowd out other programs' cache
    and make every write allocate fresh pages, which is most of a write's cost
    on a VM (a 1.3 MB append: 2.8-3.3 ms into fresh pages, 0.36 ms into
    recycled ones). Reads of recent data then come from the disk. Only synced
    bytes are dropped, so with ``fsync="never"`` nothing is.

    ``compression``: how storage compresses the blocks it makes itself (records
    that came uncompressed: Scribe's ``Log``, ``Append``, ``AppendPacked``); a
    batch that arrives compressed is stored as it came. ``max_batch_bytes``
    bounds what such a batch may decompress to (its columns: lengths and
    messages), checked before anything is allocated; a server sets it to its
    frame limit, what it would take uncompressed. ``segment_format``: 2 (blocks,
    the default) or 1 (one record after another, what servers before
    compression write and read: for handing a data directory back to one).
    Segments of either format are read whatever this says.
    """

    fsync: FsyncMode = "always"
    fsync_interval_s: float = 1.0
    segment_bytes: int = 64 * 2**20
    retention_age_s: float | None = None
    retention_bytes: int | None = None
    dedup_window: int = 4096
    max_producers: int = 100_000
    dedup_scan_bytes: int = 512 * 2**20
    max_message_bytes: int = 1 * 2**20
    drop_synced_pages: bool = True
    retention_check_s: float = 60.0
    """How often the background thread applies retention (it also runs on every rotation)."""
    compression: CompressionPolicy = CompressionPolicy()  # noqa: RUF009 - frozen, safe to share
    max_batch_bytes: int = 16 * 2**20
    segment_format: int = FORMAT_VERSION
    max_batch_categories: int = 1000
    """Distinct categories in one batch at most (BatchTooLargeError: the client splits it)."""
    max_categories: int = 10_000
    """Categories this storage creates at most (InvalidCategoryError for a new one beyond)."""
    max_open_segments: int = 1024
    """Segment files held open for writing at most (least recently used closed first)."""

    def __post_init__(self) -> None:
        if self.fsync not in _FSYNC_MODES:
            raise ValueError(f"fsync must be one of {_FSYNC_MODES}, not {self.fsync!r}")
        for name in ("fsync_interval_s", "retention_check_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.segment_bytes < _MIN_SEGMENT_BYTES:
            raise ValueError(f"segment_bytes must be at least {_MIN_SEGMENT_BYTES}")
        age = self.retention_age_s
        if age is not None and not (math.isfinite(age) and age > 0):
            raise ValueError(f"retention_age_s must be positive or None, not {age!r}")
        if self.retention_bytes is not None and self.retention_bytes < 1:
            raise ValueError("retention_bytes must be positive or None")
        if self.dedup_window < 1:
            raise ValueError("dedup_window must be at least 1")
        if self.max_producers < 1:
            raise ValueError("max_producers must be at least 1")
        if self.dedup_scan_bytes < 0:
            raise ValueError("dedup_scan_bytes must not be negative")
        for name in ("max_batch_categories", "max_categories", "max_open_segments"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 1 <= self.max_message_bytes <= MAX_MESSAGE_BYTES:
            raise ValueError(f"max_message_bytes must be within 1..{MAX_MESSAGE_BYTES}")
        if not isinstance(self.compression, CompressionPolicy):
            raise ValueError(f"compression must be a CompressionPolicy, not {self.compression!r}")
        if not 16 <= self.max_batch_bytes <= 2**31 - 1:
            raise ValueError(
                f"max_batch_bytes must be within 16..2^31-1, not {self.max_batch_bytes}"
            )
        if self.segment_format not in (1, FORMAT_VERSION):
            raise ValueError(
                f"segment_format must be 1 or {FORMAT_VERSION}, not {self.segment_format!r}"
            )

    @property
    def retention_enabled(self) -> bool:
        """Whether any retention limit is set."""
        return self.retention_age_s is not None or self.retention_bytes is not None
