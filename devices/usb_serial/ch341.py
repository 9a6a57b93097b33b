"""WCH CH340, as Linux's ``ch341`` drives it.

The chip
========

``1a86:7523``, full speed, bcdDevice 0x0254, one vendor-specific interface (0xFF/0x01/0x02)
with bulk IN 0x82 and OUT 0x02 (32 bytes) and interrupt IN 0x81 (8 bytes).  Bytes pass
through the bulk pair as they are.

Vendor requests (bmRequestType 0x40 out, 0xC0 in, to the device)
================================================================

=====  ============  ============================================================
0x5F   READ_VERSION  2 bytes: the chip version (0x31 here), 0
0xA1   SERIAL_INIT   starts the UART (any wValue/wIndex)
0x9A   WRITE_REG     two registers at once: wValue = reg2 << 8 | reg1,
                     wIndex = value2 << 8 | value1
0x95   READ_REG      wValue = reg2 << 8 | reg1; 2 bytes: value1, value2
0xA4   MODEM_CTRL    wValue = the complement of the outputs: bit 5 DTR, bit 6 RTS
=====  ============  ============================================================

Registers
=========

=====  ==========  ==============================================================
0x05   BREAK       bit 0 clear: break on the line (with LCR bit 6 clear)
0x06   MSR         the modem inputs, inverted: bit 0 CTS, 1 DSR, 2 RI, 3 DCD;
                   bits 5 and 6 mirror DTR and RTS, also inverted
0x12   PRESCALER   bits 0-1 ps, bit 2 fact, bit 7 "no buffering" flag
0x13   DIVISOR     256 - div: rate = 48 MHz / (2^(12 - 3 ps - fact) x div)
0x18   LCR         bit 7 RX on, 6 TX on, 5 mark/space, 4 even, 3 parity,
                   2 two stop bits, 0-1 data bits - 5
0x25   LCR2        0 on chips of version 0x30 and later
0x27   FLOW_CTL    1: RTS/CTS handshake
=====  ==========  ==============================================================

Other registers read back what was written (0 at first).  The interrupt endpoint
sends 4 bytes when a modem input changes: 0x08, 0x00, the MSR register, 0xEE.

Anything else stalls and is logged.
"""

from __future__ import annotations

import enum
import logging

from vusb.devices.cdc_acm.backends import BackendSpec
from vusb.devices.cdc_acm.spec import Parity, StopBits
from vusb.devices.usb_serial.chip import StatusInterruptChip, UsbSerialDevice, make_ports
from vusb.devices.usb_serial.uart import DEFAULT_BUFFER_SIZE, FlowControl, ModemStatus, Uart

from vusb.constants import Recipient, RequestType, Speed, TransferType
from vusb.descriptors import InterfaceDescriptor
from vusb.device import NOT_HANDLED, BuildContext, ControlResult
from vusb.errors import DeviceDefinitionError
from vusb.urb import SetupPacket

log = logging.getLogger("vusb.usb_serial.ch341")

WCH_VID = 0x1A86
CH340_PID = 0x7523


class Request(enum.IntEnum):
    READ_VERSION = 0x5F
    READ_REG = 0x95
    WRITE_REG = 0x9A
    SERIAL_INIT = 0xA1
    MODEM_CTRL = 0xA4


class Register(enum.IntEnum):
    BREAK = 0x05
    MSR = 0x06
    PRESCALER = 0x12
    DIVISOR = 0x13
    LCR = 0x18
    LCR2 = 0x25
    FLOW_CTL = 0x27


LCR_ENABLE_RX, LCR_ENABLE_TX, LCR_MARK_SPACE, LCR_PAR_EVEN, LCR_ENABLE_PAR, LCR_STOP_BITS_2 = \
    0x80, 0x40, 0x20, 0x10, 0x08, 0x04
MCR_DTR, MCR_RTS = 0x20, 0x40
MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x01, 0x02, 0x04, 0x08

