"""A guest proxies its own QEMU-emulated keyboard and disk with ``vusb proxy``.

The guest shares the host's root over virtio-9p (vusb.harness.hostroot): the host's own
Python, vusb and libusb run inside it, chrooted, against the guest's kernel. QEMU plugs a
usb-kbd and a usb-storage (1 MiB, a known pattern per block) into the guest's xHCI
controller; the guest's kernel drives them as real hardware.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vusb.harness import Guest, HarnessError
from vusb.harness.emulated import emulated_qemu_args
from vusb.harness.hostroot import HOST_ROOT_QEMU_ARGS, host_python, run_on_host_root
from vusb.pytest_plugin import harness_unavailable

pytestmark = pytest.mark.kernel
TOOLS = Path(__file__).resolve().parent / "tools"
ROOT = Path(__file__).resolve().parents[2]


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


def test_the_docs_example_runs_as_written(tmp_path: Path) -> None:
    """docs/emulated-devices.md's program, copied out of the page and run (it boots its own guest)."""
    page = (ROOT / "docs" / "emulated-devices.md").read_text()
    code = re.search(r"```python\n# libusb_in_a_guest.py\n(.*?)```", page, re.S)
    assert code is not None
    program = tmp_path / "libusb_in_a_guest.py"
    program.write_text(code.group(1))
    result = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^/dev/bus/usb/\d{3}/\d{3} 0627 QEMU USB Keyboard$", result.stdout, re.M), result.stdout
