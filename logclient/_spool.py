"""The on-disk spool: batches that no server has acknowledged yet, in order.

One file per batch, named by a spool-wide order number, written to a temporary
name, fsync'd, renamed and the directory fsync'd: a file with a final name is
complete. Each file carries a checksum; a file that fails it (a torn write on a
filesystem that reorders, bit rot, a truncation) is moved to ``corrupt/`` and
logged, never sent and never silently deleted. A batch keeps its producer
and sequence in the file forever, so delivering it again after a crash that
lost the unlink is harmless: servers and readers dedup it.

A spool directory belongs to one live client at a time: ``flock`` on
``<dir>/lock``, released when the process dies, so a restarted process takes
over a dead one's spool.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from logclient._batch import ENTRY_OVERHEAD, Batch
from logclient._policies import SpoolPolicy
from logclient.errors import SpoolError, SpoolFullError, SpoolLockedError
from logwire.packed import category_runs, expand_runs, pack_lengths, unpack_messages

__all__ = [
    "MAX_SLOTS",
    "Spool",
    "SpoolFullError",
    "decode_batch",
    "encode_batch",
    "read_header",
]

logger = logging.getLogger(__name__)

#: The current format: the batch's records in columns (see :mod:`logwire.packed`).
MAGIC = b"LCSPOOL2"
#: The first format (one length-prefixed record after another); still read, never written.
MAGIC_V1 = b"LCSPOOL1"
SUFFIX = ".batch"
MAX_SLOTS = 64
_LEN = struct.Struct(">I")
_HEAD = struct.Struct(">HqI")  # producer length, sequence, record count (both formats)
_RUNS = struct.Struct(">I")  # v2: number of category runs
_CAT = struct.Struct(">H")
_MSG = struct.Struct(">I")


def encode_batch(batch: Batch) -> bytearray:
    """The file contents for ``batch``: magic, body length, body, CRC-32 of the body.

    The body (v2): producer length, sequence, record count, number of category
    runs, producer, the runs (category length, category, count), the lengths
    column, the messages. Per record the work is C-level (the sender thread
    shares the GIL with the application).
    """
    encoded = batch.producer.encode("ascii")
    messages = batch.messages
    runs = category_runs(batch.categories)
    head = [
        _HEAD.pack(len(encoded), batch.sequence, len(messages)),
        _RUNS.pack(len(runs)),
        encoded,
    ]
    for category, count in runs:
        cat = category.encode("utf-8")
        head += (_CAT.pack(len(cat)), cat, _MSG.pack(count))
    head.append(pack_lengths(messages))
    body_len = sum(map(len, head)) + sum(map(len, messages))
    # One buffer for the whole file (a second copy of a megabyte costs page faults).
    data = bytearray().join(chain((MAGIC, _LEN.pack(body_len)), head, messages, (bytes(4),)))
    start = len(MAGIC) + 4
    with memoryview(data) as view:
        crc = zlib.crc32(view[start:-4])
    data[-4:] = _LEN.pack(crc)
    return data


def decode_batch(data: bytes | bytearray) -> Batch:
    """Parse a spool file (either format); ValueError when it is torn or corrupt."""
    data = bytes(data)  # the messages must come out as bytes (no copy for bytes)
    if len(data) < len(MAGIC) + 8 or not data.startswith((MAGIC, MAGIC_V1)):
        raise ValueError("not a spool file (bad magic or too short)")
    (body_len,) = _LEN.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + 4
    if len(data) != start + body_len + 4:
        raise ValueError(f"torn file: {len(data)} bytes, header says {start + body_len + 4}")
    (crc,) = _LEN.unpack_from(data, start + body_len)
    with memoryview(data) as view:
        if zlib.crc32(view[start : start + body_len]) != crc:
            raise ValueError("checksum mismatch")
    if data.startswith(MAGIC_V1):
        return _decode_v1(data[start : start + body_len])
    end = start + body_len
    try:
        plen, sequence, count = _HEAD.unpack_from(data, start)
        pos = start + _HEAD.size
        (nruns,) = _RUNS.unpack_from(data, pos)
        pos += _RUNS.size
        producer = data[pos : pos + plen].decode("ascii")
        pos += plen
        runs: list[tuple[str, int]] = []
        for _ in range(nruns):
            (clen,) = _CAT.unpack_from(data, pos)
            pos += _CAT.size
            category = data[pos : pos + clen].decode("utf-8")
            pos += clen
            (n,) = _MSG.unpack_from(data, pos)
            pos += _MSG.size
            runs.append((category, n))
        lengths = data[pos : pos + 4 * count]
        if len(lengths) != 4 * count or pos + 4 * count > end:
            raise ValueError("lengths column runs past the end of the body")
        blob = data[pos + 4 * count : end]
        messages = unpack_messages(runs, lengths, blob)
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed body: {exc}") from exc
    return Batch(
        producer=producer,
        sequence=sequence,
        categories=expand_runs(runs),
        messages=messages,
        nbytes=sum(n * len(c) for c, n in runs) + len(blob) + ENTRY_OVERHEAD * count,
    )


def _decode_v1(body: bytes) -> Batch:
    """The body of a v1 file (written by earlier versions, still delivered)."""
    try:
        plen, sequence, count = _HEAD.unpack_from(body, 0)
        pos = _HEAD.size
        producer = body[pos : pos + plen].decode("ascii")
        pos += plen
        entries: list[tuple[str, bytes]] = []
        add = entries.append
        unpack_category, unpack_message = _CAT.unpack_from, _MSG.unpack_from
        names: dict[bytes, str] = {}  # each category decoded once per file
        nbytes = 0
        for _ in range(count):
            (clen,) = unpack_category(body, pos)
            pos += 2
            raw = body[pos : pos + clen]
            category = names.get(raw)
            if category is None:
                category = names[raw] = raw.decode("utf-8")
            pos += clen
            (mlen,) = unpack_message(body, pos)
            pos += 4
            message = body[pos : pos + mlen]
            if len(message) != mlen:
                raise ValueError("record runs past the end of the body")
            pos += mlen
            add((category, message))
            nbytes += len(category) + mlen
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed body: {exc}") from exc
    if pos != len(body):
        raise ValueError("trailing bytes in body")
    return Batch.of(producer, sequence, entries, nbytes + ENTRY_OVERHEAD * count)


def read_header(path: Path) -> tuple[int, int]:
    """``(file size, record count)`` from a spool file's header; ValueError when torn."""
    with open(path, "rb") as f:
        head = f.read(len(MAGIC) + 4 + _HEAD.size)
        size = os.fstat(f.fileno()).st_size
    if not head.startswith((MAGIC, MAGIC_V1)) or len(head) < len(MAGIC) + 4:
        raise ValueError("not a spool file (bad magic or too short)")
    (body_len,) = _LEN.unpack_from(head, len(MAGIC))
    if size != len(MAGIC) + 4 + body_len + 4 or len(head) < len(MAGIC) + 4 + _HEAD.size:
        raise ValueError(f"torn file: {size} bytes, header says {len(MAGIC) + 8 + body_len}")
    _plen, _sequence, count = _HEAD.unpack_from(head, len(MAGIC) + 4)
    return size, count


