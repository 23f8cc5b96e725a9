"""How a reader reads: page sizes, prefetch, long polls, retries. A frozen policy."""

from __future__ import annotations

from dataclasses import dataclass

from logserver.errors import ConfigError

__all__ = ["ReaderPolicy"]


@dataclass(frozen=True)
class ReaderPolicy:
    """Validated on creation (ConfigError).

    Memory: at most ``prefetch_pages`` pages of ``page_bytes`` stored bytes per
    source are held before the merge takes them, plus the block being shown.
    """

    #: Stored bytes asked for per call (the server caps it, 8 MiB by default).
    page_bytes: int = 4 * 2**20
    #: Pages fetched ahead per source; past it the source waits for the merge.
    prefetch_pages: int = 2
    #: How long a following reader's call waits on the server for new records.
    wait_s: float = 2.0
    #: Socket timeout of a call, beyond ``wait_s``.
    timeout_s: float = 30.0
    #: A one-off read gives up on a server after this long without progress.
    retry_for_s: float = 10.0
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 2.0
    #: Between reads of a server without long polls (one that predates QueryBlocks).
    old_server_poll_s: float = 0.5

    def __post_init__(self) -> None:
        if self.page_bytes < 1024 or self.prefetch_pages < 1:
            raise ConfigError("page_bytes must be >= 1024 and prefetch_pages >= 1")
        for name in (
            "wait_s",
            "timeout_s",
            "retry_for_s",
            "backoff_initial_s",
            "old_server_poll_s",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, not {getattr(self, name)}")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError("backoff_max_s must be >= backoff_initial_s")
