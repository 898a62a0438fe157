"""Shared fixtures: the package from this source tree, a hang guard, and a
real whizbangd per test module (tests/server.py)."""
from __future__ import annotations

import faulthandler
import os
import sys
from typing import Iterator

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # clients/python: the package under test
sys.path.insert(0, HERE)

from server import Server  # noqa: E402

# No test may hang: past this, the run dumps every thread's stack and exits.
HANG_GUARD_S = float(os.environ.get("WB_PY_HANG_GUARD_S", "120"))


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    faulthandler.dump_traceback_later(HANG_GUARD_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A whizbangd on 127.0.0.1 port 0 with a fresh data directory, for the
    module's tests; stopped with SIGTERM at its end."""
    s = Server()
    s.start()
    try:
        yield s
    finally:
        s.stop()
