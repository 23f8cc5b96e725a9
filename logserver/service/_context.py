"""What every part of the handler works with, handed to each as one object.

The storage the calls go to, the metrics they count in, the limits they
enforce, the error mapping (:class:`~logserver.service._errors.Refusals`) and
whether the server is draining: one :class:`CallContext`, made by
:class:`~logserver.service.LogServiceHandler` and shared by its parts, so that
every call sees the same draining flag and counts into the same metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from logserver.metrics import Metrics
from logserver.service._errors import Refusals
from logserver.service._limits import ServiceLimits
from logserver.storage import Storage

__all__ = ["CallContext"]


@dataclass(frozen=True)
class CallContext:
    """The collaborators of the handler's parts (see the module docstring)."""

    storage: Storage
    metrics: Metrics
    limits: ServiceLimits
    refusals: Refusals
    #: Whether the server is draining (refuse batches, end long polls).
    draining: Callable[[], bool]
