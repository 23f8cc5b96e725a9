"""``logserver cat`` against real servers: each record once, whatever copies the servers
hold; time ranges and tails; following through kills, restarts and joins; the edges an
operator hits (a pipe closed early, bad arguments, bytes that are not text)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

import logserver
from logclient import LogClient
from logserver.tools.launcher import LogServerProcess
from tests.delivery import log_all
from tests.helpers import numbered
from tests.reader.support import Follower, cat, cat_json
from tests.thrift_clients import append, connect

pytestmark = [pytest.mark.slow, pytest.mark.process, pytest.mark.timeout(180)]

ServerFactory = Callable[..., LogServerProcess]


@pytest.fixture
def followers() -> Iterator[list[Follower]]:
    """Followers a test started (it appends them); stopped after the test, pass or fail."""
    started: list[Follower] = []
    yield started
    for follower in started:
        follower.stop()


def _batch(category: str, name: str, n: int, first: int = 0) -> list[tuple[str, str]]:
    return [(category, f"{name}-{i}") for i in range(first, first + n)]


def test_each_record_once_across_failover_copies_splits_and_late_replays(
    logserver_factory: ServerFactory, zk_hosts: str, zk_path: str
) -> None:
    """Copies of a batch on several servers (a failover's resend), a batch stored whole on
    one server and as split halves on another, a batch only in halves (one half twice), a
    multi-category batch, and a batch that comes back much later (a spool replayed): every
    record is printed once, under the batch its client made."""
    s1, s2, s3 = (logserver_factory(f"s{i}").endpoint for i in (1, 2, 3))
    b0 = _batch("app", "b0", 10)
    append(s1, "p", 0, b0)
    append(s2, "p", 0, b0)  # failover copy
    b1 = _batch("app", "b1", 10)
    append(s1, "p", 1, b1)
    append(s3, "p@1", 0, b1[:5])  # the next server's limit was smaller: split
    append(s3, "p@1", 5, b1[5:])
    b2 = _batch("app", "b2", 6)
    append(s2, "p@2", 0, b2[:3])
    append(s3, "p@2", 0, b2[:3])  # a half, resent
    append(s3, "p@2", 3, b2[3:])
    mixed = [("app" if i % 2 else "other", f"b3-{i}") for i in range(8)]
    append(s1, "p", 3, mixed)
    append(s2, "p", 3, mixed)
    append(s3, "q", 0, _batch("app", "q0", 4))
    append(s2, "p", 0, b0)  # much later: the spool replays the first batch (to s2 already)
    append(s3, "p", 0, b0)  # ... and to s3

    records = cat_json("app", "--zk", zk_hosts, "--zk-path", zk_path)
    keys = Counter((r["producer"], r["sequence"], r["index"]) for r in records)
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]
    expected = {
        **{("p", 0, i): f"b0-{i}" for i in range(10)},
        **{("p", 1, i): f"b1-{i}" for i in range(10)},
        **{("p", 2, i): f"b2-{i}" for i in range(6)},
        **{("p", 3, i): f"b3-{i}" for i in range(1, 8, 2)},
        **{("q", 0, i): f"q0-{i}" for i in range(4)},
    }
    assert {(r["producer"], r["sequence"], r["index"]): r["message"] for r in records} == expected
    times = [r["time"] for r in records]
    assert times == sorted(times), "merged by receive time"

    # The Python API sees the same records.
    with logserver.read(zk_hosts, "app", zk_path=zk_path) as reader:
        assert sorted(r.message.decode() for r in reader) == sorted(expected.values())
        assert reader.report.complete


def test_cat_reads_the_same_after_a_restart_and_a_sigkill(
    logserver_factory: ServerFactory, zk_hosts: str, zk_path: str, clients: list[LogClient]
) -> None:
    """Restarted servers (SIGTERM, and SIGKILL with its recovery) serve the same records,
    with their time indexes reloaded or rebuilt."""
    servers = [logserver_factory(f"s{i}") for i in range(2)]
    client = LogClient(zk_hosts, zk_path=zk_path)
    clients.append(client)
    log_all(client, numbered("r", 3000))
    before = cat("app", "--raw", "--zk", zk_hosts, "--zk-path", zk_path)
    assert before.returncode == 0, before.stderr
    assert sorted(before.stdout.decode().split()) == numbered("r", 3000)
    servers[0].terminate()
    servers[0].start()
    servers[1].kill()
    servers[1].start()
    after = cat("app", "--raw", "--zk", zk_hosts, "--zk-path", zk_path)
    assert (after.returncode, after.stdout) == (0, before.stdout)
    tail = cat("app", "--raw", "-n", "5", "--zk", zk_hosts, "--zk-path", zk_path)
    assert tail.stdout.decode().split() == before.stdout.decode().split()[-5:]


def test_follow_rides_through_sigkill_restart_and_a_join(
    logserver_factory: ServerFactory,
    zk_hosts: str,
    zk_path: str,
    clients: list[LogClient],
    followers: list[Follower],
) -> None:
    """One follower while an app logs: a server is SIGKILLed and restarted, another joins.
    Every record logged shows up exactly once; Ctrl-C ends the follower with status 0."""
    s1 = logserver_factory("s1")
    logserver_factory("s2")
    # From now on, however long the follower takes to start.
    since = dt.datetime.now(dt.UTC).isoformat()
    follower = Follower("app", "--since", since, "--zk", zk_hosts, "--zk-path", zk_path)
    followers.append(follower)
    client = LogClient(zk_hosts, zk_path=zk_path)
    clients.append(client)
    logged: list[str] = []

    def log(prefix: str, n: int) -> None:
        for message in numbered(prefix, n):
            client.log("app", message)
            logged.append(message)
            time.sleep(0.002)
        assert client.flush(30)

    log("before", 300)
    follower.wait_messages(set(logged))
    s1.kill()
    log("killed", 300)
    s1.start()
    log("restarted", 300)
    logserver_factory("s3")
    log("joined", 300)
    follower.wait_messages(set(logged))
    assert follower.stop() == 0
    counts = Counter(follower.messages())
    assert set(counts) == set(logged)
    assert max(counts.values()) == 1, [m for m, n in counts.items() if n > 1][:5]


def test_time_ranges_and_tails_have_exact_boundaries(
    logserver_factory: ServerFactory, zk_hosts: str, zk_path: str
) -> None:
    """--since is inclusive and --until exclusive at a batch's receive time; -n counts
    from the end; RFC 3339 and relative times both work."""
    s1, s2 = (logserver_factory(f"s{i}").endpoint for i in (1, 2))
    for b in range(20):
        append(s1 if b % 2 else s2, "p", b, _batch("app", f"t{b:02d}", 5))
    where = ("--zk", zk_hosts, "--zk-path", zk_path)
    records = cat_json("app", *where)
    first_of = {r["message"].split("-")[0]: r["time"] for r in reversed(records)}
    t10 = first_of["t10"]
    since = cat_json("app", "--since", t10, *where)
    assert [r["message"] for r in since] == [r["message"] for r in records][50:]
    until = cat_json("app", "--until", t10, *where)
    assert [r["message"] for r in until] == [r["message"] for r in records][:50]
    both = cat_json("app", "--since", first_of["t05"], "--until", first_of["t07"], *where)
    assert [r["message"] for r in both] == [r["message"] for r in records][25:35]
    assert cat_json("app", "--since", "1h", *where) == records
    assert cat_json("app", "--until", "1h", *where) == []
    for n in (0, 1, 7, 100, 101):
        tail = cat_json("app", "-n", str(n), *where)
        assert tail == (records[-n:] if n else []), n
    assert cat_json("app", "-n", "3", "--until", t10, *where) == records[47:50]


def test_grep_is_applied_on_the_servers_in_linear_time(
    logserver_factory: ServerFactory, zk_hosts: str, zk_path: str
) -> None:
    """Only matching records come back (from blocks that match in part too); a pattern
    that makes a backtracking engine run for hours answers at once (RE2), and the server
    keeps serving; a pattern RE2 cannot compile is a one-line error."""
    s1 = logserver_factory("s1").endpoint
    evil = "a" * 40 + "!"
    append(s1, "p", 0, [("app", "error: disk full"), ("app", "ok"), ("app", evil)])
    append(s1, "p", 1, [("app", "ok")] * 3 + [("app", "error: again")])
    where = ("--zk", zk_hosts, "--zk-path", zk_path)
    found = cat_json("app", "--grep", "^error", *where)
    assert [(r["message"], r["index"]) for r in found] == [
        ("error: disk full", 0),
        ("error: again", 3),
    ]
    started = time.monotonic()
    done = cat("app", "--raw", "--grep", "(a+)+$", *where, timeout=60)
    assert done.returncode == 0 and done.stdout == b""
    assert time.monotonic() - started < 30  # a bound against a hang, not a speed claim
    with connect(s1) as client:
        assert client.Ping() == "pong"
    bad = cat("app", "--grep", "(?<=a)b", *where)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1


def test_bytes_that_are_not_text(
    logserver_factory: ServerFactory, zk_hosts: str, zk_path: str
) -> None:
    """--raw gives a message's bytes exactly; text and JSON escape what is not UTF-8."""
    endpoint = logserver_factory("s1").endpoint
    awkward = b"caf\xc3\xa9 \xff\xfe end"
    with connect(endpoint) as client:
        from logwire.idl import log_thrift

        batch = log_thrift.AppendBatch(
            producer="p",
            sequence=0,
            entries=[log_thrift.LogEntry(category="bin", message=awkward)],
        )
        client.Append(batch)
    where = ("--zk", zk_hosts, "--zk-path", zk_path)
    raw = cat("bin", "--raw", *where)
    assert raw.stdout == awkward + b"\n"
    text = cat("bin", *where).stdout.decode()
    assert text.split(" ", 1)[1] == "café \\xff\\xfe end\n"
    (record,) = cat_json("bin", *where)
    assert record["message"] == "café \\xff\\xfe end"


def test_a_closed_pipe_ends_cat_quietly(
    logserver_factory: ServerFactory, zk_hosts: str, zk_path: str, clients: list[LogClient]
) -> None:
    """``logserver cat | head -1``: status 0 and nothing on stderr."""
    logserver_factory("s1")
    client = LogClient(zk_hosts, zk_path=zk_path)
    clients.append(client)
    log_all(client, numbered("pipe", 50_000))
    command = (
        f"{sys.executable} -m logserver cat app --zk {zk_hosts} --zk-path {zk_path} | head -1;"
        " echo status=${PIPESTATUS[0]}"
    )
    done = subprocess.run(["bash", "-c", command], capture_output=True, timeout=60)
    assert done.stdout.decode().splitlines()[-1] == "status=0"
    assert done.stderr == b""


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["app"], "give ZooKeeper hosts"),
        (["app", "--server", "x:1", "--since", "tomorrowish"], "cannot read"),
        (["app", "--server", "x:1", "-n", "-3"], "-n must be"),
        (["app", "--server", "x:1", "-n", "many"], "invalid int"),
        (["app", "--server", "x:1", "--json", "--raw"], "not allowed"),
        (["app", "--server", "x:1", "-f", "--until", "5m"], "--follow"),
        (["app", "--server", "x:1", "--since", "1h", "--until", "2h"], "later than"),
        (["../etc", "--server", "x:1"], "category"),
        (["app", "--server", "x:1", "--grep", "("], "--grep"),
        (["app", "--bogus"], "unrecognized"),
    ],
)
def test_bad_arguments_are_one_clear_line_and_status_2(args: list[str], words: str) -> None:
    done = cat(*args, timeout=30)
    assert done.returncode == 2, done
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("logserver cat"), lines


