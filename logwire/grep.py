"""``--grep``: which records of a block a regular expression matches.

Servers apply the pattern to the records they are asked to read, so only the
matches cross the network. A server must not be frozen by a pattern: Python's
``re`` backtracks, and ``(a+)+$`` against a 30-byte message runs for minutes
holding the GIL, with no way to interrupt one match. So servers only use
**RE2** (``google-re2``, in the server extra): it matches in time linear in
the message, whatever the pattern, and bounds its memory (``max_mem``).
Patterns are RE2 syntax (Perl's without backreferences and look-around).

A reader that filters by itself (a data directory, a server from before
server-side filters) uses RE2 when it is installed and Python's ``re``
otherwise: there, only the reader's own process pays for its pattern.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from logwire.errors import GrepError

__all__ = ["MAX_PATTERN_BYTES", "Matcher", "compile_grep", "matching_runs", "re2_available"]

#: Longer patterns are refused (a pattern is compiled on every read request).
MAX_PATTERN_BYTES = 4096
#: What one compiled RE2 program may use (RE2's default is 8 MiB; its DFA falls back
#: to slower, still linear, matching when it runs out).
RE2_MAX_MEM = 16 * 2**20

#: Finds a match in a message (None when there is none).
Matcher = Callable[[bytes], Any]


def _re2() -> Any:
    try:
        import re2
    except ImportError:
        return None
    return re2


def re2_available() -> bool:
    """Whether the linear-time engine is installed."""
    return _re2() is not None


@functools.lru_cache(maxsize=128)
def compile_grep(pattern: str | bytes, *, linear_only: bool = False) -> Matcher:
    """The search function of ``pattern`` (cached: followers send theirs on every read).

    ``linear_only``: refuse to fall back to Python's backtracking ``re`` (servers).
    Raises GrepError for a pattern that does not compile, is empty or too long.
    """
    raw = pattern.encode() if isinstance(pattern, str) else pattern
    if not raw:
        raise GrepError("empty pattern")
    if len(raw) > MAX_PATTERN_BYTES:
        raise GrepError(f"pattern longer than {MAX_PATTERN_BYTES} bytes")
    re2 = _re2()
    if re2 is not None:
        options = re2.Options()
        options.max_mem = RE2_MAX_MEM
        options.log_errors = False  # RE2 would print to stderr; we raise instead
        options.never_capture = True
        try:
            return re2.compile(raw, options).search
        except re2.error as exc:
            raise GrepError(f"bad pattern {raw.decode(errors='replace')!r}: {_text(exc)}") from None
    if linear_only:
        raise GrepError("this server has no RE2 to match with (pip install google-re2)")
    try:
        return re.compile(raw).search
    except re.error as exc:
        raise GrepError(f"bad pattern {raw.decode(errors='replace')!r}: {exc}") from None


def _text(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


def matching_runs(messages: Sequence[bytes], search: Matcher) -> list[tuple[int, int]]:
    """The records whose message ``search`` matches, as ``(first, count)`` runs."""
    runs: list[tuple[int, int]] = []
    start = -1
    for i, hit in enumerate(map(search, messages)):
        if hit is not None:
            if start < 0:
                start = i
        elif start >= 0:
            runs.append((start, i - start))
            start = -1
    if start >= 0:
        runs.append((start, len(messages) - start))
    return runs
