"""SCSI logical units: the command set a USB disk speaks (SPC-4 and SBC-3 subsets).

A :class:`LogicalUnit` is one disk behind the transport: a direct-access block
device whose medium is a :class:`~vusb.devices.storage.backing.BackingStore`, or no
medium at all (an empty card slot).  The transport hands it each command
descriptor block (CDB) with :meth:`LogicalUnit.command` and gets back a
:class:`Command` that says which way data flows and how much, produces or takes
that data, and finishes.  A command that fails ends in CHECK CONDITION: the
logical unit keeps the sense data for the REQUEST SENSE that follows.

Supported commands:

========================================  ======  =============================================
TEST UNIT READY                           0x00    medium present?
REQUEST SENSE                             0x03    fixed-format sense data (SPC-4 4.5.3)
READ(6) / WRITE(6)                        08/0A
INQUIRY                                   0x12    standard data; VPD pages 00h, 80h, 83h
MODE SENSE(6) / MODE SENSE(10)            1A/5A   pages 01h, 08h caching, 0Ah, 1Ch, 3Fh all
START STOP UNIT                           0x1B    LOEJ ejects or loads the medium
PREVENT ALLOW MEDIUM REMOVAL              0x1E
READ FORMAT CAPACITIES                    0x23    (UFI/MMC, asked by Windows)
READ CAPACITY(10)                         0x25    FFFFFFFFh when the LBA needs 64 bits
READ(10) / WRITE(10) / VERIFY(10)         28/2A/2F
SYNCHRONIZE CACHE(10) / (16)              35/91   fsync of the image
READ(16) / WRITE(16) / VERIFY(16)         88/8A/8F
READ CAPACITY(16)                         9E/10   SERVICE ACTION IN(16)
REPORT LUNS                               0xA0
READ(12) / WRITE(12) / VERIFY(12)         A8/AA/AF
========================================  ======  =============================================

Anything else ends in ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import ClassVar, Final

from vusb.devices.storage.backing import BackingStore, Buffer

from vusb.constants import SenseKey as SenseKey  # defined there for vusb.faults; part of this module's API
from vusb.errors import UsageError, VusbError
from vusb.urb import FileData, Gather

log = logging.getLogger("vusb.storage")


# ------------------------------------------------------------------ sense data (SPC-4 4.5)


@dataclass(frozen=True)
class Sense:
    """A sense key with its additional sense code and qualifier (ASC/ASCQ)."""

    key: SenseKey
    asc: int = 0
    ascq: int = 0
    description: str = field(default="", compare=False)

    def fixed(self, information: int | None = None) -> bytes:
        """Fixed-format sense data, 18 bytes (SPC-4 table 45)."""
        valid = 0x80 if information is not None else 0
        info = (information or 0) & 0xFFFFFFFF
        return bytes((0x70 | valid, 0, int(self.key))) + info.to_bytes(4, "big") + bytes(
            (10, 0, 0, 0, 0, self.asc, self.ascq, 0, 0, 0, 0))

    def __str__(self) -> str:
        text = f"{self.key.name} {self.asc:02X}/{self.ascq:02X}"
        return f"{text} {self.description}" if self.description else text


NO_SENSE = Sense(SenseKey.NO_SENSE, 0x00, 0x00, "NO ADDITIONAL SENSE INFORMATION")
MEDIUM_NOT_PRESENT = Sense(SenseKey.NOT_READY, 0x3A, 0x00, "MEDIUM NOT PRESENT")
WRITE_ERROR = Sense(SenseKey.MEDIUM_ERROR, 0x0C, 0x00, "WRITE ERROR")
UNRECOVERED_READ_ERROR = Sense(SenseKey.MEDIUM_ERROR, 0x11, 0x00, "UNRECOVERED READ ERROR")
INTERNAL_TARGET_FAILURE = Sense(SenseKey.HARDWARE_ERROR, 0x44, 0x00, "INTERNAL TARGET FAILURE")
PARAMETER_LIST_LENGTH_ERROR = Sense(SenseKey.ILLEGAL_REQUEST, 0x1A, 0x00, "PARAMETER LIST LENGTH ERROR")
INVALID_COMMAND_OPERATION_CODE = Sense(SenseKey.ILLEGAL_REQUEST, 0x20, 0x00, "INVALID COMMAND OPERATION CODE")
LBA_OUT_OF_RANGE = Sense(SenseKey.ILLEGAL_REQUEST, 0x21, 0x00, "LOGICAL BLOCK ADDRESS OUT OF RANGE")
INVALID_FIELD_IN_CDB = Sense(SenseKey.ILLEGAL_REQUEST, 0x24, 0x00, "INVALID FIELD IN CDB")
SAVING_PARAMETERS_NOT_SUPPORTED = Sense(SenseKey.ILLEGAL_REQUEST, 0x39, 0x00, "SAVING PARAMETERS NOT SUPPORTED")
MEDIUM_REMOVAL_PREVENTED = Sense(SenseKey.ILLEGAL_REQUEST, 0x53, 0x02, "MEDIUM REMOVAL PREVENTED")
NOT_READY_TO_READY_CHANGE = Sense(SenseKey.UNIT_ATTENTION, 0x28, 0x00, "NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED")
WRITE_PROTECTED = Sense(SenseKey.DATA_PROTECT, 0x27, 0x00, "WRITE PROTECTED")
# SBC-3's thin-provisioning answer when the space behind the medium runs out; Linux
# turns it into ENOSPC for the writer instead of a generic I/O error.
SPACE_ALLOCATION_FAILED = Sense(SenseKey.DATA_PROTECT, 0x27, 0x07, "SPACE ALLOCATION FAILED WRITE PROTECT")
MISCOMPARE_DURING_VERIFY = Sense(SenseKey.MISCOMPARE, 0x1D, 0x00, "MISCOMPARE DURING VERIFY OPERATION")


class CheckCondition(VusbError):
    """A command ends in CHECK CONDITION with this sense data."""

    def __init__(self, sense: Sense) -> None:
        super().__init__(str(sense))
        self.sense = sense


# ------------------------------------------------------------------ commands


class Opcode(enum.IntEnum):
    TEST_UNIT_READY = 0x00
    REQUEST_SENSE = 0x03
    READ_6 = 0x08
    WRITE_6 = 0x0A
    INQUIRY = 0x12
    MODE_SENSE_6 = 0x1A
    START_STOP_UNIT = 0x1B
    PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1E
    READ_FORMAT_CAPACITIES = 0x23
    READ_CAPACITY_10 = 0x25
    READ_10 = 0x28
    WRITE_10 = 0x2A
    VERIFY_10 = 0x2F
    SYNCHRONIZE_CACHE_10 = 0x35
    MODE_SENSE_10 = 0x5A
    READ_16 = 0x88
    WRITE_16 = 0x8A
    VERIFY_16 = 0x8F
    SYNCHRONIZE_CACHE_16 = 0x91
    SERVICE_ACTION_IN_16 = 0x9E
    REPORT_LUNS = 0xA0
    READ_12 = 0xA8
    WRITE_12 = 0xAA
    VERIFY_12 = 0xAF


READ_CAPACITY_16_SERVICE_ACTION = 0x10


_CDB_LENGTHS: Final = {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}


def cdb_length(opcode: int) -> int | None:
    """Length of a CDB from its group code (SPC-4 4.2.5.1), or None for reserved/vendor groups."""
    return _CDB_LENGTHS.get(opcode >> 5)


_BLOCK_COMMANDS_6 = frozenset((Opcode.READ_6, Opcode.WRITE_6))
_BLOCK_COMMANDS_10 = frozenset((Opcode.READ_10, Opcode.WRITE_10, Opcode.VERIFY_10))
_BLOCK_COMMANDS_12 = frozenset((Opcode.READ_12, Opcode.WRITE_12, Opcode.VERIFY_12))
_BLOCK_COMMANDS_16 = frozenset((Opcode.READ_16, Opcode.WRITE_16, Opcode.VERIFY_16))


def cdb_extent(cdb: bytes) -> tuple[int, int] | None:
    """(LBA, blocks) of a READ, WRITE or VERIFY command, or None for other commands or a short CDB.

    A 6-byte READ or WRITE of 0 blocks means 256 blocks.
    """
    if not cdb:
        return None
    opcode = cdb[0]
    if opcode in _BLOCK_COMMANDS_6 and len(cdb) >= 6:
        return int.from_bytes(cdb[1:4], "big") & 0x1FFFFF, cdb[4] or 256
    if opcode in _BLOCK_COMMANDS_10 and len(cdb) >= 10:
        lba, blocks = _EXTENT_10.unpack_from(cdb)
        return lba, blocks
    if opcode in _BLOCK_COMMANDS_12 and len(cdb) >= 12:
        return int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[6:10], "big")
    if opcode in _BLOCK_COMMANDS_16 and len(cdb) >= 16:
        return int.from_bytes(cdb[2:10], "big"), int.from_bytes(cdb[10:14], "big")
    return None


_EXTENT_10: Final = struct.Struct(">2xI1xH")  # LBA (bytes 2-5) and TRANSFER LENGTH (bytes 7-8) of a 10-byte CDB


def _block_extent(cdb: bytes) -> tuple[int, int]:
    extent = cdb_extent(cdb)
    assert extent is not None, "LogicalUnit.command checked the opcode and the CDB's length"
    return extent


def _protect(cdb: bytes) -> int:
    """RDPROTECT/WRPROTECT of a 10, 12 or 16-byte READ or WRITE (the 6-byte ones have none)."""
    return 0 if cdb[0] in _BLOCK_COMMANDS_6 else cdb[1] >> 5


class Direction(enum.Enum):
    NONE = "none"
    IN = "in"  # device to host
    OUT = "out"  # host to device


class Command:
    """One command's data phase and completion, as the transport drives it.

    :attr:`direction` and :attr:`length` are what the device intends to transfer.
    The transport calls :meth:`read` (IN) or :meth:`write` (OUT) with consecutive
    pieces, then :meth:`finish`.  Each may raise :class:`CheckCondition`.
    :attr:`sense` is set on a command that failed before any data moved.
    """

    direction: Direction = Direction.NONE
    length: int = 0
    sense: Sense | None = None

    def read(self, offset: int, size: int) -> Buffer | Gather | FileData:
        raise CheckCondition(INTERNAL_TARGET_FAILURE)

    def write(self, offset: int, data: memoryview) -> None:
        raise CheckCondition(INTERNAL_TARGET_FAILURE)

    def finish(self) -> Awaitable[None] | None:
        """After the data phase; an awaitable means the command is still running (SYNCHRONIZE CACHE)."""
        return None


class Failed(Command):
    """A command that ended in CHECK CONDITION before its data phase."""

    def __init__(self, sense: Sense) -> None:
        self.sense = sense


class NoData(Command):
    """A command without data; ``action`` runs when it finishes."""

    def __init__(self, action: Callable[[], Awaitable[None] | None] | None = None) -> None:
        self.action = action

    def finish(self) -> Awaitable[None] | None:
        return self.action() if self.action is not None else None


class DataIn(Command):
    """Parameter data for the host, cut to the allocation length of the CDB."""

    direction = Direction.IN

    def __init__(self, data: bytes, allocation_length: int) -> None:
        self.data = data[:allocation_length]
        self.length = len(self.data)

    def read(self, offset: int, size: int) -> Buffer:
        return memoryview(self.data)[offset : offset + size]


class ReadBlocks(Command):
    """READ: bytes of the medium, read piece by piece as the host takes them."""

    direction = Direction.IN

    def __init__(self, store: BackingStore, start: int, length: int) -> None:
        self.store = store
        self.start = start
        self.length = length

    def read(self, offset: int, size: int) -> Buffer | Gather | FileData:
        """The medium's bytes; a store held in pieces (a memory disk's chunks) gives them as a
        :class:`~vusb.urb.Gather`, sent to the host without being joined, and an image file a long
        read as :class:`~vusb.urb.FileData`, sent from the file."""
        try:
            pieces = self.store.read_pieces(self.start + offset, size)
            data: Buffer | Gather | FileData = pieces[0] if len(pieces) == 1 else Gather(
                bytes(p) if isinstance(p, FileData) else p for p in pieces)
        except OSError as exc:
            log.warning("read of %d bytes at %d from %s failed: %s", size, self.start + offset,
                        self.store.describe(), exc)
            raise CheckCondition(UNRECOVERED_READ_ERROR) from exc
        if len(data) != size:
            log.error("%s returned %d bytes for a %d-byte read", self.store.describe(), len(data), size)
            raise CheckCondition(UNRECOVERED_READ_ERROR)
        return data


class WriteBlocks(Command):
    """WRITE: bytes from the host go to the medium as they arrive (no cache of our own)."""

    direction = Direction.OUT

    def __init__(self, store: BackingStore, start: int, length: int) -> None:
        self.store = store
        self.start = start
        self.length = length

    def write(self, offset: int, data: memoryview) -> None:
        try:
            self.store.write(self.start + offset, data)
        except OSError as exc:
            log.warning("write of %d bytes at %d to %s failed: %s", len(data), self.start + offset,
                        self.store.describe(), exc)
            raise CheckCondition(write_failure_sense(exc)) from exc


def write_failure_sense(exc: OSError) -> Sense:
    """The sense a real disk would give for a failed write of the backing store.

    A full file system (or a file size limit) is a thin-provisioned LUN out of space; a
    store that became read-only is write-protected; anything else is a medium error.
    """
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return SPACE_ALLOCATION_FAILED
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return WRITE_PROTECTED
    return WRITE_ERROR


class CompareBlocks(Command):
    """VERIFY with BYTCHK: compare the host's data with the medium.

    With ``pattern_block`` set (BYTCHK 11b) the host sends one block, compared with
    every block of the range.
    """

    direction = Direction.OUT

    def __init__(self, store: BackingStore, start: int, length: int, block_size: int,
                 pattern_block: bool = False) -> None:
        self.store = store
        self.start = start
        self.span = length
        self.block_size = block_size
        self.pattern_block = pattern_block
        self.length = block_size if pattern_block else length
        self._pattern = bytearray()

    def _compare(self, offset: int, expected: Buffer) -> None:
        try:
            actual = self.store.read(self.start + offset, len(expected))
        except OSError as exc:
            raise CheckCondition(UNRECOVERED_READ_ERROR) from exc
        if bytes(actual) != bytes(expected):
            raise CheckCondition(MISCOMPARE_DURING_VERIFY)

    def write(self, offset: int, data: memoryview) -> None:
        if not self.pattern_block:
            self._compare(offset, data)
            return
        self._pattern += data
        if len(self._pattern) == self.block_size:
            for pos in range(0, self.span, self.block_size):
                self._compare(pos, self._pattern)


async def _in_thread(function: Callable[[], None], failure: Sense) -> None:
    try:
        await asyncio.get_running_loop().run_in_executor(None, function)
    except OSError as exc:
        log.warning("%s failed: %s", getattr(function, "__qualname__", function), exc)
        raise CheckCondition(failure) from exc


# ------------------------------------------------------------------ the logical unit


def _ascii(text: str, width: int) -> bytes:
    """An INQUIRY text field: printable ASCII, left-aligned, padded with spaces."""
    data = text.encode("ascii", "replace")[:width]
    return data.ljust(width, b" ")


class LogicalUnit:
    """A direct-access block device (peripheral device type 0) with an optional medium.

    ``store`` is the medium (None: the unit starts empty).  ``read_only`` write-protects
    the unit whatever the medium; a read-only store is write-protected anyway.
    ``vendor`` (8), ``product`` (16) and ``revision`` (4 characters) are the INQUIRY
    identification (by default the device's manufacturer and product strings, else
    "vusb" and "Virtual Disk"); ``serial`` is the unit serial number (VPD page 80h,
    by default the USB serial number).
    ``write_cache`` is the WCE bit of the caching mode page: on (the default) the
    host sends SYNCHRONIZE CACHE when it needs data on stable storage, which is
    when the image is fsynced.
    """

    BLOCK_SIZES: ClassVar[tuple[int, ...]] = (512, 1024, 2048, 4096)

    def __init__(
        self,
        store: BackingStore | None = None,
        *,
        read_only: bool = False,
        removable: bool = True,
        block_size: int = 512,
        vendor: str | None = None,
        product: str | None = None,
        revision: str = "1.00",
        serial: str | None = None,
        write_cache: bool = True,
    ) -> None:
        if block_size not in self.BLOCK_SIZES:
            raise UsageError(f"block size {block_size} is not one of {', '.join(map(str, self.BLOCK_SIZES))}")
        self.block_size = block_size
        self.read_only = read_only
        self.removable = removable
        self.vendor = vendor
        self.product = product
        self.revision = revision
        self.serial = serial
        self.write_cache = write_cache
        self.sense: Sense | None = None
        """Sense data of the last command that ended in CHECK CONDITION (until the next command)."""
        self.sense_information: int | None = None
        """INFORMATION field of that sense data (the failing block), when there is one."""
        self.fault_hook: Callable[[bytes], tuple[int, int, int, int | None] | None] | None = None
        """Set by the device's fault rules (:class:`vusb.faults.ScsiFailure`): sense data for a CDB that must fail."""
        self.unit_attention: Sense | None = None
        """A pending unit attention condition (reported once, by the next command)."""
        self.prevent_removal = False
        """Set by PREVENT ALLOW MEDIUM REMOVAL: the host forbids ejecting the medium."""
        self.lun_count = 1
        """Logical units of the device, for REPORT LUNS (set by the transport)."""
        self.on_change: Callable[[LogicalUnit], None] | None = None
        """Called after the medium was ejected or inserted (by the host or the program)."""
        self._store: BackingStore | None = None
        self._tray: BackingStore | None = None  # medium ejected by the host, reloaded by START STOP UNIT
        if store is not None:
            self.insert(store, attention=False)
        self._commands: dict[int, Callable[[bytes], Command]] = {
            Opcode.TEST_UNIT_READY: self._test_unit_ready,
            Opcode.REQUEST_SENSE: self._request_sense,
            Opcode.READ_6: self._read_cdb,
            Opcode.WRITE_6: self._write_cdb,
            Opcode.INQUIRY: self._inquiry,
            Opcode.MODE_SENSE_6: self._mode_sense_6,
            Opcode.START_STOP_UNIT: self._start_stop_unit,
            Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL: self._prevent_allow,
            Opcode.READ_FORMAT_CAPACITIES: self._read_format_capacities,
            Opcode.READ_CAPACITY_10: self._read_capacity_10,
            Opcode.READ_10: self._read_cdb,
            Opcode.WRITE_10: self._write_cdb,
            Opcode.VERIFY_10: self._verify_cdb,
            Opcode.SYNCHRONIZE_CACHE_10: self._synchronize_cache,
            Opcode.MODE_SENSE_10: self._mode_sense_10,
            Opcode.READ_16: self._read_cdb,
            Opcode.WRITE_16: self._write_cdb,
            Opcode.VERIFY_16: self._verify_cdb,
            Opcode.SYNCHRONIZE_CACHE_16: self._synchronize_cache,
            Opcode.SERVICE_ACTION_IN_16: self._service_action_in_16,
            Opcode.REPORT_LUNS: self._report_luns,
            Opcode.READ_12: self._read_cdb,
            Opcode.WRITE_12: self._write_cdb,
            Opcode.VERIFY_12: self._verify_cdb,
        }

    # ------------------------------------------------------------ medium
    @property
    def medium(self) -> BackingStore | None:
        """The inserted medium, or None."""
        return self._store

    @property
    def present(self) -> bool:
        return self._store is not None

    @property
    def block_count(self) -> int:
        """Blocks of the medium (0 without one)."""
        return self._store.size // self.block_size if self._store is not None else 0

    @property
    def write_protected(self) -> bool:
        return self.read_only or (self._store is not None and self._store.read_only)

    def insert(self, store: BackingStore, *, attention: bool = True) -> None:
        """Insert a medium; the host then sees UNIT ATTENTION, NOT READY TO READY CHANGE."""
        if self._store is not None:
            raise UsageError(f"the logical unit already holds {self._store.describe()}; eject it first")
        if store.size < self.block_size:
            raise UsageError(f"{store.describe()} has {store.size} bytes, less than one {self.block_size}-byte block")
        self._store = store
        self._tray = None
        if attention:
            self.unit_attention = NOT_READY_TO_READY_CHANGE
        self._changed()

    def eject(self) -> BackingStore | None:
        """Take the medium out (flushed, not closed) and return it; the host sees MEDIUM NOT PRESENT."""
        store = self._store
        if store is None:
            return None
        self._store = None
        self._tray = None
        try:
            store.flush()
        except OSError as exc:
            log.warning("flush of %s on eject failed: %s", store.describe(), exc)
        self._changed()
        return store

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def flush(self) -> None:
        """fsync the medium (blocking)."""
        if self._store is not None:
            self._store.flush()

    async def flush_async(self) -> None:
        """fsync the medium in a worker thread."""
        store = self._store
        if store is not None:
            await asyncio.get_running_loop().run_in_executor(None, store.flush)

    def close(self) -> None:
        """Flush and close the medium (and one left in the tray by a host eject)."""
        for store in (self._store, self._tray):
            if store is not None:
                store.close()

    def reset(self) -> None:
        """A new host session (attach, detach, bus reset): forget sense, attention and removal lock."""
        self.sense = None
        self.sense_information = None
        self.unit_attention = None
        self.prevent_removal = False

    # ------------------------------------------------------------ command entry
    def command(self, cdb: bytes) -> Command:
        """The command for ``cdb``.  Never raises: a failure is a :class:`Failed` command, its sense kept."""
        opcode = cdb[0] if cdb else -1
        if opcode != Opcode.REQUEST_SENSE:
            self.sense = None
            self.sense_information = None
        if self.fault_hook is not None:
            injected = self.fault_hook(bytes(cdb))
            if injected is not None:
                key, asc, ascq, information = injected
                return self.fail(Sense(SenseKey(key), asc, ascq, "injected fault"), cdb, information)
        try:
            handler = self._commands.get(opcode)
            if handler is None:
                raise CheckCondition(INVALID_COMMAND_OPERATION_CODE)
            needed = cdb_length(opcode)
            if needed is None or len(cdb) < needed:
                raise CheckCondition(INVALID_FIELD_IN_CDB)
            if self.unit_attention is not None and opcode not in (
                    Opcode.INQUIRY, Opcode.REQUEST_SENSE, Opcode.REPORT_LUNS):
                attention, self.unit_attention = self.unit_attention, None
                raise CheckCondition(attention)
            return handler(bytes(cdb[:needed]))
        except CheckCondition as exc:
            return self.fail(exc.sense, cdb)

    def fail(self, sense: Sense, cdb: bytes | None = None, information: int | None = None) -> Failed:
        """Record ``sense`` (with the INFORMATION field, if given) as the result of the current command."""
        self.sense = sense
        self.sense_information = information if information is not None and information <= 0xFFFFFFFF else None
        if cdb is not None and log.isEnabledFor(logging.DEBUG):
            log.debug("CDB %s: CHECK CONDITION %s", bytes(cdb).hex(" "), sense)
        return Failed(sense)

    # ------------------------------------------------------------ helpers
    def _medium(self) -> BackingStore:
        if self._store is None:
            raise CheckCondition(MEDIUM_NOT_PRESENT)
        return self._store

    def _extent(self, lba: int, blocks: int) -> tuple[BackingStore, int, int]:
        """The store and byte range of ``blocks`` blocks at ``lba``, checked against the capacity."""
        store = self._medium()
        capacity = store.size // self.block_size
        if lba >= capacity or lba + blocks > capacity:
            raise CheckCondition(LBA_OUT_OF_RANGE)
        return store, lba * self.block_size, blocks * self.block_size

    def _read(self, lba: int, blocks: int, protect: int = 0) -> Command:
        if protect:
            raise CheckCondition(INVALID_FIELD_IN_CDB)  # no protection information
        store, start, length = self._extent(lba, blocks)
        return ReadBlocks(store, start, length) if length else NoData()

    def _write(self, lba: int, blocks: int, protect: int = 0) -> Command:
        if protect:
            raise CheckCondition(INVALID_FIELD_IN_CDB)
        self._medium()
        if self.write_protected:
            raise CheckCondition(WRITE_PROTECTED)
        store, start, length = self._extent(lba, blocks)
        return WriteBlocks(store, start, length) if length else NoData()

    def _verify(self, cdb: bytes, lba: int, blocks: int) -> Command:
        if cdb[1] >> 5:
            raise CheckCondition(INVALID_FIELD_IN_CDB)
        bytchk = (cdb[1] >> 1) & 3
        store, start, length = self._extent(lba, blocks)
        if bytchk == 0 or length == 0:
            return NoData()  # the medium is always readable: nothing to check
        if bytchk == 2:
            raise CheckCondition(INVALID_FIELD_IN_CDB)
        return CompareBlocks(store, start, length, self.block_size, pattern_block=bytchk == 3)

    # ------------------------------------------------------------ SPC commands
    def _test_unit_ready(self, cdb: bytes) -> Command:
        self._medium()
        return NoData()

    def _request_sense(self, cdb: bytes) -> Command:
        if cdb[1] & 0x01:
            raise CheckCondition(INVALID_FIELD_IN_CDB)  # descriptor format is not supported
        sense, information = self.sense, self.sense_information
        if sense is None and self.unit_attention is not None:
            sense, self.unit_attention = self.unit_attention, None
        if sense is None:
            sense = NO_SENSE if self._store is not None else MEDIUM_NOT_PRESENT
        self.sense = None
        self.sense_information = None
        return DataIn(sense.fixed(information), cdb[4])

    def inquiry_data(self) -> bytes:
        """Standard INQUIRY data, 36 bytes (SPC-4 6.4.2)."""
        return bytes((
            0x00,  # peripheral qualifier 0, device type 0: direct access block device
            0x80 if self.removable else 0x00,  # RMB
            0x06,  # VERSION: SPC-4
            0x02,  # response data format 2
            31,  # additional length
            0x00, 0x00, 0x00,
        )) + _ascii(self.vendor or "vusb", 8) + _ascii(self.product or "Virtual Disk", 16) + _ascii(self.revision, 4)

    def _serial(self) -> bytes:
        return (self.serial or "").encode("ascii", "replace")

    def vpd_page(self, page: int) -> bytes:
        """A vital product data page (SPC-4 7.8); raises CheckCondition for pages not supported."""
        if page == 0x00:  # supported VPD pages
            body = bytes((0x00, 0x80, 0x83))
        elif page == 0x80:  # unit serial number
            body = self._serial()
        elif page == 0x83:  # device identification: one T10 vendor ID based designator
            designator = _ascii(self.vendor or "vusb", 8) + _ascii(self.product or "Virtual Disk", 16) + self._serial()
            body = bytes((0x02, 0x01, 0x00, len(designator))) + designator  # ASCII, LU association, type 1
        else:
            raise CheckCondition(INVALID_FIELD_IN_CDB)
        return bytes((0x00, page)) + len(body).to_bytes(2, "big") + body

    def _inquiry(self, cdb: bytes) -> Command:
        evpd, cmddt = cdb[1] & 0x01, cdb[1] & 0x02
        page = cdb[2]
        allocation = int.from_bytes(cdb[3:5], "big")
        if cmddt or (not evpd and page != 0):
            raise CheckCondition(INVALID_FIELD_IN_CDB)
        data = self.vpd_page(page) if evpd else self.inquiry_data()
        return DataIn(data, allocation)

    def mode_pages(self, page: int, subpage: int, control: int) -> bytes:
        """Mode pages (SPC-4 7.5, SBC-3 6.4) for MODE SENSE; ``control`` is the PC field."""
        if control == 3:
            raise CheckCondition(SAVING_PARAMETERS_NOT_SUPPORTED)
        changeable = control == 1  # nothing can be changed: MODE SELECT is not supported
        pages = {
            # read-write error recovery: no retries to report
            0x01: bytes((0x01, 0x0A)) + bytes(10),
            # caching: WCE (the page cache of the host running vusb, flushed by SYNCHRONIZE CACHE)
            0x08: bytes((0x08, 0x12, 0x04 if self.write_cache and not changeable else 0x00)) + bytes(17),
            # control
            0x0A: bytes((0x0A, 0x0A)) + bytes(10),
            # informational exceptions control: DEXCPT, nothing is reported
            0x1C: bytes((0x1C, 0x0A, 0x00 if changeable else 0x08)) + bytes(9),
        }
        if page == 0x3F and subpage in (0x00, 0xFF):
            return b"".join(pages[p] for p in sorted(pages))
        if subpage != 0 or page not in pages:
            raise CheckCondition(INVALID_FIELD_IN_CDB)
        return pages[page]

    def _device_specific(self) -> int:
        return 0x80 if self.write_protected else 0x00  # WP; DPOFUA 0: FUA is not supported

    def _mode_sense_6(self, cdb: bytes) -> Command:
        pages = self.mode_pages(cdb[2] & 0x3F, cdb[3], cdb[2] >> 6)
        header = bytes((3 + len(pages), 0x00, self._device_specific(), 0))  # no block descriptors
        return DataIn(header + pages, cdb[4])

    def _mode_sense_10(self, cdb: bytes) -> Command:
        pages = self.mode_pages(cdb[2] & 0x3F, cdb[3], cdb[2] >> 6)
        header = (6 + len(pages)).to_bytes(2, "big") + bytes((0x00, self._device_specific(), 0, 0, 0, 0))
        return DataIn(header + pages, int.from_bytes(cdb[7:9], "big"))

    def _report_luns(self, cdb: bytes) -> Command:
        allocation = int.from_bytes(cdb[6:10], "big")
        if cdb[2] not in (0x00, 0x02) or allocation < 16:
            raise CheckCondition(INVALID_FIELD_IN_CDB)
        entries = b"".join(bytes((0, n)) + bytes(6) for n in range(self.lun_count))
        return DataIn(len(entries).to_bytes(4, "big") + bytes(4) + entries, allocation)

    def _prevent_allow(self, cdb: bytes) -> Command:
        prevent = cdb[4] & 0x03
        if prevent > 1:
            raise CheckCondition(INVALID_FIELD_IN_CDB)
        self.prevent_removal = bool(prevent)
        return NoData()

    # ------------------------------------------------------------ SBC commands
    def _start_stop_unit(self, cdb: bytes) -> Command:
        power_condition, loej, start = cdb[4] >> 4, cdb[4] & 0x02, cdb[4] & 0x01
        if power_condition or not loej:
            return NoData()  # spinning up or down means nothing here
        if start:  # load: take back a medium the host ejected
            if self._store is None and self._tray is not None:
                store, self._tray = self._tray, None
                self._store = store
                self._changed()
            return NoData()
        if self.prevent_removal:
            raise CheckCondition(MEDIUM_REMOVAL_PREVENTED)
        return NoData(self._host_eject) if self._store is not None else NoData()

    async def _host_eject(self) -> None:
        store = self._store
        if store is None:
            return
        await _in_thread(store.flush, WRITE_ERROR)
        if self._store is store:
            self._store = None
            self._tray = store
            log.info("the host ejected %s", store.describe())
            self._changed()

    def _read_capacity_10(self, cdb: bytes) -> Command:
        self._medium()
        last = self.block_count - 1
        data = min(last, 0xFFFFFFFF).to_bytes(4, "big") + self.block_size.to_bytes(4, "big")
        return DataIn(data, len(data))

    def _service_action_in_16(self, cdb: bytes) -> Command:
        if cdb[1] & 0x1F != READ_CAPACITY_16_SERVICE_ACTION:
            raise CheckCondition(INVALID_FIELD_IN_CDB)
        self._medium()
        data = (self.block_count - 1).to_bytes(8, "big") + self.block_size.to_bytes(4, "big") + bytes(20)
        return DataIn(data, int.from_bytes(cdb[10:14], "big"))

    def _read_format_capacities(self, cdb: bytes) -> Command:
        if self._store is not None:
            blocks, kind = min(self.block_count, 0xFFFFFFFF), 0x02  # formatted media
        else:
            blocks, kind = 0xFFFFFFFF, 0x03  # no media present: maximum capacity
        descriptor = blocks.to_bytes(4, "big") + bytes((kind,)) + self.block_size.to_bytes(3, "big")
        return DataIn(bytes((0, 0, 0, len(descriptor))) + descriptor, int.from_bytes(cdb[7:9], "big"))

    def _read_cdb(self, cdb: bytes) -> Command:
        lba, blocks = _block_extent(cdb)
        return self._read(lba, blocks, _protect(cdb))

    def _write_cdb(self, cdb: bytes) -> Command:
        lba, blocks = _block_extent(cdb)
        return self._write(lba, blocks, _protect(cdb))

    def _verify_cdb(self, cdb: bytes) -> Command:
        lba, blocks = _block_extent(cdb)
        return self._verify(cdb, lba, blocks)

    def _synchronize_cache(self, cdb: bytes) -> Command:
        store = self._medium()
        return NoData(lambda: _in_thread(store.flush, WRITE_ERROR))

    def __repr__(self) -> str:
        medium = self._store.describe() if self._store is not None else "no medium"
        return f"<LogicalUnit {self.vendor!r} {self.product!r} {medium}{' write-protected' if self.write_protected else ''}>"
