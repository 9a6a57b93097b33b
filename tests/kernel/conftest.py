"""Fixtures for tests that attach vusb devices to a real Linux kernel (QEMU guest).

One guest per kernel boots once per test session. Under CI (``CI`` set), a missing
prerequisite fails the tests instead of skipping them: a skipped kernel test is a gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from vusb.harness import Guest, HarnessError
from vusb.pytest_plugin import harness_unavailable

KERNELS = ("5.10", "6.1", "6.12")


_STARTED: list[Guest] = []


def _guest(config: pytest.Config, kernel: str) -> Guest:
    try:
        guest = Guest.shared(kernel)
        if guest not in _STARTED:
            _STARTED.append(guest)
        return guest
    except HarnessError as exc:
        harness_unavailable(config, f"{exc} (install with: bash .ci/install-deps.sh)")
        raise


@pytest.fixture(scope="session")
def guest(request: pytest.FixtureRequest) -> Iterator[Guest]:
    """The default (6.1) guest, shared by the whole session."""
    yield _guest(request.config, "6.1")


@pytest.fixture(scope="session", params=KERNELS, ids=[f"linux-{k}" for k in KERNELS])
def any_guest(request: pytest.FixtureRequest) -> Iterator[Guest]:
    """A guest for each supported kernel."""
    yield _guest(request.config, request.param)


@pytest.fixture
async def clean_guest(guest: Guest) -> AsyncIterator[Guest]:
    """The default guest, with every imported device detached after the test."""
    yield guest
    await detach_all(guest)


async def detach_all(guest: Guest) -> None:
    for port in await guest.ports():
        await guest.detach(port.port)
    await asyncio.sleep(0)


@pytest.fixture(autouse=True)
async def _detach_leftovers() -> AsyncIterator[None]:
    """Whatever a test leaves attached (a failure half-way) is detached before the next test."""
    yield
    for guest in _STARTED:
        if guest.is_running:
            await detach_all(guest)
