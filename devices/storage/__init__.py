"""USB mass storage: a disk served over USB/IP that Linux usb-storage (or any host) mounts.

Layers, one module each:

- :mod:`vusb.devices.storage.bot`: the USB side, Bulk-Only Transport 1.0
  (:class:`MassStorageFunction`, usable in composite devices);
- :mod:`vusb.devices.storage.scsi`: the SCSI logical units (:class:`LogicalUnit`);
- :mod:`vusb.devices.storage.backing`: where the blocks live (:class:`ImageFile`,
  :class:`MemoryStore`, :class:`OverlayStore`).

The usual way in is :class:`MassStorage`::

    disk = MassStorage("disk.img", size="64MiB")      # sparse image, created if missing
    async with Server([disk]) as server: ...
    disk.eject(); disk.insert(ImageFile("other.img"))  # change media while attached
    await disk.flush()                                 # fsync the image
    disk.faults.add(ScsiFailure(opcode=Opcode.READ_10, sense_key="MEDIUM_ERROR", asc=0x11, lba=100))
                                                       # a bad sector (docs/faults.md)
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from typing import Any

from vusb.devices.storage.backing import (
    BackingStore,
    ImageFile,
    MediumError,
    MemoryStore,
    OverlayStore,
    StrPath,
    open_store,
    parse_size,
)
from vusb.devices.storage.bot import (
    CommandBlockWrapper,
    CommandStatusWrapper,
    CswStatus,
    MassStorageFunction,
    MscRequest,
)
from vusb.devices.storage.faults import ScsiFailure
from vusb.devices.storage.scsi import CheckCondition, LogicalUnit, Opcode, Sense, SenseKey

from vusb.constants import Speed
from vusb.errors import UsageError
from vusb.single import SingleFunctionDevice

__all__ = [
    "BackingStore",
    "CheckCondition",
    "CommandBlockWrapper",
    "CommandStatusWrapper",
    "CswStatus",
    "ImageFile",
    "LogicalUnit",
    "MassStorage",
    "MassStorageFunction",
    "MediumError",
    "MemoryStore",
    "MscRequest",
    "Opcode",
    "OverlayStore",
    "ScsiFailure",
    "Sense",
    "SenseKey",
    "default_serial",
    "open_store",
    "parse_size",
    "register_profile_kinds",
]


def default_serial(store: BackingStore | None) -> str:
    """A serial number (12 hex digits, as the Bulk-Only spec asks): stable for an image path, random otherwise."""
    path = getattr(store, "path", None) or getattr(getattr(store, "base", None), "path", None)
    if path is not None:
        digest = hashlib.sha1(os.fsencode(os.path.abspath(path))).hexdigest()
        return digest[:12].upper()
    return uuid.uuid4().hex[:12].upper()


class MassStorage(SingleFunctionDevice[MassStorageFunction]):
    """A USB flash drive: one Bulk-Only interface, one or more logical units.

    The medium of a single-LUN drive comes from ``image`` (a path or a
    :class:`BackingStore`) with the options of :func:`open_store`: ``size``
    creates a missing image as a sparse file, ``memory=True`` keeps the disk in
    memory, ``overlay=True`` (or a side file path) writes copy-on-write over the
    image, which stays untouched.  ``luns`` gives the logical units instead
    (several disks, or an empty card slot: ``LogicalUnit()``).

    ``manufacturer`` and ``product`` are the USB strings; the SCSI INQUIRY strings
    default to them (cut to 8 and 16 characters) and can be set with
    ``scsi_vendor``, ``scsi_product``, ``scsi_revision``.
    """

    def __init__(
        self,
        image: StrPath | BackingStore | None = None,
        *,
        size: int | str | None = None,
        read_only: bool = False,
        memory: bool = False,
        overlay: bool | StrPath | None = None,
        luns: Sequence[LogicalUnit] | None = None,
        block_size: int = 512,
        removable: bool = True,
        vendor_id: int = 0x1209,
        product_id: int = 0x0005,
        device_version: int = 0x0100,
        manufacturer: str | None = "vusb",
        product: str | None = "Virtual Flash Drive",
        serial_number: str | None = None,
        scsi_vendor: str | None = None,
        scsi_product: str | None = None,
        scsi_revision: str = "1.00",
        speed: Speed | str = "high",
        interface_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if luns is not None:
            if image is not None or memory or overlay not in (None, False) or size is not None:
                raise UsageError("give either luns or a medium (image, size, memory, overlay), not both")
            units = list(luns)
        else:
            if image is None and not memory:
                raise UsageError("MassStorage needs a disk: an image path, memory=True with a size, "
                                 "a BackingStore, or luns")
            store = open_store(image, size=size, read_only=read_only, memory=memory, overlay=overlay)
            units = [LogicalUnit(store, read_only=read_only, removable=removable, block_size=block_size,
                                 vendor=scsi_vendor, product=scsi_product, revision=scsi_revision)]
        if serial_number is None:
            serial_number = default_serial(units[0].medium if units else None)
        self.storage = MassStorageFunction(*units, interface_name=interface_name)
        """The Bulk-Only function (also :attr:`function`)."""
        super().__init__(self.storage, vendor_id=vendor_id, product_id=product_id, device_version=device_version,
                         manufacturer=manufacturer, product=product, serial_number=serial_number, speed=speed,
                         **kwargs)

    @property
    def luns(self) -> list[LogicalUnit]:
        """The logical units, LUN 0 first."""
        return self.storage.luns

    @property
    def medium(self) -> BackingStore | None:
        """The medium of LUN 0."""
        return self.storage.luns[0].medium

    def eject(self, lun: int = 0) -> BackingStore | None:
        """Take the medium out of a logical unit (flushed, not closed) and return it.

        The host then sees NOT READY, MEDIUM NOT PRESENT.  This is the user pulling
        the card: it happens even if the host asked to prevent medium removal.
        """
        return self.storage.lun(lun).eject()

    def insert(self, store: BackingStore | StrPath, lun: int = 0, *, read_only: bool = False) -> BackingStore:
        """Insert a medium (a store, or an image path) into an empty logical unit.

        The host sees UNIT ATTENTION, NOT READY TO READY CHANGE, and reads the capacity again.
        """
        if not isinstance(store, BackingStore):
            store = ImageFile(store, read_only=read_only)
        self.storage.lun(lun).insert(store)
        return store

    async def flush(self) -> None:
        """fsync every medium (in a worker thread)."""
        for lun in self.storage.luns:
            await lun.flush_async()

    def close(self) -> None:
        """Flush and close every medium.  Do it once the device is no longer served."""
        self.storage.close()


def register_profile_kinds() -> None:
    """Register the ``mass-storage`` function kind for YAML profiles."""
    from vusb.devices.storage.profile import register

    register()

