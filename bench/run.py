"""Run the suite: ``.venv/bin/python -m bench [--quick] [--only CASE ...] [--write-doc]``.

Prints the table, writes every figure (with the machine's description) to
``bench/results/latest.json``, and with ``--write-doc`` replaces the table in
``BENCHMARKS.md``. Exit status: 0 when every case ran (met or missed), 1 when a
case failed to run, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import CASE_IDS
from bench.common import REPO, BenchEnv, CaseResult, Profile

RESULTS = REPO / "bench" / "results"
DOC = REPO / "BENCHMARKS.md"
TABLE_START = "<!-- bench-table:start -->"
TABLE_END = "<!-- bench-table:end -->"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny cases: a smoke run (< 1 min)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=CASE_IDS,
        metavar="CASE",
        help=f"run these cases: {', '.join(CASE_IDS)}",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "latest.json", help="where the JSON goes"
    )
    parser.add_argument(
        "--workdir", type=Path, help="scratch directory (default: a new one in /tmp)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--write-doc", action="store_true", help="put the table into BENCHMARKS.md")
    return parser


def _json_safe(value: Any) -> Any:
    """JSON has no inf/nan: write them as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from bench.cases import CASES
    from bench.machine import describe, load_average
    from bench.report import machine_line, markdown_table, text_table

    profile = Profile.quick() if args.quick else Profile.full()
    selected = list(args.only) if args.only else list(CASE_IDS)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="logbench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    doc: dict[str, Any] = {
        "suite": "logservice benchmarks",
        "mode": profile.name,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": describe(),
        "load_average": {"before": load_average()},
        "profile": profile.__dict__,
        "cases": {},
    }
    env = BenchEnv(workdir, profile)
    failed = False
    try:
        for case_id in selected:
            t0 = time.monotonic()
            print(f"[bench] {case_id} ...", file=sys.stderr, flush=True)
            try:
                result = CASES[case_id](env)
            except Exception as exc:
                failed = True
                result = CaseResult(
                    case_id, case_id, error="".join(traceback.format_exception(exc))
                )
                print(result.error, file=sys.stderr)
            result.seconds = time.monotonic() - t0
            doc["cases"][case_id] = result.to_json()
            print(f"[bench] {case_id} done in {result.seconds:.1f}s", file=sys.stderr, flush=True)
    finally:
        env.close()
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    doc["load_average"]["after"] = load_average()
    doc["seconds"] = round(time.monotonic() - started, 1)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_json_safe(doc), indent=1) + "\n")
    print()
    print(text_table(doc))
    print()
    print(f"machine: {machine_line(doc)}")
    print(f"{profile.name} run: {doc['seconds']:.0f} s; figures in {args.out}")
    if args.write_doc:
        _write_doc(doc, markdown_table(doc), machine_line(doc))
    return 1 if failed else 0


def _write_doc(doc: dict[str, Any], table: str, machine: str) -> None:
    text = DOC.read_text() if DOC.exists() else ""
    if TABLE_START not in text or TABLE_END not in text:
        raise SystemExit(f"{DOC} has no {TABLE_START} ... {TABLE_END} markers")
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    block = (
        f"{TABLE_START}\n"
        f"Run of {doc['started_at']} ({doc['mode']}, {doc['seconds']:.0f} s). Machine: {machine}.\n\n"
        f"{table}\n"
        f"{TABLE_END}"
    )
    DOC.write_text(head + block + tail)
    print(f"table written to {DOC}")
