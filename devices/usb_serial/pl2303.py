"""Prolific PL2303G (the "HXN" type of Linux's ``pl2303``), a current PL2303.

The chip
========

``067b:23a3`` (PL2303GC), full speed, USB 2.0, bMaxPacketSize0 64, bcdDevice 0x0100,
one vendor-specific interface (0xFF/0x00/0x00) with interrupt IN 0x81 (10 bytes),
bulk OUT 0x02 and bulk IN 0x83 (64 bytes).

How Linux knows the type
========================

``pl2303`` reads the descriptor: device class 0 and bMaxPacketSize0 64 rule out the
legacy H type; bcdUSB 2.0 with bcdDevice 0x0100 is a G chip (HXN) on 6.1 and later.
Older kernels (5.10) try the HX status read (request 0x01, wValue 0x8080): a G chip
stalls it, which makes it HXN there too.  The G chips have their own vendor
requests and no divisor encoding.

Requests
========

==========  =====  ===================  ==============================================
bmReqType   req    name                 here
==========  =====  ===================  ==============================================
0xC0        0x81   VENDOR_READ (G)      wValue register: 1 byte
0x40        0x80   VENDOR_WRITE (G)     register wValue = wIndex; register 0x07 bits
                                        0/1 clear the downstream/upstream pipes,
                                        register 0x0A bits 2-4 flow control (0x1C
                                        none, 0x18 RTS/CTS, 0x0C XON/XOFF)
0xC0/0x40   0x01   legacy VENDOR_*      stalls, as on a G chip (this is the type probe)
0x21        0x20   SET_LINE_REQUEST     7 bytes: rate (LE32), stop bits (0 1, 1 1.5,
                                        2 2), parity (0-4 none odd even mark space),
                                        data bits (5-8)
0xA1        0x21   GET_LINE_REQUEST     the 7 bytes, with the rate the chip makes
0x21        0x22   SET_CONTROL_REQUEST  bit 0 DTR, bit 1 RTS
0x21        0x23   BREAK_REQUEST        0xFFFF on, 0 off
==========  =====  ===================  ==============================================

The G chips make any rate from 75 bps to 12 Mbps: lower or higher requests are
clamped to those.  The interrupt endpoint sends 10 bytes when a modem input changes:
``A1 20 00 00 00 00 02 00 STATE 00`` with STATE bit 0 DCD, 1 DSR, 3 RI, 7 CTS.
"""

from __future__ import annotations

import enum
import logging
import struct

from vusb.devices.cdc_acm.backends import BackendSpec
from vusb.devices.cdc_acm.spec import Parity, StopBits
from vusb.devices.usb_serial.chip import StatusInterruptChip, UsbSerialDevice, make_ports
from vusb.devices.usb_serial.uart import DEFAULT_BUFFER_SIZE, FlowControl, ModemStatus

from vusb.constants import Recipient, RequestType, Speed, TransferType
from vusb.descriptors import InterfaceDescriptor
from vusb.device import NOT_HANDLED, BuildContext, ControlResult
from vusb.errors import DeviceDefinitionError, Stall
from vusb.urb import SetupPacket

log = logging.getLogger("vusb.usb_serial.pl2303")

PROLIFIC_VID = 0x067B
PL2303G_PID = 0x23A3

LEGACY_VENDOR = 0x01
VENDOR_WRITE_N = 0x80
VENDOR_READ_N = 0x81
HX_STATUS_PROBE = 0x8080


class ClassRequest(enum.IntEnum):
    SET_LINE = 0x20
    GET_LINE = 0x21
    SET_CONTROL = 0x22
    BREAK = 0x23


RESET_REG = 0x07
FLOWCTRL_REG = 0x0A
FLOWCTRL_MASK, FLOWCTRL_NONE, FLOWCTRL_RTS_CTS, FLOWCTRL_XON_XOFF = 0x1C, 0x1C, 0x18, 0x0C

UART_DCD, UART_DSR, UART_BREAK, UART_RING, UART_CTS = 0x01, 0x02, 0x04, 0x08, 0x80

MIN_RATE, MAX_RATE = 75, 12_000_000

_LINE = struct.Struct("<IBBB")
_PARITY = {0: Parity.NONE, 1: Parity.ODD, 2: Parity.EVEN, 3: Parity.MARK, 4: Parity.SPACE}
_STOP = {0: StopBits.ONE, 1: StopBits.ONE_AND_HALF, 2: StopBits.TWO}


def g_rate(requested: int) -> int:
    """The rate a PL2303G makes when asked for ``requested`` bps (direct rates, 75 .. 12 000 000)."""
    return min(max(requested, MIN_RATE), MAX_RATE)


