"""What a restart reads, repairs and syncs, and what the dedup index then answers.

After a crash the last segment of every category is read whole and everything
read is fdatasynced before the first answer (a batch killed between ``pwrite``
and its fdatasync is in the page cache only, and its resend must not be
answered "duplicate" from bytes a power cut can still take back). After a clean
close the record it left spares both. Older segments are read newest first
across all categories, within one total budget.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from logserver.storage import AppendOutcome, StoragePolicy
from logserver.storage._clean import CLEAN_FILE
from logserver.storage._format import Run
from logserver.storage._recovery import _Tally
from tests.storage.conftest import (
    FaultyDisk,
    JournalDisk,
    OpenStorage,
    messages,
    read_all,
    segment_files,
)

BATCH = [("c", b"killed before its fdatasync")]

# A process whose fdatasync never returns: it appends one batch (the pwrite reaches the
# kernel), says so, and waits in the sync until the test SIGKILLs it.
STALLED = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from logserver.storage import DiskIO, Storage, StoragePolicy

    class StalledSync(DiskIO):
        def fdatasync(self, fd):
            print("syncing", flush=True)
            time.sleep(3600)

    storage = Storage.open(Path(sys.argv[1]), StoragePolicy(fsync="always"), disk=StalledSync())
    storage.append([("c", b"killed before its fdatasync")], "p", 7)
    """
)


