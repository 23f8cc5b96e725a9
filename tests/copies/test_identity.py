"""A server's identity is its data directory's: kept across restarts, new when the directory is.

Unit tests open storage in a temporary directory; the process tests start real
``logserver serve`` processes and read their ZooKeeper member and ``Status``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from logserver.config import ServerConfig
from logserver.errors import ConfigError, StorageUnavailableError
from logserver.reader import connect
from logserver.storage import (
    SERVER_ID_FILE,
    Storage,
    read_server_id,
    server_id_problem,
)
from logserver.tools.launcher import wait_for
from logwire.serverset import Endpoint, Member, zone_problem


def test_first_open_makes_an_id_that_later_opens_keep(tmp_path: Path) -> None:
    """The id is made once, written to SERVER_ID, and the same on every later open."""
    data = tmp_path / "data"
    with Storage.open(data) as storage:
        first = storage.server_id
    assert server_id_problem(first) is None
    assert (data / SERVER_ID_FILE).read_text() == f"{first}\n"
    with Storage.open(data) as storage:
        assert storage.server_id == first
    assert read_server_id(data) == first
    assert not list(data.glob(".*tmp")), "no temporary file may be left behind"


def test_a_wiped_directory_is_a_new_server(tmp_path: Path) -> None:
    """Deleting the data directory (a lost disk) gives the next open a different id."""
    data = tmp_path / "data"
    with Storage.open(data) as storage:
        storage.append([("c", b"x")], producer="p", sequence=0)
        first = storage.server_id
    shutil.rmtree(data)
    with Storage.open(data) as storage:
        assert storage.server_id != first


def test_a_directory_from_before_ids_gets_one_and_keeps_its_data(tmp_path: Path) -> None:
    """A data directory written before ids existed (no SERVER_ID) is given one; its records stay."""
    data = tmp_path / "data"
    with Storage.open(data) as storage:
        storage.append([("c", b"kept")], producer="p", sequence=0)
    (data / SERVER_ID_FILE).unlink()
    with Storage.open(data) as storage:
        assert server_id_problem(storage.server_id) is None
        assert [r.message for r in storage.read("c").records] == [b"kept"]


@pytest.mark.parametrize("content", [b"", b"not-an-id\n", b"\xff\xfe", b"0123456789ABCDEF\n"])
def test_an_invalid_id_file_stops_the_open_and_is_left_alone(
    tmp_path: Path, content: bytes
) -> None:
    """A SERVER_ID that holds no valid id is never replaced silently: the open fails, naming it."""
    data = tmp_path / "data"
    data.mkdir()
    (data / SERVER_ID_FILE).write_bytes(content)
    with pytest.raises(StorageUnavailableError, match=SERVER_ID_FILE):
        Storage.open(data)
    assert (data / SERVER_ID_FILE).read_bytes() == content


def test_member_json_carries_server_id_and_zone_and_old_members_still_parse() -> None:
    """serverId and zone round-trip; a member without them (an older server) reads as ''."""
    member = Member(Endpoint("h", 1), process_id="p", server_id="0123456789abcdef", zone="eu-1a")
    doc = json.loads(member.to_json())
    assert doc["serverId"] == "0123456789abcdef" and doc["zone"] == "eu-1a"
    assert Member.from_json(member.to_json()) == member
    old = json.dumps({"serviceEndpoint": {"host": "h", "port": 1}, "status": "ALIVE"})
    assert (Member.from_json(old.encode()).server_id, Member.from_json(old.encode()).zone) == (
        "",
        "",
    )
    odd = json.dumps({"serviceEndpoint": {"host": "h", "port": 1}, "serverId": 7, "zone": None})
    assert Member.from_json(odd.encode()).server_id == ""


@pytest.mark.parametrize("zone", ["", " a", "a b", "a/b", "x" * 65, "-a", "zone\n", "é"])
def test_bad_zones_are_refused_by_the_config(tmp_path: Path, zone: str) -> None:
    """--zone takes 1-64 letters, digits, '.', '_', ':' or '-' (no spaces, slashes, control bytes)."""
    assert zone_problem(zone) is not None
    with pytest.raises(ConfigError, match="--zone"):
        ServerConfig(zk="127.0.0.1:2181", data_dir=tmp_path, zone=zone)


@pytest.mark.parametrize("zone", ["eu-west-1a", "rack:12", "a", "Z" * 64])
def test_good_zones_are_taken(tmp_path: Path, zone: str) -> None:
    assert ServerConfig(zk="127.0.0.1:2181", data_dir=tmp_path, zone=zone).zone == zone


def _member_docs(zk: KazooClient, path: str) -> list[dict]:
    if not zk.exists(path):
        return []
    docs = []
    for child in zk.get_children(path):
        try:
            data, _ = zk.get(f"{path}/{child}")
        except NoNodeError:
            continue  # an old member's node expired between the listing and the read
        docs.append(json.loads(data))
    return docs


@pytest.mark.process
def test_a_server_shows_its_id_and_zone_in_zookeeper_status_and_list(
    logserver_factory, kazoo_factory, zk_hosts, zk_path
) -> None:
    """The id of the data directory is in the member JSON, in Status and in `logserver list`;
    a restart keeps it, a wiped directory comes back as a new server."""
    import subprocess
    import sys

    zk = kazoo_factory(zk_hosts)
    server = logserver_factory(extra_args=["--zone", "zone-a"])
    wait_for(lambda: _member_docs(zk, zk_path), 20, what="registration")
    (doc,) = _member_docs(zk, zk_path)
    server_id = read_server_id(server.data_dir)
    assert doc["serverId"] == server_id and doc["zone"] == "zone-a"
    with connect(Endpoint.parse(server.endpoint)) as client:
        status = client.Status()
    assert (status.server_id, status.zone) == (server_id, "zone-a")
    assert status.process_id == doc["processId"]
    listed = subprocess.run(
        [sys.executable, "-m", "logserver", "list", "--zk", zk_hosts, "--zk-path", zk_path],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout.decode()
    assert f"id={server_id}" in listed and "zone=zone-a" in listed

    server.restart()
    with connect(Endpoint.parse(server.endpoint)) as client:
        assert client.Status().server_id == server_id

    server.kill()
    shutil.rmtree(server.data_dir)
    server.start()
    with connect(Endpoint.parse(server.endpoint)) as client:
        fresh = client.Status().server_id
    assert fresh != server_id and fresh == read_server_id(server.data_dir)
    wait_for(
        lambda: [d["serverId"] for d in _member_docs(zk, zk_path)] == [fresh],
        20,
        what="the wiped server's registration under its new id (the old node expired)",
    )
