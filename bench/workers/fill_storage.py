"""Fill a data directory for the restart case, through storage itself, and close it cleanly.

Config: ``data_dir``, ``categories`` (how many), ``producers`` (how many, each
sending batches with sequences counting up), ``total_bytes`` (messages to
write in all), ``record_bytes``, ``records_per_batch``, ``segment_bytes``.
Batch ``n`` goes to category ``n % categories`` from producer
``n % producers``, so every category holds the same share of the bytes and
every producer's batches. Messages are random bytes: what is stored is what
was logged, whatever the compression. Prints the bytes, segments and batches
written.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from bench.workers import config, emit
from logserver.storage import Storage, StoragePolicy


def main() -> None:
    cfg = config()
    data_dir = Path(cfg["data_dir"])
    categories = int(cfg["categories"])
    producers = int(cfg["producers"])
    per_batch = int(cfg["records_per_batch"])
    record = int(cfg["record_bytes"])
    policy = StoragePolicy(fsync="never", segment_bytes=int(cfg["segment_bytes"]))
    rng = random.Random(7)
    pool = rng.randbytes(record * per_batch * 64)
    sequences = [0] * producers
    written = batches = 0
    with Storage.open(data_dir, policy) as storage:
        while written < int(cfg["total_bytes"]):
            producer = batches % producers
            start = rng.randrange(0, len(pool) - record * per_batch)
            messages = [
                pool[start + i * record : start + (i + 1) * record] for i in range(per_batch)
            ]
            category = f"app-{batches % categories:03d}"
            storage.append(
                [(category, m) for m in messages], f"host-{producer:05d}", sequences[producer]
            )
            sequences[producer] += 1
            written += record * per_batch
            batches += 1
    segments = list(data_dir.glob("categories/*/*.seg"))
    emit(
        {
            "message_bytes": written,
            "disk_bytes": sum(os.path.getsize(s) for s in segments),
            "segments": len(segments),
            "batches": batches,
        }
    )


if __name__ == "__main__":
    main()
