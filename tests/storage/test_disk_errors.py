"""A disk that refuses writes or syncs: nothing partial remains, nothing is acknowledged, and
storage keeps serving once the disk recovers."""

from __future__ import annotations

import errno
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from logserver.errors import StorageUnavailableError
from logserver.storage import AppendOutcome, StoragePolicy
from logserver.storage._blocks import SEGMENT_HEADER_BYTES
from tests.storage.conftest import FaultyDisk, OpenStorage, messages, read_all, segment_files


def _sizes(data_dir: Path, category: str) -> int:
    return sum(p.stat().st_size for p in segment_files(data_dir, category))


@pytest.mark.parametrize("how", ["error", "partial-then-error", "short-write"])
def test_failed_write_leaves_nothing_and_storage_recovers(
    open_storage: OpenStorage, data_dir: Path, how: str
) -> None:
    """ENOSPC (before or after part of the batch reached the file) or a short write: append
    raises StorageUnavailableError, the file is cut back to where the batch began, the batch is
    not remembered for dedup, and the next append works once space returns."""
    disk = FaultyDisk()
    storage = open_storage(disk=disk)
    storage.append([("c", b"before")], "p", 1)
    size = _sizes(data_dir, "c")

    disk.write_error = errno.ENOSPC
    disk.partial_then_fail = how == "partial-then-error"
    disk.short_write = how == "short-write"
    batch = [("c", b"x" * 500) for _ in range(20)]
    with pytest.raises(StorageUnavailableError) as caught:
        storage.append(batch, "p", 2)
    assert "category 'c'" in caught.value.reason
    assert _sizes(data_dir, "c") == size
    assert messages(read_all(storage, "c")) == [b"before"]
    assert storage.stats().write_errors == 1

    disk.write_error = None
    disk.short_write = False
    assert storage.append(batch, "p", 2) == AppendOutcome(20, False)
    assert len(read_all(storage, "c")) == 21
    storage.close()
    assert len(read_all(open_storage(), "c")) == 21


def test_batch_spanning_categories_is_undone_everywhere(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """When the write to the second category fails, the first category's part (already
    written) is cut back too: a batch is stored whole or not at all."""
    disk = FaultyDisk()
    storage = open_storage(disk=disk)
    storage.append([("a", b"old"), ("b", b"old")])
    sizes = (_sizes(data_dir, "a"), _sizes(data_dir, "b"))
    disk.fail_writes_after = 1  # "a" succeeds, "b" fails
    with pytest.raises(StorageUnavailableError):
        storage.append([("a", b"new"), ("b", b"new")], "p", 1)
    assert (_sizes(data_dir, "a"), _sizes(data_dir, "b")) == sizes
    assert messages(read_all(storage, "a")) == [b"old"]
    disk.fail_writes_after = -1
    assert storage.append([("a", b"new"), ("b", b"new")], "p", 1).stored == 2


def test_failed_cut_moves_writes_to_a_new_segment(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """If even cutting the failed bytes off fails, the segment is retired with the partial
    bytes past its readable end; new writes go to a new segment after them, positions never
    overlap, and readers never see the failed batch."""
    disk = FaultyDisk()
    storage = open_storage(disk=disk)
    storage.append([("c", b"before")])
    disk.write_error = errno.EIO
    disk.partial_then_fail = True
    disk.truncate_error = errno.EIO
    with pytest.raises(StorageUnavailableError):
        storage.append([("c", b"x" * 1000)], "p", 1)
    disk.write_error = disk.truncate_error = None
    storage.append([("c", b"after")], "p", 1)
    assert len(segment_files(data_dir, "c")) == 2
    records = read_all(storage, "c")
    assert messages(records) == [b"before", b"after"]
    # The new segment starts where the old file ends; its first block after its header.
    first = segment_files(data_dir, "c")[0].stat().st_size
    assert records[1].position == first + SEGMENT_HEADER_BYTES


def test_fsync_failure_is_not_acknowledged(open_storage: OpenStorage, data_dir: Path) -> None:
    """An fdatasync error fails every batch waiting on it with StorageUnavailableError; they are
    not remembered as stored; the file is never trusted again (a later fdatasync may succeed
    without the lost pages), so later appends go to a fresh segment and succeed."""
    disk = FaultyDisk()
    storage = open_storage(StoragePolicy(fsync="always"), disk=disk)
    storage.append([("c", b"durable")], "p", 1)
    disk.sync_error = errno.EIO
    with pytest.raises(StorageUnavailableError, match="fsync failed"):
        storage.append([("c", b"lost?")], "p", 2)
    assert storage.stats().sync_errors == 1
    disk.sync_error = None
    assert storage.append([("c", b"retried")], "p", 2) == AppendOutcome(1, False)
    got = messages(read_all(storage, "c"))
    assert got[0] == b"durable" and got[-1] == b"retried"
    assert b"lost?" not in got  # never durable, so never shown to readers
    assert len(segment_files(data_dir, "c")) == 2


def test_new_category_on_a_full_disk_fails_cleanly(open_storage: OpenStorage) -> None:
    """Creating the first segment can fail too: StorageUnavailableError, then works later."""

    class NoNewFiles(FaultyDisk):
        refuse = True

        def open_segment(self, path: Path, *, create: bool) -> int:
            if create and self.refuse:
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            return super().open_segment(path, create=create)

    disk = NoNewFiles()
    storage = open_storage(disk=disk)
    with pytest.raises(StorageUnavailableError):
        storage.append([("c", b"x")])
    assert storage.categories() == []
    disk.refuse = False
    storage.append([("c", b"x")])
    assert storage.categories() == ["c"]


RLIMIT_CHILD = textwrap.dedent(
    """
    import json, random, resource, signal, sys
    from pathlib import Path
    from logserver.errors import StorageUnavailableError
    from logserver.storage import Storage

    BIG = random.Random(3).randbytes(300).hex().encode()  # compressed, still over 100 bytes
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past the limit fails with EFBIG
    data_dir = Path(sys.argv[1])
    seg = data_dir / "categories" / "c" / ("0" * 20 + ".seg")
    result = {}
    with Storage.open(data_dir) as storage:
        storage.append([("c", b"before")], "p", 1)
        size = seg.stat().st_size
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        failures = []
        for limit in (size + 100, size):  # a write crossing the limit, then one starting at it
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
            try:
                storage.append([("c", BIG)], "p", 2)
                failures.append(None)
            except StorageUnavailableError as exc:
                failures.append(exc.reason)
            failures.append(seg.stat().st_size)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        outcome = storage.append([("c", BIG)], "p", 2)
        result = {
            "size_before": size,
            "failures": failures,
            "stored_after": outcome.stored,
            "messages": [r.message.decode() for r in storage.read("c").records],
        }
    print(json.dumps(result))
    """
)


@pytest.mark.process
def test_real_write_failure_with_rlimit_fsize(data_dir: Path) -> None:
    """A real failing write, no injection: a child process under RLIMIT_FSIZE gets a short
    write and then EFBIG from the kernel. Both appends fail with nothing left in the file; after
    the limit is lifted the same batch is stored."""
    done = subprocess.run(
        [sys.executable, "-c", RLIMIT_CHILD, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    size = result["size_before"]
    reason_partial, size_after_partial, reason_efbig, size_after_efbig = result["failures"]
    assert reason_partial and "short write" in reason_partial
    assert reason_efbig and "too large" in reason_efbig.lower()
    assert size_after_partial == size_after_efbig == size
    assert result["stored_after"] == 1
    assert result["messages"] == ["before", random.Random(3).randbytes(300).hex()]
