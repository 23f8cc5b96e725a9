"""Helpers shared by the client and fault tests: numbered messages.

To wait for a condition, tests use the launcher's ``wait_for``
(``logserver.tools.launcher``), the one polling helper of the project.
"""

from __future__ import annotations


def numbered(prefix: str, n: int, start: int = 0) -> list[str]:
    """``prefix-000000`` ... : messages whose number can be read back."""
    return [f"{prefix}-{i:06d}" for i in range(start, start + n)]


def number_of(message: bytes | str, prefix: str) -> int | None:
    text = message.decode() if isinstance(message, bytes) else message
    if not text.startswith(prefix + "-"):
        return None
    return int(text[len(prefix) + 1 :])
