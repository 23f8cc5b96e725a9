"""The demo's files: report.json always; timeline.png only with matplotlib, and a missing plot is one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from logserver.tools import demo_files

REPORT = {
    "summary": {
        "sent": 3,
        "lost": 0,
        "duplicates_after_dedup": 0,
        "max_stall_ms": 1.0,
        "max_stall_sigstop_ms": 2.0,
    },
    "servers": ["127.0.0.1:1", "127.0.0.1:2"],
    "events": [{"t": 0.5, "kind": "kill", "server": "127.0.0.1:1"}],
}
SAMPLES = [(100.0 + i / 4, "127.0.0.1:1", i * 10) for i in range(8)]
ACKED = [(100.0 + i / 4, i * 10) for i in range(8)]


def write(out: Path) -> None:
    demo_files.write_outputs(out, REPORT, samples=SAMPLES, acked=ACKED, started=100.0)


def test_without_matplotlib_the_plot_is_skipped_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plain install has no matplotlib: report.json is written, stderr says why there is no plot."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without it looks like
    write(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == REPORT
    assert not (tmp_path / "out" / "timeline.png").exists()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "demo: timeline.png skipped: matplotlib is not installed (pip install 'logservice[demo]')"
    ]


def test_a_failing_plot_costs_the_picture_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """If drawing fails, the report is still there and stderr names the error in one line."""

    def broken(*args: object) -> None:
        raise RuntimeError("no display")

    monkeypatch.setattr(demo_files, "_plot_timeline", broken)
    write(tmp_path / "out")
    assert (tmp_path / "out" / "report.json").exists()
    assert capsys.readouterr().err.splitlines() == [
        "demo: timeline.png skipped: RuntimeError: no display"
    ]


def test_with_matplotlib_the_timeline_is_drawn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With matplotlib (``logservice[demo]``) the timeline is a PNG, and nothing is said."""
    pytest.importorskip("matplotlib")
    write(tmp_path / "out")
    assert (tmp_path / "out" / "timeline.png").read_bytes().startswith(b"\x89PNG")
    assert capsys.readouterr().err == ""
