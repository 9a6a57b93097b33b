"""Shared fixtures for vusb's own tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from serve_subprocess import ServeProcesses  # tests/serve_subprocess.py (pytest puts tests/ on sys.path)


@pytest.fixture(autouse=True)
def _quiet_asyncio_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vusb")


@pytest.fixture
def serve_processes() -> Iterator[ServeProcesses]:
    """Starts ``vusb serve`` as subprocesses (tests/serve_subprocess.py); stops any still running after the test.

    ``serve_processes.start(*args, prefix=..., env=..., cwd=...)`` returns a ServeProcess once its
    banner is out (``await serve_processes.astart(...)`` in async tests).
    """
    processes = ServeProcesses()
    yield processes
    processes.stop_all()