CLOCK = 48_000_000


def divisor_rate(prescaler: int, divisor: int) -> int:
    """The rate the CH340 makes from its prescaler and divisor registers.

    rate = 48 MHz / (2^(12 - 3 ps - fact) x div), with ps = prescaler bits 0-1, fact =
    bit 2 and div = 256 - divisor (a divisor register of 0 counts as 256)::

        divisor_rate(0x02, 0xB2) == 9615      # ps 2, div 78: 9600 is 0.16 % off
        divisor_rate(0x83, 0xCC) == 115385    # ps 3, fact 0, div 52
    """
    ps, fact = prescaler & 0x03, (prescaler >> 2) & 0x01
    div = 0x100 - divisor if divisor else 0x100
    return round(CLOCK / ((1 << (12 - 3 * ps - fact)) * div))


def encode_rate(rate: int) -> tuple[int, int]:
    """(prescaler, divisor) register values ``ch341`` chooses for ``rate``: the inverse of :func:`divisor_rate`.

    The fastest base clock whose divisor stays below 256 is taken (the doubled clock,
    fact 1, when the divisor is 9 or more), the divisor rounded to the nearest rate, and
    an even divisor on the doubled clock halved onto the plain one.  For tests and the
    documentation's table.
    """
    rate = min(max(rate, 46), 3_000_000)
    ps = 3
    while ps > 0 and rate <= CLOCK // ((1 << (12 - 3 * ps - 1)) * 512):
        ps -= 1
    fact, clk = 1, 1 << (12 - 3 * ps - 1)
    div = CLOCK // (clk * rate)
    if div < 9 or div > 255:
        div, clk, fact = div // 2, clk * 2, 0
    if 16 * CLOCK // (clk * div) - 16 * rate >= 16 * rate - 16 * CLOCK // (clk * (div + 1)):
        div += 1
    if fact == 1 and div % 2 == 0:
        div, fact = div // 2, 0
    return 0x80 | fact << 2 | ps, 0x100 - div


