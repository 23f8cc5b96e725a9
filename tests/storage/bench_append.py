"""Append throughput of the storage engine alone (not collected by pytest).

Batches of 1,000 records of 100 bytes, one category, each batch with its own
(producer, sequence) as the Append call sends them; fsync "always" and
"never", 1 and 4 appending threads. Run with::

    .venv/bin/python -m tests.storage.bench_append [--seconds 3] [--dir /path/on/the/real/disk]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

from logserver.storage import FsyncMode, Storage, StoragePolicy

RECORDS_PER_BATCH = 1000
RECORD_BYTES = 100


def run(root: Path, fsync: FsyncMode, threads: int, seconds: float) -> tuple[float, float]:
    """Return (records per second, fdatasync calls per batch)."""
    batch = [("bench", bytes([65 + i % 26]) * RECORD_BYTES) for i in range(RECORDS_PER_BATCH)]
    data_dir = Path(tempfile.mkdtemp(dir=root))
    try:
        with Storage.open(data_dir, StoragePolicy(fsync=fsync)) as storage:
            deadline = time.perf_counter() + seconds
            counts = [0] * threads

            def work(t: int) -> None:
                sequence = 0
                while time.perf_counter() < deadline:
                    storage.append(batch, f"bench-{t}", sequence)
                    sequence += 1
                counts[t] = sequence

            workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
            started = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            elapsed = time.perf_counter() - started
            stats = storage.stats()
        batches = sum(counts)
        return batches * RECORDS_PER_BATCH / elapsed, stats.fsyncs / max(batches, 1)
    finally:
        shutil.rmtree(data_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: $TMPDIR)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.gettempdir())
    print(f"{RECORDS_PER_BATCH} x {RECORD_BYTES}-byte records per batch, {args.seconds} s each")
    modes: tuple[FsyncMode, ...] = ("always", "never")
    for fsync in modes:
        for threads in (1, 4):
            rate, syncs = run(root, fsync, threads, args.seconds)
            print(
                f"fsync={fsync:<6} threads={threads}: {rate / 1e6:5.2f} M records/s "
                f"({rate / RECORDS_PER_BATCH:7.0f} batches/s, {syncs:.2f} fdatasync per batch)"
            )


if __name__ == "__main__":
    main()
