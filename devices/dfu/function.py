"""The DFU function (runtime and DFU mode), its firmware file, and the ready-made :class:`DfuDevice`."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vusb.devices.dfu.spec import (
    DFU_CLASS,
    DFU_SUBCLASS,
    DFU_VERSION,
    DFUSE_VERSION,
    DfuAttributes,
    DfuProtocol,
    DfuRequest,
    DfuState,
    DfuStatus,
    functional_descriptor,
    status_bytes,
)

from vusb.constants import DescriptorType, Recipient, Request, RequestType, Speed
from vusb.descriptors import InterfaceDescriptor
from vusb.device import NOT_HANDLED, BuildContext, ControlResult, Device, Function
from vusb.endpoint import HandlerResult
from vusb.errors import DeviceDefinitionError, Stall, UsageError
from vusb.urb import SetupPacket, Urb

log = logging.getLogger("vusb.dfu")

DEFAULT_CAPACITY = 1 << 20
DEFAULT_TRANSFER_SIZE = 1024

Verifier = Callable[[bytes], "DfuStatus | bool | None"]
"""Checks a downloaded image at manifestation: None or True accept it; False is errFIRMWARE; a
:class:`DfuStatus` is reported as it is."""


class FirmwareImage:
    """The device's firmware memory, kept in a file (or in memory when ``path`` is None).

    A download erases it (the file is truncated at the first block) and writes each block
    where the previous one ended, as a bootloader programs flash; an upload reads it back.
    The file is checked when the device is made: an existing one must be a regular file
    that can be read and written, a missing one is created empty (its folder must exist).

    ``check_only`` (``vusb check`` and the load-time dry run): the same checks, but nothing
    is created or changed; such an image refuses to be written.
    """

    def __init__(self, path: str | os.PathLike[str] | None, capacity: int = DEFAULT_CAPACITY, *,
                 check_only: bool = False) -> None:
        if capacity <= 0:
            raise DeviceDefinitionError(f"firmware capacity {capacity}: a positive number of bytes")
        self.capacity = capacity
        self.path = None if path is None else Path(path).expanduser().absolute()
        self.check_only = check_only
        self._memory = bytearray()
        if self.path is not None:
            where = f"DFU image {str(self.path)!r}"
            if self.path.exists() and not self.path.is_file():
                raise DeviceDefinitionError(f"{where}: not a regular file")
            if check_only:
                self._check(where)
                return
            try:
                with open(self.path, "ab"):
                    pass
                with open(self.path, "rb"):
                    pass
            except OSError as exc:
                raise DeviceDefinitionError(f"{where}: cannot be opened for reading and writing: "
                                            f"{exc.strerror or exc}") from None
            if self.path.stat().st_size > capacity:
                raise DeviceDefinitionError(f"{where}: {self.path.stat().st_size} bytes, more than the "
                                            f"capacity of {capacity}")

    def _check(self, where: str) -> None:
        """What opening the file would refuse, refused the same way, without creating it."""
        assert self.path is not None
        if self.path.exists():
            if not os.access(self.path, os.R_OK | os.W_OK):
                raise DeviceDefinitionError(f"{where}: cannot be opened for reading and writing: Permission denied")
            if self.path.stat().st_size > self.capacity:
                raise DeviceDefinitionError(f"{where}: {self.path.stat().st_size} bytes, more than the "
                                            f"capacity of {self.capacity}")
        elif not self.path.parent.is_dir():
            raise DeviceDefinitionError(f"{where}: cannot be opened for reading and writing: No such file or directory")
        elif not os.access(self.path.parent, os.W_OK | os.X_OK):
            raise DeviceDefinitionError(f"{where}: cannot be opened for reading and writing: Permission denied")

    def _writable(self) -> None:
        if self.check_only:
            raise UsageError(f"DFU image {self.describe()!r} was made for a check (check_only) and is not written")

    def describe(self) -> str:
        return str(self.path) if self.path is not None else "memory"

    @property
    def size(self) -> int:
        if self.path is not None and not (self.check_only and not self.path.exists()):
            return self.path.stat().st_size
        return len(self._memory)

    def erase(self) -> None:
        self._writable()
        if self.path is None:
            self._memory.clear()
        else:
            with open(self.path, "r+b") as f:
                f.truncate(0)

    def write(self, offset: int, data: bytes) -> None:
        self._writable()
        if self.path is None:
            self._memory[offset:offset + len(data)] = data
            return
        with open(self.path, "r+b") as f:
            f.seek(offset)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def read(self, offset: int, length: int) -> bytes:
        if self.path is None:
            return bytes(self._memory[offset:offset + length])
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def fill_to_capacity(self) -> None:
        """Make the memory ``capacity`` bytes long, the missing part erased (0xFF), as flash is (DfuSe)."""
        missing = self.capacity - self.size
        if missing > 0 and not self.check_only:
            self.write(self.size, b"\xff" * missing)

    def read_all(self) -> bytes:
        return self.read(0, self.capacity)


@dataclass(frozen=True)
class DfuseLayout:
    """ST's DfuSe extension: the memory is at ``address`` in pages of ``page_size`` bytes.

    The interface's name (iInterface) is the memory layout dfu-util parses,
    ``@Internal Flash /0x08000000/256*001Kg`` (256 pages of 1 KiB, readable, erasable, writable).
    """

    name: str = "Internal Flash"
    address: int = 0x08000000
    page_size: int = 1024

    def describe(self, capacity: int) -> str:
        pages = capacity // self.page_size
        size, unit = (self.page_size // 1024, "K") if self.page_size % 1024 == 0 else (self.page_size, " ")
        return f"@{self.name} /0x{self.address:08X}/{pages:03d}*{size:03d}{unit}g"


DFUSE_SET_ADDRESS = 0x21
DFUSE_ERASE = 0x41
DFUSE_READ_UNPROTECT = 0x92
DFUSE_COMMANDS = bytes((0x00, DFUSE_SET_ADDRESS, DFUSE_ERASE, DFUSE_READ_UNPROTECT))


class DfuFunction(Function):
    """A DFU 1.1 interface: runtime (protocol 1, only DETACH) or DFU mode (protocol 2).

    ``image``: the firmware file (or a :class:`FirmwareImage`, or None for memory),
    ``capacity``: its largest size. ``mode``: ``"dfu"`` or ``"runtime"`` to start in.
    ``manifestation_tolerant``: after manifestation go back to dfuIDLE (True) or wait for a
    bus reset in dfuMANIFEST-WAIT-RESET (False). ``poll_timeout``: ms a block takes to
    program (0: at once, no dfuDNBUSY); ``manifest_time``: ms manifestation takes.
    ``verify``: checks the image at manifestation (see :data:`Verifier`).
    """

    name: str | None = "DFU"

    def __init__(
        self,
        image: str | os.PathLike[str] | FirmwareImage | None = None,
        *,
        capacity: int = DEFAULT_CAPACITY,
        mode: str = "dfu",
        transfer_size: int = DEFAULT_TRANSFER_SIZE,
        can_download: bool = True,
        can_upload: bool = True,
        manifestation_tolerant: bool = True,
        detach_timeout: int = 1000,
        poll_timeout: int = 0,
        manifest_time: int = 10,
        verify: Verifier | None = None,
        interface_name: str | None = None,
        dfuse: DfuseLayout | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("dfu", "runtime"):
            raise DeviceDefinitionError(f"DFU mode {mode!r}: 'dfu' or 'runtime'")
        if not 1 <= transfer_size <= 0xFFFF:
            raise DeviceDefinitionError(f"transfer_size {transfer_size}: 1..65535 bytes")
        for what, value in (("detach_timeout", detach_timeout), ("poll_timeout", poll_timeout),
                            ("manifest_time", manifest_time)):
            if not 0 <= value <= (0xFFFF if what == "detach_timeout" else 0xFFFFFF):
                raise DeviceDefinitionError(f"{what} {value} ms is out of range")
        self.image = image if isinstance(image, FirmwareImage) else FirmwareImage(image, capacity)
        self.dfuse = dfuse
        if dfuse is not None:
            if dfuse.page_size <= 0 or self.image.capacity % dfuse.page_size:
                raise DeviceDefinitionError(f"DfuSe: capacity {self.image.capacity} is not a whole number of "
                                            f"{dfuse.page_size}-byte pages")
            if not 0 <= dfuse.address <= 0xFFFFFFFF - self.image.capacity:
                raise DeviceDefinitionError(f"DfuSe: address 0x{dfuse.address:x} does not fit 32 bits")
            self.image.fill_to_capacity()
            interface_name = dfuse.describe(self.image.capacity)
        self._pointer = dfuse.address if dfuse is not None else 0
        self._command = False  # a DfuSe command is executing (GETSTATUS reports dfuDNBUSY once)
        self.mode = mode
        self.transfer_size = transfer_size
        self.attributes = ((DfuAttributes.CAN_DNLOAD if can_download else DfuAttributes.NONE)
                           | (DfuAttributes.CAN_UPLOAD if can_upload else DfuAttributes.NONE)
                           | (DfuAttributes.MANIFESTATION_TOLERANT if manifestation_tolerant else DfuAttributes.NONE))
        self.detach_timeout = detach_timeout
        self.poll_timeout = poll_timeout
        self.manifest_time = manifest_time
        self.verify = verify
        self.interface_name = interface_name
        self.interface = 0
        self.state = DfuState.DFU_IDLE if mode == "dfu" else DfuState.APP_IDLE
        self.status = DfuStatus.OK
        self.downloads = 0
        """Downloads that ended in a manifested, accepted image."""
        self._deadline = 0.0  # when dfuDNBUSY / dfuMANIFEST / appDETACH ends (time.monotonic())
        self._block = 0
        self._offset = 0
        self._hash = hashlib.sha256()
        self._pending = DfuStatus.OK  # what the next GETSTATUS in dfuDNLOAD-SYNC reports
        self._busy = False
        self._manifested = False
        self._fail_next: DfuStatus | None = None
        self.on_state: Callable[[DfuState, DfuStatus], None] | None = None
        """Called after every state change with the new state and status."""

    # ------------------------------------------------------------ declaration
    @property
    def protocol(self) -> DfuProtocol:
        return DfuProtocol.DFU_MODE if self.mode == "dfu" else DfuProtocol.RUNTIME

    @property
    def version(self) -> int:
        return DFUSE_VERSION if self.dfuse is not None else DFU_VERSION

    def functional(self) -> bytes:
        return functional_descriptor(int(self.attributes), self.detach_timeout, self.transfer_size,
                                     self.version).to_bytes()

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        self.interface = ctx.interface_number()
        return [InterfaceDescriptor(self.interface, 0, DFU_CLASS, DFU_SUBCLASS, int(self.protocol),
                                    ctx.string(self.interface_name), (),
                                    (functional_descriptor(int(self.attributes), self.detach_timeout,
                                                           self.transfer_size, self.version),))]

    # ------------------------------------------------------------ test hooks
    def fail_next(self, status: DfuStatus) -> None:
        """Make the next downloaded block (or the manifestation, if it comes first) fail with ``status``."""
        self._fail_next = DfuStatus(status)

    # ------------------------------------------------------------ state
    def _set(self, state: DfuState, status: DfuStatus | None = None) -> None:
        changed = state != self.state or (status is not None and status != self.status)
        self.state = state
        if status is not None:
            self.status = status
        if changed:
            log.debug("%s: %s, %s", self._where(), state.name, self.status.name)
            if self.on_state is not None:
                self.on_state(self.state, self.status)

    def _error(self, status: DfuStatus) -> None:
        if status != DfuStatus.ERR_STALLEDPKT:
            log.warning("%s: %s in %s", self._where(), status.name, self.state.name)
        self._set(DfuState.DFU_ERROR, status)

    def _refuse(self, setup: SetupPacket) -> Stall:
        """An unexpected request: stall, and (in DFU mode) dfuERROR with errSTALLEDPKT."""
        if self.mode == "dfu" and self.state not in (DfuState.DFU_MANIFEST, DfuState.DFU_MANIFEST_WAIT_RESET):
            self._error(DfuStatus.ERR_STALLEDPKT)
        return Stall(f"DFU request {setup.request} not allowed in {self.state.name}")

    def _advance(self) -> None:
        """Timed states end when their time is up (checked when the next request comes)."""
        if self._deadline and time.monotonic() >= self._deadline:
            self._deadline = 0.0
            if self.state == DfuState.DFU_DNBUSY:
                self._set(DfuState.DFU_DNLOAD_SYNC)
            elif self.state == DfuState.DFU_MANIFEST:
                self._set(DfuState.DFU_MANIFEST_SYNC if self.attributes & DfuAttributes.MANIFESTATION_TOLERANT
                          else DfuState.DFU_MANIFEST_WAIT_RESET)
            elif self.state == DfuState.APP_DETACH:
                log.info("%s: no bus reset within %d ms of DFU_DETACH; back to appIDLE", self._where(),
                         self.detach_timeout)
                self._set(DfuState.APP_IDLE)

    # ------------------------------------------------------------ mode switches (see DfuDevice)
    def bus_reset(self) -> bool:
        """The host reset the bus. In appDETACH that enters DFU mode; in DFU mode after a manifested
        download (or in dfuMANIFEST-WAIT-RESET) it returns to runtime. True when the mode changed."""
        self._advance()
        if self.mode == "runtime" and self.state == DfuState.APP_DETACH:
            self.mode = "dfu"
            self._deadline = 0.0
            self._set(DfuState.DFU_IDLE, DfuStatus.OK)
            log.info("%s: bus reset after DFU_DETACH: now in DFU mode", self._where())
            return True
        return False

    def leave_dfu_mode(self) -> None:
        self.mode = "runtime"
        self._manifested = False
        self._set(DfuState.APP_IDLE, DfuStatus.OK)
        log.info("%s: back in runtime mode", self._where())

    @property
    def firmware_done(self) -> bool:
        """A download was manifested since DFU mode was entered (a reset now runs the new firmware)."""
        return self._manifested or self.state == DfuState.DFU_MANIFEST_WAIT_RESET

    def on_reset(self) -> None:
        """The host let the device go: a download in progress is abandoned."""
        self._deadline = 0.0
        self._set(DfuState.DFU_IDLE if self.mode == "dfu" else DfuState.APP_IDLE, DfuStatus.OK)

    # ------------------------------------------------------------ class requests
    def control(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if setup.type != RequestType.CLASS or setup.recipient != Recipient.INTERFACE \
                or setup.index & 0xFF != self.interface:
            return NOT_HANDLED
        if setup.request > DfuRequest.ABORT:
            return NOT_HANDLED
        self._advance()
        req = DfuRequest(setup.request)
        if self.mode == "runtime":
            return self._runtime(setup, req)
        if self.state == DfuState.DFU_DNBUSY:
            raise self._refuse(setup)  # the host must wait bwPollTimeout first
        if self.state == DfuState.DFU_MANIFEST:
            raise self._refuse(setup)
        if req == DfuRequest.GETSTATUS and setup.is_in:
            return self._getstatus()
        if req == DfuRequest.GETSTATE and setup.is_in:
            return bytes((int(self.state),))
        if self.state == DfuState.DFU_MANIFEST_WAIT_RESET:
            raise self._refuse(setup)
        if req == DfuRequest.DNLOAD and not setup.is_in:
            return self._dnload(setup, data)
        if req == DfuRequest.UPLOAD and setup.is_in:
            return self._upload(setup)
        if req == DfuRequest.CLRSTATUS and not setup.is_in and self.state == DfuState.DFU_ERROR:
            self._set(DfuState.DFU_IDLE, DfuStatus.OK)
            return None
        if req == DfuRequest.ABORT and not setup.is_in and self.state in (
                DfuState.DFU_IDLE, DfuState.DFU_DNLOAD_SYNC, DfuState.DFU_DNLOAD_IDLE, DfuState.DFU_MANIFEST_SYNC,
                DfuState.DFU_UPLOAD_IDLE):
            self._set(DfuState.DFU_IDLE, DfuStatus.OK)
            return None
        raise self._refuse(setup)

    def _runtime(self, setup: SetupPacket, req: DfuRequest) -> ControlResult:
        if req == DfuRequest.DETACH and not setup.is_in and self.state == DfuState.APP_IDLE:
            timeout = min(setup.value, self.detach_timeout) if setup.value else self.detach_timeout
            self._deadline = time.monotonic() + timeout / 1000
            self._set(DfuState.APP_DETACH)
            log.info("%s: DFU_DETACH; waiting %d ms for the bus reset that enters DFU mode", self._where(), timeout)
            return None
        if req == DfuRequest.GETSTATUS and setup.is_in:
            return status_bytes(DfuStatus.OK, 0, int(self.state))
        if req == DfuRequest.GETSTATE and setup.is_in:
            return bytes((int(self.state),))
        raise self._refuse(setup)

    def _getstatus(self) -> bytes:
        state = self.state
        if state == DfuState.DFU_DNLOAD_SYNC:
            if self._pending != DfuStatus.OK:
                self._error(self._pending)
                self._pending = DfuStatus.OK
            elif self._command or (self._busy and self.poll_timeout):
                self._busy = self._command = False
                self._deadline = time.monotonic() + self.poll_timeout / 1000
                self._set(DfuState.DFU_DNBUSY)
                return status_bytes(DfuStatus.OK, self.poll_timeout, int(DfuState.DFU_DNBUSY))
            else:
                self._busy = False
                self._set(DfuState.DFU_DNLOAD_IDLE)
        elif state == DfuState.DFU_MANIFEST_SYNC:
            if not self._manifested:
                result = self._manifest()
                if result != DfuStatus.OK:
                    self._error(result)
                    return status_bytes(self.status, 0, int(self.state))
                self._manifested = True
                self._deadline = time.monotonic() + self.manifest_time / 1000
                self._set(DfuState.DFU_MANIFEST)
                return status_bytes(DfuStatus.OK, self.manifest_time, int(DfuState.DFU_MANIFEST))
            self._set(DfuState.DFU_IDLE)
        return status_bytes(self.status, 0, int(self.state))

    def _dnload(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if not self.attributes & DfuAttributes.CAN_DNLOAD or \
                self.state not in (DfuState.DFU_IDLE, DfuState.DFU_DNLOAD_IDLE):
            raise self._refuse(setup)
        if setup.length == 0:
            if self.state == DfuState.DFU_IDLE:
                raise self._refuse(setup)  # nothing was downloaded
            self._manifested = False
            self._set(DfuState.DFU_MANIFEST_SYNC)
            return None
        if self.dfuse is not None:
            return self._dfuse_dnload(setup, data)
        if len(data) > self.transfer_size:
            log.warning("%s: DNLOAD block of %d bytes, more than wTransferSize %d", self._where(), len(data),
                        self.transfer_size)
        if self.state == DfuState.DFU_IDLE:  # a new download: erase, then program from the start
            self._block, self._offset, self._hash = setup.value, 0, hashlib.sha256()
            self._manifested = False
            try:
                self.image.erase()
            except OSError as exc:
                self._block_failed(DfuStatus.ERR_ERASE, f"cannot erase {self.image.describe()}: {exc}")
                return None
        elif setup.value != (self._block + 1) & 0xFFFF:
            self._block_failed(DfuStatus.ERR_ADDRESS,
                               f"block {setup.value} out of sequence (expected {(self._block + 1) & 0xFFFF}): "
                               f"it would not be written where block {self._block} ended")
            return None
        else:
            self._block = setup.value
        if self._offset + len(data) > self.image.capacity:
            self._block_failed(DfuStatus.ERR_ADDRESS, f"block {setup.value} ends at byte {self._offset + len(data)}, "
                                                      f"beyond the {self.image.capacity}-byte memory")
            return None
        if self._fail_next is not None:
            failure, self._fail_next = self._fail_next, None
            self._block_failed(failure, "failure injected by fail_next()")
            return None
        try:
            self.image.write(self._offset, bytes(data))
        except OSError as exc:
            self._block_failed(DfuStatus.ERR_WRITE, f"cannot write {self.image.describe()}: {exc.strerror or exc}")
            return None
        self._offset += len(data)
        self._hash.update(data)
        self._busy = True
        self._set(DfuState.DFU_DNLOAD_SYNC)
        return None

    def _dfuse_dnload(self, setup: SetupPacket, data: bytes) -> ControlResult:
        """DfuSe: block 0 carries a command, blocks from 2 write at the address pointer."""
        assert self.dfuse is not None
        base, end = self.dfuse.address, self.dfuse.address + self.image.capacity
        if setup.value == 0:
            command = data[:1]
            address = int.from_bytes(data[1:5], "little") if len(data) == 5 else None
            if command == bytes((DFUSE_SET_ADDRESS,)) and address is not None:
                if not base <= address < end:
                    self._block_failed(DfuStatus.ERR_ADDRESS, f"set address 0x{address:08x} is outside "
                                                              f"0x{base:08x}..0x{end - 1:08x}")
                    return None
                self._pointer = address
            elif command == bytes((DFUSE_ERASE,)) and address is not None:
                if not base <= address < end:
                    self._block_failed(DfuStatus.ERR_ADDRESS, f"erase of 0x{address:08x}, outside the memory")
                    return None
                page = (address - base) // self.dfuse.page_size * self.dfuse.page_size
                if not self._erase(page, self.dfuse.page_size):
                    return None
            elif command == bytes((DFUSE_ERASE,)) and len(data) == 1:
                if not self._erase(0, self.image.capacity):
                    return None
            elif command == bytes((DFUSE_READ_UNPROTECT,)) and len(data) == 1:
                pass
            else:
                raise self._refuse(setup)
            self._command = True
            self._manifested = False
            self._set(DfuState.DFU_DNLOAD_SYNC)
            return None
        if setup.value == 1:
            raise self._refuse(setup)
        address = self._pointer + (setup.value - 2) * self.transfer_size
        if not base <= address or address + len(data) > end:
            self._block_failed(DfuStatus.ERR_ADDRESS, f"block {setup.value} at 0x{address:08x} "
                                                      f"({len(data)} bytes) leaves 0x{base:08x}..0x{end - 1:08x}")
            return None
        if self._fail_next is not None:
            failure, self._fail_next = self._fail_next, None
            self._block_failed(failure, "failure injected by fail_next()")
            return None
        try:
            self.image.write(address - base, bytes(data))
        except OSError as exc:
            self._block_failed(DfuStatus.ERR_WRITE, f"cannot write {self.image.describe()}: {exc.strerror or exc}")
            return None
        self._offset = address - base + len(data)
        self._busy = True
        self._manifested = False
        self._set(DfuState.DFU_DNLOAD_SYNC)
        return None

    def _erase(self, offset: int, length: int) -> bool:
        try:
            self.image.write(offset, b"\xff" * length)
        except OSError as exc:
            self._block_failed(DfuStatus.ERR_ERASE, f"cannot erase {self.image.describe()}: {exc.strerror or exc}")
            return False
        return True

    def _block_failed(self, status: DfuStatus, why: str) -> None:
        log.warning("%s: DNLOAD: %s; GETSTATUS will report %s", self._where(), why, status.name)
        self._pending = status
        self._set(DfuState.DFU_DNLOAD_SYNC)

    def _manifest(self) -> DfuStatus:
        if self._fail_next is not None:
            failure, self._fail_next = self._fail_next, None
            return failure
        try:
            written = self.image.read(0, self._offset if self.dfuse is None else self.image.capacity)
        except OSError as exc:
            log.warning("%s: cannot read back %s: %s", self._where(), self.image.describe(), exc)
            return DfuStatus.ERR_VERIFY
        if self.dfuse is None and (len(written) != self._offset
                                   or hashlib.sha256(written).digest() != self._hash.digest()):
            log.warning("%s: %s does not hold what was downloaded", self._where(), self.image.describe())
            return DfuStatus.ERR_VERIFY
        if self.verify is not None:
            try:
                verdict = self.verify(written)
            except Exception:
                log.exception("%s: the verify callback failed", self._where())
                return DfuStatus.ERR_FIRMWARE
            if verdict is False:
                return DfuStatus.ERR_FIRMWARE
            if isinstance(verdict, DfuStatus) and verdict != DfuStatus.OK:
                return verdict
        self.downloads += 1
        log.info("%s: manifested %d bytes into %s", self._where(), self._offset, self.image.describe())
        return DfuStatus.OK

    def _upload(self, setup: SetupPacket) -> bytes:
        if self.dfuse is not None and self.attributes & DfuAttributes.CAN_UPLOAD and self.state in (
                DfuState.DFU_IDLE, DfuState.DFU_UPLOAD_IDLE, DfuState.DFU_DNLOAD_IDLE):
            return self._dfuse_upload(setup)
        if not self.attributes & DfuAttributes.CAN_UPLOAD or \
                self.state not in (DfuState.DFU_IDLE, DfuState.DFU_UPLOAD_IDLE):
            raise self._refuse(setup)
        if self.state == DfuState.DFU_IDLE:
            self._offset = 0
            self._set(DfuState.DFU_UPLOAD_IDLE)
        chunk = self.image.read(self._offset, min(setup.length, self.image.size - self._offset))
        self._offset += len(chunk)
        if len(chunk) < setup.length:  # a short block ends the upload
            self._set(DfuState.DFU_IDLE)
        return chunk

    def _dfuse_upload(self, setup: SetupPacket) -> bytes:
        """DfuSe: block 0 lists the commands, blocks from 2 read at the address pointer."""
        assert self.dfuse is not None
        if setup.value == 0:
            self._set(DfuState.DFU_IDLE)
            return DFUSE_COMMANDS
        if setup.value == 1:
            raise self._refuse(setup)
        offset = self._pointer - self.dfuse.address + (setup.value - 2) * self.transfer_size  # as ST: wTransferSize
        chunk = self.image.read(offset, max(0, min(setup.length, self.image.capacity - offset)))
        self._set(DfuState.DFU_UPLOAD_IDLE if len(chunk) == setup.length else DfuState.DFU_IDLE)
        return chunk

    def _where(self) -> str:
        dev = self.device
        return f"{dev.describe()} DFU" if dev is not None else "DFU"


class DfuDevice(Device):
    """A device with one DFU interface, in DFU mode or in runtime mode that can switch to it.

    ``start_in="dfu"``: a bootloader, as ``profiles/dfu.yaml``. ``start_in="runtime"``: the
    application, whose DFU runtime interface takes DFU_DETACH; the bus reset the host sends
    next (dfu-util does, unless the device says it detaches itself) switches the device to
    DFU mode, with ``dfu_product_id`` and the DFU-mode descriptors. Over USB/IP the server
    never sees a reset (vhci handles it); what it sees is its trace, the 64-byte
    GET_DESCRIPTOR(DEVICE) Linux sends to address 0 after every port reset. See docs/devices/dfu.md.
    """

    def __init__(
        self,
        image: str | os.PathLike[str] | FirmwareImage | None = None,
        *,
        capacity: int = DEFAULT_CAPACITY,
        start_in: str = "dfu",
        vendor_id: int = 0x1209,
        product_id: int = 0x0018,
        dfu_product_id: int | None = None,
        device_version: int = 0x0100,
        manufacturer: str | None = "vusb",
        product: str | None = "Virtual DFU Device",
        serial_number: str | None = None,
        speed: Speed | str = "full",
        interface_name: str | None = None,
        **dfu_options: object,
    ) -> None:
        self.dfu = DfuFunction(image, capacity=capacity, mode=start_in, interface_name=interface_name,
                               **dfu_options)  # type: ignore[arg-type]
        super().__init__(self.dfu, vendor_id=vendor_id, product_id=product_id, device_version=device_version,
                         manufacturer=manufacturer, product=product, serial_number=serial_number, speed=speed)
        self._dfu_mode: Device | None = None
        if start_in == "runtime":
            options = {k: v for k, v in dfu_options.items() if k != "verify"}
            shadow = DfuFunction(self.dfu.image, mode="dfu", interface_name=interface_name,
                                 **options)  # type: ignore[arg-type]
            self._dfu_mode = Device(shadow, vendor_id=vendor_id,
                                    product_id=product_id if dfu_product_id is None else dfu_product_id,
                                    device_version=device_version, manufacturer=manufacturer,
                                    product=None if product is None else f"{product} (DFU mode)",
                                    serial_number=serial_number, speed=speed)
        elif dfu_product_id is not None:
            raise UsageError("dfu_product_id is for a device that starts in runtime mode (start_in='runtime')")

    @property
    def mode(self) -> str:
        return self.dfu.mode

    def _handle_control(self, urb: Urb) -> HandlerResult:
        setup = urb.setup
        if self._dfu_mode is None or setup is None or not (
                setup.type == RequestType.STANDARD and setup.request == Request.GET_DESCRIPTOR and setup.is_in
                and setup.recipient == Recipient.DEVICE):
            return super()._handle_control(urb)
        if setup.descriptor_type == DescriptorType.DEVICE and setup.length == 64:
            # Linux asks 64 bytes of the device descriptor at address 0 right after a port reset.
            if self.dfu.mode == "dfu" and self.dfu.firmware_done:
                self.dfu.leave_dfu_mode()
            else:
                self.dfu.bus_reset()
        if self.dfu.mode == "dfu" and setup.descriptor_type in (
                DescriptorType.DEVICE, DescriptorType.CONFIGURATION, DescriptorType.STRING):
            return self._dfu_mode._handle_control(urb)  # the DFU-mode descriptors
        return super()._handle_control(urb)

    def reset(self) -> None:
        super().reset()
        if getattr(self, "_dfu_mode", None) is not None and self.dfu.mode == "dfu":
            self.dfu.leave_dfu_mode()  # power cycle / new import: the application runs again
