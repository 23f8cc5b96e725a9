"""Run ``logserver cat`` as an operator does and measure it: wall time, records, peak RSS.

The command's stdout is a pipe this worker drains in 1 MiB reads, counting lines
(what ``| wc -l`` would cost a shell); the peak RSS is the child's own
(``wait4``'s ``ru_maxrss``), so this worker's memory does not count.

Before the clock starts, the packages' bytecode is compiled (``compileall``, as
``pip install`` does): with ``PYTHONDONTWRITEBYTECODE`` set, an editable checkout
would otherwise compile some sixty modules from source at every start, a tenth of
a second no installed ``logserver cat`` pays.
"""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
import time

import logclient
import logserver
import logwire
from bench.workers import config, emit


def main() -> None:
    cfg = config()
    for package in (logserver, logclient, logwire):
        compileall.compile_dir(os.path.dirname(package.__file__), quiet=1)
    command = [sys.executable, "-m", "logserver", "cat", *[str(a) for a in cfg["args"]]]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    lines = 0
    size = 0
    out = process.stdout.fileno()
    while True:
        chunk = os.read(out, 1 << 20)
        if not chunk:
            break
        lines += chunk.count(b"\n")
        size += len(chunk)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    errors = process.stderr.read().decode(errors="replace")
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"logserver cat exited {process.returncode}: {errors[-2000:]}")
    emit(
        {
            "records": lines,
            "bytes": size,
            "seconds": seconds,
            "rate": lines / seconds,
            "peak_rss": usage.ru_maxrss * 1024,
        }
    )


if __name__ == "__main__":
    main()
