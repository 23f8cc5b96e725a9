"""Start real ZooKeeper, logserver and discovery-agent processes: the one launcher.

Tests, benchmarks, the demo and ``deploy/`` all start their processes through
this module, so there is one way to do it and one place to fix it.

ZooKeeper comes from one of three places, chosen by :func:`zookeeper_from_env`:

- ``LOGSERVICE_ZK=host:port,...``: an existing ensemble; nothing is started.
- Docker (``LOGSERVICE_ZK_MODE=docker``, or ``auto`` when a Docker engine
  answers): testcontainers runs the ``zookeeper:3.8`` image.
- Local (``LOGSERVICE_ZK_MODE=local``, or ``auto`` without Docker): Java runs
  the jars of Debian's ``zookeeper`` package, standalone or a loopback ensemble.
"""

from logserver.tools.launcher._agent import DiscoveryAgentProcess
from logserver.tools.launcher._common import (
    LaunchError,
    ZooKeeper,
    four_letter_word,
    free_port,
    wait_for,
)
from logserver.tools.launcher._logserver import LogServerProcess, start_logservers, stopping
from logserver.tools.launcher._zookeeper import (
    DEFAULT_ZK_JAR,
    DockerZooKeeper,
    ExistingZooKeeper,
    ZooKeeperEnsemble,
    ZooKeeperNode,
    ZooKeeperTLS,
    docker_available,
    session_count,
    zookeeper_from_env,
)

__all__ = [
    "DEFAULT_ZK_JAR",
    "DiscoveryAgentProcess",
    "DockerZooKeeper",
    "ExistingZooKeeper",
    "LaunchError",
    "LogServerProcess",
    "ZooKeeper",
    "ZooKeeperEnsemble",
    "ZooKeeperNode",
    "ZooKeeperTLS",
    "docker_available",
    "four_letter_word",
    "free_port",
    "session_count",
    "start_logservers",
    "stopping",
    "wait_for",
    "zookeeper_from_env",
]
