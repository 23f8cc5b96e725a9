"""The data inventory: every server keeps a persistent record of what it holds, and readers
report each server that holds data of a category but cannot be read; ``forget`` removes one.

Real ZooKeeper, real ``logserver serve`` processes killed with real signals; the
commands run as the operator runs them (``python -m logserver``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logserver.reader import registered_servers
from logserver.storage import read_server_id
from logserver.tools.inventory import EXIT_INCOMPLETE
from logserver.tools.launcher import wait_for
from logwire.errors import InventoryFormatError
from logwire.inventory import MAX_CATEGORIES, InventoryRecord, inventory_path
from logwire.serverset import Endpoint
from tests.thrift_clients import append

SERVER_A = "0123456789abcdef"


def logserver(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logserver", *args], capture_output=True, text=True, timeout=timeout
    )


# ------------------------------------------------------------------------------ the record


def test_a_record_round_trips_and_lists_its_categories_sorted() -> None:
    record = InventoryRecord(
        SERVER_A,
        Endpoint("h", 9),
        {"b": 10, "a": 2},
        last_seen=5.5,
        started_at=1.0,
        zone="z",
        data_dir="/d",
        stopped=True,
    )
    doc = json.loads(record.to_json())
    assert list(doc["categories"]) == ["a", "b"]
    assert InventoryRecord.from_json(record.to_json(), node=SERVER_A) == record


def test_a_record_keeps_its_largest_categories_and_says_it_left_some_out() -> None:
    """Past MAX_CATEGORIES the largest are kept and `truncated` makes readers assume any."""
    many = {f"c{i:05d}": i for i in range(MAX_CATEGORIES + 10)}
    back = InventoryRecord.from_json(InventoryRecord(SERVER_A, None, many).to_json())
    assert len(back.categories) == MAX_CATEGORIES and back.truncated
    assert "c00000" not in back.categories and back.holds("c00000")
    assert len(InventoryRecord(SERVER_A, None, many).to_json()) < 300_000


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b'{"serverId": ""}',
        b'{"serverId": 5}',
        b'{"serverId": "x", "categories": []}',
        b'{"serverId": "x", "categories": {"a": -1}}',
        b'{"serverId": "x", "categories": {"a": true}}',
        b'{"serverId": "x", "lastSeen": "yesterday"}',
        b'{"serverId": "x", "lastSeen": NaN}',
        b'{"serverId": "x", "endpoint": {"host": "h"}}',
    ],
)
def test_records_that_do_not_hold_together_are_refused(data: bytes) -> None:
    with pytest.raises(InventoryFormatError):
        InventoryRecord.from_json(data)


def test_a_record_under_another_servers_node_is_refused() -> None:
    data = InventoryRecord(SERVER_A, None).to_json()
    with pytest.raises(InventoryFormatError) as caught:
        InventoryRecord.from_json(data, node="fedcba9876543210")
    assert caught.value.node == "fedcba9876543210"


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_the_formats_error(data: bytes) -> None:
    with contextlib.suppress(InventoryFormatError):
        InventoryRecord.from_json(data)


def test_the_inventory_is_a_sibling_of_the_members_path() -> None:
    assert inventory_path("/logservers") == "/logservers-inventory"
    assert inventory_path("/a/b/logservers") == "/a/b/logservers-inventory"


# ------------------------------------------------------------------------------ processes


def _record(kazoo, zk_path: str, server_id: str | None) -> InventoryRecord | None:
    if server_id is None:
        return None
    node = f"{inventory_path(zk_path)}/{server_id}"
    if not kazoo.exists(node):
        return None
    return InventoryRecord.from_json(kazoo.get(node)[0], node=server_id)


@pytest.mark.process
def test_a_server_records_what_it_holds_outside_the_members_path(
    logserver_factory, kazoo_factory, zk_hosts, zk_path
) -> None:
    """On start the record exists; a new category shows up within seconds; the members' path
    holds member nodes only; a graceful stop marks the record `stopped` and keeps it."""
    kazoo = kazoo_factory(zk_hosts)
    server = logserver_factory(extra_args=["--zone", "zone-b"])
    server_id = read_server_id(server.data_dir)
    first = wait_for(lambda: _record(kazoo, zk_path, server_id), 20, what="the first record")
    assert first.endpoint == Endpoint.parse(server.endpoint) and first.zone == "zone-b"
    assert first.categories == {} and not first.stopped
    assert first.data_dir == str(server.data_dir.resolve())

    append(server.endpoint, "p", 0, [("alpha", "one"), ("beta", "two")])
    held = wait_for(
        lambda: (
            (r := _record(kazoo, zk_path, server_id))
            and set(r.categories) == {"alpha", "beta"}
            and r
        ),
        20,
        what="the new categories in the record",
    )
    assert held.categories["alpha"] > 0 and held.last_seen >= first.last_seen
    assert all(c.startswith("member_") for c in kazoo.get_children(zk_path))

    assert server.terminate() == 0
    stopped = _record(kazoo, zk_path, server_id)
    assert stopped is not None and stopped.stopped and set(stopped.categories) == {"alpha", "beta"}


@pytest.mark.process
def test_cat_reports_a_data_holding_server_that_is_gone_and_strict_fails(
    logserver_factory, kazoo_factory, zk_hosts, zk_path, tmp_path
) -> None:
    """A server SIGKILLed after storing records of `app`, then wiped and started empty: `cat`
    prints what the live servers hold, says on stderr which server id holds `app` and is
    gone (exit 0), and exits 3 with --strict. A reader of another category hears nothing of
    it, and reading the old data directory itself silences the warning."""
    kazoo = kazoo_factory(zk_hosts)
    lost = logserver_factory()
    kept = logserver_factory()
    lost_id = read_server_id(lost.data_dir)
    append(lost.endpoint, "p", 0, [("app", "only-on-lost")])
    append(kept.endpoint, "q", 0, [("app", "on-kept"), ("other", "x")])
    wait_for(
        lambda: (r := _record(kazoo, zk_path, lost_id)) and "app" in r.categories,
        20,
        what="the lost server's record of app",
    )
    lost.kill()
    saved = tmp_path / "saved-disk"
    shutil.copytree(lost.data_dir, saved)  # what an operator might still have (a snapshot)
    shutil.rmtree(lost.data_dir)
    lost.port = 0  # its old port may have been taken meanwhile (the kernel reuses free ports)
    lost.start()
    # The old member gone and the new one there (a started server registers in the
    # background: two members alone could still be the kept one and the old member).
    live = {read_server_id(kept.data_dir), read_server_id(lost.data_dir)}
    wait_for(
        lambda: (
            {s.member.server_id for s in registered_servers(kazoo, zk_path) if s.member} == live
        ),
        30,
        what="the old member to expire and the new one to register",
    )

    common = ["--zk", zk_hosts, "--zk-path", zk_path]
    plain = logserver("cat", "app", "--raw", *common)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines() == ["on-kept"]
    assert (
        lost_id in plain.stderr and "'app'" in plain.stderr and "is not registered" in plain.stderr
    )
    assert f"logserver forget {lost_id}" in plain.stderr

    strict = logserver("cat", "app", "--raw", "--strict", *common)
    assert strict.returncode == EXIT_INCOMPLETE and strict.stdout.splitlines() == ["on-kept"]

    other = logserver("cat", "other", "--raw", "--strict", *common)
    assert other.returncode == 0 and other.stderr == "" and other.stdout.splitlines() == ["x"]

    with_disk = logserver("cat", "app", "--raw", "--strict", "--data-dir", str(saved), *common)
    assert with_disk.returncode == 0, with_disk.stderr
    assert sorted(with_disk.stdout.splitlines()) == ["on-kept", "only-on-lost"]


@pytest.mark.process
def test_cat_reports_a_registered_server_that_does_not_answer(
    logserver_factory, zk_hosts, zk_path
) -> None:
    """A frozen server (SIGSTOP) is still registered; cat skips it, says so, and --strict fails."""
    frozen = logserver_factory()
    live = logserver_factory()
    append(frozen.endpoint, "p", 0, [("app", "frozen-copy")])
    append(live.endpoint, "q", 0, [("app", "live-copy")])
    frozen.signal(signal.SIGSTOP)
    try:
        result = logserver(
            "cat", "app", "--raw", "--strict", "--zk", zk_hosts, "--zk-path", zk_path
        )
    finally:
        frozen.signal(signal.SIGCONT)
    assert result.returncode == EXIT_INCOMPLETE
    assert result.stdout.splitlines() == ["live-copy"]
    assert "registered but did not answer" in result.stderr
    assert str(read_server_id(frozen.data_dir)) in result.stderr


@pytest.mark.process
def test_forget_removes_a_gone_server_and_refuses_a_live_one(
    logserver_factory, kazoo_factory, zk_hosts, zk_path
) -> None:
    """forget needs --yes (or --dry-run), refuses a registered server without --force, removes
    a gone one's record; readers then stop reporting it."""
    kazoo = kazoo_factory(zk_hosts)
    gone = logserver_factory()
    live = logserver_factory()
    gone_id, live_id = read_server_id(gone.data_dir), read_server_id(live.data_dir)
    append(gone.endpoint, "p", 0, [("app", "a")])
    wait_for(
        lambda: (r := _record(kazoo, zk_path, gone_id)) and "app" in r.categories,
        20,
        what="the record",
    )
    wait_for(lambda: _record(kazoo, zk_path, live_id), 20, what="the live server's record")
    common = ["--zk", zk_hosts, "--zk-path", zk_path]

    assert logserver("forget", gone_id, *common).returncode == 2
    assert logserver("forget", "not-an-id", "--yes", *common).returncode == 2
    unknown = logserver("forget", "ffffffffffffffff", "--yes", *common)
    assert unknown.returncode == 1 and "no server" in unknown.stderr

    refused = logserver("forget", live_id, "--yes", *common)
    assert refused.returncode == 1 and "registered now" in refused.stderr
    assert _record(kazoo, zk_path, live_id) is not None

    gone.kill()
    wait_for(lambda: len(kazoo.get_children(zk_path)) == 1, 30, what="the killed member to expire")
    listed = logserver("list", "--inventory", *common)
    assert f"inventory\t{gone_id}" in listed.stdout and "NOT-REGISTERED" in listed.stdout

    dry = logserver("forget", gone_id, "--dry-run", *common)
    assert dry.returncode == 0 and dry.stdout.startswith(f"would forget server {gone_id}")
    assert _record(kazoo, zk_path, gone_id) is not None
    assert logserver("cat", "app", "--raw", "--strict", *common).returncode == EXIT_INCOMPLETE

    done = logserver("forget", gone_id, "--yes", *common)
    assert done.returncode == 0 and done.stdout.startswith(f"forgot server {gone_id}")
    assert _record(kazoo, zk_path, gone_id) is None
    after = logserver("cat", "app", "--raw", "--strict", *common)
    assert after.returncode == 0 and after.stderr == ""

    forced = logserver("forget", live_id, "--yes", "--force", *common)
    assert forced.returncode == 0
    # A live server writes its record again (at the latest on its next periodic update).
