"""A fresh project with no pytest configuration at all: tests that use vusb's fixtures run.

pytest-asyncio's default (strict) mode runs only tests marked ``asyncio``; the plugin
marks the async tests that use its fixtures, so the quickstart's examples pass under
plain ``pytest`` as written.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

FRESH_PROJECT_TESTS = '''
import asyncio
import pytest
from vusb.devices import Keyboard

async def test_uses_vusb_host(vusb_host):
    host = vusb_host(Keyboard())
    info = await host.enumerate()
    assert info.device.vendor_id == 0x1209

async def test_uses_vusb_server(vusb_server):
    assert vusb_server.port > 0

@pytest.mark.parametrize("n", [1, 2])
async def test_parametrized_with_vusb_host(vusb_host, n):
    host = vusb_host(Keyboard())
    assert len((await host.enumerate()).configurations) == 1

@pytest.mark.asyncio
async def test_already_marked(vusb_host):
    await vusb_host(Keyboard()).enumerate()

def test_sync_tests_are_left_alone():
    assert True
'''


def test_async_tests_using_the_fixtures_run_without_configuration(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fresh=FRESH_PROJECT_TESTS)  # no pytest.ini, pyproject.toml or conftest.py
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    assert "not natively supported" not in result.stdout.str()


def test_other_async_tests_are_not_taken_over(pytester: pytest.Pytester) -> None:
    # an async test without vusb fixtures stays the project's business (anyio, trio, or a marker)
    pytester.makepyfile(test_other="async def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "async def functions are not natively supported" in result.stdout.str()
