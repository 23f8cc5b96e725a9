"""Which category names are valid.

A category becomes a directory name on the server's disk, so the rules are
those of a safe path component, checked the same way on both sides: the client
rejects a bad category at ``log()`` time, before it is queued, and the server
rejects it again because it cannot trust any client.
"""

from __future__ import annotations

import re

__all__ = ["MAX_CATEGORY_LENGTH", "category_problem"]

MAX_CATEGORY_LENGTH = 128

# Printable ASCII without "/", "\\" or spaces; the first character may not be a dot,
# which rules out ".", ".." and hidden directories in one go.
_VALID = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-:@+=]*\Z")


def category_problem(category: str | bytes) -> str | None:
    """Return why ``category`` is not a valid category name, or None when it is."""
    if isinstance(category, bytes):
        try:
            category = category.decode("ascii")
        except UnicodeDecodeError:
            return "category must be ASCII"
    if not category:
        return "category is empty"
    if len(category) > MAX_CATEGORY_LENGTH:
        return f"category is longer than {MAX_CATEGORY_LENGTH} characters"
    if "\x00" in category:
        return "category contains NUL"
    if ".." in category:
        return "category contains '..'"
    if "/" in category or "\\" in category:
        return "category contains a path separator"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in category):
        return "category contains a control character"
    if not _VALID.match(category):
        return "category may hold only letters, digits and _ - . : @ + = and may not start with '.'"
    return None
