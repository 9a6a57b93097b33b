"""The pytest plugin, exercised the way a user's own test suite uses it."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = '''
import asyncio
from vusb.devices import Keyboard
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


PROFILE_TESTS = '''
import pytest
from vusb.errors import ProfileError

async def test_profile_beside_the_test(vusb_host):
    host = vusb_host("mouse.yaml")
    info = await host.enumerate()
    assert info.device.product_id == 0x0002

async def test_profile_from_rootdir(vusb_host):  # not beside the test: found in the rootdir
    host = vusb_host("profiles/mouse.yaml")
    assert (await host.enumerate()).device.product_id == 0x0002

def test_missing_profile_names_where_it_looked(vusb_host):
    with pytest.raises(ProfileError, match="profile not found; looked in .*sub.*nope.yaml"):
        vusb_host("nope.yaml")
'''


def test_plugin_exports_no_load_device_of_its_own() -> None:
    # vusb.profile.load_device is the one load_device; the plugin's path lookup is private.
    import vusb.pytest_plugin as plugin

    assert plugin.__all__ == ["Attached", "DeviceOrProfile"]
    assert not hasattr(plugin, "load_device")


def test_fixtures_take_profile_paths(pytester: pytest.Pytester) -> None:
    mouse = "identity: {vendor_id: 0x1209, product_id: 0x0002}\nfunctions:\n  - kind: mouse\n"
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.mkdir("profiles").joinpath("mouse.yaml").write_text(mouse)
    sub = pytester.mkdir("sub")
    sub.joinpath("mouse.yaml").write_text(mouse)
    sub.joinpath("test_profiles.py").write_text(PROFILE_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
