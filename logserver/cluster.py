"""``logserver cluster``: start, status and stop a local cluster. Not written yet."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments"]


def add_arguments(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Nothing yet."""
