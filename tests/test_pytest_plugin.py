"""The pytest plugin, exercised the way a user's own test suite uses it."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = '''
import asyncio
from devices import Keyboard
from vusb.client import RemoteDevice

async def test_in_process_host(vusb_host):
    kb = Keyboard()
    host = vusb_host(kb)
    await host.enumerate()
    typing = asyncio.create_task(kb.type("q"))
    assert (await host.transfer_in(0x81, 8))[2] == 0x14
    await host.transfer_in(0x81, 8)
    await typing

async def test_server_on_a_free_port(vusb_server):
    vusb_server.add(Keyboard())
    async with await RemoteDevice.open("127.0.0.1", "1-1", vusb_server.port) as dev:
        info = await dev.enumerate()
    assert info.strings[info.device.product_index] == "Virtual Keyboard"
'''


def test_user_suite_with_plugin_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_kernel_fixture_skips_without_harness_outside_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_k="def test_needs_kernel(vusb_guest):\n    pass\n")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no qemu-system-x86_64 to be found
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "--vusb-target=qemu")
    result.assert_outcomes(skipped=1)
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*real-kernel harness unavailable*"])
