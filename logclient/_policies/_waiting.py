"""Where records wait for a server: the memory queue, then the disk spool.

:class:`QueuePolicy` bounds the queue between ``log()`` and the sender and
says what a full one does; :class:`SpoolPolicy` says where the spool lives,
how large it may grow and when batches are spilled to it. They are tuned
together (the spool's high-water hold is capped by the queue's block
timeout), so they live together. Import them from :mod:`logclient`.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from logclient._policies._checks import GiB, MiB, non_negative, positive

__all__ = [
    "Overflow",
    "QueuePolicy",
    "SpoolPolicy",
    "default_spool_name",
    "default_state_home",
]

Overflow = Literal["block", "drop", "raise"]


@dataclass(frozen=True)
class QueuePolicy:
    """The in-memory queue between ``log()`` and the sender.

    When it is full (``max_records`` or ``max_bytes``), ``overflow`` decides:
    ``block`` waits up to ``block_timeout_s`` for room, then raises
    :class:`~logclient.QueueFullError`; ``drop`` drops the new record (counted
    in ``stats().dropped`` and logged, rate-limited); ``raise`` raises at once.
    With a spool, the sender spills a queue that stays past its high-water
    mark (see :class:`SpoolPolicy`): with ``block``, after
    ``SpoolPolicy.high_water_hold_s`` (at most half of ``block_timeout_s``),
    so during a burst the servers are still taking ``log()`` may wait about
    that long; with ``drop`` and ``raise`` at once. Past that, the limit is
    reached only when the disk cannot keep up or the spool is full too; the
    same ``overflow`` then decides whether a batch that does not fit in the
    spool is dropped.
    """

    max_records: int = 100_000
    max_bytes: int = 64 * MiB
    overflow: Overflow = "block"
    block_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        positive(self, max_records=self.max_records, max_bytes=self.max_bytes)
        non_negative(self, block_timeout_s=self.block_timeout_s)
        if self.overflow not in ("block", "drop", "raise"):
            raise ValueError(
                f"QueuePolicy.overflow must be block, drop or raise, not {self.overflow!r}"
            )


_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def default_spool_name() -> str:
    """The program's name, made safe as a directory name."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    stem = Path(argv0).stem or "python"
    if stem in ("-c", "-m", "__main__"):
        stem = "python"
    return _NAME_UNSAFE.sub("_", stem).lstrip(".")[:64] or "python"


def default_state_home() -> Path:
    """``$XDG_STATE_HOME`` or ``~/.local/state``."""
    env = os.environ.get("XDG_STATE_HOME", "").strip()
    return Path(env) if env and Path(env).is_absolute() else Path.home() / ".local" / "state"


@dataclass(frozen=True)
class SpoolPolicy:
    """The on-disk spool that keeps batches while no server takes them.

    ``directory`` is used as it is, by one live client at a time (a second one
    gets :class:`~logclient.SpoolLockedError`). Without it the spool lives under
    ``$XDG_STATE_HOME/logclient/<name>/`` (``~/.local/state`` without the
    variable; ``name`` defaults to the program's name) in the first slot
    (``slot-0``, ``slot-1``...) that no live client holds, so several processes
    of one program each get a spool and a restarted one finds a dead one's.

    Batches are spilled when no server took anything for ``spill_after_s``, when
    the memory queue has stayed past ``high_water`` (a fraction of its limits)
    for ``high_water_hold_s``, and by ``close()`` for whatever is undelivered.
    The spool holds at most ``max_bytes``; ``fsync`` makes every spilled batch
    durable before it leaves memory. ``enabled=False`` (see :meth:`disabled`)
    keeps everything in memory.

    Why the hold: a burst that the servers are taking, only more slowly than
    the app logs, is better kept in memory (``log()`` waits for room if the
    queue fills, as ``QueuePolicy.overflow="block"`` says) than sent through
    the disk: writing, syncing and reading back the same records makes the
    pipeline slower, so the burst takes longer. A queue that stays past high
    water for ``high_water_hold_s`` (servers down, hung or much slower than the
    app) is spilled, so ``log()`` waits at most about that long (the hold is
    capped at half of ``QueuePolicy.block_timeout_s``, so a waiting ``log()``
    is not refused meanwhile). With
    ``overflow="drop"`` or ``"raise"`` a full queue would lose records or
    raise, so the queue is spilled as soon as it passes high water; so it is
    with ``high_water_hold_s=0``.
    """

    directory: Path | None = None
    name: str | None = None
    max_bytes: int = 1 * GiB
    spill_after_s: float = 10.0
    high_water: float = 0.8
    high_water_hold_s: float = 1.0
    fsync: bool = True
    enabled: bool = True

    def __post_init__(self) -> None:
        positive(self, max_bytes=self.max_bytes, high_water=self.high_water)
        non_negative(
            self, spill_after_s=self.spill_after_s, high_water_hold_s=self.high_water_hold_s
        )
        if self.high_water > 1:
            raise ValueError("SpoolPolicy.high_water is a fraction of the queue limits (<= 1)")
        if self.directory is not None and not isinstance(self.directory, Path):
            object.__setattr__(self, "directory", Path(self.directory))
        if self.name is not None and (
            not self.name or _NAME_UNSAFE.search(self.name) or self.name.startswith(".")
        ):
            raise ValueError(f"SpoolPolicy.name must be a plain directory name, not {self.name!r}")

    @classmethod
    def disabled(cls) -> SpoolPolicy:
        """No spool: undelivered records live (and die) in memory."""
        return cls(enabled=False)

    def base_directory(self) -> Path:
        """Where the slots of the default spool live (only without ``directory``)."""
        return default_state_home() / "logclient" / (self.name or default_spool_name())
