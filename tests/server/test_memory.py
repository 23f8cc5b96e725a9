"""keep_freed_memory: large buffers are reused instead of faulted in afresh (glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.process  # the probe runs in child processes

_PROBE = """
import resource, sys
from logserver.memory import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory() is None
parts = [b"x" * 100] * 11_000
def batch():
    # Like a server's batch: a few buffers of about 1.1 MB alive at once, then freed.
    frame = b"".join(parts)
    messages = b"".join(parts)
    encoded = b"".join(parts)
    del frame, messages, encoded
for _ in range(5):
    batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_megabyte_buffers_reuse_warm_pages_once_tuned() -> None:
    """Without tuning, glibc hands the freed buffers back and faults them in afresh
    (hundreds of page faults per batch); with it the heap keeps the pages and 50
    batches fault almost never."""
    assert faults("default") > 50 * 100
    assert faults("tuned") < 50 * 5
