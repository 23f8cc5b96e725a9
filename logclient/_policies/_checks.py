"""What every policy's ``__post_init__`` checks with, and the size units the defaults use.

One place for the rule "a number must be > 0 (or >= 0), and a bool is not a
number", so that every policy refuses a bad value with the same message,
naming the policy and the field.
"""

from __future__ import annotations

__all__ = ["GiB", "MiB", "non_negative", "positive"]

MiB = 2**20
GiB = 2**30


def positive(owner: object, **values: float) -> None:
    """Raise ValueError unless every value is a number > 0."""
    for name, value in values.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{type(owner).__name__}.{name} must be > 0, not {value!r}")


def non_negative(owner: object, **values: float) -> None:
    """Raise ValueError unless every value is a number >= 0."""
    for name, value in values.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{type(owner).__name__}.{name} must be >= 0, not {value!r}")
