"""A real crash: SIGKILL a process that is appending, at random moments, again and again.

The child appends numbered batches from several threads (fsync="always", small segments so
rotation happens too) and prints each acknowledged (producer, sequence). Each new child
resumes every producer after its last acknowledged batch, so the batch in flight at the kill
is retried exactly as a real client would. After every kill the parent opens the directory
and checks that every acknowledged batch is there whole, and that no record is stored twice.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from logserver.storage import Storage, StoragePolicy
from tests.storage.conftest import read_all

pytestmark = pytest.mark.process

PRODUCERS = 4
ROUNDS = 8

CHILD = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from logserver.storage import Storage, StoragePolicy

    def batch(producer, sequence):
        n, pad = 1 + (sequence * 7) % 40, sequence % 50
        return [
            (f"cat{(sequence + i) % 3 if sequence % 4 == 0 else sequence % 3}",
             f"{producer}:{sequence}:{i}:".encode() + b"x" * pad)
            for i in range(n)
        ]

    data_dir = Path(sys.argv[1])
    starts = [int(s) for s in sys.argv[2].split(",")]
    storage = Storage.open(data_dir, StoragePolicy(fsync="always", segment_bytes=16384))
    lock = threading.Lock()
    print("ready", flush=True)

    def run(t):
        producer, sequence = f"t{t}", starts[t]
        while True:
            storage.append(batch(producer, sequence), producer, sequence)
            with lock:
                sys.stdout.write(f"{producer} {sequence}\\n")
                sys.stdout.flush()
            sequence += 1

    for t in range(len(starts)):
        threading.Thread(target=run, args=(t,), daemon=True).start()
    threading.Event().wait()
    """
)


def expected_batch(producer: str, sequence: int) -> dict[int, bytes]:
    """Index -> message of the batch the child sends as (producer, sequence)."""
    n, pad = 1 + (sequence * 7) % 40, sequence % 50
    return {i: f"{producer}:{sequence}:{i}:".encode() + b"x" * pad for i in range(n)}


def _check(data_dir: Path, acked: set[tuple[str, int]]) -> int:
    """Every acknowledged batch whole, nothing twice; return the records stored."""
    with Storage.open(data_dir, StoragePolicy(fsync="never")) as storage:
        seen: Counter[tuple[str, int, int]] = Counter()
        for category in storage.categories():
            for r in read_all(storage, category):
                assert r.message == expected_batch(r.producer, r.sequence)[r.index], r
                seen[(r.producer, r.sequence, r.index)] += 1
    twice = [key for key, n in seen.items() if n > 1]
    assert not twice, f"stored more than once: {twice[:5]}"
    for producer, sequence in acked:
        missing = [
            i for i in expected_batch(producer, sequence) if (producer, sequence, i) not in seen
        ]
        assert not missing, f"acknowledged batch {producer}#{sequence} lost records {missing}"
    return len(seen)


def test_sigkill_never_loses_an_acknowledged_batch(data_dir: Path) -> None:
    """SIGKILL at random moments (during recovery, appends, syncs, rotation): every sequence
    the child printed as acknowledged is present exactly once after reopening."""
    rng = random.Random(1234)
    acked: set[tuple[str, int]] = set()
    next_sequence = [0] * PRODUCERS
    kills_after_acks = 0
    for round_ in range(ROUNDS):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data_dir), ",".join(map(str, next_sequence))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,  # readline must not buffer past "ready": communicate() reads the raw fd
        )
        assert child.stdout is not None
        if round_ % 4:  # mostly kill while appending; sometimes wherever it is (e.g. recovery)
            assert child.stdout.readline().startswith(b"ready")
            time.sleep(rng.uniform(0.0, 0.25))
        else:
            time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL, err.decode()
        # A line cut by the kill has no newline; "ready" is not an acknowledgement.
        lines = [line for line in out.decode().split("\n")[:-1] if line != "ready"]
        for line in lines:
            producer, sequence = line.split()
            acked.add((producer, int(sequence)))
            t = int(producer[1:])
            assert int(sequence) == next_sequence[t], (
                f"{line!r} out of order, expected {next_sequence[t]}"
            )
            next_sequence[t] = int(sequence) + 1
        kills_after_acks += bool(lines)
        _check(data_dir, acked)
    assert kills_after_acks >= ROUNDS // 2, "most kills should hit a child that was appending"
    assert len(acked) > 100
