"""The clean-shutdown record: what a storage that closed cleanly leaves for the next open.

A crash can leave two things that recovery must deal with: a torn write at
the end of a category's last segment (cut back at open), and bytes written to
the kernel but never synced (after a SIGKILL between ``pwrite`` and the group
fdatasync, they sit in the page cache, and a power cut can still take them
back). So after a crash, recovery reads every category's last segment whole,
and syncs whatever it read before the server answers anything
(:mod:`logserver.storage._recovery`).

After a clean close neither can be there, and doing that work anyway makes a
restart cost time in proportion to the number of categories times their
segment size. A storage that closes after a successful final sync, having had
no failed write or sync in its life, writes ``CLEAN``: per category, the name
and size of its last segment. The next open *takes* it (reads it, then deletes
it and syncs the directory, before anything else, so that a crash of the new
process is never mistaken for a clean stop), and trusts each category whose
last segment still has that name and size. A category that differs, a missing
or unreadable record (a crash, a kill, an older server) means recovery as
after a crash.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from logserver.storage._disk import DiskIO

__all__ = ["CLEAN_FILE", "LastSegments", "take_clean", "write_clean"]

log = logging.getLogger(__name__)

CLEAN_FILE = "CLEAN"
_VERSION = 1

#: Per category: (file name of its last segment, its size in bytes).
LastSegments = dict[str, tuple[str, int]]


def write_clean(data_dir: Path, disk: DiskIO, lasts: LastSegments) -> None:
    """Record a clean close (atomically: a temporary file, synced, renamed, directory synced).

    Call only once everything written is durable; raises OSError if the record
    cannot be written (the next open then recovers as after a crash).
    """
    body = {"version": _VERSION, "categories": {k: list(v) for k, v in lasts.items()}}
    temporary = data_dir / f"{CLEAN_FILE}.tmp"
    temporary.write_text(json.dumps(body, separators=(",", ":")))
    disk.sync_path(temporary)
    os.replace(temporary, data_dir / CLEAN_FILE)
    disk.sync_path(data_dir)


def take_clean(data_dir: Path, disk: DiskIO) -> LastSegments | None:
    """The record the last clean close left (None if there is none or it is unreadable),
    removed durably before this returns.

    Raises OSError if an existing record cannot be removed: a process that went on
    with it in place could crash and have its torn tails trusted at the next open.
    """
    path = data_dir / CLEAN_FILE
    disk.unlink(data_dir / f"{CLEAN_FILE}.tmp")
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.warning(
            "clean-shutdown record %s unreadable (%s): recovering as after a crash", path, exc
        )
        text = ""
    disk.unlink(path)
    disk.sync_path(data_dir)
    try:
        body = json.loads(text)
        if body["version"] != _VERSION:
            raise ValueError(f"version {body['version']!r}")
        return {
            str(name): (str(segment), int(size))
            for name, (segment, size) in body["categories"].items()
        }
    except (ValueError, KeyError, TypeError) as exc:
        if text:
            log.warning(
                "clean-shutdown record %s invalid (%s): recovering as after a crash", path, exc
            )
        return None