@dataclass
class _Item:
    records: int
    size: int
    end_ordinal: int | None


class Spool:
    """An ordered, durable, size-limited store of batches in one directory.

    Only the sender thread mutates it; the counters may be read from any thread.
    """

    def __init__(self, directory: Path, policy: SpoolPolicy, lock_fd: int) -> None:
        self.directory = directory
        self.policy = policy
        self._lock_fd: int | None = lock_fd
        self._index: OrderedDict[int, _Item] = OrderedDict()
        self._next = 0
        self.bytes = 0
        self.records = 0
        self.corrupt_files = 0
        self.corrupt_dir = directory / "corrupt"
        self._recover()

    def __repr__(self) -> str:
        state = "open" if self._lock_fd is not None else "closed"
        return (
            f"<Spool {self.directory} {state} batches={len(self._index)} records={self.records} "
            f"bytes={self.bytes} corrupt={self.corrupt_files}>"
        )

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, policy: SpoolPolicy) -> Spool:
        """Lock and recover the spool the policy names (or the first free default slot)."""
        if policy.directory is not None:
            directory = policy.directory
            fd = _lock(directory)
            if fd is None:
                raise SpoolLockedError(str(directory))
            return cls(directory, policy, fd)
        return cls._first_free_slot(policy.base_directory(), policy)

    @classmethod
    def open_in_child(cls, policy: SpoolPolicy) -> Spool:
        """The spool of a client inherited through ``fork()``, in the child.

        The parent holds its spool, so the child takes a slot of its own: the
        next free default slot, or with ``SpoolPolicy.directory`` the first
        free ``<directory>/forked/slot-N``. A slot a dead child left is
        delivered first by whichever process takes it next.
        """
        if policy.directory is not None:
            return cls._first_free_slot(policy.directory / "forked", policy)
        return cls._first_free_slot(policy.base_directory(), policy)

    @classmethod
    def open_anew(cls, policy: SpoolPolicy, *, main_slot_free: bool) -> Spool:
        """The spool of a client started anew after ``fork()``: the policy's own slot when
        its maker took none (a client deferred in a uWSGI master), unless another process
        (another worker) took it first; else as :meth:`open_in_child`."""
        if main_slot_free:
            try:
                return cls.open(policy)
            except SpoolLockedError:
                pass
        return cls.open_in_child(policy)

    @classmethod
    def _first_free_slot(cls, base: Path, policy: SpoolPolicy) -> Spool:
        for slot in range(MAX_SLOTS):
            directory = base / f"slot-{slot}"
            fd = _lock(directory)
            if fd is not None:
                return cls(directory, policy, fd)
        raise SpoolLockedError(f"{base}/slot-0..{MAX_SLOTS - 1}")

    def _recover(self) -> None:
        for tmp in self.directory.glob("*.tmp"):
            # Never renamed, so never acknowledged as spooled: the process died
            # while writing it and the batch was still in its memory. Gone with it.
            logger.warning("removing unfinished spool file %s", tmp)
            tmp.unlink(missing_ok=True)
        orders = []
        for path in self.directory.glob("*" + SUFFIX):
            stem = path.name[: -len(SUFFIX)]
            if stem.isdigit():
                orders.append(int(stem))
            else:
                self._quarantine(path, "unexpected file name")
        for order in sorted(orders):
            # Only the header is read here (a full spool is up to max_bytes; the app
            # waits for this): a torn file shows in its size. Checksums are verified
            # when a batch is read for delivery.
            path = self._path(order)
            try:
                size, records = read_header(path)
            except (OSError, ValueError) as exc:
                self._quarantine(path, str(exc))
                continue
            self._index[order] = _Item(records, size, None)
            self.bytes += size
            self.records += records
        self._next = (max(orders) + 1) if orders else 0
        if self._index:
            logger.info(
                "spool %s holds %d batches (%d records) from an earlier run; delivering them first",
                self.directory,
                len(self._index),
                self.records,
            )

    # ---------------------------------------------------------------- the queue

    @property
    def batches(self) -> int:
        return len(self._index)

    def append(self, batch: Batch) -> None:
        """Write ``batch`` durably at the tail; sets ``batch.spool_id``.

        Raises SpoolFullError when it would pass ``max_bytes`` and SpoolError
        when the disk refuses (the batch then stays in memory).
        """
        data = encode_batch(batch)
        if self.bytes + len(data) > self.policy.max_bytes:
            raise SpoolFullError(
                f"spool {self.directory} full: {self.bytes} + {len(data)} bytes "
                f"> {self.policy.max_bytes}"
            )
        order = self._next
        path = self._path(order)
        tmp = path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.policy.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            if self.policy.fsync:
                _fsync_dir(self.directory)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SpoolError(f"cannot write {path}: {exc}") from exc
        self._next = order + 1
        self._index[order] = _Item(batch.count, len(data), batch.end_ordinal)
        self.bytes += len(data)
        self.records += batch.count
        batch.spool_id = order

    def head(self, after: int = -1) -> Batch | None:
        """The oldest batch (read from disk), skipping and quarantining corrupt files.

        With ``after``, the oldest whose ``spool_id`` is greater (the batches up
        to ``after`` are in the sender's hands already).
        """
        while self._index:
            found = next(((o, i) for o, i in self._index.items() if o > after), None)
            if found is None:
                return None
            order, item = found
            path = self._path(order)
            try:
                batch = decode_batch(path.read_bytes())
            except (OSError, ValueError) as exc:
                self._forget(order)
                self._quarantine(path, str(exc))
                continue
            batch.spool_id = order
            batch.end_ordinal = item.end_ordinal
            return batch
        return None

    def remove(self, batch: Batch) -> None:
        """Delete a delivered (or deliberately dropped) batch's file."""
        if batch.spool_id is None or batch.spool_id not in self._index:
            return
        order = batch.spool_id
        self._forget(order)
        batch.spool_id = None
        try:
            self._path(order).unlink(missing_ok=True)
        except OSError as exc:
            # Re-delivered after a restart at worst: the server dedups it.
            logger.warning("cannot remove delivered spool file %s: %s", self._path(order), exc)

    def abandon_in_child(self) -> None:
        """In a child after fork(): close the inherited lock descriptor, touch nothing else.

        An ``flock`` belongs to the open file description, which the child's
        copy of the descriptor shares with the parent: a child that kept it
        would keep the parent's spool locked after the parent exits, and the
        next start of the app could not take it. The files are the parent's.
        """
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Release the directory lock (the files stay for the next client)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ helpers

    def _path(self, order: int) -> Path:
        return self.directory / f"{order:016d}{SUFFIX}"

    def _forget(self, order: int) -> None:
        item = self._index.pop(order)
        self.bytes -= item.size
        self.records -= item.records

    def _quarantine(self, path: Path, reason: str) -> None:
        self.corrupt_files += 1
        try:
            self.corrupt_dir.mkdir(exist_ok=True)
            target = self.corrupt_dir / path.name
            os.replace(path, target)
        except OSError as exc:
            logger.error("corrupt spool file %s (%s); cannot move it aside: %s", path, reason, exc)
            return
        logger.error(
            "corrupt spool file %s (%s): moved to %s; its records are not delivered",
            path,
            reason,
            target,
        )


def _lock(directory: Path) -> int | None:
    """Create ``directory`` and take its lock; None when another live client holds it."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise SpoolError(f"cannot use spool directory {directory}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise SpoolError(f"cannot lock spool directory {directory}: {exc}") from exc
    return fd


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
