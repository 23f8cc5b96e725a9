"""The server id: a data directory's persistent identity.

A server is its data: the id is made on the first start in a data directory
and kept in ``data_dir/SERVER_ID``, so a restart keeps it and a wiped (or
re-imaged, or new) directory gets a new one. That is what the data inventory
in ZooKeeper and ``logserver repair`` count copies by: an endpoint can come
back empty after a lost disk, and must then not pass for the server that held
the data.

The file is written once, atomically: a temporary file, fsynced, renamed into
place, and the directory fsynced, so after a power loss the id is either there
whole or not at all (then the next start makes one, and nothing was stored
under the lost one: storage opens only after the id exists). A file that is
there but does not hold a valid id is never replaced silently: the server
refuses to start until an operator looks (replacing it would make a new server
out of a directory that holds another's data).
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from logserver.errors import StorageUnavailableError

__all__ = ["SERVER_ID_FILE", "new_server_id", "read_server_id", "server_id_of", "server_id_problem"]

SERVER_ID_FILE = "SERVER_ID"
#: 16 lowercase hex digits (64 random bits): short enough to type into ``logserver forget``.
_ID = re.compile(r"[0-9a-f]{16}\Z")


def new_server_id() -> str:
    """A fresh random server id."""
    return secrets.token_hex(8)


def server_id_problem(text: str) -> str | None:
    """Why ``text`` is not a server id (None when it is one)."""
    if not _ID.match(text):
        return f"a server id is 16 lowercase hex digits, not {text[:40]!r}"
    return None


def read_server_id(data_dir: Path) -> str | None:
    """The id kept in ``data_dir`` (None when it has none yet); StorageUnavailableError if the
    file is there but unreadable or invalid."""
    path = Path(data_dir) / SERVER_ID_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageUnavailableError(f"cannot read the server id in {path}: {exc}") from exc
    problem = server_id_problem(text)
    if problem is not None:
        raise StorageUnavailableError(
            f"{path} does not hold a server id ({problem}); if this directory is really new, "
            "delete the file and the server makes a new id"
        )
    return text


def server_id_of(data_dir: Path, *, durable: bool = True) -> tuple[str, bool]:
    """The id of ``data_dir``, made and written now if it has none: (id, made now).

    The caller holds the directory's lock, so no other process writes it at the
    same time. ``durable``: fsync the file and the directory (off only with
    ``fsync="never"``, where nothing else is synced either). Plain system calls,
    not storage's ``DiskIO`` seam: this happens once per directory, and the
    seam's users count and fail the syncs of segments.
    """
    found = read_server_id(data_dir)
    if found is not None:
        return found, False
    server_id = new_server_id()
    path = Path(data_dir) / SERVER_ID_FILE
    tmp = path.with_name(f".{SERVER_ID_FILE}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            data = f"{server_id}\n".encode("ascii")
            if os.write(fd, data) != len(data):
                raise OSError(0, "short write")
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if durable:
            dir_fd = os.open(data_dir, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageUnavailableError(
            f"cannot write the server id to {path}: {exc.strerror or exc}"
        ) from exc
    return server_id, True
