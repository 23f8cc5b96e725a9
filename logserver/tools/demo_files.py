"""The demo's files: ``report.json`` and, when matplotlib is installed, ``timeline.png``.

The plot is optional: a plain ``pip install logservice[server]`` has no
matplotlib (``logservice[demo]`` brings it), and a demo run must still end with
its report and its JSON summary. So a missing or failing plot is said in one
line on stderr, and the rest goes on.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["write_outputs"]


def _windowed_rate(
    points: list[tuple[float, int]], origin: float, window: float = 1.0
) -> tuple[list[float], list[float]]:
    """Rate of a growing counter over a sliding window; a drop (restart) or a gap breaks the line."""
    xs: list[float] = []
    ys: list[float] = []
    start = 0
    for i, (t, n) in enumerate(points):
        if i and (n < points[i - 1][1] or t - points[i - 1][0] > 2.0):
            start = i  # the counter restarted or samples stopped: begin a new segment
            xs.append(t - origin)
            ys.append(float("nan"))
            continue
        while start < i and t - points[start][0] > window:
            start += 1
        j = max(0, start - 1) if start and t - points[start - 1][0] <= window * 1.5 else start
        t0, n0 = points[j]
        if t > t0:
            xs.append(t - origin)
            ys.append((n - n0) / (t - t0))
    return xs, ys


def write_outputs(
    out: Path,
    report: dict[str, Any],
    *,
    samples: list[tuple[float, str, int]],
    acked: list[tuple[float, int]],
    started: float,
) -> None:
    """report.json and, with matplotlib, timeline.png; a missing plot is said in one line.

    The plot is optional (matplotlib comes with ``logservice[demo]``): without
    it, or if drawing fails, stderr says why and the demo goes on to its report.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    if importlib.util.find_spec("matplotlib") is None:
        print(
            "demo: timeline.png skipped: matplotlib is not installed "
            "(pip install 'logservice[demo]')",
            file=sys.stderr,
        )
        return
    try:
        _plot_timeline(out / "timeline.png", report, samples, acked, started)
    except Exception as exc:  # a picture is not worth losing the run's report over
        print(f"demo: timeline.png skipped: {type(exc).__name__}: {exc}", file=sys.stderr)


def _plot_timeline(
    path: Path,
    report: dict[str, Any],
    samples: list[tuple[float, str, int]],
    acked: list[tuple[float, int]],
    started: float,
) -> None:
    """Per-server stored rate over time, with the events marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.6), dpi=110)
    colours = {}
    for endpoint in report["servers"]:
        xs, ys = _windowed_rate([(t, n) for t, e, n in samples if e == endpoint], started)
        (line,) = ax.plot(xs, ys, label=f"stored by {endpoint}", linewidth=1.4)
        colours[endpoint] = line.get_color()
    xs, ys = _windowed_rate(acked, started)
    ax.plot(xs, ys, label="acknowledged to the app (all servers)", color="black", linewidth=2.2)
    styles = {
        "kill": ("x", "SIGKILL"),
        "stop": ("s", "SIGSTOP"),
        "cont": ("o", "SIGCONT"),
        "term": ("v", "SIGTERM"),
        "restart": ("^", "restart"),
        "lose-disk": ("X", "SIGKILL + disk deleted"),
        "forget": ("P", "forget"),
        "repair": ("D", "repair starts"),
        "repaired": ("d", "repair done"),
    }
    seen = set()
    for e in report["events"]:
        marker, label = styles[e["kind"]]
        colour = colours.get(e["server"], "dimgray")
        ax.axvline(
            e["t"],
            color=colour,
            alpha=0.25 if e["kind"] in ("restart", "cont") else 0.6,
            linestyle=":" if e["kind"] in ("restart", "cont") else "--",
        )
        ax.plot(
            [e["t"]],
            [0],
            marker=marker,
            color=colour,
            markersize=9,
            linestyle="none",
            label=None if e["kind"] in seen else label,
        )
        seen.add(e["kind"])
        if e["kind"] in ("kill", "stop", "term", "lose-disk", "repair"):
            ax.annotate(
                f"{label} :{e['server'].rsplit(':', 1)[-1]}" if e["server"] != "-" else label,
                xy=(e["t"], 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=7,
                color=colour,
            )
    s = report["summary"]
    title = (
        f"Failover demo: {s['sent']} sent, {s['lost']} lost, "
        f"{s['duplicates_after_dedup']} duplicated; longest stall at a SIGKILL {s['max_stall_ms']:.0f} ms, "
        f"at the SIGSTOP {s['max_stall_sigstop_ms']:.0f} ms"
    )
    if s.get("disks_lost"):
        title += (
            f"\n{s['copies']} copies per batch; a disk lost; repair copied "
            f"{s['repair_copied_records']} records, every record on >= {s['min_copies']} servers"
        )
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("records per second (1 s window)")
    ax.set_ylim(bottom=-max(1.0, ax.get_ylim()[1] * 0.04))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, ncols=5, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
