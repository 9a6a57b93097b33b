"""SCSI failures: a fault kind of mass storage devices (``scsi-failure`` in profiles and ``vusb ctl fault-add``).

::

    from vusb.devices.storage import ScsiFailure

    disk.faults.add(ScsiFailure(opcode=0x28, sense_key="MEDIUM_ERROR", asc=0x11, lba=100, blocks=8))

The rule lives with the class it acts on; the storage package registers it as a fault
kind (:mod:`vusb.devices.storage.plugin`), and :class:`vusb.faults.FaultSet` wires it
through the generic :meth:`vusb.faults.Fault.wire` hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from vusb.devices.storage.scsi import LogicalUnit, cdb_extent

from vusb.constants import SenseKey
from vusb.errors import UsageError
from vusb.faults import Fault, FaultSet, check_int
from vusb.profile_faults import FAULT_FIRING_FIELDS
from vusb.profile_fields import Field, Located, ProfileContext, name_or_number

if TYPE_CHECKING:
    from vusb.device import Device

#: SCSI sense keys (SPC-4 table 47, :class:`vusb.constants.SenseKey`), by name, for :class:`ScsiFailure`
SENSE_KEYS: dict[str, int] = {key.name: int(key) for key in SenseKey}

class ScsiFailure(Fault):
    """A SCSI command ends in CHECK CONDITION with chosen sense data (mass storage).

    Matches ``opcode`` (None: any command), ``lun`` (the LUN the host sends, so on a device
    with several mass storage functions it matches that LUN of each; None: any) and, when
    ``lba`` is given, READ/WRITE/VERIFY commands touching blocks ``lba`` to
    ``lba + blocks - 1``; the sense data then carries the first failing block in its
    INFORMATION field, as a disk reports a bad sector.  The command does not run.
    ``sense_key`` is a number or a name of :data:`SENSE_KEYS`.
    """

    kind = "scsi-failure"
    urb_level = False

    def __init__(
        self,
        *,
        sense_key: int | str,
        asc: int = 0,
        ascq: int = 0,
        opcode: int | None = None,
        lun: int | None = None,
        lba: int | None = None,
        blocks: int = 1,
        **firing: Any,
    ) -> None:
        for forbidden in ("endpoint", "request_type", "request", "value", "index", "min_length", "when"):
            if forbidden in firing:
                raise UsageError(f"ScsiFailure matches SCSI commands (opcode, lun, lba); {forbidden} is not used")
        super().__init__(**firing)
        if isinstance(sense_key, str):
            key = SENSE_KEYS.get(sense_key.upper())
            if key is None:
                raise UsageError(f"ScsiFailure: unknown sense key {sense_key!r}; one of: {', '.join(SENSE_KEYS)}")
            sense_key = key
        self.sense_key = check_int("ScsiFailure: sense_key", sense_key, 0, 0xF, optional=False) or 0
        if self.sense_key not in SENSE_KEYS.values():
            raise UsageError(f"ScsiFailure: sense key 0x{self.sense_key:X} is reserved")
        self.asc = check_int("ScsiFailure: asc", asc, 0, 0xFF, optional=False) or 0
        self.ascq = check_int("ScsiFailure: ascq", ascq, 0, 0xFF, optional=False) or 0
        self.opcode = check_int("ScsiFailure: opcode", opcode, 0, 0xFF)
        self.lun = check_int("ScsiFailure: lun", lun, 0, 15)
        self.lba = check_int("ScsiFailure: lba", lba, 0, (1 << 64) - 1)
        self.blocks = check_int("ScsiFailure: blocks", blocks, 1, optional=False) or 1

    def match_command(self, lun: int, cdb: bytes) -> tuple[bool, int | None]:
        """(matches, INFORMATION) for a command to logical unit ``lun``."""
        if not cdb or (self.opcode is not None and cdb[0] != self.opcode):
            return False, None
        if self.lun is not None and lun != self.lun:
            return False, None
        if self.lba is None:
            return True, None
        extent = cdb_extent(cdb)
        if extent is None:
            return False, None
        start, count = extent
        first, last = max(start, self.lba), min(start + count, self.lba + self.blocks) - 1
        if first > last:
            return False, None
        return True, first

    def check_device(self, device: Device) -> None:
        functions = _scsi_functions(device)
        if not functions:
            raise UsageError(f"{self!r}: device {device.describe()} has no SCSI logical unit (a mass storage function)")
        most = max(len(units) for units in functions)
        if self.lun is not None and self.lun >= most:
            has = (f"the device has {most} logical unit(s)" if len(functions) == 1 else
                   f"each of the device's {len(functions)} mass storage functions has at most {most} logical unit(s)")
            raise UsageError(f"{self!r}: {has}; there is no LUN {self.lun}")

    @classmethod
    def wire(cls, faults: FaultSet, rules: Sequence[Fault]) -> None:
        """Give each logical unit of the device a hook that fails the commands these rules match."""
        live = tuple(r for r in rules if isinstance(r, ScsiFailure))
        for units in _scsi_functions(faults.device):
            for number, unit in enumerate(units):  # numbered within each function, as the host addresses them
                unit.fault_hook = _hook(faults, live, number) if live else None

    def _details(self) -> Iterator[str]:
        yield f"sense_key=0x{self.sense_key:x}"
        yield f"asc=0x{self.asc:02x}"
        yield f"ascq=0x{self.ascq:02x}"
        if self.opcode is not None:
            yield f"opcode=0x{self.opcode:02x}"
        if self.lun is not None:
            yield f"lun={self.lun}"
        if self.lba is not None:
            yield f"lba={self.lba}"
            yield f"blocks={self.blocks}"
        yield from super()._details()


def scsi_units(device: Device) -> list[Any]:
    """The SCSI logical units of a device, in LUN order of each mass storage function."""
    return [unit for units in _scsi_functions(device) for unit in units]


def _scsi_functions(device: Device) -> list[list[Any]]:
    """The logical units of each mass storage function of a device, in LUN order (the LUN the host sends)."""
    functions: list[list[Any]] = []
    for function in device.functions:
        units = [lun for lun in getattr(function, "luns", ()) if isinstance(lun, LogicalUnit)]
        if units:
            functions.append(units)
    return functions


def _hook(faults: FaultSet, rules: tuple[ScsiFailure, ...], lun: int
          ) -> Callable[[bytes], tuple[int, int, int, int | None] | None]:
    def hook(cdb: bytes) -> tuple[int, int, int, int | None] | None:
        """(sense key, ASC, ASCQ, INFORMATION) for a command that must fail, or None."""
        for rule in rules:
            if rule.faults is not faults:
                continue
            matched, information = rule.match_command(lun, cdb)
            if matched and rule._trigger():
                return rule.sense_key, rule.asc, rule.ascq, information
        return None

    return hook


SCSI_FAILURE_FIELDS: dict[str, Field] = {
    "sense_key": Field("str", True, help="sense key: a name (MEDIUM_ERROR, NOT_READY, UNIT_ATTENTION...) "
                                         "or a number"),
    "asc": Field("int", False, 0, 0, 0xFF, help="additional sense code"),
    "ascq": Field("int", False, 0, 0, 0xFF, help="additional sense code qualifier"),
    "opcode": Field("int", False, None, 0, 0xFF, help="SCSI operation code to match (0x28: READ(10); "
                                                      "default: any)"),
    "lun": Field("int", False, None, 0, 15, help="logical unit to match (default: any)"),
    "lba": Field("int", False, None, 0, None, help="first block of the failing range (READ/WRITE/VERIFY)"),
    "blocks": Field("int", False, 1, 1, None, help="blocks in the failing range (default 1)"),
    **FAULT_FIRING_FIELDS,
}
"""The fields of a ``scsi-failure`` entry."""


def prepare_scsi_failure(ctx: ProfileContext, values: dict[str, Located], options: dict[str, Any]) -> None:
    options["sense_key"] = name_or_number(ctx, values["sense_key"], SENSE_KEYS, "sense key")


__all__ = ["SCSI_FAILURE_FIELDS", "SENSE_KEYS", "ScsiFailure", "prepare_scsi_failure", "scsi_units"]
