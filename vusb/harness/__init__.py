"""Real-kernel test harness: attach vusb devices to a real Linux kernel.

:class:`Guest` boots a Debian kernel under QEMU (TCG) with vhci-hcd and
usbip; a vusb server listening on the host's 127.0.0.1 is reached from the
guest as ``10.0.2.2`` (:data:`HOST_FROM_GUEST`)::

    from vusb.harness import Guest

    async with Guest.start("6.1") as guest:
        port = await guest.attach(guest.host_address, server_port, "1-1")
        event = await guest.wait_for_input_device("vusb Keyboard")
        ...
        await guest.detach(port)

:class:`LocalVhci` has the same API and uses the host's own vhci-hcd
(root only).  Images are built on first use and cached, see
:mod:`vusb.harness.image`; ``python -m vusb.harness build`` pre-builds them.
"""

from __future__ import annotations

import os

from vusb.errors import ArgumentError

from .emulated import EMULATED_DEVICES, EmulatedDevice, emulated_qemu_args, record_emulated
from .guest import (
    GUEST_ADDRESS,
    HOST_FROM_GUEST,
    BackgroundJob,
    CommandResult,
    Guest,
    GuestBootError,
    GuestCommandError,
    GuestDiedError,
    GuestError,
    GuestOptions,
    GuestTimeoutError,
    ImportedPort,
    SyncGuest,
    UsbTarget,
    parse_usbip_port,
)
from .hostroot import (
    HOST_ROOT_QEMU_ARGS,
    HOST_SCRATCH,
    host_python,
    mount_host_root,
    run_on_host_root,
    start_on_host_root,
)
from .image import (
    DEFAULT_KERNEL,
    FORMAT_VERSION,
    KERNELS,
    GuestImage,
    HarnessError,
    HarnessPrerequisiteError,
    ImageBuildError,
    default_cache_dir,
    ensure_image,
    find_cached_image,
)
from .local import LocalVhci

__all__ = [
    "DEFAULT_KERNEL",
    "EMULATED_DEVICES",
    "FORMAT_VERSION",
    "GUEST_ADDRESS",
    "HOST_FROM_GUEST",
    "HOST_ROOT_QEMU_ARGS",
    "HOST_SCRATCH",
    "KERNELS",
    "BackgroundJob",
    "CommandResult",
    "EmulatedDevice",
    "Guest",
    "GuestBootError",
    "GuestCommandError",
    "GuestDiedError",
    "GuestError",
    "GuestImage",
    "GuestOptions",
    "GuestTimeoutError",
    "HarnessError",
    "HarnessPrerequisiteError",
    "ImageBuildError",
    "ImportedPort",
    "LocalVhci",
    "SyncGuest",
    "UsbTarget",
    "default_cache_dir",
    "emulated_qemu_args",
    "ensure_image",
    "find_cached_image",
    "host_python",
    "mount_host_root",
    "parse_usbip_port",
    "record_emulated",
    "run_on_host_root",
    "start_on_host_root",
    "start_target",
]


async def start_target(kind: str | None = None, kernel: str | None = None) -> UsbTarget:
    """Start the USB/IP client system a test should use.

    `kind` is "qemu" (a :class:`Guest`, the default) or "local" (a
    :class:`LocalVhci`); when None it comes from ``$VUSB_HARNESS_TARGET``.
    `kernel` defaults to ``$VUSB_KERNEL`` or :data:`DEFAULT_KERNEL`.  Stop
    the result with ``await target.stop()`` (both kinds have it).
    """
    kind = kind or os.environ.get("VUSB_HARNESS_TARGET", "qemu")
    if kind == "local":
        return await LocalVhci.start()
    if kind != "qemu":
        raise ArgumentError(f"unknown harness target {kind!r}: use 'qemu' or 'local'")
    return await Guest.start(kernel or os.environ.get("VUSB_KERNEL") or DEFAULT_KERNEL)
