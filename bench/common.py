"""What every case shares: the run's sizes, its processes, workers, statistics and rows.

A case gets a :class:`BenchEnv`: one ZooKeeper for the whole run, the shared
logservers (started on first use, stopped at the end), a scratch directory,
and helpers to run worker scripts in their own processes. Every process the
suite starts is stopped by :meth:`BenchEnv.close`, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from logserver.tools.launcher import LogServerProcess, ZooKeeper, zookeeper_from_env

REPO = Path(__file__).resolve().parent.parent
MESSAGE = b"x" * 100  # the suite's standard 100-byte message


class BenchError(RuntimeError):
    """A case could not run (a process failed, a wait timed out)."""


# ----------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Profile:
    """How big each case is. ``full()`` keeps the whole suite near 3-5 minutes on 2 cores."""

    name: str
    repeats: int
    raw_seconds: float
    single_records: int
    group_records: int  # per client process
    group_clients: int
    app_rounds: int
    app_chunk: int
    log_calls: int
    kills: int
    stops: int
    failover_servers: int
    joins: int
    fleet_clients: int
    idle_processes: int
    idle_window_s: float
    fleet_kills: int
    fleet_warmup_s: float
    fleet_window_s: float
    fleet_settle_s: float
    memory_steady_s: float
    memory_rate: int
    memory_burst: int
    hostile_frames: int
    hostile_frame_bytes: int
    hostile_probe_s: float
    compression_records: int
    copies_records: int
    steady_s: float
    guard_repeats: int
    guard_loops: int
    hostile_pings: int
    hostile_idle: int
    hostile_trickling: int
    hostile_bombs: int
    hostile_categories: int
    fork_records: int
    restart_bytes: int
    restart_categories: int
    restart_producers: int
    restart_segment_bytes: int
    restart_scan_bytes: int
    repair_records: int
    read_records: int
    follow_seconds: float
    followers: int

    @classmethod
    def full(cls) -> Profile:
        return cls(
            name="full",
            repeats=3,
            raw_seconds=3.0,
            single_records=300_000,
            group_records=120_000,
            group_clients=4,
            app_rounds=10,
            app_chunk=5_000,
            log_calls=100_000,
            kills=20,
            stops=3,
            failover_servers=4,
            joins=20,
            fleet_clients=50,
            idle_processes=200,
            idle_window_s=10.0,
            fleet_kills=3,
            fleet_warmup_s=3.0,
            fleet_window_s=3.0,
            fleet_settle_s=4.5,
            memory_steady_s=5.0,
            memory_rate=20_000,
            memory_burst=200_000,
            hostile_frames=200,
            hostile_frame_bytes=15 * 2**20,
            hostile_probe_s=3.0,
            compression_records=200_000,
            copies_records=300_000,
            steady_s=10.0,
            guard_repeats=5,
            guard_loops=20,
            hostile_pings=50,
            hostile_idle=300,
            hostile_trickling=100,
            hostile_bombs=5,
            hostile_categories=20_000,
            fork_records=50_000,
            restart_bytes=128 * 2**20,
            restart_categories=200,
            restart_producers=20_000,
            restart_segment_bytes=8 * 2**20,
            restart_scan_bytes=32 * 2**20,
            repair_records=1_000_000,
            read_records=1_000_000,
            follow_seconds=10.0,
            followers=100,
        )

    @classmethod
    def quick(cls) -> Profile:
        return cls(
            name="quick",
            repeats=1,
            raw_seconds=0.3,
            single_records=5_000,
            group_records=2_000,
            group_clients=4,
            app_rounds=2,
            app_chunk=500,
            log_calls=2_000,
            kills=2,
            stops=1,
            failover_servers=3,
            joins=2,
            fleet_clients=4,
            idle_processes=4,
            idle_window_s=0.5,
            fleet_kills=1,
            fleet_warmup_s=1.0,
            fleet_window_s=1.5,
            fleet_settle_s=0.5,
            memory_steady_s=0.5,
            memory_rate=5_000,
            memory_burst=5_000,
            hostile_frames=8,
            hostile_frame_bytes=2 * 2**20,
            hostile_probe_s=0.5,
            compression_records=3_000,
            copies_records=5_000,
            steady_s=1.0,
            guard_repeats=5,
            guard_loops=10,
            hostile_pings=10,
            hostile_idle=30,
            hostile_trickling=10,
            hostile_bombs=2,
            hostile_categories=300,
            fork_records=2_000,
            restart_bytes=4 * 2**20,
            restart_categories=200,
            restart_producers=2_000,
            restart_segment_bytes=256 * 2**10,
            restart_scan_bytes=2**20,
            repair_records=20_000,
            read_records=5_000,
            follow_seconds=1.5,
            followers=4,
        )


# ------------------------------------------------------------------ statistics


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by linear interpolation (q=0.5 is the median)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(samples: Iterable[float]) -> dict[str, Any]:
    """Median, spread and the samples themselves (what the JSON keeps of a figure)."""
    values = [float(v) for v in samples]
    finite = [v for v in values if math.isfinite(v)]
    return {
        "n": len(values),
        "median": quantile(finite, 0.5) if len(finite) == len(values) else math.inf,
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
        "p50": quantile(finite, 0.5) if finite else math.nan,
        "p99": quantile(values, 0.99) if len(finite) == len(values) else math.inf,
        "samples": values,
    }


@dataclass
class Row:
    """One line of the table: a figure, maybe a same-run baseline and their ratio, a target.

    ``judge`` says which statistic the target applies to: ``median`` (of
    repeated runs), ``p99`` or ``max`` (of a latency distribution), and
    ``value`` for a single figure. ``ratio_def`` says how the ratio is formed.
    The target is checked on the ratio when ``target_on == "ratio"``.
    """

    label: str
    unit: str
    figure: dict[str, Any]
    judge: str = "median"
    baseline_label: str | None = None
    baseline: dict[str, Any] | None = None
    ratio_def: str | None = None
    ratio: dict[str, Any] | None = None
    target: str = ""
    target_on: str = "figure"
    op: str = ""
    limit: float | None = None
    met: bool | None = None
    note: str = ""

    def evaluate(self) -> Row:
        if self.op and self.limit is not None:
            stats = self.ratio if self.target_on == "ratio" else self.figure
            value = judged(stats, self.judge) if stats is not None else math.nan
            if math.isnan(value):
                self.met = False
            else:
                self.met = value >= self.limit if self.op == ">=" else value <= self.limit
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def judged(stats: dict[str, Any], judge: str) -> float:
    key = "median" if judge == "value" else judge
    return float(stats.get(key, math.nan))


@dataclass
class CaseResult:
    """What one case hands back: its rows and whatever details explain them."""

    case_id: str
    title: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.case_id,
            "title": self.title,
            "rows": [r.to_json() for r in self.rows],
            "details": self.details,
            "seconds": round(self.seconds, 2),
            "error": self.error,
        }


# ------------------------------------------------------------------- processes


def rss_bytes(pid: int | str = "self", key: str = "VmRSS") -> int:
    """A process's resident set (``VmRSS``) or its peak (``VmHWM``), from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no {key} for process {pid}")


