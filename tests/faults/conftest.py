"""Fixtures of the fault-injection suite: one reader process for the session (tests/faults/helpers.py)."""
import pytest

from tests.faults.helpers import Reader


@pytest.fixture(scope="session")
def reader(tmp_path_factory):
    r = Reader(tmp_path_factory.mktemp("reader"))
    yield r
    r.stop()
