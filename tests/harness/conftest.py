"""Fixtures for the harness's own tests: one booted guest per kernel per session.

Kernels: ``$VUSB_TEST_KERNELS`` (comma-separated, or ``all``), default ``6.1``.
The guests are the process-wide :meth:`Guest.shared` ones, so other test
directories that use ``Guest.shared`` reuse them instead of booting again.
Without the prerequisites the tests are skipped, except under CI (``$CI``
set), where they fail: a skipped real-kernel test is a gap.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from vusb.harness import KERNELS, Guest, HarnessError


def _kernels() -> list[str]:
    raw = os.environ.get("VUSB_TEST_KERNELS", "6.1").strip()
    if raw == "all":
        return list(KERNELS)
    return [k.strip() for k in raw.split(",") if k.strip()]


def harness_unavailable(exc: Exception) -> None:
    message = f"real-kernel harness unavailable: {exc}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run the real-kernel tests: .ci/install-harness-deps.sh)")
    pytest.skip(message)


@pytest.fixture(scope="session", params=_kernels(), ids=lambda k: f"linux-{k}")
def guest(request: pytest.FixtureRequest) -> Iterator[Guest]:
    """A booted guest (shared by the whole session) for each kernel under test."""
    try:
        g = Guest.shared(request.param)
    except HarnessError as exc:
        harness_unavailable(exc)
        raise
    yield g
