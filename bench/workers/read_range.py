"""A full read of a category against a read of its last part (``--since``), in one process.

Both through ``logserver.read`` with the servers given, formatted as ``logserver cat``
prints them (text) into /dev/null: what is compared is what the servers and the reader
do, without the interpreter's start-up or ZooKeeper. ``since_ns``: where the last part
starts. Alternates the two ``repeats`` times.
"""

from __future__ import annotations

import os
import time

import logserver
from bench.workers import config, emit
from logserver.reader._output import formatter


def _read(servers: list[str], category: str, since_ns: int | None) -> tuple[float, int]:
    text = formatter("text")
    started = time.monotonic()
    records = 0
    with (
        open(os.devnull, "wb") as out,
        logserver.read(None, category, servers=servers, since=since_ns) as reader,
    ):
        for block in reader.blocks():
            out.writelines(text(block))
            records += len(block)
    return time.monotonic() - started, records


def main() -> None:
    cfg = config()
    servers = [str(s) for s in cfg["servers"]]
    category = str(cfg["category"])
    since_ns = int(cfg["since_ns"])
    full: list[float] = []
    part: list[float] = []
    counts: dict[str, int] = {}
    for _ in range(int(cfg.get("repeats", 3))):
        seconds, counts["full"] = _read(servers, category, None)
        full.append(seconds)
        seconds, counts["since"] = _read(servers, category, since_ns)
        part.append(seconds)
    emit({"full": full, "since": part, "records": counts})


if __name__ == "__main__":
    main()
