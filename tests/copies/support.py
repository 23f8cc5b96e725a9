"""What the copy tests share: batches written to two servers each (as a client with two copies
does), and counting each record's copies on the live servers."""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from logserver.tools.launcher import LogServerProcess
from logwire.idl import log_thrift
from tests.readback import read_server
from tests.thrift_clients import connect

Key = tuple[str, int, int]


@dataclass
class Written:
    """What a test wrote: each record's (category, message, received time unknown) by key."""

    records: dict[tuple[str, Key], bytes]

    def keys(self, category: str) -> set[Key]:
        return {k for c, k in self.records if c == category}


def write_pairs(
    servers: Sequence[LogServerProcess],
    categories: Sequence[str],
    *,
    producers: int = 2,
    batches: int = 30,
    records: int = 20,
    size: int = 40,
    seed: int = 7,
) -> Written:
    """Each producer's batches go to two of the servers (rotating pairs, as copies=2 would),
    over the categories in turn: some batches in one category, some in two."""
    rng = random.Random(seed)
    written: dict[tuple[str, Key], bytes] = {}
    with contextlib.ExitStack() as stack:
        clients = {s.endpoint: stack.enter_context(connect(s.endpoint)) for s in servers}
        endpoints = [s.endpoint for s in servers]
        for p in range(producers):
            producer = f"producer{p}"
            for seq in range(batches):
                cats = [categories[(seq + k) % len(categories)] for k in range(1 + seq % 2)]
                entries = []
                for i in range(records):
                    category = cats[i % len(cats)]
                    message = f"{producer}-{seq}-{i}-".encode() + rng.randbytes(size).hex().encode()
                    entries.append(log_thrift.LogEntry(category=category, message=message))
                    written[(category, (producer, seq, i))] = message
                pair = (seq + p) % len(endpoints)
                for endpoint in (endpoints[pair], endpoints[(pair + 1) % len(endpoints)]):
                    clients[endpoint].Append(
                        log_thrift.AppendBatch(producer=producer, sequence=seq, entries=entries)
                    )
    return Written(written)


def copies_per_record(
    servers: Sequence[LogServerProcess], category: str
) -> tuple[Counter[Key], dict[Key, bytes], int]:
    """How many live servers hold each record, its message, and how many records sit on one
    server more than once (there must be none)."""
    counts: Counter[Key] = Counter()
    messages: dict[Key, bytes] = {}
    doubled = 0
    for server in servers:
        if not server.alive():
            continue
        keys = Counter()
        for record in read_server(server.endpoint, category):
            keys[record.key] += 1
            messages[record.key] = record.message
        doubled += sum(n - 1 for n in keys.values())
        counts.update(keys.keys())
    return counts, messages, doubled


def logserver(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logserver", *args], capture_output=True, text=True, timeout=timeout
    )


def repair(zk_hosts: str, zk_path: str, *args: str) -> tuple[int, dict, str]:
    """Run ``logserver repair``; (exit status, its JSON summary, its output)."""
    done = logserver("repair", "--zk", zk_hosts, "--zk-path", zk_path, *args)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "{}"
    try:
        summary = json.loads(last).get("repair", {})
    except ValueError:
        summary = {}
    return done.returncode, summary, done.stdout + done.stderr
