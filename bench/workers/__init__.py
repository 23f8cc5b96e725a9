"""Worker scripts: each runs in its own process, ``python -m bench.workers.NAME CONFIG_JSON``.

A worker reads its configuration from ``argv[1]`` (JSON), does one job and
prints one JSON object as the last line of its stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["config", "emit", "fork_children", "sleep_until", "wait_children"]


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


def fork_children(count: int, child: Callable[[int], int]) -> list[int]:
    """Fork ``count`` children that each run ``child(index)`` and exit with what it returns.

    A child leaves with ``os._exit`` (no atexit handler or buffer of the parent's runs
    twice); one that raises exits 1 after printing the error. The children's pids.
    """
    pids = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child(index)
            except BaseException as exc:
                print(f"child {index}: {exc!r}", file=sys.stderr, flush=True)
            finally:
                os._exit(code)
        pids.append(pid)
    return pids


def wait_children(pids: list[int], deadline: float) -> list[int]:
    """Reap exactly ``pids`` (no other child of the process), SIGKILLing those still alive at
    ``deadline`` (``time.monotonic()``); their exit codes, in the order of ``pids``."""
    codes: dict[int, int] = {}
    while len(codes) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            if pid in codes:
                continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes[pid] = os.waitstatus_to_exitcode(status)
        if len(codes) < len(pids):
            time.sleep(0.05)
    for pid in pids:
        if pid not in codes:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            codes[pid] = -9
    return [codes[pid] for pid in pids]
