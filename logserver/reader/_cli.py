"""``logserver cat`` and ``logserver categories``: the reader for operators.

``cat`` is a :class:`~logserver.reader.Reader` whose blocks are printed
(``_output``); its warnings (a server unreachable, a gap) go to stderr as they
happen, and so does a warning for each server that may hold records of the
category but is not read (the data inventory's: not registered, or registered
and silent). Exit status: 0 when everything was read (and for a following
reader stopped with Ctrl-C, and when the output's reader went away: ``|
head``), also when only such warnings were given; 1 when a source could not be
read (the output misses its records); 2 for bad arguments; with ``--strict``,
3 whenever a server could not be read (a failed source or a warning).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logserver.errors import ConfigError, LogServerError
from logserver.tools.inventory import EXIT_INCOMPLETE

if TYPE_CHECKING:
    from logserver.reader._report import ReadEvent

__all__ = ["add_arguments", "run_cat", "run_categories"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: What ``-f`` alone shows of the past (as journalctl does).
FOLLOW_LAST = 10


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--zk", help="read from every server registered in this ZooKeeper")
    parser.add_argument("--zk-path", default="/logservers")
    parser.add_argument(
        "--server", action="append", default=[], help="host:port of a server to read (repeatable)"
    )


def add_arguments(
    sub: Any,
    add_zk_tls: Callable[[argparse.ArgumentParser], None],
    add_tls: Callable[[argparse.ArgumentParser], None],
) -> None:
    """The ``cat`` and ``categories`` subcommands."""
    cat = sub.add_parser(
        "cat",
        help="a category's records from all servers, merged by time, each record once",
        description="Print a category's records from every server, merged by receive time, "
        "each record once (copies on several servers are shown once).",
    )
    cat.add_argument("category")
    _source_arguments(cat)
    cat.add_argument(
        "--data-dir",
        action="append",
        default=[],
        type=Path,
        help="read a server's files directly, e.g. of a server that is down (repeatable)",
    )
    cat.add_argument(
        "--since", help="from this time on: RFC 3339 (2026-01-05T10:00:00Z), a date, or 15m, 2h ago"
    )
    cat.add_argument("--until", help="before this time (same forms as --since)")
    cat.add_argument(
        "-n", "--lines", type=int, metavar="N", help="only the last N records (of the range)"
    )
    cat.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help=f"keep printing records as they arrive, from every server (alone: the last "
        f"{FOLLOW_LAST} first); Ctrl-C ends it",
    )
    cat.add_argument(
        "--grep", metavar="REGEX", help="only records matching this RE2 pattern (on the servers)"
    )
    fmt = cat.add_mutually_exclusive_group()
    fmt.add_argument(
        "--json",
        action="store_true",
        help="one JSON object a line: time, category, message, server, producer, sequence, index",
    )
    fmt.add_argument(
        "--raw", action="store_true", help="the message bytes only, each followed by a newline"
    )
    cat.add_argument(
        "--strict",
        action="store_true",
        help="exit 3 when a server that holds data of the category could not be read "
        "(it is always reported on stderr)",
    )
    add_zk_tls(cat)
    add_tls(cat)

    categories = sub.add_parser(
        "categories",
        help="every category with its records, bytes, first and last time",
        description="List every category the servers hold: records and bytes stored (a "
        "record stored on two servers counts twice), first and last receive time.",
    )
    _source_arguments(categories)
    categories.add_argument("--json", action="store_true", help="one JSON object per category")
    add_zk_tls(categories)
    add_tls(categories)


def _print_event(event: ReadEvent) -> None:
    if event.kind == "missed":
        print(f"logserver cat: warning: {event.text}", file=sys.stderr, flush=True)
    else:
        print(f"logserver cat: {event}", file=sys.stderr, flush=True)


#: The pipe buffer ``cat`` asks for: Linux's ``/proc/sys/fs/pipe-max-size`` default,
#: which an unprivileged process may set.
PIPE_BYTES = 1 << 20


def widen_pipe(fd: int, size: int = PIPE_BYTES) -> int:
    """Grow the pipe ``fd`` writes to (when it is one) to ``size`` bytes; return its size.

    A pipe holds 64 KiB by default, so each 1 MiB block of output woke the reader
    (``| grep``, ``| wc``) and put ``cat`` to sleep 16 times: with a 1 MiB pipe,
    ``cat`` of a million records into a pipe took about 20 % less wall time, text
    and ``--json`` alike. Not a pipe, a size over the system's limit, or a system
    without ``F_SETPIPE_SZ``: the output is left as it is (0 for not a pipe).
    """
    setter = getattr(fcntl, "F_SETPIPE_SZ", None)
    getter = getattr(fcntl, "F_GETPIPE_SZ", None)
    if setter is None or getter is None:
        return 0
    try:
        current = fcntl.fcntl(fd, getter)
    except OSError:
        return 0  # not a pipe: a file, a terminal, /dev/null
    if current >= size:
        return current
    try:
        return fcntl.fcntl(fd, setter, size)
    except OSError:
        return current  # over pipe-max-size, or the pipe's user is over its quota


def _quiet_stdout() -> None:
    """The reader of our output went away: point stdout at /dev/null, so that the
    interpreter's last flush does not complain about the broken pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def run_cat(args: argparse.Namespace, tls: Any, zk_tls: Any) -> int:
    """``logserver cat``: see the module docstring for the exit status."""
    from logserver.reader._output import formatter
    from logserver.reader._reader import read

    last = args.lines
    if args.follow and last is None and args.since is None:
        last = FOLLOW_LAST
    try:
        reader = read(
            args.zk,
            args.category,
            since=args.since,
            until=args.until,
            last=last,
            grep=args.grep,
            follow=args.follow,
            zk_path=args.zk_path,
            servers=args.server,
            data_dirs=args.data_dir,
            tls=tls,
            zk_tls=zk_tls,
            on_event=_print_event,
        )
        # ZooKeeper first: registrations and the data inventory (servers registered as
        # speaking TLS without --tls are a usage error, said before anything is read).
        reader.sources.start()
    except (ConfigError, ValueError) as exc:
        print(f"logserver cat: {exc}", file=sys.stderr)
        return EXIT_USAGE
    fmt = formatter("json" if args.json else "raw" if args.raw else "text")
    out = sys.stdout.buffer
    widen_pipe(out.fileno())
    follow = args.follow
    if follow:
        # Ctrl-C (or a SIGTERM) ends a following reader with status 0, also when it was
        # started where SIGINT is ignored (a background job of a script).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with reader:
            for block in reader.blocks():
                for piece in fmt(block):
                    out.write(piece)
                if follow:
                    out.flush()
            out.flush()
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        if follow:
            return EXIT_OK
        raise
    report = reader.report
    if report.problems:
        failed = sorted({p.source for p in report.problems})
        print(
            f"logserver cat: incomplete: records of {', '.join(failed)} are missing",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE if args.strict else EXIT_FAILED
    if report.missed and args.strict:
        return EXIT_INCOMPLETE
    return EXIT_OK


def run_categories(args: argparse.Namespace, tls: Any, zk_tls: Any) -> int:
    """``logserver categories``: one line (or JSON object) per category, over all servers."""
    from logserver.reader._categories import category_table

    if not args.zk and not args.server:
        print("logserver categories: give --zk or --server", file=sys.stderr)
        return EXIT_USAGE
    try:
        table, problems = category_table(args.zk, args.zk_path, args.server, tls, zk_tls)
    except ConfigError as exc:
        print(f"logserver categories: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LogServerError as exc:
        print(f"logserver categories: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for problem in problems:
        print(f"logserver categories: {problem}; its categories are missing", file=sys.stderr)
    if args.json:
        for row in table:
            print(json.dumps(row.to_json()))
    else:
        print(table_text(table))
    return EXIT_FAILED if problems else EXIT_OK


def table_text(rows: list[Any]) -> str:
    from logserver.reader._records import format_time

    lines = [("CATEGORY", "RECORDS", "BYTES", "FIRST", "LAST", "SERVERS")]
    for r in rows:
        lines.append(
            (
                r.category,
                "-" if r.records is None else str(r.records),
                "-" if r.bytes is None else str(r.bytes),
                format_time(r.first_ns, 0) if r.first_ns else "-",
                format_time(r.last_ns, 0) if r.last_ns else "-",
                str(r.servers),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(6)]
    return "\n".join(
        "  ".join(
            cell.rjust(w) if i in (1, 2, 5) else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )
