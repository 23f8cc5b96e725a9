"""A private rsyslogd (Debian's package) on a loopback TCP port, writing every message to a file.

Its own configuration, work directory and PID file; nothing of the system's
rsyslog is touched. ``SysLogHandler`` over TCP ends each message with a NUL
byte, not LF, so ``imtcp`` gets ``AddtlFrameDelimiter="0"``: without it rsyslog
merges messages and stores about 1 % of them. What arrived is counted in the
output file, one line per message.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

from bench.common import BenchError
from logserver.tools.launcher import free_port, wait_for

RSYSLOGD = "/usr/sbin/rsyslogd"

CONFIG = """\
global(workDirectory="{work}")
module(load="imtcp" AddtlFrameDelimiter="0")
template(name="msgonly" type="string" string="%msg%\\n")
input(type="imtcp" address="127.0.0.1" port="{port}")
*.* action(type="omfile" file="{out}" template="msgonly")
"""


class PrivateRsyslog:
    """``start()``, then send to :attr:`address`; :meth:`count` what arrived; ``stop()``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self.output = directory / "messages.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<PrivateRsyslog 127.0.0.1:{self.port} {self.output}>"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @staticmethod
    def available() -> bool:
        return Path(RSYSLOGD).is_file() or shutil.which("rsyslogd") is not None

    @staticmethod
    def version() -> str:
        try:
            out = subprocess.run(
                [RSYSLOGD, "-v"], capture_output=True, text=True, timeout=10
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
        first = out.splitlines()[0] if out else ""
        return first.replace("rsyslogd", "").strip()

    def start(self) -> PrivateRsyslog:
        if not self.available():
            raise BenchError("rsyslogd not found: apt-get install rsyslog")
        work = self.directory / "work"
        work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = self.directory / "rsyslog.conf"
        conf.write_text(CONFIG.format(work=work, port=self.port, out=self.output))
        log = open(self.directory / "rsyslogd.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(conf), "-i", str(self.directory / "rsyslogd.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

        def listening() -> bool:
            if self.process is not None and self.process.poll() is not None:
                text = (self.directory / "rsyslogd.log").read_text(errors="replace")[-2000:]
                raise BenchError(f"rsyslogd exited with {self.process.returncode}:\n{text}")
            with contextlib.suppress(OSError), socket.create_connection(self.address, 0.2):
                return True
            return False

        wait_for(listening, 15, interval_s=0.05, what="rsyslogd to listen")
        return self

    def count(self, marker: str) -> int:
        """Lines of the output file that contain ``marker``."""
        try:
            data = self.output.read_bytes()
        except FileNotFoundError:
            return 0
        return data.count(marker.encode())

    def wait_count(self, marker: str, expected: int, timeout: float) -> int:
        """Wait until ``expected`` messages with ``marker`` arrived or the count stops growing."""
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while True:
            n = self.count(marker)
            now = time.monotonic()
            if n >= expected:
                return n
            if n != last:
                last, last_change = n, now
            elif now - last_change > 2.0 or now > deadline:
                return n
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
