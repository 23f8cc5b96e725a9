"""With --zk-auth-file, only the servers' identity may change the registrations; anyone may read them."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.protocol.serialization import Auth
from kazoo.security import ACL, OPEN_ACL_UNSAFE, Permissions, make_digest_acl_credential

from logclient import LogClient, SpoolPolicy
from logclient.discovery import ZooKeeperServers
from logserver.errors import ConfigError, RegistrationError
from logserver.reader import read_server
from logserver.registry import Registration, read_auth_file, registration_acl
from logserver.tools.launcher import LogServerProcess, wait_for
from logwire.serverset import Endpoint, Member

from .conftest import (
    Credentials,
    KazooFactory,
    ServerFactory,
    children,
    exit_status,
    wait_registered,
    write_credentials,
)

pytestmark = pytest.mark.timeout(120)


def acl_set(acls: list[ACL]) -> set[tuple[int, str, str]]:
    return {(a.perms, a.id.scheme, a.id.id) for a in acls}


def events(server: LogServerProcess, name: str) -> list[dict[str, object]]:
    """The server's JSON log lines whose event is ``name``."""
    found = []
    for line in server.log_tail(10**7).splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("event") == name:
            found.append(doc)
    return found


def walk(client: KazooClient, path: str) -> list[tuple[str, bytes]]:
    """Every node under ``path`` (included) with its data."""
    data, _stat = client.get(path)
    found = [(path, data)]
    for child in client.get_children(path):
        found += walk(client, f"{path.rstrip('/')}/{child}")
    return found


def registration_acl_set(credentials: Credentials) -> set[tuple[int, str, str]]:
    """ "The servers' identity: all, anyone: read", as :func:`acl_set` shows an ACL."""
    digest = make_digest_acl_credential(credentials.user, credentials.password)
    return {(Permissions.ALL, "digest", digest), (Permissions.READ, "world", "anyone")}


def test_a_server_with_credentials_registers_under_an_acl_only_it_may_change(
    zk_base: str,
    zk_path: str,
    credentials: Credentials,
    admin: KazooClient,
    anonymous: KazooClient,
    logserver_factory: ServerFactory,
) -> None:
    """The path, the parent the server created and the server's node carry exactly
    "digest identity: all, anyone: read"; the parent it did not create keeps its own ACL."""
    server = logserver_factory(extra_args=credentials.args())
    [node] = wait_registered(anonymous, zk_path)

    expected = registration_acl_set(credentials)
    for path in (node, zk_path, f"{zk_base}/secure"):
        acls, _stat = admin.get_acls(path)
        assert acl_set(acls) == expected, path
    acls, _stat = anonymous.get_acls(zk_base)
    assert acls == OPEN_ACL_UNSAFE
    assert Member.from_json(anonymous.get(node)[0]).endpoint == Endpoint.parse(server.endpoint)
    assert events(server, "registration_path_open") == []