def test_categories_lists_records_bytes_and_times(
    logserver_factory: ServerFactory, zk_hosts: str, zk_path: str
) -> None:
    """Counts are what the servers store (a copy on two servers counts twice)."""
    s1, s2 = (logserver_factory(f"s{i}").endpoint for i in (1, 2))
    append(s1, "p", 0, _batch("a", "x", 10))
    append(s2, "p", 0, _batch("a", "x", 10))
    append(s2, "p", 1, _batch("b", "y", 3))
    command = [sys.executable, "-m", "logserver", "categories", "--json", "--zk", zk_hosts]
    done = subprocess.run([*command, "--zk-path", zk_path], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = {r["category"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert (rows["a"]["records"], rows["a"]["servers"]) == (20, 2)
    assert (rows["b"]["records"], rows["b"]["servers"]) == (3, 1)
    assert rows["a"]["first"] <= rows["a"]["last"] and rows["b"]["bytes"] > 0


def test_one_unreachable_server_is_named_and_the_rest_is_printed(
    logserver_factory: ServerFactory, zk_hosts: str, zk_path: str
) -> None:
    """A server that cannot be read is named on stderr, the others' records are printed,
    and the status says the output is incomplete (1)."""
    s1 = logserver_factory("s1").endpoint
    append(s1, "p", 0, _batch("app", "ok", 3))
    done = cat("app", "--raw", "--server", s1, "--server", "127.0.0.1:9", timeout=60)
    assert done.returncode == 1
    assert done.stdout == b"ok-0\nok-1\nok-2\n"
    assert b"127.0.0.1:9" in done.stderr and b"Traceback" not in done.stderr


def test_followers_start_now_and_see_new_categories(
    logserver_factory: ServerFactory, zk_hosts: str, zk_path: str, followers: list[Follower]
) -> None:
    """A follower of a category no server has yet prints its first records as they come;
    ``-f`` alone shows the last 10 records first, as journalctl does."""
    s1 = logserver_factory("s1").endpoint
    append(s1, "p", 0, _batch("old", "o", 30))
    tail = Follower("old", "--zk", zk_hosts, "--zk-path", zk_path)
    fresh = Follower("fresh", "--zk", zk_hosts, "--zk-path", zk_path)
    followers += [tail, fresh]
    tail.wait_messages({f"o-{i}" for i in range(20, 30)})
    append(s1, "p", 1, _batch("fresh", "f", 5))
    fresh.wait_messages({f"f-{i}" for i in range(5)})
    threading.Event().wait(0.5)  # nothing more may come: give it the chance
    assert tail.stop() == 0 and fresh.stop() == 0
    assert tail.messages() == [f"o-{i}" for i in range(20, 30)]
    assert fresh.messages() == [f"f-{i}" for i in range(5)]


def test_no_registered_server_is_said_not_passed_over(zk_hosts: str, zk_path: str) -> None:
    """Nothing registered under the path: cat says so and exits 1 (nothing could be read)."""
    done = cat("app", "--zk", zk_hosts, "--zk-path", zk_path)
    assert done.returncode == 1 and done.stdout == b""
    assert b"no server to read" in done.stderr and zk_path.encode() in done.stderr


def test_records_deleted_before_a_reader_got_to_them_are_reported_as_a_gap(
    logserver_factory: ServerFactory,
) -> None:
    """A reader that falls behind never skips silently: a reader is held after its first
    page while the server is stopped and its oldest segments are deleted (what retention
    does to a category a slow reader is still reading), then restarted on its port. The
    reader resumes where it was, is answered from the oldest record left, and reports the
    deleted range as a GAP (a problem of the read), then reads the rest, each record once."""
    from logserver.reader import ReaderPolicy

    server = logserver_factory("s1", extra_args=("--segment-bytes", "4096"))
    for b in range(150):  # hex compresses to about half: 20+ segments of 4 KiB
        append(
            server.endpoint,
            "p",
            b,
            [("app", f"b{b:03d}-{i} {os.urandom(40).hex()}") for i in range(10)],
        )
    segments = sorted((server.data_dir / "categories" / "app").glob("*.seg"))
    assert len(segments) > 12
    events: list[str] = []
    policy = ReaderPolicy(page_bytes=1024, prefetch_pages=1, retry_for_s=30.0)
    with logserver.read(
        None,
        "app",
        servers=[server.endpoint],
        policy=policy,
        on_event=lambda e: events.append(str(e)),
    ) as reader:
        records = iter(reader)
        first = next(records)
        server.terminate()
        for path in segments[:6]:  # retention deletes the oldest closed segments
            path.unlink()
            path.with_suffix(".idx").unlink(missing_ok=True)
        server.start()
        rest = [first, *records]
        problems = list(reader.report.problems)
    messages = [r.message.decode().split()[0] for r in rest]
    assert len(messages) == len(set(messages)), "each record once"
    assert messages[-1] == "b149-9" and len(messages) < 1500
    assert [p.kind for p in problems] == ["gap"], events
    assert "GAP" in problems[0].text and "deleted by retention" in problems[0].text
