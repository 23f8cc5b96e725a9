"""The table: figures, baselines, ratios and targets, as text for the terminal and Markdown."""

from __future__ import annotations

import math
from typing import Any

HEADERS = ("case", "figure", "baseline (same run)", "ratio", "target", "met")


def _num(value: float, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf"
    if unit == "rec/s":
        if abs(value) >= 1e6:
            return f"{value / 1e6:.2f}M"
        return f"{value / 1e3:.1f}k"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def stat_text(stats: dict[str, Any] | None, unit: str, judge: str = "median") -> str:
    """``median [min-max] unit`` for repeated runs; ``p99 x (p50 y, max z, n)`` for distributions."""
    if not stats:
        return ""
    u = "" if unit in ("x", "") else f" {unit}"
    n = stats.get("n", 0)
    if judge == "p99":
        return (
            f"p99 {_num(stats['p99'], unit)}{u} "
            f"(p50 {_num(stats['p50'], unit)}, max {_num(stats['max'], unit)}, n={n})"
        )
    if judge == "max":
        return f"max {_num(stats['max'], unit)}{u} (median {_num(stats['median'], unit)}, n={n})"
    if judge == "min" and n > 1:
        return f"min {_num(stats['min'], unit)}{u} (median {_num(stats['median'], unit)}, n={n})"
    if n <= 1:
        return f"{_num(stats['median'], unit)}{u}"
    return (
        f"{_num(stats['median'], unit)}{u} [{_num(stats['min'], unit)}-{_num(stats['max'], unit)}]"
    )


def rows_of(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    """The table's cells, one tuple per row, from the suite's JSON document."""
    out: list[tuple[str, ...]] = []
    for case in doc["cases"].values():
        if case.get("error"):
            first = case["error"].strip().splitlines()[-1][:100]
            out.append((case["id"], f"ERROR: {first}", "", "", "", "error"))
            continue
        for row in case["rows"]:
            unit = row["unit"]
            figure = stat_text(row["figure"], unit, row["judge"])
            baseline = ""
            if row.get("baseline"):
                baseline = f"{stat_text(row['baseline'], unit)} {row['baseline_label']}"
            ratio = stat_text(row["ratio"], "x") + " x" if row.get("ratio") else ""
            met = {True: "met", False: "MISSED", None: ""}[row["met"]]
            out.append((row["label"], figure, baseline, ratio, row["target"], met))
    return out


def text_table(doc: dict[str, Any]) -> str:
    rows = [HEADERS, *rows_of(doc)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    widths[2] = min(widths[2], 60)
    lines = []
    for k, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) if i < 5 else cell for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(doc: dict[str, Any]) -> str:
    def esc(cell: str) -> str:
        if cell.startswith("  "):
            cell = "↳ " + cell.strip()  # a context row under the row above
        return cell.replace("|", "\\|").strip() or " "

    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in rows_of(doc):
        lines.append("| " + " | ".join(esc(c) for c in row) + " |")
    return "\n".join(lines)


def machine_line(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    pk = m["packages"]
    deb = m.get("debian_packages", {})
    load = doc.get("load_average", {})
    return (
        f"{m['usable_cores']} of {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, "
        f"{m['os']}, {m['python']}; logservice {pk.get('logservice')} "
        f"(commit {m['git']['commit']}{', uncommitted code changes' if m['git']['dirty_code'] else ''}), "
        f"thriftpy2 {pk.get('thriftpy2')}, kazoo {pk.get('kazoo')}, structlog {pk.get('structlog')}, "
        f"zookeeper {deb.get('zookeeper') or '?'}, rsyslog {deb.get('rsyslog') or '?'}; "
        f"load average before {load.get('before')}, after {load.get('after')}"
    )