def test_a_client_without_credentials_discovers_and_uses_the_server(
    zk_hosts: str,
    zk_path: str,
    credentials: Credentials,
    anonymous: KazooClient,
    logserver_factory: ServerFactory,
    tmp_path: Path,
) -> None:
    """Discovery, LogClient and ``logserver list`` need no credentials: they only read."""
    server = logserver_factory(extra_args=credentials.args())
    wait_registered(anonymous, zk_path)
    endpoint = Endpoint.parse(server.endpoint)

    discovery = ZooKeeperServers(zk_hosts, zk_path, session_timeout_s=4)
    discovery.start()
    try:
        assert discovery.wait_for(lambda servers: servers == {endpoint}, 15)
    finally:
        discovery.close()

    with LogClient(zk_hosts, zk_path, spool=SpoolPolicy(directory=tmp_path / "spool")) as client:
        client.log("audit", "read without credentials")
        assert client.flush(20)
    assert [r.message for r in read_server(endpoint, "audit")] == [b"read without credentials"]

    listed = subprocess.run(
        [sys.executable, "-m", "logserver", "list", "--zk", zk_hosts, "--zk-path", zk_path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert server.endpoint in listed.stdout


def test_a_client_started_first_leaves_the_path_for_the_servers_to_create(
    zk_hosts: str,
    zk_path: str,
    credentials: Credentials,
    anonymous: KazooClient,
    logserver_factory: ServerFactory,
) -> None:
    """Discovery never creates the path: were a client started before any server to create it,
    it would be open to anyone, and the servers would only warn about it."""
    discovery = ZooKeeperServers(zk_hosts, zk_path, session_timeout_s=4)
    discovery.start()
    try:
        wait_for(lambda: discovery.stats().answered, 15, what="discovery's first answer")
        assert anonymous.exists(zk_path) is None

        server = logserver_factory(extra_args=credentials.args())
        assert discovery.wait_for(lambda s: s == {Endpoint.parse(server.endpoint)}, 15)
    finally:
        discovery.close()
    assert acl_set(anonymous.get_acls(zk_path)[0]) == {
        (Permissions.ALL, "digest", f"{credentials.user}:x"),
        (Permissions.READ, "world", "anyone"),
    }
    assert events(server, "registration_path_open") == []


@pytest.mark.parametrize("who", ["anonymous", "wrong password", "wrong user"])
def test_without_the_credentials_nothing_can_be_created_deleted_or_overwritten(
    who: str,
    zk_hosts: str,
    zk_path: str,
    credentials: Credentials,
    anonymous: KazooClient,
    kazoo_factory: KazooFactory,
    logserver_factory: ServerFactory,
) -> None:
    """A raw kazoo client without the servers' identity gets NoAuth for a rogue member, for
    deleting or overwriting a server's node, and for opening the ACL; nothing changes."""
    logserver_factory(extra_args=credentials.args())
    [node] = wait_registered(anonymous, zk_path)
    data, stat = anonymous.get(node)
    auth = {
        "anonymous": None,
        "wrong password": [("digest", f"{credentials.user}:not-{credentials.password}")],
        "wrong user": [("digest", f"intruder:{credentials.password}")],
    }[who]
    rogue = kazoo_factory(zk_hosts, auth_data=auth)
    fake = Member(endpoint=Endpoint("203.0.113.9", 9090), process_id="rogue").to_json()

    with pytest.raises(NoAuthError):
        rogue.create(f"{zk_path}/member_", fake, ephemeral=True, sequence=True)
    with pytest.raises(NoAuthError):
        rogue.delete(node)
    with pytest.raises(NoAuthError):
        rogue.set(node, fake)
    with pytest.raises(NoAuthError):
        rogue.set_acls(zk_path, OPEN_ACL_UNSAFE)
    with pytest.raises(NoAuthError):
        rogue.set_acls(node, OPEN_ACL_UNSAFE)

    assert children(anonymous, zk_path) == [node.rsplit("/", 1)[1]]
    assert anonymous.get(node) == (data, stat)


@pytest.mark.parametrize("rogue_auth", ["wrong password", "no auth file"])
def test_a_server_that_may_not_register_exits_loudly_and_the_registered_one_stays(
    rogue_auth: str,
    zk_path: str,
    credentials: Credentials,
    anonymous: KazooClient,
    logserver_factory: ServerFactory,
    tmp_path: Path,
) -> None:
    """A second server with wrong (or no) credentials exits 1 at startup, saying once in its
    log and on stderr why and what to check; the legitimate server stays registered and up."""
    good = logserver_factory("good", extra_args=credentials.args())
    [node] = wait_registered(anonymous, zk_path)
    owner = anonymous.exists(node).ephemeralOwner
    args = (
        write_credentials(tmp_path, credentials.user, "guessed").args()
        if rogue_auth == "wrong password"
        else []
    )

    rogue = logserver_factory("rogue", wait=False, extra_args=args)
    assert exit_status(rogue) == 1

    wanted = (
        f"not allowed to register under {zk_path}: ZooKeeper denied CREATE on {zk_path} "
        "(NoAuth); check --zk-auth-file"
    )
    [failed] = events(rogue, "registration_failed")
    assert failed["level"] == "error"
    assert failed["error"] == wanted
    assert f"logserver serve: {wanted}" in rogue.log_tail()  # the plain stderr line
    assert good.alive()
    assert children(anonymous, zk_path) == [node.rsplit("/", 1)[1]]
    assert anonymous.exists(node).ephemeralOwner == owner


def test_the_password_appears_nowhere(
    zk_base: str,
    zk_path: str,
    credentials: Credentials,
    anonymous: KazooClient,
    logserver_factory: ServerFactory,
    tmp_path: Path,
) -> None:
    """Neither the servers' password nor a rogue's wrong one is in any znode, in the logs
    (debug level), or on the command line (``ps``)."""
    good = logserver_factory("good", extra_args=[*credentials.args(), "--log-level", "debug"])
    wait_registered(anonymous, zk_path)
    assert good.pid is not None
    cmdline = Path(f"/proc/{good.pid}/cmdline").read_bytes()
    wrong = write_credentials(tmp_path, credentials.user, "wrong-" + credentials.password[::-1])
    rogue = logserver_factory(
        "rogue", wait=False, extra_args=[*wrong.args(), "--log-level", "debug"]
    )
    assert exit_status(rogue) == 1

    secrets = [credentials.password, wrong.password]
    for path, data in walk(anonymous, zk_base):
        for secret in secrets:
            assert secret.encode() not in data, path
    for text in (good.log_tail(10**7), rogue.log_tail(10**7), cmdline.decode()):
        assert text
        for secret in secrets:
            assert secret not in text


def test_an_open_path_from_an_older_deployment_is_reported_and_left_alone(
    zk_path: str,
    credentials: Credentials,
    admin: KazooClient,
    anonymous: KazooClient,
    logserver_factory: ServerFactory,
) -> None:
    """A registration path created without an ACL keeps it (servers of the old deployment may
    still need it) and the server warns that anyone may register there; its own node is
    still protected."""
    anonymous.ensure_path(zk_path)
    server = logserver_factory(extra_args=credentials.args())
    [node] = wait_registered(anonymous, zk_path)

    [warning] = events(server, "registration_path_open")
    assert warning["level"] == "warning"
    assert warning["path"] == zk_path
    assert warning["acl"] == ["world:anyone:cdrwa"]
    assert anonymous.get_acls(zk_path)[0] == OPEN_ACL_UNSAFE
    assert acl_set(admin.get_acls(node)[0]) == acl_set(
        registration_acl(credentials.user, credentials.password)
    )
    with pytest.raises(NoAuthError):
        anonymous.set(node, b"overwritten")


# ------------------------------------------------------------------- no ZooKeeper needed


def test_the_auth_file_holds_one_user_password_line_and_errors_never_quote_it(
    tmp_path: Path,
) -> None:
    """A trailing newline is fine; anything else malformed is a ConfigError naming the file,
    never its content."""
    good = tmp_path / "good"
    good.write_text("logserver:pa ss:word\n")
    good.chmod(0o600)
    assert read_auth_file(good) == ("digest", "logserver:pa ss:word")

    for content in ("no-colon-secret", ":only-password-secret", "user-secret:", "a:b\nc:secret"):
        bad = tmp_path / "bad"
        bad.write_text(content)
        with pytest.raises(ConfigError) as raised:
            read_auth_file(bad)
        assert str(bad) in str(raised.value)
        assert "secret" not in str(raised.value)
    with pytest.raises(ConfigError, match="cannot read"):
        read_auth_file(tmp_path / "missing")


def test_a_registration_never_shows_its_password(caplog: pytest.LogCaptureFixture) -> None:
    """Not in its repr, not in the error for a malformed credential, not in kazoo's debug
    line about the auth packet."""
    member = Member(endpoint=Endpoint("127.0.0.1", 9), process_id="p")
    registration = Registration(
        "127.0.0.1:1", "/logservers", member, auth=("digest", "logserver:hunter2-secret")
    )
    assert "hunter2" not in repr(registration)
    assert "auth=logserver" in repr(registration)
    with pytest.raises(RegistrationError) as raised:
        Registration("127.0.0.1:1", "/l", member, auth=("digest", "hunter2-secret"))
    assert "hunter2" not in str(raised.value)

    kazoo_logger = logging.getLogger("kazoo.client")
    level = kazoo_logger.level
    kazoo_logger.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG, logger="kazoo.client"):
            kazoo_logger.debug(
                "Sending request(xid=%s): %s", -4, Auth(0, "digest", "logserver:hunter2-secret")
            )
            kazoo_logger.debug("Sending request(xid=%s): %s", 7, "GetData(...)")
    finally:
        kazoo_logger.setLevel(level)
    assert "hunter2" not in caplog.text
    assert "GetData" in caplog.text


def test_the_data_inventory_gets_the_acl_and_forget_needs_the_credentials(
    zk_hosts: str,
    zk_path: str,
    credentials: Credentials,
    admin: KazooClient,
    anonymous: KazooClient,
    logserver_factory: ServerFactory,
) -> None:
    """The inventory path and each server's record carry the registration's ACL: anyone reads
    them, only the servers' identity deletes one (forget without --zk-auth-file is refused)."""
    from logserver.storage import read_server_id
    from logwire.inventory import inventory_path

    server = logserver_factory(extra_args=credentials.args())
    server_id = read_server_id(server.data_dir)
    record = f"{inventory_path(zk_path)}/{server_id}"
    wait_for(lambda: anonymous.exists(record), 20, what="the inventory record")
    expected = registration_acl_set(credentials)
    for path in (record, inventory_path(zk_path)):
        acls, _stat = admin.get_acls(path)
        assert acl_set(acls) == expected, path
    server.terminate()

    def forget(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *(sys.executable, "-m", "logserver", "forget", str(server_id), "--yes"),
                *("--zk", zk_hosts, "--zk-path", zk_path, *extra),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = forget()
    assert refused.returncode == 1 and "NoAuth" in refused.stderr
    assert anonymous.exists(record)
    assert forget(*credentials.args()).returncode == 0
    assert not anonymous.exists(record)
