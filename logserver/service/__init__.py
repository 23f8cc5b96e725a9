"""The LogService handler: Thrift calls in, storage calls out.

A record's path goes socket -> :mod:`logserver.transport` (frames, decoding)
-> this package -> :mod:`logserver.storage`. One handler,
:class:`LogServiceHandler` (:mod:`._handler`), implements every call of
``log.thrift`` and hands each to the part that owns its job:

- :mod:`._writes`: the calls that store (Scribe's ``Log``, ``Append``,
  ``AppendPacked``, ``AppendCompressed``);
- :mod:`._reads`: the calls that read (``Read``, ``ReadBlocks``,
  ``QueryBlocks``, ``CategoryStats``);
- :mod:`._copies`: what ``logserver repair`` calls (``Holdings``,
  ``ReadBatches``, ``Restore``);
- :mod:`._errors`: logserver's errors mapped to the exceptions ``log.thrift``
  declares (:func:`declared`), refusals counted and logged;
- :mod:`._convert`: storage's values to ``log.thrift``'s and back;
- :mod:`._limits`: :class:`ServiceLimits`, what one request may ask for;
- :mod:`._context`: what the parts share (storage, metrics, limits, draining).

This package knows Thrift's types and storage's API; sockets are the
transport's, files storage's.
"""

from logserver.service._errors import declared
from logserver.service._handler import LogServiceHandler
from logserver.service._limits import ServiceLimits

__all__ = ["LogServiceHandler", "ServiceLimits", "declared"]