class Pl2303Function(StatusInterruptChip):
    """A PL2303G serial port (HXN type)."""

    chip_name = "PL2303G"

    def __init__(self, backend: BackendSpec = None, *, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        super().__init__(make_ports(1, backend, ["PL2303G"], buffer_size), self._state, self._packet)
        self.registers = bytearray(256)
        self.registers[FLOWCTRL_REG] = FLOWCTRL_NONE
        self.line_request = _LINE.pack(9600, 0, 0, 8)

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        if ctx.speed != Speed.FULL:
            raise DeviceDefinitionError("the PL2303G is a full-speed device")
        self.interface = ctx.interface_number()
        interrupt = ctx.endpoint(True, TransferType.INTERRUPT, max_packet_size=10, interval=1, preferred=0x81)
        bulk_out = ctx.endpoint(False, TransferType.BULK, max_packet_size=64, preferred=0x02)
        bulk_in = ctx.endpoint(True, TransferType.BULK, max_packet_size=64, preferred=0x83)
        self.in_address, self.out_address, self.interrupt_address = bulk_in.address, bulk_out.address, \
            interrupt.address
        return [InterfaceDescriptor(self.interface, 0, 0xFF, 0x00, 0x00, 0, (interrupt, bulk_out, bulk_in))]

    # ------------------------------------------------------------ requests
    def control(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if setup.type == RequestType.VENDOR and setup.recipient == Recipient.DEVICE:
            self.record(setup)
            return self._vendor(setup)
        if setup.type == RequestType.CLASS and setup.recipient == Recipient.INTERFACE \
                and setup.index & 0xFF == self.interface:
            self.record(setup)
            return self._class(setup, data)
        return NOT_HANDLED

    def _vendor(self, setup: SetupPacket) -> ControlResult:
        if setup.request == LEGACY_VENDOR:
            if setup.value == HX_STATUS_PROBE and setup.is_in:
                log.debug("%s: legacy HX status read stalled: this is a G chip", self.port.where)
                raise Stall("legacy HX status read on a G chip")
            raise self.refuse(setup, "legacy vendor request 0x01 (a G chip only knows 0x80/0x81)")
        reg = setup.value & 0xFF
        if setup.request == VENDOR_READ_N and setup.is_in:
            return bytes((self.registers[reg],))
        if setup.request == VENDOR_WRITE_N and not setup.is_in:
            value = setup.index & 0xFF
            if reg == RESET_REG:
                self.port.purge(to_host=bool(value & 0x02), from_host=bool(value & 0x01))
                return None
            self.registers[reg] = value
            if reg == FLOWCTRL_REG:
                mode = value & FLOWCTRL_MASK
                flow = {FLOWCTRL_RTS_CTS: FlowControl.RTS_CTS, FLOWCTRL_XON_XOFF: FlowControl.XON_XOFF}.get(
                    mode, FlowControl.NONE)
                self.port.host_set_line(flow=flow)
            return None
        raise self.refuse(setup, f"unknown vendor request 0x{setup.request:02x}")

    def _class(self, setup: SetupPacket, data: bytes) -> ControlResult:
        try:
            req = ClassRequest(setup.request)
        except ValueError:
            raise self.refuse(setup, f"unknown class request 0x{setup.request:02x}") from None
        if setup.is_in != (req == ClassRequest.GET_LINE):
            raise self.refuse(setup, f"{req.name} in the wrong direction")
        uart = self.port
        if req == ClassRequest.GET_LINE:
            return self.line_request
        if req == ClassRequest.SET_CONTROL:
            uart.host_set_dtr_rts(dtr=bool(setup.value & 0x01), rts=bool(setup.value & 0x02))
            return None
        if req == ClassRequest.BREAK:
            uart.host_set_break(setup.value != 0)
            return None
        if len(data) != _LINE.size:
            raise self.refuse(setup, f"SET_LINE_REQUEST carries 7 bytes, not {len(data)}")
        rate, stop, parity, bits = _LINE.unpack(data)
        if rate & 0x8000_0000:
            raise self.refuse(setup, f"divisor-encoded rate 0x{rate:08x}: the G chips take rates directly")
        if stop not in _STOP or parity not in _PARITY or bits not in (5, 6, 7, 8):
            raise self.refuse(setup, f"SET_LINE_REQUEST {data.hex(' ')}: stop {stop}, parity {parity}, {bits} bits")
        actual = g_rate(rate)
        self.line_request = _LINE.pack(actual, stop, parity, bits)
        uart.host_set_line(rate=actual, data_bits=bits, parity=_PARITY[parity], stop_bits=_STOP[stop])
        return None

    # ------------------------------------------------------------ interrupt endpoint
    def _state(self) -> int:
        m = self.port.modem
        return ((UART_DCD if m & ModemStatus.DCD else 0) | (UART_DSR if m & ModemStatus.DSR else 0)
                | (UART_RING if m & ModemStatus.RI else 0) | (UART_CTS if m & ModemStatus.CTS else 0))

    def _packet(self, state: int) -> bytes:
        return bytes((0xA1, 0x20, 0, 0, self.interface, 0, 0x02, 0x00, state, 0x00))


class Pl2303(UsbSerialDevice):
    """A PL2303G USB-serial adapter (067b:23a3): ``Pl2303(backend="loopback")``."""

    chip: Pl2303Function

    def __init__(self, backend: BackendSpec = None, *, serial_number: str | None = None,
                 buffer_size: int = DEFAULT_BUFFER_SIZE, **kwargs: object) -> None:
        identity: dict[str, object] = {
            "vendor_id": PROLIFIC_VID, "product_id": PL2303G_PID, "device_version": 0x0100,
            "manufacturer": "Prolific Technology Inc.", "product": "USB-Serial Controller",
            "serial_number": serial_number, "speed": Speed.FULL, "max_power_ma": 100, "usb_version": 0x0200,
            "max_packet_size0": 64, "device_class": (0, 0, 0),
        }
        identity.update(kwargs)
        super().__init__(Pl2303Function(backend, buffer_size=buffer_size), **identity)
