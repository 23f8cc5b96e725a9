"""ZooKeeper from Debian's jars (standalone or a loopback ensemble), Docker, or an existing ensemble."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from logserver.tools.launcher._common import (
    LaunchError,
    ZooKeeper,
    four_letter_word,
    free_port,
    wait_for,
)

DEFAULT_ZK_JAR = Path("/usr/share/java/zookeeper.jar")

# The Netty jars the secure client port needs that zookeeper.jar's manifest
# Class-Path leaves out (Debian 12, ZooKeeper 3.8.0); looked for beside the jar.
_NETTY_EXTRA_JARS = (
    "netty-codec.jar",
    "netty-resolver.jar",
    "netty-transport-native-unix-common.jar",
)


# --------------------------------------------------------------------------- local


#: ZooKeeper's ``ssl.clientAuth``: whether a client must present a certificate.
ClientAuth = Literal["none", "want", "need"]


@dataclass(frozen=True)
class ZooKeeperTLS:
    """A TLS client port (``secureClientPort``, Netty) beside the plain one, with PEM stores.

    ``cert_file``/``key_file``: the server's certificate and unencrypted private
    key (written together into the PEM key store); ``ca_file``: the trust store,
    the CA(s) whose client certificates are accepted. ``client_auth``: ``none``
    (any client), ``want`` or ``need`` (a client certificate signed by ``ca_file``).
    """

    cert_file: Path
    key_file: Path
    ca_file: Path
    client_auth: ClientAuth = "none"

    def __post_init__(self) -> None:
        if self.client_auth not in get_args(ClientAuth):
            raise ValueError(f"client_auth must be none, want or need, not {self.client_auth!r}")

    def config_lines(self, workdir: Path, host: str, secure_port: int) -> list[str]:
        """The zoo.cfg lines; writes the key store (certificate + key) into ``workdir``."""
        keystore = workdir / "keystore.pem"
        keystore.write_bytes(
            Path(self.cert_file).read_bytes() + b"\n" + Path(self.key_file).read_bytes()
        )
        keystore.chmod(0o600)
        return [
            f"secureClientPort={secure_port}",
            f"secureClientPortAddress={host}",
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
            f"ssl.keyStore.location={keystore}",
            "ssl.keyStore.type=PEM",
            f"ssl.trustStore.location={self.ca_file}",
            "ssl.trustStore.type=PEM",
            f"ssl.clientAuth={self.client_auth}",
        ]


@dataclass
class ZooKeeperNode:
    """One ZooKeeper JVM started from Debian's jars."""

    node_id: int
    client_port: int
    peer_port: int
    election_port: int
    workdir: Path
    tick_ms: int = 500
    host: str = "127.0.0.1"
    peers: Sequence[ZooKeeperNode] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    tls: ZooKeeperTLS | None = None
    secure_client_port: int = 0
    #: Connections ZooKeeper accepts from one client address (0: no limit).
    max_client_cnxns: int = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def secure_address(self) -> str:
        """``host:port`` of the TLS client port (only with ``tls``)."""
        if self.tls is None:
            raise LaunchError(f"ZooKeeper node {self.node_id} has no TLS port")
        return f"{self.host}:{self.secure_client_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def write_config(self) -> Path:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        lines = [
            f"tickTime={self.tick_ms}",
            f"dataDir={data}",
            f"clientPort={self.client_port}",
            f"clientPortAddress={self.host}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            f"maxClientCnxns={self.max_client_cnxns}",
            # ZooKeeper's default ceiling is 20 ticks (10 s with 500 ms ticks): a client asking
            # for a longer session would silently get 10 s.
            "maxSessionTimeout=60000",
            # Snapshots and logs of a test node are worthless; keep the disk clean.
            "autopurge.snapRetainCount=3",
            "autopurge.purgeInterval=1",
        ]
        if len(self.peers) > 1:
            lines += ["initLimit=10", "syncLimit=5", "4lw.commands.whitelist=*"]
            lines += [
                f"server.{p.node_id}=127.0.0.1:{p.peer_port}:{p.election_port}" for p in self.peers
            ]
            (data / "myid").write_text(f"{self.node_id}\n")
        if self.tls is not None:
            lines += self.tls.config_lines(self.workdir, self.host, self.secure_client_port)
        cfg = self.workdir / "zoo.cfg"
        cfg.write_text("\n".join(lines) + "\n")
        return cfg

    def start(self, jar: Path = DEFAULT_ZK_JAR) -> None:
        """Start the JVM; returns at once (see :meth:`wait_ready`)."""
        if self.process and self.process.poll() is None:
            return
        java = shutil.which("java")
        if java is None:
            raise LaunchError("java not found: install a JRE (Debian: default-jre-headless)")
        if not jar.is_file():
            raise LaunchError(f"{jar} not found: install Debian's 'zookeeper' package")
        cfg = self.write_config()
        classpath = [str(jar)]
        if self.tls is not None:
            classpath += [str(jar.parent / name) for name in _NETTY_EXTRA_JARS]
        log = open(self.workdir / "zookeeper.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [
                java,
                "-Xms64m",
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-Dzookeeper.jmx.log4j.disable=true",
                "-cp",
                ":".join(classpath),
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                str(cfg),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def mode(self) -> str:
        """``standalone``, ``leader``, ``follower`` or '' when not serving."""
        out = four_letter_word(self.host, self.client_port, "srvr")
        for line in out.splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return ""

    def is_serving(self) -> bool:
        return self.mode() in ("standalone", "leader", "follower")

    def signal(self, signum: int) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit within ``timeout``."""
        if not self.process:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the node dies without a goodbye."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None


class ZooKeeperEnsemble:
    """A standalone ZooKeeper (``size=1``) or an ensemble on loopback, from Debian's jars.

    ``tick_ms`` defaults to 500 so that tests can use sessions as short as
    1 s (ZooKeeper's floor is 2 ticks; the ceiling is raised to 60 s). ``host`` is the
    address clients connect to (another local address than loopback lets
    processes in a test's network namespace reach it). With ``tls`` every
    node also offers a TLS client port: :attr:`secure_hosts`.
    ``max_client_cnxns`` is ZooKeeper's ``maxClientCnxns``: how many
    connections one client address may hold per server (0, the default
    here, is no limit; ZooKeeper's own default is 60). The four-letter words
    (``cons``, ``mntr``, ``srvr``...) are enabled, for counting sessions.
    """

    def __init__(
        self,
        size: int = 1,
        workdir: Path | None = None,
        tick_ms: int = 500,
        jar: Path = DEFAULT_ZK_JAR,
        client_ports: Sequence[int] | None = None,
        host: str = "127.0.0.1",
        tls: ZooKeeperTLS | None = None,
        max_client_cnxns: int = 0,
    ) -> None:
        if size < 1:
            raise ValueError("an ensemble has at least one node")
        if max_client_cnxns < 0:
            raise ValueError("max_client_cnxns must be 0 (no limit) or positive")
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="zk-"))
        self.jar = jar
        ports = list(client_ports) if client_ports else [free_port(host) for _ in range(size)]
        self.nodes: list[ZooKeeperNode] = []
        for i in range(size):
            node = ZooKeeperNode(
                node_id=i + 1,
                client_port=ports[i],
                peer_port=free_port() if size > 1 else 0,
                election_port=free_port() if size > 1 else 0,
                workdir=self.workdir / f"node{i + 1}",
                tick_ms=tick_ms,
                host=host,
                tls=tls,
                secure_client_port=free_port(host) if tls is not None else 0,
                max_client_cnxns=max_client_cnxns,
            )
            self.nodes.append(node)
        for node in self.nodes:
            node.peers = self.nodes if size > 1 else ()

    def __repr__(self) -> str:
        modes = ",".join(f"{n.node_id}:{'up' if n.process else 'down'}" for n in self.nodes)
        return f"<ZooKeeperEnsemble {self.hosts} nodes={modes}>"

    @property
    def hosts(self) -> str:
        return ",".join(n.address for n in self.nodes)

    @property
    def secure_hosts(self) -> str:
        """The connection string of the TLS client ports (only with ``tls``)."""
        return ",".join(n.secure_address for n in self.nodes)

    def start(self, timeout: float = 60.0) -> ZooKeeperEnsemble:
        """Start every node and wait until the ensemble serves."""
        for node in self.nodes:
            node.start(self.jar)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until every running node serves (a quorum formed, for an ensemble)."""

        def ready() -> bool:
            for node in self.nodes:
                if node.process and node.process.poll() is not None:
                    log = (node.workdir / "zookeeper.log").read_text(errors="replace")[-2000:]
                    raise LaunchError(f"ZooKeeper node {node.node_id} exited:\n{log}")
            return all(n.is_serving() for n in self.nodes if n.process)

        wait_for(ready, timeout, interval_s=0.1, what=f"ZooKeeper at {self.hosts}")

    def leader(self) -> ZooKeeperNode | None:
        """The current leader (or the standalone node)."""
        for node in self.nodes:
            if node.process and node.mode() in ("leader", "standalone"):
                return node
        return None

    def stop(self) -> None:
        """Stop every node and remove a workdir this object created."""
        for node in self.nodes:
            node.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ZooKeeperEnsemble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------- alternatives


@dataclass
class ExistingZooKeeper:
    """An ensemble someone else runs; we neither start nor stop it."""

    hosts: str

    def stop(self) -> None:
        pass


class DockerZooKeeper:
    """ZooKeeper in a container (testcontainers); for machines with a Docker engine."""

    def __init__(self, image: str = "zookeeper:3.8") -> None:
        from testcontainers.core.container import DockerContainer

        self._container = (
            DockerContainer(image).with_exposed_ports(2181).with_env("ZOO_TICK_TIME", "500")
        )
        self._hosts = ""

    @property
    def hosts(self) -> str:
        return self._hosts

    def start(self, timeout: float = 120.0) -> DockerZooKeeper:
        self._container.start()
        host = self._container.get_container_host_ip()
        port = int(self._container.get_exposed_port(2181))
        self._hosts = f"{host}:{port}"
        wait_for(
            lambda: "imok" in four_letter_word(host, port, "ruok"),
            timeout,
            interval_s=0.2,
            what=f"ZooKeeper container at {self._hosts}",
        )
        return self

    def stop(self) -> None:
        self._container.stop()


def docker_available() -> bool:
    """True when a Docker engine answers (not merely when the client is installed)."""
    sock = Path(
        os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
    )
    if not sock.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b"OK" in s.recv(1024)
        except OSError:
            return False


def zookeeper_from_env(size: int = 1, workdir: Path | None = None) -> ZooKeeper:
    """Start (or find) ZooKeeper as the environment says; the caller must ``stop()`` it.

    ``LOGSERVICE_ZK``: use that ensemble as it is. ``LOGSERVICE_ZK_MODE``:
    ``local`` (Debian's jars), ``docker`` (testcontainers) or ``auto`` (the
    default: docker when an engine answers, else local). An ensemble of
    ``size`` > 1 is always local.
    """
    existing = os.environ.get("LOGSERVICE_ZK", "").strip()
    if existing and size == 1:
        return ExistingZooKeeper(existing)
    mode = os.environ.get("LOGSERVICE_ZK_MODE", "auto").strip().lower()
    if mode not in ("auto", "local", "docker"):
        raise LaunchError(f"LOGSERVICE_ZK_MODE must be auto, local or docker, not {mode!r}")
    if size == 1 and (mode == "docker" or (mode == "auto" and docker_available())):
        return DockerZooKeeper().start()
    return ZooKeeperEnsemble(size=size, workdir=workdir).start()


def session_count(hosts: str) -> int:
    """Client sessions established on every server of ``hosts`` (ZooKeeper's ``cons``).

    Counts the connections that carry a session id, which leaves out the
    connection asking. The four-letter words must be enabled (the launcher's
    own ZooKeeper enables them). The asking connection counts against
    ``maxClientCnxns`` too: at the limit ZooKeeper refuses it, and this raises
    LaunchError (as for a server that does not answer) rather than say 0.
    """
    total = 0
    for address in hosts.split("/", 1)[0].split(","):
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit():
            raise LaunchError(f"not host:port: {address!r}")
        out = four_letter_word(host, int(port), "cons")
        if not out:
            raise LaunchError(f"ZooKeeper at {address} did not answer 'cons'")
        total += sum(1 for line in out.splitlines() if "sid=" in line)
    return total