def _kill_between_write_and_sync(data_dir: Path) -> None:
    """Run STALLED on ``data_dir`` and SIGKILL it inside its fdatasync (bounded)."""
    child = subprocess.Popen(
        [sys.executable, "-c", STALLED, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "syncing\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)


@pytest.mark.process
def test_a_batch_killed_before_its_sync_is_synced_before_it_is_called_duplicate(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """A process is SIGKILLed between the pwrite of batch p#7 and its fdatasync (the directory
    had been closed cleanly before: the killed process must not leave that record behind).
    The next open finds p#7 whole on disk, and fdatasyncs its segment during the open, so
    by the time the resend of p#7 is answered "duplicate" its bytes are durable: in the
    DiskIO journal, the sync of that segment comes before the answer."""
    first = open_storage()
    for sequence in range(7):
        first.append([("c", f"before {sequence}".encode())], "p", sequence)
    first.close()
    assert (data_dir / CLEAN_FILE).exists()
    _kill_between_write_and_sync(data_dir)
    assert not (data_dir / CLEAN_FILE).exists()

    disk = JournalDisk()
    storage = open_storage(disk=disk)
    (segment,) = segment_files(data_dir, "c")
    assert storage.recovery.synced_segments == 1
    assert storage.append(BATCH, "p", 7) == AppendOutcome(0, True)
    disk.journal.append(("answer", "duplicate p#7", 0))
    kinds = [(kind, path) for kind, path, _ in disk.journal]
    assert kinds.index(("sync", str(segment))) < kinds.index(("answer", "duplicate p#7"))
    assert messages(read_all(storage, "c"))[-1] == b"killed before its fdatasync"


def test_a_clean_restart_reads_and_syncs_only_what_the_budget_allows(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """After a clean close, no last segment needs reading whole and nothing needs syncing:
    with a scan budget of 0 the open reads no segment and syncs none (so it remembers no
    batch: a resend is stored again, at least once). The record is gone once the open
    returns, so a crash of this process is not mistaken for a clean stop."""
    first = open_storage()
    for name in ("a", "b", "c"):
        first.append([(name, b"x")], "p", ord(name))
    first.close()
    disk = JournalDisk()
    storage = open_storage(StoragePolicy(dedup_scan_bytes=0), disk=disk)
    report = storage.recovery
    assert (report.clean_categories, report.scanned_segments, report.synced_segments) == (3, 0, 0)
    assert not [call for call in disk.calls("sync") if call[1].endswith(".seg")]
    assert not (data_dir / CLEAN_FILE).exists()
    assert storage.append([("a", b"x")], "p", ord("a")) == AppendOutcome(1, False)


def test_a_last_segment_changed_after_the_clean_close_is_repaired(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """The record names each last segment's size: one that grew since (garbage appended by
    someone else) is read whole and cut back as after a crash; the others are trusted."""
    first = open_storage()
    first.append([("a", b"kept")], "p", 1)
    first.append([("b", b"kept")], "p", 2)
    first.close()
    (segment,) = segment_files(data_dir, "b")
    size = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(b"\x00garbage" * 10)
    storage = open_storage()
    assert storage.recovery.clean_categories == 1
    assert storage.recovery.truncated_bytes == 80
    assert segment.stat().st_size == size
    assert messages(read_all(storage, "b")) == [b"kept"]


def test_no_clean_record_after_a_failed_sync(open_storage: OpenStorage, data_dir: Path) -> None:
    """A storage that saw a sync fail closes without the record: bytes it wrote may not be
    durable, so the next open reads and syncs as after a crash."""
    disk = FaultyDisk()
    storage = open_storage(disk=disk)
    storage.append([("c", b"ok")], "p", 1)
    disk.sync_error = 5
    with pytest.raises(Exception, match="fsync failed"):
        storage.append([("c", b"refused")], "p", 2)
    disk.sync_error = None
    storage.close()
    assert not (data_dir / CLEAN_FILE).exists()
    again = open_storage()
    assert again.recovery.clean_categories == 0
    assert again.recovery.synced_segments == 1


def test_the_scan_budget_is_total_across_categories(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """200 categories of 3-4 segments each: the open reads the newest segments of all of
    them within one budget (not one budget per category). After a clean close that is all
    it reads; after a crash it also reads every last segment whole. A batch within the
    horizon is a duplicate; one beyond it is stored again; one partly within it is
    completed with the records the open did not see (at least once, never lost)."""
    policy = StoragePolicy(segment_bytes=4096, dedup_scan_bytes=64 * 1024, fsync="never")
    storage = open_storage(policy)
    record = os.urandom(1500)
    wide = [(f"c{i:03}", record) for i in range(200)]
    for round_ in range(7):  # 2 records a segment: the last one half full
        storage.append(wide, "wide", round_)
    storage.append([("c199", b"newest")], "solo", 0)
    storage.close()
    assert len(list((data_dir / "categories").glob("*/*.seg"))) == 800
    # Modification times a second apart per segment (the kernel's clock for them is coarser
    # than these writes), the solo batch's the newest.
    for i in range(200):
        for k, segment in enumerate(segment_files(data_dir, f"c{i:03}")):
            os.utime(segment, (1e9 + k, 1e9 + k + (10 if i == 199 and k == 3 else 0)))

    again = open_storage(policy)
    report = again.recovery
    assert report.clean_categories == 200
    assert report.scanned_bytes <= policy.dedup_scan_bytes
    assert report.scanned_segments >= 16
    assert again.append([("c199", b"newest")], "solo", 0).duplicate
    assert again.append(wide, "wide", 0) == AppendOutcome(200, False)
    partly = again.append(wide, "wide", 6)
    assert not partly.duplicate and 0 < partly.stored < 200
    again.close()
    (data_dir / CLEAN_FILE).unlink()  # as after a crash

    crashed = open_storage(policy)
    report = crashed.recovery
    lasts = sum(segment_files(data_dir, f"c{i:03}")[-1].stat().st_size for i in range(200))
    assert report.clean_categories == 0
    assert lasts <= report.scanned_bytes <= lasts + policy.dedup_scan_bytes
    assert report.synced_segments == 0  # fsync="never" promises nothing to sync for


def test_recovery_remembers_a_bounded_number_of_producers() -> None:
    """However many producers the segments hold, the tally keeps at most twice
    max_producers while it reads, and hands over the newest max_producers."""
    tally = _Tally(max_producers=10, window=64)
    peak = 0
    for n in range(1000):
        run = Run(f"producer-{n}".encode(), 0, 1, received_ns=n, index=0)
        tally.feed([run])
        peak = max(peak, len(tally.complete))
    assert peak <= 20
    assert [producer for producer, _ in tally.stored()] == [
        f"producer-{n}" for n in range(990, 1000)
    ]
