"""USB Device Firmware Upgrade 1.1: a bootloader whose firmware memory is a file.

``dfu-util`` downloads into the file and uploads from it; the full DFU state machine with
its status codes, manifestation, and error states a test can provoke. See docs/devices/dfu.md.

::

    boot = DfuDevice("firmware.bin", capacity=256 * 1024)          # DFU mode (a bootloader)
    app = DfuDevice("firmware.bin", start_in="runtime")            # switches on DFU_DETACH + reset
"""

from vusb.devices.dfu.function import (
    DEFAULT_CAPACITY,
    DEFAULT_TRANSFER_SIZE,
    DfuDevice,
    DfuFunction,
    DfuseLayout,
    FirmwareImage,
    Verifier,
)
from vusb.devices.dfu.spec import (
    DFU_CLASS,
    DFU_SUBCLASS,
    DfuAttributes,
    DfuFunctionalDescriptor,
    DfuProtocol,
    DfuRequest,
    DfuState,
    DfuStatus,
    functional_descriptor,
    status_bytes,
)


def register_profile_kinds() -> None:
    """Make ``kind: dfu`` available to profiles."""
    from vusb.devices.dfu.profile import register_profile_kinds as register

    register()


__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_TRANSFER_SIZE",
    "DFU_CLASS",
    "DFU_SUBCLASS",
    "DfuAttributes",
    "DfuDevice",
    "DfuFunction",
    "DfuFunctionalDescriptor",
    "DfuProtocol",
    "DfuRequest",
    "DfuState",
    "DfuStatus",
    "DfuseLayout",
    "FirmwareImage",
    "Verifier",
    "functional_descriptor",
    "register_profile_kinds",
    "status_bytes",
]
