"""The mass storage class's registration: the ``mass-storage`` kind, ``scsi-failure`` faults, ``eject``/``insert``."""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Any

from vusb.devices.storage.backing import BackingStore, ImageFile, MemoryStore
from vusb.devices.storage.bot import MassStorageFunction
from vusb.devices.storage.faults import SCSI_FAILURE_FIELDS, ScsiFailure, prepare_scsi_failure
from vusb.devices.storage.profile import FIELDS, LUN_FIELDS, build

from vusb.control_server import ControlError, ControlServer, Request
from vusb.registry import Command, Registry

_EJECTED = "storage.ejected"


def _ejected(ctl: ControlServer) -> dict[tuple[str, int], BackingStore]:
    """The media ``eject`` took out, by (busid, LUN), kept for a later ``insert``; closed with the server."""
    kept: dict[tuple[str, int], BackingStore] | None = ctl.state.get(_EJECTED)
    if kept is None:
        kept = ctl.state[_EJECTED] = {}
        store_map = kept

        def close_all() -> None:
            for store in store_map.values():
                with contextlib.suppress(Exception):
                    store.close()
            store_map.clear()

        ctl.on_close(close_all)
    return kept


def _lun(ctl: ControlServer, req: Request) -> tuple[str, MassStorageFunction, int]:
    number = req.integer("lun", 0)
    busid, _, f = ctl.function(req, "storage")
    assert isinstance(f, MassStorageFunction)
    if not 0 <= number < len(f.luns):
        raise ControlError(f"device {busid} has {len(f.luns)} logical unit(s); no LUN {number}")
    return busid, f, number


async def _eject(ctl: ControlServer, req: Request) -> dict[str, Any]:
    busid, f, number = _lun(ctl, req)
    store = f.lun(number).eject()
    if store is None:
        raise ControlError(f"LUN {number} of {busid} holds no medium")
    kept = _ejected(ctl)
    old = kept.pop((busid, number), None)
    if old is not None and old is not store:
        with contextlib.suppress(Exception):
            old.close()
    kept[(busid, number)] = store
    return {"lun": number, "medium": store.describe()}


async def _insert(ctl: ControlServer, req: Request) -> dict[str, Any]:
    image = req.get("image", str)
    read_only = bool(req.get("read_only", bool, False))
    size = req.get("size", (int, str))
    if image is not None and not image.startswith("memory:") and not os.path.isabs(image):
        raise ControlError(f"image path {image!r} must be absolute (the server's working folder is not yours)")
    if size is not None and (image is None or image.startswith("memory:")):
        raise ControlError("field 'size' is the size of a new image file: give it with an image path "
                           "(a memory disk is memory:SIZE)")
    busid, f, number = _lun(ctl, req)
    unit = f.lun(number)
    if unit.present:
        raise ControlError(f"LUN {number} of {busid} already holds {unit.medium.describe() if unit.medium else '?'}; "
                           "eject it first")
    kept = _ejected(ctl)
    store: BackingStore
    if image is None:
        previous = kept.get((busid, number))
        if previous is None:
            raise ControlError("missing field 'image': an image path or memory:SIZE "
                               f"(LUN {number} of {busid} has no ejected medium to put back)")
        store = previous
    elif image.startswith("memory:"):
        store = MemoryStore(image[len("memory:"):], read_only=read_only)
    else:
        store = ImageFile(image, size, read_only=read_only)  # a missing file is created with size
    try:
        unit.insert(store)
    except BaseException:
        if image is not None:
            store.close()
        raise
    if kept.get((busid, number)) is store:
        del kept[(busid, number)]
    return {"lun": number, "medium": store.describe()}


def _eject_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("lun", type=int, nargs="?", default=0)


def _lun_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    body["lun"] = args.lun


def _insert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", nargs="?", help="an image file (made if missing, with --size), memory:SIZE, "
                   "or nothing: the medium ejected last")
    p.add_argument("lun", type=int, nargs="?", default=0)
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--size", metavar="SIZE", help="create a new image file of this size (64MiB, 1GiB...)")


def _insert_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    body["lun"] = args.lun
    if args.image is not None:
        image = args.image
        body["image"] = image if image.startswith("memory:") else os.path.abspath(image)
    if args.read_only:
        body["read_only"] = True
    if args.size is not None:
        body["size"] = args.size


def _describe(f: MassStorageFunction) -> dict[str, Any]:
    return {"luns": [{"lun": n, "present": lun.present,
                      "medium": lun.medium.describe() if lun.medium is not None else None}
                     for n, lun in enumerate(f.luns)]}


def register(registry: Registry) -> None:
    registry.add_kind("mass-storage", FIELDS, build,
                      "USB mass storage (Bulk-Only Transport, SCSI): disk images, memory disks, copy-on-write overlays",
                      tables={"luns": LUN_FIELDS}, docs="devices/mass-storage.md")
    registry.add_fault("scsi-failure", SCSI_FAILURE_FIELDS, ScsiFailure, prepare=prepare_scsi_failure)
    registry.name_function(MassStorageFunction, "storage", _describe)
    registry.add_command(Command("eject", "take the medium out of a logical unit", _eject, _eject_arguments,
                                 _lun_request, timeout=False))
    registry.add_command(Command("insert", "insert a medium: an image path (--size makes a new one), memory:SIZE, "
                                 "or (none) the ejected one", _insert, _insert_arguments, _insert_request,
                                 timeout=False))
