"""pytest fixtures for testing with virtual USB devices (registered as the ``vusb`` plugin).

Fixtures:

``vusb_server``
    A started :class:`~vusb.server.Server` on a free loopback port (function scope);
    add devices with ``vusb_server.add(device)``.
``vusb_host``
    A factory for in-process hosts: ``host = vusb_host(device)`` returns an attached
    :class:`~vusb.testing.LocalHost` (no kernel needed); detached after the test.
``vusb_guest``
    The real-kernel target (a QEMU guest booted once per session, or the local
    vhci-hcd with ``--vusb-target=local``).  Kernel: ``--vusb-kernel`` or ``$VUSB_KERNEL``.
``vusb_attach``
    ``attached = await vusb_attach(device)`` serves the device (or a YAML profile
    given by path), attaches it to the guest, waits for what its driver creates (``attached.node``: /dev/input/eventN,
    /dev/sdX, /dev/ttyACMn) and detaches it after the test.

``vusb_host`` and ``vusb_attach`` take a :class:`~vusb.device.Device` or the path of a
profile; a relative path is looked up beside the test file, then in pytest's rootdir.

When the harness cannot run (QEMU missing...), kernel fixtures skip the test, or fail
it with ``--vusb-require-kernel`` or when ``$CI`` is set: in CI a skipped kernel test
is a gap, not a pass.

An ``async def`` test that uses one of these fixtures is marked ``asyncio`` by the
plugin, so pytest-asyncio runs it in its default (strict) mode without any
configuration; other async tests need ``@pytest.mark.asyncio`` or ``asyncio_mode = auto``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vusb.device import Device
from vusb.server import Server
from vusb.testing import LocalHost

__all__ = ["Attached", "DeviceOrProfile"]

try:  # async fixtures that work in pytest-asyncio's strict mode as well as in auto mode
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - without pytest-asyncio no async test can run anyway
    async_fixture = pytest.fixture  # type: ignore[assignment]

#: What the fixtures accept: a device object, or the path of a YAML profile.
DeviceOrProfile = Device | str | os.PathLike[str]


def _device_for(what: DeviceOrProfile, search: tuple[Path, ...]) -> Device:
    """A device object as is, or a fresh device built from the profile at a path.

    A relative path is tried in each folder of ``search`` in turn; :class:`ProfileError`
    names the folders tried when the profile is in none of them.
    """
    if isinstance(what, Device):
        return what
    from vusb.errors import ProfileError
    from vusb.profile import load_device

    path = Path(what)
    if not path.is_absolute():
        tried = [folder / path for folder in search] or [path]
        found = next((p for p in tried if p.is_file()), None)
        if found is None:
            raise ProfileError(f"profile not found; looked in {', '.join(str(p) for p in tried)}", file=str(what))
        path = found
    return load_device(path)


def _search_path(request: pytest.FixtureRequest) -> tuple[Path, ...]:
    return (request.path.parent, request.config.rootpath)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vusb", "virtual USB devices")
    group.addoption("--vusb-kernel", default=None, help="guest kernel for vusb_guest: 5.10, 6.1 (default) or 6.12")
    group.addoption("--vusb-target", default=None, choices=("qemu", "local"),
                    help="where vusb_guest attaches devices: a QEMU guest (default) or this machine's vhci-hcd")
    group.addoption("--vusb-require-kernel", action="store_true",
                    help="fail (not skip) kernel tests when the harness cannot run (default when $CI is set)")


#: The fixtures whose tests the plugin marks ``asyncio`` (their users' tests are async).
ASYNC_FIXTURES = frozenset({"vusb_server", "vusb_host", "vusb_attach"})


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Iterator[None]:
    """Mark ``async def`` tests that use vusb's fixtures ``asyncio`` as they are collected.

    trylast makes this the innermost wrapper: the mark is on the items before
    pytest-asyncio's own wrapper decides, from the marks, which tests it runs.
    """
    outcome = yield
    if async_fixture is pytest.fixture or not inspect.iscoroutinefunction(obj):  # type: ignore[comparison-overlap]
        return
    result = outcome.get_result()  # type: ignore[attr-defined]
    for item in result if isinstance(result, list) else [result]:
        if (isinstance(item, pytest.Function) and ASYNC_FIXTURES & set(item.fixturenames)
                and item.get_closest_marker("asyncio") is None):
            item.add_marker(pytest.mark.asyncio)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kernel: the test attaches devices to a real Linux kernel")


@async_fixture
async def vusb_server() -> AsyncIterator[Server]:
    async with Server([], port=0) as server:
        yield server


@async_fixture
async def vusb_host(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[DeviceOrProfile], LocalHost]]:
    hosts: list[LocalHost] = []
    built: list[Device] = []  # devices made from profiles belong to the fixture
    search = _search_path(request)

    def make(what: DeviceOrProfile) -> LocalHost:
        device = _device_for(what, search)
        if device is not what:
            built.append(device)
        host = LocalHost(device)
        host.attach()
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.detach()
    for device in built:
        await device.aclose()


def harness_unavailable(config: pytest.Config, reason: str) -> None:
    """Skip, or fail when kernel tests are required (``--vusb-require-kernel`` or ``$CI``)."""
    if config.getoption("--vusb-require-kernel", default=False) or os.environ.get("CI"):
        pytest.fail(f"real-kernel harness unavailable: {reason}", pytrace=False)
    pytest.skip(f"real-kernel harness unavailable: {reason}")


@pytest.fixture(scope="session")
def vusb_guest(request: pytest.FixtureRequest) -> Iterator[object]:
    from vusb.harness import DEFAULT_KERNEL, Guest, HarnessError
    from vusb.harness.local import LocalVhci

    config = request.config
    target = config.getoption("--vusb-target") or os.environ.get("VUSB_HARNESS_TARGET", "qemu")
    kernel = config.getoption("--vusb-kernel") or os.environ.get("VUSB_KERNEL") or DEFAULT_KERNEL
    try:
        if target == "local":
            yield asyncio.run(LocalVhci.start())
            return
        yield Guest.shared(kernel)
    except HarnessError as exc:
        harness_unavailable(config, str(exc))


@dataclass
class Attached:
    """A device attached to the guest through a vusb server."""

    device: Device
    server: Server
    busid: str
    port: int
    node: str | None
    sysfs: str


@async_fixture
async def vusb_attach(vusb_guest: object, vusb_server: Server,
                      request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Awaitable[Attached]]]:
    from vusb.harness import UsbTarget

    guest = vusb_guest
    assert isinstance(guest, UsbTarget)
    attached: list[Attached] = []
    built: list[Device] = []  # devices made from profiles belong to the fixture
    search = _search_path(request)

    async def attach(what: DeviceOrProfile, *, wait_node: bool = True, timeout: float = 60.0) -> Attached:
        device = _device_for(what, search)
        if device is not what:
            built.append(device)
        busid = vusb_server.add(device)
        port = await guest.attach(None, vusb_server.port, busid, timeout=timeout)
        d = device.descriptor
        # The serial number (in the first language, the one Linux reads) tells apart devices with the same IDs.
        serial = device.strings.get(d.serial_number_index, device.strings.languages[0]) if d.serial_number_index else None
        sysfs = await guest.wait_for_usb_device(d.vendor_id, d.product_id, serial=serial, timeout=timeout)
        node = await wait_for_node(guest, device, sysfs, timeout) if wait_node else None
        item = Attached(device, vusb_server, busid, port, node, sysfs)
        attached.append(item)
        return item

    yield attach
    for item in attached:
        try:
            await guest.detach(item.port)
        except Exception:  # noqa: BLE001 - a device the test removed is already gone
            pass
    for device in built:
        await device.aclose()


async def wait_for_node(guest: object, device: Device, sysfs: str, timeout: float) -> str | None:
    """What the device's driver creates, found under its sysfs folder: an input event
    node (HID), a disk (mass storage) or a tty (CDC-ACM); None for other classes."""
    from vusb.harness import UsbTarget

    assert isinstance(guest, UsbTarget)
    classes = {i.interface_class for i in device.configurations[0].interfaces}
    if 3 in classes:
        found = await guest.wait_for_path(f"{sysfs}:*/*:*/input/input*/event*", timeout=timeout)
    elif 8 in classes:
        return f"/dev/{await guest.wait_for_disk(sysfs, timeout=timeout)}"
    elif 2 in classes or 0x0A in classes:
        found = await guest.wait_for_path(f"{sysfs}:*/tty/ttyACM*", timeout=timeout)
    else:
        return None
    name = found[0].rsplit("/", 1)[-1]
    return f"/dev/input/{name}" if name.startswith("event") else f"/dev/{name}"
