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
    ``attached = await vusb_attach(device)`` serves the device, attaches it to the
    guest, waits for what its driver creates (``attached.node``: /dev/input/eventN,
    /dev/sdX, /dev/ttyACMn) and detaches it after the test.

When the harness cannot run (QEMU missing...), kernel fixtures skip the test, or fail
it with ``--vusb-require-kernel`` or when ``$CI`` is set: in CI a skipped kernel test
is a gap, not a pass.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from vusb.device import Device
from vusb.server import Server
from vusb.testing import LocalHost

__all__ = ["Attached"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vusb", "virtual USB devices")
    group.addoption("--vusb-kernel", default=None, help="guest kernel for vusb_guest: 5.10, 6.1 (default) or 6.12")
    group.addoption("--vusb-target", default=None, choices=("qemu", "local"),
                    help="where vusb_guest attaches devices: a QEMU guest (default) or this machine's vhci-hcd")
    group.addoption("--vusb-require-kernel", action="store_true",
                    help="fail (not skip) kernel tests when the harness cannot run (default when $CI is set)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kernel: the test attaches devices to a real Linux kernel")


@pytest.fixture
async def vusb_server() -> AsyncIterator[Server]:
    async with Server([], port=0) as server:
        yield server


@pytest.fixture
def vusb_host() -> Iterator[Callable[[Device], LocalHost]]:
    hosts: list[LocalHost] = []

    def make(device: Device) -> LocalHost:
        host = LocalHost(device)
        host.attach()
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.detach()


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


@pytest.fixture
async def vusb_attach(vusb_guest: object, vusb_server: Server) -> AsyncIterator[Callable[..., Awaitable[Attached]]]:
    from vusb.harness import UsbTarget

    guest = vusb_guest
    assert isinstance(guest, UsbTarget)
    attached: list[Attached] = []

    async def attach(device: Device, *, wait_node: bool = True, timeout: float = 60.0) -> Attached:
        busid = vusb_server.add(device)
        port = await guest.attach(None, vusb_server.port, busid, timeout=timeout)
        d = device.descriptor
        sysfs = await guest.wait_for_usb_device(d.vendor_id, d.product_id, timeout=timeout)
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


async def wait_for_node(guest: object, device: Device, sysfs: str, timeout: float) -> str | None:
    """What the device's driver creates, found under its sysfs folder: an input event
    node (HID), a disk (mass storage) or a tty (CDC-ACM); None for other classes."""
    from vusb.harness import UsbTarget

    assert isinstance(guest, UsbTarget)
    classes = {i.interface_class for i in device.configurations[0].interfaces}
    if 3 in classes:
        found = await guest.wait_for_path(f"{sysfs}:*/*:*/input/input*/event*", timeout=timeout)
    elif 8 in classes:
        found = await guest.wait_for_path(f"{sysfs}:*/host*/target*/*/block/*", timeout=timeout)
    elif 2 in classes or 0x0A in classes:
        found = await guest.wait_for_path(f"{sysfs}:*/tty/ttyACM*", timeout=timeout)
    else:
        return None
    name = found[0].rsplit("/", 1)[-1]
    return f"/dev/input/{name}" if name.startswith("event") else f"/dev/{name}"
