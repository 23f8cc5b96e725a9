"""strace as a test instrument: hold a real server's fdatasync open, and see which system calls
it made on which files, in order.

strace (the Debian package of that name) either attaches to a running process
(``-p``; with ``-f`` to all its threads) or starts one (``-D``: strace runs as a
grandchild, so the process started keeps its pid and *is* the server, which the
launcher's kill and terminate reach directly). ``-e inject=fdatasync:delay_enter=US``
holds every fdatasync at its entry for that long: the window between a batch's
``pwrite`` and its group fdatasync, about a millisecond, stays open as long as a
test needs to SIGKILL the server inside it. With ``-ff -ttt -T -y`` every thread
writes its calls to a file of its own (no interleaved lines), each with its entry
time, its duration and the paths behind its descriptors; :func:`read_calls`
merges them into one list ordered by entry time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from logserver.tools.launcher import wait_for

__all__ = ["Call", "attach", "read_calls", "segment", "strace_problem", "traced"]

_LINE = re.compile(
    r"^(?P<start>\d+\.\d+) (?P<name>\w+)\((?P<args>.*)\) += (?P<result>-?\d+|\?)"
    r"(?:.*?<(?P<took>\d+\.\d+)>)?$"
)
_PENDING = re.compile(r"^(?P<start>\d+\.\d+) (?P<name>\w+)\((?P<args>.*)$")
_FD_PATH = re.compile(r"^\d+<(?P<path>[^>]*)>")
_QUOTED = re.compile(r'"(?P<path>[^"]*)"')


@dataclass(frozen=True)
class Call:
    """One system call a traced thread made."""

    thread: int
    start: float
    end: float
    """When it returned (``start`` plus its duration; ``inf`` if it never did: killed)."""
    name: str
    path: str
    """The file it was about: a descriptor's path (`` (deleted)`` once unlinked) or the
    first path argument; empty for other calls."""
    result: int | None


def strace_problem() -> str | None:
    """Why strace cannot be used here (None when it can)."""
    if shutil.which("strace") is None:
        return "strace is not installed (apt-get install strace)"
    probe = subprocess.run(
        ["strace", "-qq", "-e", "trace=none", "true"], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        return f"strace cannot trace here: {probe.stderr.strip()[:200]}"
    return None


def _options(output: Path, calls: Sequence[str], delay_sync_s: float) -> list[str]:
    options = ["-f", "-ff", "-qq", "-ttt", "-T", "-y", "-o", str(output)]
    options += ["-e", f"trace={','.join(calls)}", "-e", "signal=none"]
    if delay_sync_s:
        options += ["-e", f"inject=fdatasync:delay_enter={int(delay_sync_s * 1e6)}"]
    return options


def traced(
    command: Sequence[str], output: Path, calls: Sequence[str], *, delay_sync_s: float = 0.0
) -> list[str]:
    """``command`` run under strace as its grandchild (the process keeps its pid)."""
    return ["strace", "-D", "--seccomp-bpf", *_options(output, calls, delay_sync_s), *command]


def attach(
    pid: int, output: Path, calls: Sequence[str], *, delay_sync_s: float = 0.0
) -> subprocess.Popen[bytes]:
    """strace attached to every thread of a running process; returns once it is."""
    tracer = subprocess.Popen(
        ["strace", *_options(output, calls, delay_sync_s), "-p", str(pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def attached() -> bool:
        if tracer.poll() is not None:
            raise AssertionError(f"strace exited with {tracer.returncode}")
        tasks = Path(f"/proc/{pid}/task")
        return all(_tracer_of(task / "status") == tracer.pid for task in tasks.iterdir())

    wait_for(attached, 20.0, interval_s=0.05, what=f"strace to attach to {pid}")
    return tracer


def _tracer_of(status: Path) -> int:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def read_calls(output: Path) -> list[Call]:
    """Every call traced into ``output.<thread>`` files, ordered by entry time."""
    calls = []
    for part in output.parent.glob(f"{output.name}.*"):
        thread = int(part.suffix[1:])
        for line in part.read_text(errors="replace").splitlines():
            match = _LINE.match(line)
            if match is not None:
                took, result = match["took"], match["result"]
            else:  # still inside the call when the file was read (a held fdatasync)
                match = _PENDING.match(line)
                if match is None:
                    continue
                took, result = None, "?"
            args = match["args"]
            found = _FD_PATH.match(args) or _QUOTED.search(args)
            start = float(match["start"])
            calls.append(
                Call(
                    thread=thread,
                    start=start,
                    end=start + float(took) if took and result != "?" else float("inf"),
                    name=match["name"],
                    path=found["path"] if found else "",
                    result=None if result == "?" else int(result),
                )
            )
    calls.sort(key=lambda call: call.start)
    return calls


def segment(path: str) -> str:
    """A segment's path without strace's `` (deleted)`` mark ('' for any other file)."""
    path = path.removesuffix(" (deleted)")
    return path if path.endswith(".seg") and os.sep in path else ""
