"""Message corpora for the compression cases, and a quick look at how they compress.

- ``varlog``: this machine's own logs: every readable, uncompressed text file
  under ``/var/log`` (``dpkg.log``, ``apt/term.log``, ``alternatives.log``, ...),
  one message per non-empty line, cycled to the size asked for. Real lines,
  from whatever this machine happens to have logged; their count and mean
  length are reported with every figure. A machine with fewer than
  :data:`MIN_VARLOG_LINES` such lines raises CorpusError rather than
  pretending.
- ``json``: the lines ``LogServerHandler``'s formatter writes for
  ``logger.info("order %08d shipped to %s", ...)`` style calls from a few
  loggers and levels (the formatter itself, not a copy of its output).
- ``random``: ``os.urandom`` messages: incompressible.
- ``fixed``: the suite's standard 100-byte message (``b"x" * 100``), which is
  what the throughput cases send.

``python -m bench.corpus`` prints the Zstandard ratio and speed of each corpus
by level, in batches of the client's default size: the measurement behind
the default level.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

from logwire.compression import CompressionPolicy, compress_columns, join_columns
from logwire.packed import pack_lengths

__all__ = ["CORPORA", "MIN_VARLOG_LINES", "CorpusError", "corpus", "varlog_lines"]

MIN_VARLOG_LINES = 1000
CORPORA = ("varlog", "json", "random", "fixed")
_SKIP_SUFFIXES = (".gz", ".xz", ".bz2", ".zst", ".journal", ".journal~")


class CorpusError(RuntimeError):
    """The corpus cannot be built on this machine."""


def varlog_lines(root: Path = Path("/var/log")) -> list[bytes]:
    """Every non-empty line of the readable text files under ``root``, file by file."""
    lines: list[bytes] = []
    for path in sorted(root.rglob("*")):
        if path.name.endswith(_SKIP_SUFFIXES) or not path.is_file() or path.is_symlink():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if b"\x00" in data[:4096]:  # binary: wtmp, lastlog, journals
            continue
        lines += [line for line in data.splitlines() if line.strip()]
    return lines


def _json_lines(n: int, seed: int = 7) -> Iterator[bytes]:
    from logclient import JsonFormatter

    rng = random.Random(seed)
    formatter = JsonFormatter()
    loggers = ["shop.orders", "shop.payments", "shop.stock", "web.access", "worker.mail"]
    levels = [logging.INFO] * 8 + [logging.WARNING, logging.ERROR]
    cities = ["Lyon", "Porto", "Gdansk", "Leeds", "Basel", "Turku", "Graz"]
    created = 1_780_000_000.0
    for i in range(n):
        created += rng.random() * 0.01
        record = logging.LogRecord(
            rng.choice(loggers),
            rng.choice(levels),
            __file__,
            1,
            "order %08d shipped to %s (%d items, %.2f EUR)",
            (i, rng.choice(cities), rng.randint(1, 9), rng.random() * 300),
            None,
        )
        record.created = created
        yield formatter.format(record).encode()


def corpus(name: str, n: int, size: int = 100) -> list[bytes]:
    """``n`` messages of corpus ``name`` (``size``: the bytes of ``random`` and ``fixed`` ones)."""
    if name == "varlog":
        lines = varlog_lines()
        if len(lines) < MIN_VARLOG_LINES:
            raise CorpusError(
                f"/var/log holds {len(lines)} text lines here, fewer than {MIN_VARLOG_LINES}"
            )
        return list(itertools.islice(itertools.cycle(lines), n))
    if name == "json":
        return list(_json_lines(n))
    if name == "random":
        return [os.urandom(size) for _ in range(n)]
    if name == "fixed":
        return [b"x" * size] * n
    raise ValueError(f"unknown corpus {name!r}; one of {CORPORA}")


def _measure(messages: list[bytes], level: int, batch: int) -> tuple[float, float]:
    """(compressed / message bytes, MB/s) for ``messages`` in batches of ``batch``."""
    policy = CompressionPolicy(level=level, min_bytes=0)
    stored = 0
    seconds = 0.0
    for i in range(0, len(messages), batch):
        chunk = messages[i : i + batch]
        columns = join_columns(pack_lengths(chunk), chunk)
        started = time.perf_counter()
        _codec, payload = compress_columns(columns, policy)
        seconds += time.perf_counter() - started
        stored += len(payload)
    total = sum(map(len, messages))
    return stored / total, total / seconds / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=8_600, help="records per batch")
    parser.add_argument("--levels", type=int, nargs="+", default=[-5, -1, 1, 3, 6])
    args = parser.parse_args()
    lines = varlog_lines()
    print(
        f"/var/log: {len(lines)} lines, {sum(map(len, lines)) / max(1, len(lines)):.1f} bytes "
        f"on average; batches of {args.batch} records"
    )
    for name in CORPORA:
        try:
            messages = corpus(name, args.records)
        except CorpusError as exc:
            print(f"{name}: {exc}")
            continue
        mean = sum(map(len, messages)) / len(messages)
        figures = ", ".join(
            f"level {level}: {ratio:.3f} at {speed:.0f} MB/s"
            for level in args.levels
            for ratio, speed in [_measure(messages, level, args.batch)]
        )
        print(f"{name} ({mean:.0f} B/message): {figures}")


if __name__ == "__main__":
    main()
