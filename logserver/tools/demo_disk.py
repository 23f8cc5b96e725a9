"""The demo's lost disk (``logserver demo --copies 2 --lose-disk``): the loss, then the cure.

Mid-run, the server the app sends to is SIGKILLed and its data directory
deleted, as a dead disk or a terminated VM would leave it; it comes back empty
(a new server id). With two copies per batch nothing acknowledged is lost: the
other copy of every batch is on a surviving server. Once the app is done, the
operator's two commands run, as an operator would type them: ``logserver
forget`` (the old disk is gone for good) and ``logserver repair --copies N``,
which copies every batch that lost a copy back to N live servers. The demo's
check then reads every server and counts each record's copies.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from logserver.storage import read_server_id

__all__ = ["LostDisk", "lose_disk", "repair_after_loss"]


@dataclass
class LostDisk:
    """What the demo did about lost disks, for its report."""

    #: Server ids whose data directory the demo deleted.
    lost_ids: list[str] = field(default_factory=list)
    #: What ``forget`` and ``repair`` said: exit status and the repair's JSON summary.
    forgotten: list[str] = field(default_factory=list)
    repair_status: int | None = None
    repair: dict[str, Any] = field(default_factory=dict)
    output: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "lost_ids": self.lost_ids,
            "forgotten": self.forgotten,
            "repair_status": self.repair_status,
            "repair": self.repair,
        }


def lose_disk(server: Any, lost: LostDisk) -> None:
    """SIGKILL ``server`` and delete its data directory (the caller restarts it, empty)."""
    old = read_server_id(server.data_dir)
    server.kill()
    shutil.rmtree(server.data_dir, ignore_errors=True)
    if old:
        lost.lost_ids.append(old)


def _logserver(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logserver", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def repair_after_loss(zk_hosts: str, zk_path: str, copies: int, lost: LostDisk, event: Any) -> None:
    """``forget`` every lost server id, then ``repair --copies``; ``event(kind)`` marks each."""
    where = ["--zk", zk_hosts, "--zk-path", zk_path]
    for server_id in lost.lost_ids:
        # A killed server's member lives until its session expires: forget refuses it
        # until then (it looks registered), so try again for a while.
        deadline = time.monotonic() + 30
        while True:
            done = _logserver("forget", server_id, "--yes", *where)
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        lost.output += done.stdout + done.stderr
        if done.returncode == 0:
            lost.forgotten.append(server_id)
            event("forget")
    event("repair")
    done = _logserver("repair", "--copies", str(copies), *where)
    lost.output += done.stdout + done.stderr
    lost.repair_status = done.returncode
    lines = done.stdout.strip().splitlines()
    if lines:
        try:
            lost.repair = dict(json.loads(lines[-1]).get("repair", {}))
        except ValueError:
            lost.repair = {}
    event("repaired")
