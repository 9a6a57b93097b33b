"""The ``mass-storage`` function kind of YAML profiles.

One disk::

    functions:
      - kind: mass-storage
        image: flash-drive.img      # beside the profile; created sparse if missing
        size: 64MiB

Several logical units (a card reader with two slots, the second empty)::

      - kind: mass-storage
        luns:
          - {image: sd.img, size: 1GiB}
          - {empty: true}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from vusb.devices.storage.backing import BackingStore, ImageFile, open_store, parse_size
from vusb.devices.storage.bot import MAX_LUNS, MassStorageFunction
from vusb.devices.storage.scsi import LogicalUnit

from vusb.device import Function
from vusb.errors import UsageError
from vusb.profile import Field, Located, ProfileContext, read_mapping
from vusb.registry import register_kind

LUN_FIELDS: dict[str, Field] = {
    "image": Field("str", help="disk image file; a relative path is relative to the profile's folder"),
    "size": Field("str", help="size of a new image or memory disk: bytes, or 64MiB, 1GiB, 2TB..."),
    "memory": Field("bool", help="keep the disk in memory (needs size; image, if given, is the initial content)"),
    "overlay": Field("str", help="copy-on-write over image, which is left untouched: 'memory' (or true), "
                                 "or the path of a scratch side file"),
    "read_only": Field("bool", help="write-protect the disk (default false)"),
    "empty": Field("bool", help="start without a medium, like an empty card slot (default false)"),
    "removable": Field("bool", help="removable medium bit of INQUIRY (default true)"),
    "block_size": Field("int", low=512, high=4096, help="logical block size: 512 (default), 1024, 2048 or 4096"),
    "vendor": Field("str", help="INQUIRY vendor, up to 8 characters (default: the identity's manufacturer)"),
    "product": Field("str", help="INQUIRY product, up to 16 characters (default: the identity's product)"),
    "revision": Field("str", help="INQUIRY revision, up to 4 characters (default 1.00)"),
    "serial": Field("str", help="unit serial number, VPD page 80h (default: the USB serial number)"),
}

FIELDS: dict[str, Field] = {
    **LUN_FIELDS,
    "luns": Field("list", help="several logical units, each a mapping of the fields above"),
    "interface_name": Field("str", help="iInterface string"),
}


def _value(o: dict[str, Located], key: str, default: Any) -> Any:
    value = o[key].value
    return default if value is None else value


def _lun(ctx: ProfileContext, o: dict[str, Located], path: str) -> LogicalUnit:
    where = o["image"].node if o["image"].value is not None else next(iter(o.values())).node
    for key, node_info in o.items():
        if node_info.value is not None and isinstance(node_info.value, str) and key in ("vendor", "product", "revision"):
            limit = {"vendor": 8, "product": 16, "revision": 4}[key]
            if len(node_info.value) > limit or not node_info.value.isascii():
                raise ctx.error(node_info.node, node_info.path, f"INQUIRY {key} is up to {limit} ASCII characters")
    block_size = _value(o, "block_size", 512)
    if block_size not in LogicalUnit.BLOCK_SIZES:
        raise ctx.error(o["block_size"].node, o["block_size"].path, "block_size is 512, 1024, 2048 or 4096")
    size: int | None = None
    if o["size"].value is not None:
        try:
            size = parse_size(o["size"].value)
        except UsageError as exc:
            raise ctx.error(o["size"].node, o["size"].path, str(exc)) from None
    read_only = bool(_value(o, "read_only", False))
    memory = bool(_value(o, "memory", False))
    empty = bool(_value(o, "empty", False))
    overlay_text = o["overlay"].value
    overlay: bool | str | None = None
    if overlay_text is not None:
        lowered = str(overlay_text).strip().lower()
        overlay = True if lowered in ("memory", "true", "yes", "on") else \
            None if lowered in ("false", "no", "off") else str(ctx.resolve(str(overlay_text), o["overlay"]))
    image = o["image"].value
    store: BackingStore | None = None
    if empty:
        if image is not None or memory or overlay is not None:
            raise ctx.error(where, f"{path}.empty" if path else "empty",
                            "an empty unit has no image, memory or overlay")
    else:
        if image is None and not memory:
            raise ctx.error(where, f"{path}.image" if path else "image",
                            "give an image (a disk image file), memory: true with a size, or empty: true")
        if memory and size is None and image is None:
            raise ctx.error(where, f"{path}.size" if path else "size", "a memory disk needs a size")
        image_path = str(ctx.resolve(image, o["image"])) if image is not None else None
        try:
            if ctx.dry_run:
                store = _check_store(image_path, size=size, read_only=read_only, memory=memory, overlay=overlay)
            else:
                store = open_store(image_path, size=size, read_only=read_only, memory=memory, overlay=overlay)
        except (UsageError, OSError) as exc:
            raise ctx.error(where, o["image"].path, str(exc)) from None
    return LogicalUnit(
        store,
        read_only=read_only,
        removable=bool(_value(o, "removable", True)),
        block_size=block_size,
        vendor=o["vendor"].value,
        product=o["product"].value,
        revision=_value(o, "revision", "1.00"),
        serial=o["serial"].value,
    )


def _check_store(path: str | None, *, size: int | None, read_only: bool, memory: bool,
                 overlay: bool | str | None) -> BackingStore | None:
    """What :func:`open_store` would refuse, refused the same way, without creating or changing a file.

    A missing image that serving would create gives no store (the trial unit is empty); an
    existing one is opened read-only; an overlay's side file is not made (an overlay in
    memory stands in for it).
    """
    if path is not None and not memory and overlay is None and not Path(path).exists():
        if size is None:
            raise UsageError(f"disk image {path} does not exist; give a size to create it")
        if read_only:
            raise UsageError(f"disk image {path} does not exist and cannot be created read-only")
        if size <= 0:
            raise UsageError(f"cannot create disk image {path} with size {size}")
        return None
    if path is not None and not memory and overlay is None:
        if not read_only and not os.access(path, os.W_OK):
            raise UsageError(f"cannot open disk image {path}: Permission denied; open it read-only (read_only: true)")
        return ImageFile(path, size, read_only=True, create=False)
    return open_store(path, size=size, read_only=read_only, memory=memory,
                      overlay=True if isinstance(overlay, str) else overlay)


def build(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    luns_node = o["luns"].value
    if luns_node is None:
        units = [_lun(ctx, {k: v for k, v in o.items() if k in LUN_FIELDS}, "")]
    else:
        given = [k for k in LUN_FIELDS if o[k].value is not None]
        if given:
            raise ctx.error(o[given[0]].node, o[given[0]].path,
                            f"with luns, give {given[0]!r} inside each logical unit instead")
        items = luns_node.value
        if not items:
            raise ctx.error(luns_node, o["luns"].path, "luns needs at least one logical unit")
        if len(items) > MAX_LUNS:
            raise ctx.error(luns_node, o["luns"].path, f"at most {MAX_LUNS} logical units")
        units = []
        for i, node in enumerate(items):
            sub = f"{o['luns'].path}[{i}]"
            if not isinstance(node, yaml.MappingNode):
                raise ctx.error(node, sub, "expected a mapping of logical unit fields (image, size, ...)")
            units.append(_lun(ctx, read_mapping(ctx, node, sub, LUN_FIELDS), sub))
    return MassStorageFunction(*units, interface_name=o["interface_name"].value)


def register() -> None:
    register_kind("mass-storage", FIELDS, build,
                  "USB mass storage (Bulk-Only Transport, SCSI): disk images, memory disks, copy-on-write overlays")
