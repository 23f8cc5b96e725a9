"""Worker scripts: each runs in its own process, ``python -m bench.workers.NAME CONFIG_JSON``.

A worker reads its configuration from ``argv[1]`` (JSON), does one job and
prints one JSON object as the last line of its stdout.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

__all__ = ["config", "emit", "sleep_until"]


def config() -> dict[str, Any]:
    """The worker's configuration (the JSON object in ``argv[1]``)."""
    return dict(json.loads(sys.argv[1])) if len(sys.argv) > 1 else {}


def emit(result: dict[str, Any]) -> None:
    """Hand the result back to the suite: one JSON line on stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def sleep_until(deadline: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``deadline`` (CLOCK_MONOTONIC: shared by processes)."""
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
