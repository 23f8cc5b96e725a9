"""What must hold for the servers file format (logwire.serversfile), which agent and clients share."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logwire.serverset import Endpoint
from logwire.serversfile import (
    FORMAT,
    MAX_FILE_BYTES,
    VERSION,
    AgentInfo,
    ListedServer,
    ServersFile,
    ServersFileError,
    parse,
)


def document(**changes: object) -> ServersFile:
    base = ServersFile(
        servers=frozenset({Endpoint("10.0.0.2", 9090), Endpoint("10.0.0.1", 9091)}),
        zk_hosts="zk1:2181,zk2:2181/chroot",
        zk_path="/logservers",
        state="current",
        written_at=1_767_000_000.25,
        changed_at=1_766_999_000.5,
        heartbeat_s=5.0,
        serial=42,
        agent=AgentInfo(pid=4242, host="app17", started_at=1_766_990_000.0),
    )
    return base.evolve(**changes)


def as_dict(doc: ServersFile) -> dict[str, object]:
    result: dict[str, object] = json.loads(doc.to_json())
    return result


def test_round_trip_and_layout() -> None:
    """What the agent writes parses back to the same document; servers are written sorted, as
    host/port objects; the file is indented JSON ending in a newline (easy to read and diff)."""
    doc = document(state="stale", stale_since=1_767_000_001.0)
    data = doc.to_json()
    assert parse(data) == doc
    assert data.endswith(b"}\n") and b'\n  "servers"' in data
    raw = json.loads(data)
    assert raw["format"] == FORMAT and raw["version"] == VERSION == 1
    assert raw["servers"] == [
        {"host": "10.0.0.1", "port": 9091},
        {"host": "10.0.0.2", "port": 9090},
    ]
    assert raw["source"] == {"zk_hosts": "zk1:2181,zk2:2181/chroot", "zk_path": "/logservers"}
    assert raw["agent"] == {"pid": 4242, "host": "app17", "started_at": 1_766_990_000.0}


def test_registrations_round_trip_and_are_optional() -> None:
    """Each server may carry its member node and registration order; a file without them (or
    with them on some servers only) is read all the same."""
    a, b = Endpoint("10.0.0.1", 9091), Endpoint("10.0.0.2", 9090)
    doc = document(registrations=(ListedServer(a, "member_0000000007", 7), ListedServer(b)))
    assert parse(doc.to_json()) == doc
    raw = json.loads(doc.to_json())
    assert raw["servers"] == [
        {"host": "10.0.0.1", "port": 9091, "node": "member_0000000007", "order": 7},
        {"host": "10.0.0.2", "port": 9090},
    ]
    assert doc.listed() == (ListedServer(a, "member_0000000007", 7), ListedServer(b))
    assert document().listed() == (ListedServer(a), ListedServer(b))
    with pytest.raises(ServersFileError, match="exactly once"):
        document(registrations=(ListedServer(a, "n1", 1),))
    with pytest.raises(ServersFileError, match="exactly once"):
        document(registrations=(ListedServer(a), ListedServer(a), ListedServer(b)))


def test_a_zone_round_trips_and_a_bad_one_is_refused() -> None:
    """A server's zone (its --zone) is listed with it, so a client reading the file spreads
    copies as one watching ZooKeeper does; a zone the registration would refuse is refused."""
    a, b = Endpoint("10.0.0.1", 9091), Endpoint("10.0.0.2", 9090)
    doc = document(
        registrations=(ListedServer(a, "member_0000000007", 7, "eu-1a"), ListedServer(b))
    )
    assert parse(doc.to_json()) == doc
    assert json.loads(doc.to_json())["servers"][0]["zone"] == "eu-1a"
    assert (
        document(registrations=(ListedServer(a, zone="z1"), ListedServer(b))).listed()[0].zone
        == "z1"
    )
    raw = json.loads(doc.to_json())
    raw["servers"][0]["zone"] = "eu 1a"
    with pytest.raises(ServersFileError, match="zone"):
        parse(json.dumps(raw).encode())


def test_an_ipv6_server_round_trips() -> None:
    """Hosts are written as they are: an IPv6 address needs no brackets or escaping."""
    doc = document(servers=frozenset({Endpoint("::1", 9090), Endpoint("fe80::2", 1)}))
    assert parse(doc.to_json()).servers == doc.servers


def test_unknown_fields_are_ignored() -> None:
    """A newer agent may add fields in version 1; an older reader ignores them."""
    raw = as_dict(document())
    raw["zone"] = "eu-1"
    raw["agent"] = {**raw["agent"], "build": "x"}  # type: ignore[dict-item]
    assert parse(json.dumps(raw).encode()) == document()


def test_age_and_staleness() -> None:
    """The age counts from the later of written_at and the file's mtime (the heartbeat); a list is
    stale when the agent says so or after three heartbeats without a refresh."""
    doc = document(written_at=1000.0, heartbeat_s=5.0)
    assert doc.age(1010.0) == 10.0
    assert doc.age(1010.0, mtime=1008.0) == 2.0
    assert doc.age(900.0) == 0.0  # a clock step back is no negative age
    assert not doc.is_stale(1015.0) and doc.is_stale(1015.5)
    assert not doc.is_stale(1100.0, mtime=1099.0)
    assert document(state="stale").is_stale(document().written_at)
    assert document(state="stopped").is_stale(document().written_at)


def _mutated(**changes: object) -> bytes:
    raw = as_dict(document())
    for key, value in changes.items():
        if value is _DELETE:
            del raw[key]
        else:
            raw[key] = value
    return json.dumps(raw).encode()


_DELETE = object()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b'{"format": "logservice-servers", "version": 1, "servers": [{"ho', "not JSON"),
        (b"\xff\xfe garbage", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (_mutated(format="other"), "format"),
        (_mutated(format=_DELETE), "format"),
        (_mutated(version=2), "version 2 is not 1"),
        (_mutated(version="1"), "version must be an integer"),
        (_mutated(version=True), "version must be an integer"),
        (_mutated(servers="10.0.0.1:9090"), "servers must be a list"),
        (_mutated(servers=["10.0.0.1:9090"]), "a server must be an object"),
        (_mutated(servers=[{"host": "", "port": 1}]), "bad server host"),
        (_mutated(servers=[{"host": "a b", "port": 1}]), "bad server host"),
        (_mutated(servers=[{"host": "h", "port": 0}]), "bad server port"),
        (_mutated(servers=[{"host": "h", "port": 65536}]), "bad server port"),
        (_mutated(servers=[{"host": "h", "port": "80"}]), "bad server port"),
        (_mutated(servers=[{"host": "h", "port": 80.0}]), "bad server port"),
        (_mutated(servers=[{"host": "h", "port": 80, "node": 7}]), "bad server node"),
        (_mutated(servers=[{"host": "h", "port": 80, "node": "a/b"}]), "bad server node"),
        (_mutated(servers=[{"host": "h", "port": 80, "order": -1}]), "bad server order"),
        (_mutated(servers=[{"host": "h", "port": 80, "order": "1"}]), "bad server order"),
        (
            _mutated(servers=[{"host": "h", "port": 80, "order": 1}, {"host": "h", "port": 80}]),
            "exactly once",
        ),
        (_mutated(state="fresh"), "state must be one of"),
        (_mutated(heartbeat_s=0), "heartbeat_s must be positive"),
        (_mutated(heartbeat_s=-5), "heartbeat_s must be positive"),
        (b'{"format": "logservice-servers", "version": 1, "heartbeat_s": NaN}', "bad field"),
        (_mutated(written_at="yesterday"), "written_at must be a finite number"),
        (_mutated(serial=-1), "serial must not be negative"),
        (_mutated(serial=1.5), "serial must be an integer"),
        (_mutated(source=_DELETE), "bad field"),
        (_mutated(source=[]), "source must be an object"),
        (_mutated(agent={"pid": 1}), "bad field"),
    ],
)
def test_unusable_content_is_refused_with_a_reason(data: bytes, says: str) -> None:
    """Torn, garbage or wrong content raises ServersFileError (never another exception), saying
    why; a reader then keeps its last good list."""
    with pytest.raises(ServersFileError) as info:
        parse(data)
    assert says in str(info.value)


def test_a_file_over_the_size_limit_is_refused_unparsed() -> None:
    """A runaway file is refused by its size, before any JSON is parsed."""
    with pytest.raises(ServersFileError, match="more than"):
        parse(b" " * (MAX_FILE_BYTES + 1))


def test_invalid_documents_cannot_be_made() -> None:
    """The agent cannot write what readers would refuse."""
    with pytest.raises(ServersFileError):
        document(state="unknown")
    with pytest.raises(ServersFileError):
        document(heartbeat_s=math.inf)
    with pytest.raises(ServersFileError):
        document(stale_since=math.nan)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_servers_file_error(data: bytes) -> None:
    """Whatever is in the file, parse() returns a document or raises ServersFileError."""
    with contextlib.suppress(ServersFileError):
        parse(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(document().to_json().rstrip()) - 1))
def test_every_truncation_of_a_file_is_refused(cut: int) -> None:
    """A file cut anywhere before its closing brace (a torn write) is refused, never read as a
    shorter list."""
    with pytest.raises(ServersFileError):
        parse(document().to_json()[:cut])
