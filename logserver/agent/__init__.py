"""The discovery agent: one ZooKeeper session per host instead of one per app process.

``logserver discovery-agent --zk HOSTS --zk-path /logservers --file PATH``
watches the registration path and keeps ``PATH`` listing the live servers
(the format is :mod:`logwire.serversfile`); apps read it with
``logclient.FileServers`` or ``LOGCLIENT_SERVERS_FILE``. ``_agent`` is the
watching and deciding, ``_file`` the writing (lock, atomic replacement,
heartbeat), ``_cli`` the command. A server never imports this package.
"""

from logserver.agent._agent import AgentPolicy, DiscoveryAgent, WatchedServers
from logserver.agent._cli import add_arguments
from logserver.agent._file import ServersFileWriter

__all__ = ["AgentPolicy", "DiscoveryAgent", "ServersFileWriter", "WatchedServers", "add_arguments"]
