"""The ``dfu`` function kind of YAML profiles: a device in DFU mode whose firmware memory is a file.

::

    functions:
      - kind: dfu
        image: firmware.bin        # beside the profile; created empty if missing
        capacity: 256KiB
        transfer_size: 1024
        require_prefix: "7f 45 4c 46"   # an image not starting with these bytes is errFIRMWARE
        # dfuse_address: 0x08000000     # ST's DfuSe: memory at this address, 1 KiB pages (dfuse_page_size)
"""

from __future__ import annotations

from vusb.devices.dfu.function import DEFAULT_CAPACITY, DEFAULT_TRANSFER_SIZE, DfuFunction, DfuseLayout, FirmwareImage
from vusb.devices.dfu.spec import DfuStatus
from vusb.devices.storage.backing import parse_size

from vusb.device import Function
from vusb.errors import DeviceDefinitionError, UsageError
from vusb.profile import Field, Located, ProfileContext, register_kind

FIELDS: dict[str, Field] = {
    "image": Field("str", help="firmware file, relative to the profile's folder; created empty if missing "
                               "(default: kept in memory)"),
    "capacity": Field("str", help="largest image: bytes, or 256KiB, 1MiB... (default 1MiB)"),
    "transfer_size": Field("int", False, DEFAULT_TRANSFER_SIZE, 1, 0xFFFF, help="wTransferSize (default 1024)"),
    "can_download": Field("bool", False, True, help="bitCanDnload"),
    "can_upload": Field("bool", False, True, help="bitCanUpload"),
    "manifestation_tolerant": Field("bool", False, True,
                                    help="back to dfuIDLE after manifestation (false: wait for a bus reset)"),
    "poll_timeout": Field("int", False, 0, 0, 0xFFFFFF, help="ms each block takes to program (dfuDNBUSY)"),
    "manifest_time": Field("int", False, 10, 0, 0xFFFFFF, help="ms manifestation takes"),
    "require_prefix": Field("hex", help="an image must start with these bytes, else errFIRMWARE at manifestation"),
    "interface_name": Field("str", help="iInterface string (dfu-util shows it as name=)"),
    "dfuse_address": Field("int", False, None, 0, 0xFFFFFFFF,
                           help="DfuSe (ST's extension): the memory's start address, e.g. 0x08000000"),
    "dfuse_page_size": Field("int", False, 1024, 1, 1 << 24, help="DfuSe: erase page size in bytes (default 1024)"),
}


def build(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    image = ctx.resolve(o["image"].value, o["image"]) if o["image"].value is not None else None
    capacity = DEFAULT_CAPACITY
    if o["capacity"].value is not None:
        try:
            capacity = parse_size(o["capacity"].value)
        except UsageError as exc:
            raise ctx.error(o["capacity"].node, o["capacity"].path, str(exc)) from None
    prefix: bytes | None = o["require_prefix"].value

    def starts_right(data: bytes) -> DfuStatus | None:
        return None if prefix is None or data.startswith(prefix) else DfuStatus.ERR_FIRMWARE

    try:
        memory = FirmwareImage(image, capacity, check_only=ctx.dry_run)  # a dry run creates no file
        return DfuFunction(memory, capacity=capacity, transfer_size=o["transfer_size"].value,
                           can_download=o["can_download"].value, can_upload=o["can_upload"].value,
                           manifestation_tolerant=o["manifestation_tolerant"].value,
                           poll_timeout=o["poll_timeout"].value, manifest_time=o["manifest_time"].value,
                           verify=starts_right if prefix is not None else None,
                           interface_name=o["interface_name"].value,
                           dfuse=None if o["dfuse_address"].value is None else DfuseLayout(
                               o["interface_name"].value or "Internal Flash", o["dfuse_address"].value,
                               o["dfuse_page_size"].value))
    except DeviceDefinitionError as exc:
        where = o["image"] if "image" in str(exc) else o["dfuse_address"] if "DfuSe" in str(exc) else o["capacity"]
        raise ctx.error(where.node, where.path, str(exc)) from None


def register_profile_kinds() -> None:
    """Make ``kind: dfu`` available to profiles."""
    register_kind("dfu", FIELDS, build, "DFU 1.1 bootloader (DFU mode): dfu-util downloads into a file")
