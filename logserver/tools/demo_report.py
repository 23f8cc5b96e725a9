"""The failover demo's verdict: read everything back, count, and say what happened.

After the run every server is read back (:func:`verify`): each numbered message
must be there exactly once after de-duplication, and the stalls the app
measured are put next to the signals that caused them. :func:`print_report`
writes the human summary and :func:`passed` decides the exit status; the JSON
last line and the files (:mod:`logserver.tools.demo_files`) come from the same
report, so the three never disagree.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from logserver.tools.demo_state import DemoState, Event

__all__ = ["passed", "print_report", "verify"]


def passed(s: dict[str, Any]) -> bool:
    """Nothing lost, nothing shown twice; with a lost disk, repair complete and every record
    back to its copies."""
    ok = s["lost"] == 0 and s["duplicates_after_dedup"] == 0
    if s.get("disks_lost"):
        ok = ok and s["repair_complete"] and s["min_copies"] >= s["copies"]
    return bool(ok)


def verify(
    args: argparse.Namespace, servers: list[Any], state: DemoState, final: dict[str, Any]
) -> dict[str, Any]:
    """Read everything back from every server and count each numbered message."""
    from logserver.reader import merge_unique, read_server
    from logwire.serverset import Endpoint

    sent = int(final.get("sent", 0))
    raw_copies = 0
    counts: Counter[int] = Counter()
    streams = [list(read_server(Endpoint.parse(s.endpoint), "demo")) for s in servers]
    raw_copies = sum(len(st) for st in streams)
    holders: Counter[tuple[str, int, int]] = Counter()
    for stream in streams:  # on how many servers each record is
        holders.update({r.key for r in stream if r.key is not None})
    for record in merge_unique(streams):
        text = record.message.decode(errors="replace")
        if text.startswith("demo-"):
            counts[int(text[5:])] += 1
    present = {n for n in counts if 0 <= n < sent}
    with state.lock:
        events = list(state.events)
    stall_by_kind = _stalls_by_signal(events, final.get("stalls", []))
    summary = {
        "sent": sent,
        "acked": int(final.get("acked", 0)),
        "stored_unique": len(present),
        "lost": sent - len(present),
        "duplicates_after_dedup": sum(c - 1 for c in counts.values() if c > 1),
        "copies_before_dedup": raw_copies - len(present),
        "kills": sum(e.kind in ("kill", "lose-disk") for e in events),
        "sigstops": sum(e.kind == "stop" for e in events),
        "sigterms": sum(e.kind == "term" for e in events),
        "failovers": int(final.get("failovers", 0)),
        "dropped": int(final.get("dropped", 0)),
        "max_stall_ms": max(stall_by_kind.get("kill", 0.0), stall_by_kind.get("lose-disk", 0.0)),
        "max_stall_sigstop_ms": stall_by_kind.get("stop", 0.0),
        "max_stall_sigterm_ms": stall_by_kind.get("term", 0.0),
        "longest_stall_ms": float(final.get("max_stall_ms", -1)),
        "duration_s": args.duration,
        "rate": args.rate,
        "copies": args.copies,
        "min_copies": min(holders.values(), default=0),
    }
    if args.lose_disk:
        lost = state.lost
        summary |= {
            "disks_lost": len(lost.lost_ids),
            "repair_complete": lost.repair_status == 0 and bool(lost.repair.get("complete")),
            "repair_copied_batches": int(lost.repair.get("copied_batches", 0)),
            "repair_copied_records": int(lost.repair.get("copied_records", 0)),
            "repair_seconds": float(lost.repair.get("seconds", 0.0)),
        }
    return {
        "summary": summary,
        "lost_disk": state.lost.to_json() if args.lose_disk else None,
        "events": [{"t": e.t - state.started, "kind": e.kind, "server": e.server} for e in events],
        "servers": [s.endpoint for s in servers],
        "app_final": final,
    }


def _stalls_by_signal(events: list[Event], stalls: list[list[float]]) -> dict[str, float]:
    """The longest stall (ms) that began within 3 s after each kind of signal.

    A stall is an episode in which the app had records waiting and none was
    acknowledged; the app reports every one of 20 ms or more.
    """
    longest: dict[str, float] = {}
    for e in events:
        if e.kind not in ("kill", "stop", "term", "lose-disk"):
            continue
        around = [d for start, d in stalls if e.t - 0.2 <= start <= e.t + 3.0]
        if around:
            longest[e.kind] = max(longest.get(e.kind, 0.0), round(max(around) * 1000, 1))
    return longest


def print_report(report: dict[str, Any]) -> None:
    s = report["summary"]
    ok = passed(s)
    print()
    print(
        f"{'PASS' if ok else 'FAIL'}: {s['sent']} messages sent, {s['stored_unique']} stored once, "
        f"{s['lost']} lost, {s['duplicates_after_dedup']} duplicated after de-duplication."
    )
    print(
        f"  {s['kills']} SIGKILLs, {s['sigstops']} SIGSTOP, {s['sigterms']} SIGTERM of the server the app was using;"
        f" {s['failovers']} client failovers."
    )
    print(
        f"  Longest time with messages waiting and none acknowledged: {s['max_stall_ms']:.0f} ms"
        f" around a SIGKILL, {s['max_stall_sigterm_ms']:.0f} ms around the SIGTERM,"
        f" {s['max_stall_sigstop_ms']:.0f} ms around the SIGSTOP"
        " (a frozen server costs the hedge delay, not the RPC timeout)."
    )
    if s["copies"] == 1:
        print(
            f"  {s['copies_before_dedup']} records were stored on two servers (re-sent after an "
            "ambiguous failure) and removed when read."
        )
    else:
        print(
            f"  Each batch was stored on {s['copies']} servers; every record is now on at "
            f"least {s['min_copies']} (readers show each once)."
        )
    if s.get("disks_lost"):
        print(
            f"  {s['disks_lost']} data directory deleted with its server (SIGKILL + rm -r), "
            "the server back empty; then `logserver forget` and `logserver repair` copied "
            f"{s['repair_copied_batches']} batches ({s['repair_copied_records']} records) in "
            f"{s['repair_seconds']:.2f} s: repair {'complete' if s['repair_complete'] else 'INCOMPLETE'}."
        )
