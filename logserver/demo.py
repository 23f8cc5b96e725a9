"""``logserver demo``: the kill-a-node failover demo (see issue 4). Not written yet."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments"]


def add_arguments(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Nothing yet."""