class Ch340Function(StatusInterruptChip):
    """A CH340 serial port."""

    chip_name = "CH340"

    def __init__(self, backend: BackendSpec = None, *, version: int = 0x31,
                 buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        if not 0 <= version <= 0xFF:
            raise DeviceDefinitionError(f"CH340 version {version} is not a byte")
        super().__init__(make_ports(1, backend, ["CH340"], buffer_size), self._msr,
                         lambda msr: bytes((0x08, 0x00, msr, 0xEE)))
        self.version = version
        self.registers = bytearray(256)
        self.registers[Register.BREAK] = 0x01
        self.registers[Register.PRESCALER] = 0x02
        self.registers[Register.DIVISOR] = 0xB2  # 9600 bps
        self.registers[Register.LCR] = LCR_ENABLE_RX | LCR_ENABLE_TX | 0x03
        self.registers[0x07] = 0xEE
        self.mcr = 0

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        if ctx.speed != Speed.FULL:
            raise DeviceDefinitionError("the CH340 is a full-speed device")
        self.interface = ctx.interface_number()
        bulk_in = ctx.endpoint(True, TransferType.BULK, max_packet_size=32, preferred=0x82)
        bulk_out = ctx.endpoint(False, TransferType.BULK, max_packet_size=32, preferred=0x02)
        interrupt = ctx.endpoint(True, TransferType.INTERRUPT, max_packet_size=8, interval=1, preferred=0x81)
        self.in_address, self.out_address, self.interrupt_address = bulk_in.address, bulk_out.address, \
            interrupt.address
        return [InterfaceDescriptor(self.interface, 0, 0xFF, 0x01, 0x02, 0, (bulk_in, bulk_out, interrupt))]

    # ------------------------------------------------------------ requests
    def control(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if setup.type != RequestType.VENDOR or setup.recipient != Recipient.DEVICE:
            return NOT_HANDLED
        self.record(setup)
        try:
            req = Request(setup.request)
        except ValueError:
            raise self.refuse(setup, f"unknown vendor request 0x{setup.request:02x}") from None
        if setup.is_in != (req in (Request.READ_VERSION, Request.READ_REG)):
            raise self.refuse(setup, f"{req.name} in the wrong direction")
        if req == Request.READ_VERSION:
            return bytes((self.version, 0x00))
        if req == Request.SERIAL_INIT:
            self.port.enabled = True
            return None
        if req == Request.MODEM_CTRL:
            self.mcr = ~setup.value & (MCR_DTR | MCR_RTS)
            self.port.host_set_dtr_rts(dtr=bool(self.mcr & MCR_DTR), rts=bool(self.mcr & MCR_RTS))
            self.interrupt.changed()
            return None
        reg1, reg2 = setup.value & 0xFF, setup.value >> 8
        if req == Request.READ_REG:
            return bytes((self._read(reg1), self._read(reg2)))
        self._write(reg1, setup.index & 0xFF)
        if reg2 != reg1:
            self._write(reg2, setup.index >> 8)
        self._apply(reg1, reg2)
        return None

    def _msr(self) -> int:
        m = self.port.modem
        active = ((MSR_CTS if m & ModemStatus.CTS else 0) | (MSR_DSR if m & ModemStatus.DSR else 0)
                  | (MSR_RI if m & ModemStatus.RI else 0) | (MSR_DCD if m & ModemStatus.DCD else 0) | self.mcr)
        return ~active & 0xFF

    def _read(self, reg: int) -> int:
        return self._msr() if reg == Register.MSR else self.registers[reg]

    def _write(self, reg: int, value: int) -> None:
        if reg != Register.MSR:
            self.registers[reg] = value

    def _apply(self, *regs: int) -> None:
        uart = self.port
        touched = set(regs)
        if touched & {Register.PRESCALER, Register.DIVISOR}:
            uart.host_set_line(rate=divisor_rate(self.registers[Register.PRESCALER], self.registers[Register.DIVISOR]))
        if Register.LCR in touched:
            self._apply_lcr(uart, self.registers[Register.LCR])
        if Register.FLOW_CTL in touched:
            uart.host_set_line(flow=FlowControl.RTS_CTS if self.registers[Register.FLOW_CTL] & 0x01
                               else FlowControl.NONE)
        if touched & {Register.BREAK, Register.LCR}:
            uart.host_set_break(not self.registers[Register.BREAK] & 0x01)

    @staticmethod
    def _apply_lcr(uart: Uart, lcr: int) -> None:
        if lcr & LCR_ENABLE_PAR:
            if lcr & LCR_MARK_SPACE:
                parity = Parity.SPACE if lcr & LCR_PAR_EVEN else Parity.MARK
            else:
                parity = Parity.EVEN if lcr & LCR_PAR_EVEN else Parity.ODD
        else:
            parity = Parity.NONE
        uart.host_set_line(data_bits=5 + (lcr & 0x03), parity=parity,
                           stop_bits=StopBits.TWO if lcr & LCR_STOP_BITS_2 else StopBits.ONE)


class Ch340(UsbSerialDevice):
    """A CH340 USB-serial adapter (1a86:7523): ``Ch340(backend="loopback")``."""

    chip: Ch340Function

    def __init__(self, backend: BackendSpec = None, *, version: int = 0x31, buffer_size: int = DEFAULT_BUFFER_SIZE,
                 **kwargs: object) -> None:
        identity: dict[str, object] = {
            "vendor_id": WCH_VID, "product_id": CH340_PID, "device_version": 0x0254, "product": "USB Serial",
            "speed": Speed.FULL, "max_power_ma": 98, "usb_version": 0x0110, "max_packet_size0": 8,
        }
        identity.update(kwargs)
        super().__init__(Ch340Function(backend, version=version, buffer_size=buffer_size), **identity)
