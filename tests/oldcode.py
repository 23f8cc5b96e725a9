"""The code of this repository from before segment format 2, for old-against-new tests.

An "old server" or "old client" in these tests is the real thing: the tree of
the commit just before the one that added the block format
(``logserver/storage/_blocks.py``), taken from this repository's own history
with ``git archive`` and run in a separate process with ``PYTHONPATH`` pointing
at it (it needs nothing this virtualenv lacks). Without a git history (a
source tarball) the tests that need it are skipped, saying why.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_MARKER_FILE = "logserver/storage/_blocks.py"


def _git(*args: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], check=True, capture_output=True, timeout=60
    ).stdout


def old_commit() -> str:
    """The commit just before format 2, or pytest.skip when the history is not here."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: no old code to run")
    try:
        added = _git("log", "--diff-filter=A", "--format=%H", "--", _MARKER_FILE).split()
        if not added:
            pytest.skip(f"no commit adds {_MARKER_FILE} in this history")
        return _git("rev-parse", added[-1].decode() + "^").decode().strip()
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot read this repository's history: {exc.stderr.decode().strip()}")


def extract_old_tree(dest: Path) -> Path:
    """Write the old tree into ``dest`` and return it."""
    commit = old_commit()
    archive = _git("archive", "--format=tar", commit)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    (dest / "OLD_COMMIT").write_text(commit + "\n")
    return dest


def old_env(tree: Path) -> dict[str, str]:
    """Environment for a process that runs the old code instead of ours (``python -m``
    also needs ``cwd=tree``: it imports from its working directory first)."""
    return {
        "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]).strip(
            os.pathsep
        )
    }