class Worker:
    """A worker script (``python -m bench.workers.NAME CONFIG_JSON``) in its own process.

    It prints one JSON object as its last line of stdout; stderr goes to a file
    in the run's log directory (shown when the worker fails).
    """

    def __init__(self, env: BenchEnv, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self._env = env
        env.worker_count += 1
        self.stderr_path = env.logs / f"{name}-{env.worker_count}.stderr"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in result()
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"bench.workers.{name}", json.dumps(config)],
            cwd=REPO,
            env=env.worker_environ(),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        env.track(self.process)

    @property
    def pid(self) -> int:
        return self.process.pid

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait (bounded) for the worker's JSON answer."""
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(self.process)
            self.process.communicate(timeout=10)
            raise BenchError(f"worker {self.name} did not finish in {timeout:.0f}s") from None
        finally:
            self._stderr.close()
        lines = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
        if self.process.returncode != 0 or not lines:
            tail = self.stderr_path.read_text(errors="replace")[-3000:]
            raise BenchError(f"worker {self.name} exited with {self.process.returncode}:\n{tail}")
        return json.loads(lines[-1])


def _kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL a process we started and its own process group (its forked children)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            process.kill()


class BenchEnv:
    """The run's ZooKeeper, shared logservers, scratch space and process bookkeeping."""

    def __init__(self, workdir: Path, profile: Profile) -> None:
        self.workdir = workdir
        self.profile = profile
        self.run_id = uuid.uuid4().hex[:8]
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.state_home = workdir / "state"  # XDG_STATE_HOME: default spools land here
        self.state_home.mkdir(exist_ok=True)
        self.worker_count = 0
        self._zk: ZooKeeper | None = None
        self._servers: dict[str, LogServerProcess] = {}
        self._all_servers: list[LogServerProcess] = []
        self._processes: list[subprocess.Popen[Any]] = []
        self._closers: list[Callable[[], None]] = []
        #: Peak RSS samples of shared servers under load, by name (for the memory case).
        self.server_peaks: dict[str, int] = {}
        #: Measurements that several cases report (e.g. interleaved baseline runs).
        self.cache: dict[str, Any] = {}

    # -------------------------------------------------------------- ZooKeeper

    @property
    def zk_hosts(self) -> str:
        if self._zk is None:
            self._zk = zookeeper_from_env(workdir=self.workdir / "zookeeper")
        return self._zk.hosts

    def zk_path(self, name: str) -> str:
        return f"/bench/{self.run_id}/{name}"

    # -------------------------------------------------------------- logservers

    def server(self, fsync: str = "always") -> LogServerProcess:
        """The shared logserver with this fsync policy (started on first use)."""
        existing = self._servers.get(fsync)
        if existing is not None and existing.alive():
            return existing
        server = self.new_server(f"shared-{fsync}", zk_path=self.zk_path("shared"), fsync=fsync)
        self._servers[fsync] = server
        return server

    def new_server(
        self,
        name: str,
        *,
        zk_path: str,
        wait: bool = True,
        data_dir: Path | None = None,
        **kwargs: Any,
    ) -> LogServerProcess:
        """A logserver process of the run (stopped by :meth:`close`), on ``data_dir``
        (default: a directory of its own under the run's scratch space)."""
        server = LogServerProcess(
            zk_hosts=self.zk_hosts,
            data_dir=data_dir or self.workdir / "servers" / name,
            zk_path=zk_path,
            **kwargs,
        )
        self._all_servers.append(server)
        server.start(wait=wait)
        return server

    # ----------------------------------------------------------------- workers

    def worker_environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env["XDG_STATE_HOME"] = str(self.state_home)
        env.pop("PYTHONDEVMODE", None)
        return env

    def worker(self, name: str, config: dict[str, Any]) -> Worker:
        return Worker(self, name, config)

    def run_worker(self, name: str, config: dict[str, Any], timeout: float) -> dict[str, Any]:
        return self.worker(name, config).result(timeout)

    def track(self, process: subprocess.Popen[Any]) -> None:
        self._processes.append(process)

    def on_close(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    # ---------------------------------------------------------------- teardown

    def close(self) -> None:
        """Stop everything this run started, newest first; never raises."""
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        for process in reversed(self._processes):
            _kill_group(process)
            with contextlib.suppress(Exception):
                process.wait(5)
        for server in reversed(self._all_servers):
            with contextlib.suppress(Exception):
                server.stop()
        if self._zk is not None:
            with contextlib.suppress(Exception):
                self._zk.stop()


def sleep_until(deadline: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``deadline`` (no-op if it has)."""
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
