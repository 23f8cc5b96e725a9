"""logserver: a durable, Scribe-compatible Thrift log server that registers itself in ZooKeeper.

Modules, one job each: ``storage`` (segments on disk, knows nothing of Thrift or
ZooKeeper), ``wire`` (the framed Thrift server), ``service`` (calls to storage),
``registry`` (the ZooKeeper node), ``server`` (puts them together), ``cli``.
"""

__version__ = "0.1.0"
