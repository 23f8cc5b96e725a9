"""The client's knobs: frozen, validated dataclasses (urllib3's ``Retry`` is the model).

A policy never changes after construction; ``dataclasses.replace`` makes a
variant. Every value is checked in ``__post_init__`` so that a typo fails at
configuration time, not at three in the morning when the first failover happens.

One module per topic, each policy with the ones it is tuned together with:

- :mod:`._sending`: :class:`BatchPolicy`, :class:`FailoverPolicy`,
  :class:`ChoicePolicy` (how batches are made, sent and failed over);
- :mod:`._copies`: :class:`ReplicationPolicy`, :class:`HedgePolicy` (more
  than one server per batch);
- :mod:`._waiting`: :class:`QueuePolicy`, :class:`SpoolPolicy` (where
  records wait for a server);
- :mod:`._tls`: :class:`TLSPolicy`;
- :mod:`._checks`: the validators they share.

Apps import the policies from :mod:`logclient`; the modules of the package
import them from here. (``CompressionPolicy`` and ``ZkTLSPolicy`` are
``logwire``'s: the server uses them too.)
"""

from __future__ import annotations

# The names that are not policies (units, literal types, the spool's default
# location) are re-exported too ("as"), so that every import from the one
# module this package replaced still works.
from logclient._policies._checks import GiB as GiB
from logclient._policies._checks import MiB as MiB
from logclient._policies._copies import HedgePolicy, ReplicationPolicy
from logclient._policies._sending import BatchPolicy, ChoicePolicy, FailoverPolicy
from logclient._policies._sending import Strategy as Strategy
from logclient._policies._tls import TLSPolicy
from logclient._policies._waiting import Overflow as Overflow
from logclient._policies._waiting import QueuePolicy, SpoolPolicy
from logclient._policies._waiting import default_spool_name as default_spool_name
from logclient._policies._waiting import default_state_home as default_state_home

__all__ = [
    "BatchPolicy",
    "ChoicePolicy",
    "FailoverPolicy",
    "HedgePolicy",
    "QueuePolicy",
    "ReplicationPolicy",
    "SpoolPolicy",
    "TLSPolicy",
]
