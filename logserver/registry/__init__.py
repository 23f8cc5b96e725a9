"""A logserver's membership in ZooKeeper: everything the server does with kazoo.

- :mod:`._registration`: :class:`Registration`, the lifecycle of the server's
  ephemeral sequential node (register, re-register after a lost session,
  deregister on drain);
- :mod:`._nodes`: which child of the path is ours, ghosts of an earlier
  incarnation, creating and deleting nodes;
- :mod:`._access`: ACLs and the errors an operator must fix;
- :mod:`._auth`: digest credentials from a file and the ACL they give;
- :mod:`._inventory`: :class:`InventoryPublisher`, the server's persistent
  record in the data inventory (:mod:`logwire.inventory`), written over the
  registration's session.

Its kazoo client is made and stopped by :mod:`logwire.zkclient` (capped
retries, TLS, auth, a bounded stop), as the client's discovery's is.

The registry knows nothing of storage or Thrift: the server hands it an
endpoint to announce, and that is all it learns.
"""

from logserver.registry._auth import read_auth_file, registration_acl
from logserver.registry._inventory import InventoryPublisher
from logserver.registry._registration import NODE_PREFIX, Registration, validate_zk_path

__all__ = [
    "NODE_PREFIX",
    "InventoryPublisher",
    "Registration",
    "read_auth_file",
    "registration_acl",
    "validate_zk_path",
]
