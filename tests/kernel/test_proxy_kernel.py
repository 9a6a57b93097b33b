"""A guest proxies its own QEMU-emulated keyboard and disk with ``vusb proxy``.

The guest shares the host's root over virtio-9p (vusb.harness.hostroot): the host's own
Python, vusb and libusb run inside it, chrooted, against the guest's kernel. QEMU plugs a
usb-kbd and a usb-storage (1 MiB, a known pattern per block) into the guest's xHCI
controller; the guest's kernel drives them as real hardware.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from vusb.harness import Guest, HarnessError
from vusb.harness.emulated import emulated_qemu_args
from vusb.harness.hostroot import HOST_ROOT_QEMU_ARGS, host_python, run_on_host_root
from vusb.pytest_plugin import harness_unavailable

pytestmark = pytest.mark.kernel
TOOLS = Path(__file__).resolve().parent / "tools"


@pytest.fixture(scope="module")
def proxy_guest(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """One 6.1 guest for the file: QEMU's keyboard and disk on xHCI, the host's root on 9p."""
    work = tmp_path_factory.mktemp("proxy-guest")
    args = [*emulated_qemu_args(["usb-kbd", "usb-storage"], work), *HOST_ROOT_QEMU_ARGS]
    try:
        guest = Guest.start_sync("6.1", qemu_args=args)
    except HarnessError as exc:
        harness_unavailable(request.config, str(exc))
        raise
    yield guest
    guest.stop_sync()


async def test_the_hosts_python_runs_in_the_guest_and_reads_qemus_devices_through_libusb(
        proxy_guest: Guest) -> None:
    result = await run_on_host_root(proxy_guest, host_python(str(TOOLS / "libusb_list.py")), check=True)
    devices = [json.loads(line) for line in result.stdout.splitlines()]
    by_product = {d.get("product"): d for d in devices}
    # libusb opened each device node and read these strings from QEMU's devices.
    assert by_product["QEMU USB Keyboard"]["vid_pid"] == "0627:0001"
    assert by_product["QEMU USB HARDDRIVE"]["vid_pid"] == "46f4:0001"
    assert by_product["QEMU USB Keyboard"]["manufacturer"] == "QEMU"
    # vhci's root hubs are there too: it is the guest's USB, not the host's.
    assert any(d.get("product") == "USB/IP Virtual Host Controller" for d in devices)
