"""The ``process`` marker is kept honest: ``-m "not process"`` starts no process at all."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_an_unmarked_test_that_starts_a_process_fails_naming_the_marker() -> None:
    """Starting a subprocess or forking from a test without the marker is refused at once."""
    with pytest.raises(AssertionError, match=r"mark it @pytest\.mark\.process"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    with pytest.raises(AssertionError, match=r"mark it @pytest\.mark\.process"):
        os.fork()


@pytest.mark.process
def test_a_marked_test_may_start_processes() -> None:
    """With the marker, subprocesses work as usual."""
    done = subprocess.run([sys.executable, "-c", "print('ok')"], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "ok\n")


def test_a_test_using_no_process_fixture_is_a_unit_test(request: pytest.FixtureRequest) -> None:
    """Nothing marks a test that starts nothing."""
    assert request.node.get_closest_marker("process") is None


def test_a_test_using_zookeeper_is_marked_without_saying_so(
    zk_hosts: str, request: pytest.FixtureRequest
) -> None:
    """zk_hosts needs the session's ZooKeeper: the conftest marks the test ``process``."""
    assert request.node.get_closest_marker("process") is not None
