"""USB Mass Storage Class, Bulk-Only Transport 1.0 (BOT), carrying SCSI commands.

One interface (class 08h mass storage, subclass 06h SCSI transparent command set,
protocol 50h bulk-only) with a bulk IN and a bulk OUT endpoint.  Each command is
three stages (section 5):

1. the host sends a 31-byte Command Block Wrapper (CBW) on bulk OUT;
2. data moves on bulk IN or OUT, in as many transfers (URBs) as the host likes;
3. the host reads a 13-byte Command Status Wrapper (CSW) on bulk IN.

Class requests (section 3): Bulk-Only Mass Storage Reset (FFh) and Get Max LUN
(FEh).  A CBW that is not valid or not meaningful stalls both bulk endpoints
until the host performs a Reset Recovery: the class reset, then
CLEAR_FEATURE(ENDPOINT_HALT) on both endpoints (section 6.6.1, 5.3.4).

When the host and the device disagree on the data stage (section 6.7, the
thirteen cases), the device answers as the specification says:

====  ===========  ===================================================================
case  host/device  what this device does
====  ===========  ===================================================================
1     Hn = Dn      CSW, status from the command, residue 0
2, 3  Hn < Di, Do  command not run; CSW with phase error
4     Hi > Dn      command run; bulk IN stalled; residue dCBWDataTransferLength
5     Hi > Di      data sent (ending with a short packet), then bulk IN stalled;
                   residue is what was not sent
6     Hi = Di      data sent; residue 0
7     Hi < Di      the first dCBWDataTransferLength bytes sent; CSW with phase error
8     Hi <> Do     command not run; bulk IN stalled; CSW with phase error
9     Ho > Dn      command run; OUT data accepted and discarded; residue = all of it
10    Ho <> Di     command not run; OUT data discarded; CSW with phase error
11    Ho > Do      the command takes what it wants, the rest is discarded; residue
12    Ho = Do      data taken; residue 0
13    Ho < Do      command not run; OUT data discarded; CSW with phase error
====  ===========  ===================================================================

A command that fails before its data stage (say a READ past the end) has no data:
it is case 4 or 9.  One that fails during it (an I/O error) stops sending and
stalls bulk IN, or discards the rest of the OUT data; the CSW reports status 1 and
the residue, and the logical unit keeps the sense data for REQUEST SENSE.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vusb.devices.storage.scsi import (
    INTERNAL_TARGET_FAILURE,
    CheckCondition,
    Command,
    Direction,
    LogicalUnit,
    Sense,
)

from vusb.constants import Direction as RequestDirection
from vusb.constants import Recipient, RequestType, Speed, Status, TransferType
from vusb.descriptors import InterfaceDescriptor
from vusb.device import NOT_HANDLED, BuildContext, ControlResult, Device, Function
from vusb.endpoint import Endpoint, HandlerResult
from vusb.errors import Stall, UsageError
from vusb.function import request
from vusb.urb import Completion, SetupPacket, Urb

log = logging.getLogger("vusb.storage")

MASS_STORAGE_CLASS = 0x08
SCSI_TRANSPARENT_SUBCLASS = 0x06
BULK_ONLY_PROTOCOL = 0x50

CBW_SIGNATURE = 0x43425355  # "USBC"
CSW_SIGNATURE = 0x53425355  # "USBS"
CBW_LENGTH = 31
CSW_LENGTH = 13
MAX_LUNS = 16

STALL = Completion(Status.EPIPE)
_CBW_TAKEN = Completion(0, b"", CBW_LENGTH)  # the answer to every valid CBW: immutable, so made once

_CBW = struct.Struct("<IIIBBB16s")
_CSW = struct.Struct("<IIIB")


class MscRequest(enum.IntEnum):
    """Bulk-Only class requests (section 3)."""

    GET_MAX_LUN = 0xFE
    BULK_ONLY_RESET = 0xFF


class CswStatus(enum.IntEnum):
    PASSED = 0
    FAILED = 1
    PHASE_ERROR = 2


@dataclass(frozen=True)
class CommandBlockWrapper:
    """A CBW (section 5.1)."""

    tag: int
    data_length: int
    data_in: bool
    lun: int
    cdb: bytes

    @classmethod
    def parse(cls, raw: bytes | memoryview, lun_count: int = MAX_LUNS) -> CommandBlockWrapper:
        """Check a CBW as section 6.2 says; raises ValueError naming what is wrong."""
        if len(raw) != CBW_LENGTH:
            raise ValueError(f"CBW of {len(raw)} bytes; it must be exactly {CBW_LENGTH}")
        signature, tag, length, flags, lun, cb_length, cb = _CBW.unpack(raw)
        if signature != CBW_SIGNATURE:
            raise ValueError(f"CBW signature 0x{signature:08x}; expected 0x{CBW_SIGNATURE:08x}")
        if lun & 0xF0 or lun >= lun_count:
            raise ValueError(f"CBW for LUN {lun}; the device has {lun_count}")
        if not 1 <= cb_length <= 16:
            raise ValueError(f"bCBWCBLength {cb_length} is outside 1..16")
        if cls is not CommandBlockWrapper:
            return cls(tag, length, bool(flags & 0x80), lun, bytes(cb[:cb_length]))
        # One per command: filled as the generated __init__ would, without its five frozen __setattr__ calls.
        cbw = object.__new__(cls)
        cbw.__dict__.update(tag=tag, data_length=length, data_in=bool(flags & 0x80), lun=lun, cdb=cb[:cb_length])
        return cbw

    def to_bytes(self) -> bytes:
        cdb = self.cdb.ljust(16, b"\x00")
        return _CBW.pack(CBW_SIGNATURE, self.tag, self.data_length, 0x80 if self.data_in else 0x00, self.lun,
                         len(self.cdb), cdb)


@dataclass(frozen=True)
class CommandStatusWrapper:
    """A CSW (section 5.2)."""

    tag: int
    residue: int
    status: int

    def to_bytes(self) -> bytes:
        return _CSW.pack(CSW_SIGNATURE, self.tag, self.residue, self.status)

    @classmethod
    def parse(cls, raw: bytes | memoryview) -> CommandStatusWrapper:
        if len(raw) != CSW_LENGTH:
            raise ValueError(f"CSW of {len(raw)} bytes; it must be exactly {CSW_LENGTH}")
        signature, tag, residue, status = _CSW.unpack(raw)
        if signature != CSW_SIGNATURE:
            raise ValueError(f"CSW signature 0x{signature:08x}; expected 0x{CSW_SIGNATURE:08x}")
        return cls(tag, residue, status)


class _Phase(enum.Enum):
    COMMAND = "waiting for a CBW"
    DATA_OUT = "data from the host"
    DATA_IN = "data to the host"
    BUSY = "command finishing"
    STATUS = "CSW ready"
    STALLED = "invalid CBW: stalled until reset recovery"


@dataclass
class _Transfer:
    """The command between its CBW and its CSW."""

    cbw: CommandBlockWrapper
    lun: LogicalUnit
    command: Command
    expected: int = 0  # bytes of the data stage given to / taken from the command
    moved: int = 0  # bytes moved on the bus so far
    processed: int = 0  # bytes the command produced or accepted (for the residue)
    status: CswStatus = CswStatus.PASSED
    execute: bool = True  # False for phase errors: the command does not run

    @property
    def residue(self) -> int:
        return self.cbw.data_length - self.processed


class MassStorageFunction(Function):
    """A Bulk-Only mass storage interface with one or more SCSI logical units."""

    name = "Mass Storage"

    def __init__(self, *luns: LogicalUnit, interface_name: str | None = None) -> None:
        super().__init__()
        if not luns:
            raise UsageError("a mass storage function needs at least one logical unit")
        if len(luns) > MAX_LUNS:
            raise UsageError(f"{len(luns)} logical units; Bulk-Only Transport allows at most {MAX_LUNS}")
        self.luns: list[LogicalUnit] = list(luns)
        for lun in self.luns:
            lun.lun_count = len(self.luns)
        self.interface_name = interface_name
        self.interface_number = 0
        self.in_address = 0
        self.out_address = 0
        self._phase = _Phase.COMMAND
        self._transfer: _Transfer | None = None
        self._busy: asyncio.Future[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self.commands = 0
        """Commands received (CBWs), for statistics and tests."""

    # ------------------------------------------------------------ declaration
    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        self.interface_number = ctx.interface_number()
        burst = 15 if ctx.speed == Speed.SUPER else 0
        bulk_in = ctx.endpoint_in(TransferType.BULK, max_burst=burst)
        bulk_out = ctx.endpoint_out(TransferType.BULK, max_burst=burst)
        self.in_address, self.out_address = bulk_in.address, bulk_out.address
        return [ctx.interface(MASS_STORAGE_CLASS, SCSI_TRANSPARENT_SUBCLASS, BULK_ONLY_PROTOCOL,
                              number=self.interface_number, endpoints=(bulk_in, bulk_out), name=self.interface_name)]

    def bind(self, device: Device) -> None:
        device.endpoint(self.in_address).handler = self._bulk_in
        device.endpoint(self.out_address).handler = self._bulk_out

        def string(index: int) -> str | None:
            return device.strings.get(index, device.strings.languages[0]) if index else None

        # Defaults of the SCSI identity come from the USB strings.
        d = device.descriptor
        serial = string(d.serial_number_index)
        manufacturer = string(d.manufacturer_index)
        product = string(d.product_index)
        for number, lun in enumerate(self.luns):
            if lun.serial is None and serial:
                lun.serial = serial if len(self.luns) == 1 else f"{serial}-{number}"
            if lun.vendor is None and manufacturer:
                lun.vendor = manufacturer[:8]
            if lun.product is None and product:
                lun.product = product[:16]

    # ------------------------------------------------------------ hooks
    def on_reset(self) -> None:
        self._reset_transport()
        for lun in self.luns:
            lun.reset()
            try:
                lun.flush()
            except OSError as exc:
                log.warning("flush of %r failed: %s", lun, exc)

    def on_configured(self, configured: bool) -> None:
        self._reset_transport()

    def on_clear_halt(self, address: int) -> None:
        if self._phase is _Phase.STALLED and self.device is not None:
            # Clearing the halt alone does not end the stall of an invalid CBW (6.6.1).
            self.device.endpoint(address).halt()

    def control(self, setup: SetupPacket, data: bytes) -> ControlResult | Awaitable[ControlResult]:
        """Class requests of this interface (Bulk-Only 3.1, 3.2) go through the request table."""
        if (setup.index & 0xFF) != self.interface_number:
            return NOT_HANDLED
        return super().control(setup, data)

    @request(RequestDirection.OUT, RequestType.CLASS, Recipient.INTERFACE, MscRequest.BULK_ONLY_RESET)
    def _bulk_only_reset(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if setup.value != 0 or setup.length != 0:
            raise Stall()
        log.info("Bulk-Only Mass Storage Reset")
        self._reset_transport()
        return None

    @request(RequestDirection.IN, RequestType.CLASS, Recipient.INTERFACE, MscRequest.GET_MAX_LUN)
    def _get_max_lun(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if setup.value != 0 or setup.length != 1:
            raise Stall()
        return bytes((len(self.luns) - 1,))

    # ------------------------------------------------------------ state
    @property
    def phase(self) -> str:
        """Where the transport is (for tests and logs)."""
        return self._phase.name.lower()

    def _set_phase(self, phase: _Phase) -> None:
        self._phase = phase
        if not self._waiters:
            return
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _reset_transport(self) -> None:
        busy, self._busy = self._busy, None
        if busy is not None and not busy.done():
            busy.cancel()
        self._transfer = None
        self._set_phase(_Phase.COMMAND)

    def _endpoint(self, address: int) -> Endpoint:
        assert self.device is not None
        return self.device.endpoint(address)

    def _stall(self, address: int) -> Completion:
        """Stall the URB being handled on ``address``; later URBs stall too until the host clears the halt."""
        self._halt_after(address)
        return STALL

    def _halt_after(self, address: int) -> None:
        """Halt ``address`` from inside its own handler.

        Only the flag is set: the endpoint completes the URB being handled first, then
        fails the queued ones, so completions stay in order.
        """
        self._endpoint(address).halted = True

    def _halt_other(self, address: int) -> None:
        """Halt an endpoint whose handler is not running: a URB it holds (NAKing) fails now."""
        self._endpoint(address).halt()

    async def _nak(self, urb: Urb, attempt: Callable[[Urb], HandlerResult | None]) -> Completion:
        """Hold ``urb`` (the device NAKs) until the transport can answer it."""
        while True:
            result = attempt(urb)  # again: the phase may have changed before this task started
            if isinstance(result, Completion):
                return result
            if result is not None:
                return await result
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    # ------------------------------------------------------------ bulk OUT
    def _bulk_out(self, urb: Urb) -> HandlerResult:
        result = self._try_out(urb)
        return result if result is not None else self._nak(urb, self._try_out)

    def _try_out(self, urb: Urb) -> HandlerResult | None:
        phase = self._phase
        if phase is _Phase.COMMAND:
            return self._command(urb)
        if phase is _Phase.DATA_OUT:
            return self._data_out(urb)
        if phase is _Phase.STALLED:
            return self._stall(self.out_address)
        return None  # the CSW has not been read yet

    def _command(self, urb: Urb) -> Completion:
        raw = urb.data
        try:
            cbw = CommandBlockWrapper.parse(raw, len(self.luns))
        except ValueError as exc:
            log.warning("invalid CBW (%s): %s; stalling both bulk endpoints until reset recovery",
                        bytes(raw[:CBW_LENGTH]).hex(" "), exc)
            self._transfer = None
            self._set_phase(_Phase.STALLED)
            self._halt_other(self.in_address)
            self._halt_after(self.out_address)  # this URB was received; the following ones stall
            return Completion(0, b"", len(raw))
        self.commands += 1
        lun = self.luns[cbw.lun]
        command = lun.command(cbw.cdb)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("CBW tag %08x LUN %d %s %d bytes CDB %s -> %s %d%s", cbw.tag, cbw.lun,
                      "IN" if cbw.data_in else "OUT", cbw.data_length, cbw.cdb.hex(" "), command.direction.value,
                      command.length, f" CHECK CONDITION {command.sense}" if command.sense else "")
        self._start(_Transfer(cbw, lun, command))
        return _CBW_TAKEN  # a valid CBW is exactly CBW_LENGTH bytes

    def _start(self, t: _Transfer) -> None:
        """Match the host's expectation against the command's intent (section 6.7)."""
        self._transfer = t
        command, host = t.command, t.cbw.data_length
        if command.sense is not None:
            t.status = CswStatus.FAILED
        intent = command.direction if command.length else Direction.NONE
        if host == 0:
            if intent is not Direction.NONE:  # cases 2, 3
                t.status, t.execute = CswStatus.PHASE_ERROR, False
            self._conclude(t)  # case 1
        elif t.cbw.data_in:
            if intent is Direction.IN:  # cases 5, 6, 7
                t.expected = min(host, command.length)
                if command.length > host:
                    t.status = CswStatus.PHASE_ERROR
                self._set_phase(_Phase.DATA_IN)
                return
            if intent is Direction.OUT:  # case 8
                t.status, t.execute = CswStatus.PHASE_ERROR, False
            self._halt_other(self.in_address)  # case 4 (or 8): nothing to send
            self._conclude(t)
        else:
            if intent is Direction.OUT:  # cases 11, 12, 13
                t.expected = min(host, command.length)
                if command.length > host:
                    t.status, t.execute = CswStatus.PHASE_ERROR, False
            elif intent is Direction.IN:  # case 10
                t.status, t.execute = CswStatus.PHASE_ERROR, False
            self._set_phase(_Phase.DATA_OUT)  # case 9 too: the data is accepted and discarded

    def _data_out(self, urb: Urb) -> Completion:
        t = self._transfer
        assert t is not None
        data = memoryview(urb.data)
        n = min(len(data), t.cbw.data_length - t.moved)
        take = min(n, t.expected - t.moved) if t.moved < t.expected else 0
        if take > 0 and t.status is CswStatus.PASSED:
            try:
                t.command.write(t.moved, data[:take])
                t.processed += take
            except CheckCondition as exc:
                self._fail(t, exc.sense)
            except Exception:  # a bug must fail the command, not the device
                log.exception("internal error while writing")
                self._fail(t, INTERNAL_TARGET_FAILURE)
        t.moved += n
        if t.moved >= t.cbw.data_length:
            self._conclude(t)
        return Completion(0, b"", n)

    # ------------------------------------------------------------ bulk IN
    def _bulk_in(self, urb: Urb) -> HandlerResult:
        result = self._try_in(urb)
        return result if result is not None else self._nak(urb, self._try_in)

    def _try_in(self, urb: Urb) -> HandlerResult | None:
        phase = self._phase
        if phase is _Phase.DATA_IN:
            return self._data_in(urb)
        if phase is _Phase.STATUS:
            t = self._transfer
            assert t is not None
            tag, residue, status = t.cbw.tag, t.cbw.data_length - t.processed, int(t.status)  # residue: t.residue
            if log.isEnabledFor(logging.DEBUG):
                log.debug("CSW tag %08x residue %d status %d", tag, residue, status)
            self._transfer = None
            self._set_phase(_Phase.COMMAND)
            return Completion(0, _CSW.pack(CSW_SIGNATURE, tag, residue, status))  # CommandStatusWrapper.to_bytes()
        if phase is _Phase.STALLED:
            return self._stall(self.in_address)
        return None  # no data or status yet: NAK

    def _data_in(self, urb: Urb) -> Completion:
        t = self._transfer
        assert t is not None
        want = min(urb.length, t.expected - t.moved)
        try:
            chunk = t.command.read(t.moved, want) if want else b""
        except CheckCondition as exc:
            self._fail(t, exc.sense)
            self._conclude(t)
            return self._stall(self.in_address)
        except Exception:
            log.exception("internal error while reading")
            self._fail(t, INTERNAL_TARGET_FAILURE)
            self._conclude(t)
            return self._stall(self.in_address)
        t.moved += len(chunk)
        t.processed = t.moved
        if t.moved >= t.expected:
            if t.moved < t.cbw.data_length:
                self._halt_after(self.in_address)  # case 5: a short packet ends the data, then the pipe stalls
            self._conclude(t)
        return Completion(0, chunk)

    # ------------------------------------------------------------ completion
    def _fail(self, t: _Transfer, sense: Sense) -> None:
        t.status = CswStatus.FAILED
        t.lun.fail(sense)

    def _conclude(self, t: _Transfer) -> None:
        """The data stage is over: finish the command, then offer the CSW."""
        if t.execute and t.status is CswStatus.PASSED:
            try:
                pending = t.command.finish()
            except CheckCondition as exc:
                self._fail(t, exc.sense)
                pending = None
            if pending is not None:
                self._busy = asyncio.ensure_future(self._finish_later(t, pending))
                self._set_phase(_Phase.BUSY)
                return
        self._set_phase(_Phase.STATUS)

    async def _finish_later(self, t: _Transfer, pending: Awaitable[None]) -> None:
        try:
            await pending
        except CheckCondition as exc:
            self._fail(t, exc.sense)
        except Exception:
            log.exception("internal error while finishing a command")
            self._fail(t, INTERNAL_TARGET_FAILURE)
        if self._transfer is t:
            self._busy = None
            self._set_phase(_Phase.STATUS)

    # ------------------------------------------------------------ media
    def lun(self, number: int = 0) -> LogicalUnit:
        try:
            return self.luns[number]
        except IndexError:
            raise UsageError(f"no logical unit {number}; the device has {len(self.luns)}") from None

    def close(self) -> None:
        """Flush and close every medium."""
        self._reset_transport()
        for lun in self.luns:
            lun.close()

