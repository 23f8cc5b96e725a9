"""``logserver repair``: the command line around :class:`~logserver.tools.repair.Repairer`.

Exit status: 0 when every batch of the categories repaired has the copies asked
for on live servers and no server that holds data is missing; 3 when not (what
is short, and why, is on standard output; the last line is one JSON object);
1 when ZooKeeper cannot be read; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys

from logserver.tools.inventory import EXIT_INCOMPLETE, ClusterView, Coverage, read_cluster
from logserver.tools.repair._plan import LiveServer
from logserver.tools.repair._repair import CategoryReport, Repairer, RepairReport
from logserver.tools.repair._servers import ServerCalls
from logwire.categories import category_problem

__all__ = ["add_arguments", "run_repair"]


def add_arguments(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    """Add ``repair``."""
    from logserver.cli import add_tls_arguments, add_zk_tls_arguments

    p = sub.add_parser(
        "repair",
        help="bring every record back to N copies on live servers",
        description=(
            "Compare what the live servers hold (from their indexes: no record is read to "
            "compare) and copy the batches that have fewer than --copies copies, with their "
            "original ids and receive times. Safe while apps write, safe to interrupt and "
            "run again. Exit 0 only when every batch has the copies asked for."
        ),
    )
    p.add_argument("--zk", required=True, help="ZooKeeper connection string")
    p.add_argument("--zk-path", default="/logservers", help="the servers' registration path")
    p.add_argument("--copies", type=int, default=2, help="copies every batch should have (2)")
    p.add_argument(
        "--category", action="append", default=[], help="only this category (repeatable)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say what is short and what would be copied"
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds a server has to answer one call"
    )
    add_zk_tls_arguments(p)
    add_tls_arguments(p)
    p.set_defaults(handler=run_repair)


def run_repair(args: argparse.Namespace) -> int:
    from logserver.cli import EXIT_USAGE, tls_policy, zk_tls_policy

    if not 1 <= args.copies <= 16:
        print("logserver repair: --copies must be within 1..16", file=sys.stderr)
        return EXIT_USAGE
    for category in args.category:
        problem = category_problem(category)
        if problem is not None:
            print(f"logserver repair: --category {category!r}: {problem}", file=sys.stderr)
            return EXIT_USAGE
    try:
        tls = tls_policy(args)
    except ValueError as exc:
        print(f"logserver repair: {exc}", file=sys.stderr)
        return EXIT_USAGE
    calls = ServerCalls(tls=tls, timeout=args.timeout)
    view = read_cluster(args.zk, args.zk_path, tls=zk_tls_policy(args))
    servers, coverage = _live_servers(view, calls)
    _say(
        f"repair: {len(servers)} live servers: {', '.join(map(str, servers)) or 'none'}; "
        f"{args.copies} copies wanted"
    )
    for endpoint, _ in coverage.silent:
        _say(f"repair: warning: registered server {endpoint} did not answer")
    if len(servers) < args.copies:
        _say(
            f"repair: warning: {len(servers)} live servers cannot hold {args.copies} copies "
            "of anything: what can be copied is, the rest is reported short"
        )
    categories = args.category or _categories(view, servers, calls, coverage)
    report = Repairer(
        view,
        coverage,
        servers,
        calls,
        copies=args.copies,
        dry_run=args.dry_run,
        say=_say,
        on_category=lambda c: _print_category(c, args.copies, args.dry_run),
    ).run(categories)
    _print_end(report)
    return 0 if report.complete else EXIT_INCOMPLETE


def _live_servers(view: ClusterView, calls: ServerCalls) -> tuple[list[LiveServer], Coverage]:
    """The registered servers that answer and serve (each once), and what the probe found."""
    coverage = Coverage("")
    live: dict[str, LiveServer] = {}
    endpoints = sorted({s.member.endpoint for s in view.members if s.member})
    for endpoint in endpoints:
        try:
            status = calls.status(endpoint)
        except Exception:  # unreachable, whatever the way: reported as silent
            member_id = next(
                (
                    s.member.server_id
                    for s in view.members
                    if s.member and s.member.endpoint == endpoint
                ),
                "",
            )
            coverage.silent.append((endpoint, member_id))
            continue
        server_id = str(status.server_id or "")
        coverage.readable.append(endpoint)
        coverage.reached.add(server_id)
        if status.state == "SERVING" and server_id and server_id not in live:
            live[server_id] = LiveServer(server_id, endpoint, str(status.zone or ""))
    return sorted(live.values()), coverage


def _categories(
    view: ClusterView, servers: list[LiveServer], calls: ServerCalls, coverage: Coverage
) -> list[str]:
    """Every category a live server holds, and those only a missing server holds (to report)."""
    found: set[str] = set()
    for server in servers:
        try:
            found.update(calls.categories(server.endpoint))
        except Exception as exc:
            _say(f"repair: warning: categories of {server}: {exc}")
    for record in view.inventory:
        if record.server_id not in coverage.reached:
            found.update(record.categories)
    return sorted(found)


def _say(line: str) -> None:
    print(line, flush=True)


def _print_category(c: CategoryReport, copies: int, dry_run: bool) -> None:
    name = c.category
    _say(
        f"repair: {name}: {c.batches} batches ({c.records} records) on live servers; "
        f"{c.under} had fewer than {copies} copies"
    )
    if c.copied_batches:
        _say(
            f"repair: {name}: copied {c.copied_batches} batches ({c.copied_records} records, "
            f"{c.copied_bytes} bytes)"
        )
    for sid, count in sorted(c.unidentified.items()):
        _say(
            f"repair: {name}: {count} records without a batch id (Scribe's Log) on server "
            f"{sid}: not counted, not copied"
        )
    for missing in c.unreachable:
        _say(f"repair: {name}: warning: {missing.describe(name)}")
    for short in c.short[:20]:
        _say(
            f"repair: {name}: short: {short.producer} batches {short.first}..{short.last} "
            f"on {len(short.holders)} live servers ({', '.join(short.holders)}): no other "
            "live server to copy them to"
        )
    if len(c.short) > 20:
        _say(f"repair: {name}: short: ... {len(c.short) - 20} more ranges")
    if c.pending:
        verb = "would be copied" if dry_run else "could not be copied"
        _say(f"repair: {name}: {c.pending} batches {verb}")
    for error in c.errors:
        _say(f"repair: {name}: error: {error}")
    if c.complete:
        _say(f"repair: {name}: every batch has {copies} copies")


def _print_end(report: RepairReport) -> None:
    summary = report.summary()
    if report.complete:
        _say(
            f"repair: complete: {summary['batches']} batches in {summary['categories']} "
            f"categories have {report.copies} copies; {summary['copied_batches']} copied in "
            f"{summary['seconds']} s"
        )
    else:
        _say("repair: INCOMPLETE: see above")
    _say(json.dumps({"repair": summary}))
