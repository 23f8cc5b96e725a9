"""Loads ``log.thrift``: the one place the IDL is turned into Python classes.

The file lives at the top of the repository; a wheel carries a copy inside
this package (see ``pyproject.toml``), so both an installed package and a
source checkout (editable install, or tests run from the tree) find it.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import thriftpy2

__all__ = ["IDL_PATH", "log_thrift"]


def _find_idl() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "log.thrift", here.parent / "log.thrift"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"log.thrift not found next to {here} nor in its parent; the package is broken"
    )


IDL_PATH: Path = _find_idl()

#: The loaded IDL: ``log_thrift.LogService``, ``log_thrift.LogEntry``, ...
log_thrift: ModuleType = thriftpy2.load(str(IDL_PATH), module_name="log_thrift")
