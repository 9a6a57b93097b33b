"""FTDI FT232R and FT2232H, as Linux's ``ftdi_sio`` drives them.

The chips
=========

========  =========  =========  ==========  ======================================
chip      id         bcdDevice  speed       ports (interfaces, endpoints)
========  =========  =========  ==========  ======================================
FT232R    0403:6001  0x0600     full        1: bulk IN 0x81, OUT 0x02, 64 bytes
FT2232H   0403:6010  0x0700     high        2: A 0x81/0x02, B 0x83/0x04, 512 bytes
========  =========  =========  ==========  ======================================

Every interface is vendor-specific (class 0xFF/0xFF/0xFF).  ``ftdi_sio`` tells the
chip type from bcdDevice and the number of interfaces, so both are fixed here.

Vendor requests (bmRequestType 0x40 out, 0xC0 in, to the device)
================================================================

The port is wIndex's low byte: 0 or 1 is port A, 2 port B (FT2232H).  On the
FT232R, SET_BAUD_RATE uses wIndex for divisor bits instead, the chip having one port.

=====  ==================  ====================================================
0x00   RESET               wValue 0 resets the port and clears both buffers,
                           1 clears the receive buffer (bytes for the host),
                           2 the transmit buffer (bytes from the host)
0x01   MODEM_CTRL          bit 0 DTR, bit 1 RTS; bits 8/9 say which to change
0x02   SET_FLOW_CTRL       wIndex high byte: 0x01 RTS/CTS, 0x02 DTR/DSR,
                           0x04 XON/XOFF (wValue: XON char, XOFF char), 0 none
0x03   SET_BAUD_RATE       the divisor (see :func:`divisor_rate`)
0x04   SET_DATA            bits 0-7 data bits, 8-10 parity (none, odd, even,
                           mark, space), 11-13 stop bits (1, 1.5, 2), 14 break
0x05   GET_MODEM_STATUS    2 bytes: the modem status and line status bytes
0x06   SET_EVENT_CHAR      accepted and kept
0x07   SET_ERROR_CHAR      accepted and kept
0x09   SET_LATENCY_TIMER   wValue 1..255 ms
0x0A   GET_LATENCY_TIMER   1 byte (16 after power-up)
0x0B   SET_BITMODE         kept (mask, mode); the UART keeps working
0x0C   READ_PINS           1 byte
0x90   READ_EEPROM         wIndex: word address; 2 bytes
0x91   WRITE_EEPROM        wValue to word wIndex (kept in memory)
0x92   ERASE_EEPROM        every word 0xFFFF
=====  ==================  ====================================================

Anything else stalls and is logged.

Bulk IN framing
===============

Every packet of max-packet-size bytes (64 full speed, 512 high speed) that the chip
sends starts with two status bytes; an IN transfer is a run of such packets::

    byte 0  modem status: bit 0 always 1, 4 CTS, 5 DSR, 6 RI, 7 DCD
    byte 1  line status:  5 THRE, 6 TEMT (transmitter empty: always set here)

When the chip has no data it still sends a status-only packet when its latency
timer runs out (16 ms by default) and at once when a modem input changes: that is
how ``ftdi_sio`` learns of CTS, DSR, RI and DCD.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from dataclasses import dataclass
from fractions import Fraction

from vusb.devices.cdc_acm.backends import BackendSpec
from vusb.devices.cdc_acm.spec import Parity, StopBits
from vusb.devices.usb_serial.chip import SerialChip, UsbSerialDevice, make_ports
from vusb.devices.usb_serial.uart import DEFAULT_BUFFER_SIZE, FlowControl, ModemStatus, Uart

from vusb.constants import Recipient, RequestType, Speed, TransferType
from vusb.descriptors import InterfaceDescriptor
from vusb.device import NOT_HANDLED, BuildContext, ControlResult, Device
from vusb.errors import DeviceDefinitionError
from vusb.urb import Completion, SetupPacket, Urb

log = logging.getLogger("vusb.usb_serial.ftdi")

FTDI_VID = 0x0403


class Request(enum.IntEnum):
    RESET = 0x00
    MODEM_CTRL = 0x01
    SET_FLOW_CTRL = 0x02
    SET_BAUD_RATE = 0x03
    SET_DATA = 0x04
    GET_MODEM_STATUS = 0x05
    SET_EVENT_CHAR = 0x06
    SET_ERROR_CHAR = 0x07
    SET_LATENCY_TIMER = 0x09
    GET_LATENCY_TIMER = 0x0A
    SET_BITMODE = 0x0B
    READ_PINS = 0x0C
    READ_EEPROM = 0x90
    WRITE_EEPROM = 0x91
    ERASE_EEPROM = 0x92


# Modem status byte (first byte of every IN packet, and of GET_MODEM_STATUS).
STATUS_B0 = 0x01
STATUS_CTS = 0x10
STATUS_DSR = 0x20
STATUS_RI = 0x40
STATUS_DCD = 0x80
# Line status byte.
LINE_THRE = 0x20
LINE_TEMT = 0x40

_PARITY = {0: Parity.NONE, 1: Parity.ODD, 2: Parity.EVEN, 3: Parity.MARK, 4: Parity.SPACE}
_STOP = {0: StopBits.ONE, 1: StopBits.ONE_AND_HALF, 2: StopBits.TWO}

# The sub-integer part of a divisor, in eighths, for each 3-bit code the chip takes.
FRACTION_EIGHTHS = (0, 4, 2, 1, 3, 5, 6, 7)


@dataclass(frozen=True)
class ChipModel:
    name: str
    product_id: int
    bcd_device: int
    speed: Speed
    ports: int
    product: str
    eeprom_words: int
    high_speed_clock: bool  # the 120 MHz baud clock of the H chips (divisor bit 17)


FT232R = ChipModel("FT232R", 0x6001, 0x0600, Speed.FULL, 1, "FT232R USB UART", 64, False)
FT2232H = ChipModel("FT2232H", 0x6010, 0x0700, Speed.HIGH, 2, "Dual RS232-HS", 128, True)
CHIPS = {"ft232r": FT232R, "ft2232h": FT2232H}


def divisor_rate(value: int, index: int, *, high_speed_clock: bool) -> int:
    """The bit rate an FTDI chip produces from a SET_BAUD_RATE request.

    The divisor is 14 integer bits (wValue bits 0-13) plus a 3-bit code for eighths
    (wValue bits 14-15 and bit 16, which arrives in wIndex).  The base is 3 MHz
    (48 MHz / 16); on H chips bit 17 switches to 12 MHz (120 MHz / 10).  Divisor 0
    means 3 MHz (12 MHz) and divisor 1 means 2 MHz (8 MHz)::

        divisor_rate(0x4138, 0, high_speed_clock=False) == 9600    # 312.5
        divisor_rate(0x001A, 0, high_speed_clock=False) == 115385  # 26: 115200 is 0.16 % off
    """
    integer = value & 0x3FFF
    code = ((value >> 14) & 0x03) | ((index & 0x01) << 2)
    base = 12_000_000 if high_speed_clock and index & 0x02 else 3_000_000
    if integer == 0 and code == 0:
        return base
    if integer == 1 and code == 0:
        return base * 2 // 3
    divisor = Fraction(8 * integer + FRACTION_EIGHTHS[code], 8)
    if divisor < 1:
        divisor = Fraction(1)
    return round(base / divisor)


def encode_divisor(rate: int, *, high_speed_clock: bool) -> tuple[int, int]:
    """(wValue, divisor bits 16-17) the way ``ftdi_sio`` encodes ``rate``; the inverse of :func:`divisor_rate`.

    For tests and documentation: what the driver sends for a requested rate.
    """
    order = (0, 3, 2, 4, 1, 5, 6, 7)  # code for each number of eighths
    if high_speed_clock and rate >= 1200:
        eighths = round(8 * 12_000_000 / rate)
        extra = 0x20000
    else:
        eighths = round(8 * 3_000_000 / rate)
        extra = 0
    divisor = (eighths >> 3) | (order[eighths & 7] << 14)
    if divisor == 1:
        divisor = 0
    elif divisor == 0x4001:
        divisor = 1
    divisor |= extra
    return divisor & 0xFFFF, divisor >> 16


def _string_descriptor(text: str) -> bytes:
    raw = text.encode("utf-16-le")
    return bytes((len(raw) + 2, 3)) + raw


def eeprom_checksum(words: list[int]) -> int:
    """FTDI's EEPROM checksum over every word but the last: start 0xAAAA, xor each word, rotate left by one."""
    value = 0xAAAA
    for word in words[:-1]:
        value ^= word
        value = ((value << 1) | (value >> 15)) & 0xFFFF
    return value


def default_eeprom(model: ChipModel, manufacturer: str, product: str, serial: str) -> list[int]:
    """The EEPROM contents a chip leaves FTDI's factory with: ids, power, strings, checksum.

    Layout (byte offsets): 0x02 vendor id, 0x04 product id, 0x06 bcdDevice, 0x08
    bmAttributes, 0x09 max power in 2 mA, 0x0A chip options, 0x0E/0x10/0x12 offset
    (with bit 7 set) and length of the manufacturer, product and serial strings,
    0x14 the FT232R's CBUS pin functions (TXLED#, RXLED#, TXDEN, PWREN#, SLEEP#),
    the strings as USB string descriptors, the checksum in the last word.
    """
    size = model.eeprom_words * 2
    image = bytearray(size)
    image[0:2] = (0x4000 if model is FT232R else 0x0808).to_bytes(2, "little")
    image[2:4] = FTDI_VID.to_bytes(2, "little")
    image[4:6] = model.product_id.to_bytes(2, "little")
    image[6:8] = model.bcd_device.to_bytes(2, "little")
    image[8] = 0xA0  # bus powered, remote wakeup
    image[9] = 90 // 2
    image[10] = 0x08  # use the serial number
    if model is FT232R:
        image[0x14:0x17] = bytes((0x23, 0x10, 0x05))
        offset = 0x18
    else:
        image[0x18] = 0x56  # 93C56 EEPROM
        offset = 0x1A
    for slot, text in ((0x0E, manufacturer), (0x10, product), (0x12, serial)):
        desc = _string_descriptor(text)
        if offset + len(desc) > size - 2:
            raise DeviceDefinitionError(f"the {model.name} EEPROM has no room for the string {text!r}")
        image[offset : offset + len(desc)] = desc
        image[slot] = 0x80 | offset
        image[slot + 1] = len(desc)
        offset += len(desc)
    words = [int.from_bytes(image[i : i + 2], "little") for i in range(0, size, 2)]
    words[-1] = eeprom_checksum(words)
    return words


class _PortState:
    """What an FTDI port keeps beside its UART."""

    def __init__(self) -> None:
        self.latency_ms = 16
        self.event_char = 0
        self.error_char = 0
        self.bitmode = 0
        self.divisor = (0x4138, 0)  # 9600 bps after power-up
        self.in_waiter: tuple[Urb, asyncio.Future[Completion]] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.sent_modem = -1  # modem status byte last sent to the host


class FtdiFunction(SerialChip):
    """An FT232R or FT2232H: ``chip="ft232r"`` or ``"ft2232h"``.

    ``backend`` is one spec for every port, or a list with one per port.
    """

    def __init__(self, chip: str = "ft232r", backend: BackendSpec | list[BackendSpec] = None, *,
                 manufacturer: str = "FTDI", product: str | None = None, serial_number: str = "A10K1B2C",
                 buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        model = CHIPS.get(chip.lower())
        if model is None:
            raise DeviceDefinitionError(f"unknown FTDI chip {chip!r}: expected one of {', '.join(CHIPS)}")
        self.model = model
        self.chip_name = model.name
        super().__init__(make_ports(model.ports, backend, [f"{model.name} port {c}" for c in "AB"[: model.ports]],
                                    buffer_size))
        self.eeprom = default_eeprom(model, manufacturer, product or model.product, serial_number)
        self.state = [_PortState() for _ in self.ports]
        self.interfaces: list[int] = []
        self.in_addresses: list[int] = []
        self.out_addresses: list[int] = []
        self.max_packet = 64
        for i, uart in enumerate(self.ports):
            uart.add_modem_listener(functools.partial(self._feed, i))
            uart.to_host.add_data_listener(functools.partial(self._feed, i))

    # ------------------------------------------------------------ declaration
    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        if ctx.speed != self.model.speed and not (self.interfaces and ctx.speed == Speed.FULL):
            # (A high-speed chip is also described as it would be at full speed: the other-speed configuration.)
            raise DeviceDefinitionError(f"the {self.model.name} is a {self.model.speed.name.lower()}-speed device "
                                        f"(asked for {ctx.speed.name.lower()} speed)")
        first = not self.interfaces
        mps = 512 if ctx.speed == Speed.HIGH else 64
        out: list[InterfaceDescriptor] = []
        for i in range(self.model.ports):
            number = ctx.interface_number()
            bulk_in = ctx.endpoint(True, TransferType.BULK, max_packet_size=mps, preferred=0x81 + 2 * i)
            bulk_out = ctx.endpoint(False, TransferType.BULK, max_packet_size=mps, preferred=0x02 + 2 * i)
            if first:
                self.max_packet = mps
                self.interfaces.append(number)
                self.in_addresses.append(bulk_in.address)
                self.out_addresses.append(bulk_out.address)
            name = ctx.string(self.model.product)
            out.append(InterfaceDescriptor(number, 0, 0xFF, 0xFF, 0xFF, name, (bulk_in, bulk_out)))
        return out

    def bind(self, device: Device) -> None:
        super().bind(device)
        for i in range(self.model.ports):
            device.endpoint(self.in_addresses[i]).handler = functools.partial(self._bulk_in, i)
            device.endpoint(self.out_addresses[i]).handler = self.ports[i].bulk_out

    def on_configured(self, configured: bool) -> None:
        for st in self.state:
            self._cancel(st)
        super().on_configured(configured)

    def on_reset(self) -> None:
        for st in self.state:
            self._cancel(st)
        super().on_reset()

    # ------------------------------------------------------------ vendor requests
    def _port_from_index(self, setup: SetupPacket) -> int:
        low = setup.index & 0xFF
        if low in (0, 1):
            return 0
        if low == 2 and self.model.ports > 1:
            return 1
        raise self.refuse(setup, f"wIndex 0x{setup.index:04x} names no port of the {self.model.name}")

    def control(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if setup.type != RequestType.VENDOR or setup.recipient != Recipient.DEVICE:
            return NOT_HANDLED
        self.record(setup)
        try:
            req = Request(setup.request)
        except ValueError:
            raise self.refuse(setup, f"unknown vendor request 0x{setup.request:02x}") from None
        if (req in (Request.GET_MODEM_STATUS, Request.GET_LATENCY_TIMER, Request.READ_PINS,
                    Request.READ_EEPROM)) != setup.is_in:
            raise self.refuse(setup, f"{req.name} in the wrong direction")
        if req == Request.READ_EEPROM:
            word = self.eeprom[setup.index % len(self.eeprom)]
            return word.to_bytes(2, "little")
        if req == Request.WRITE_EEPROM:
            self.eeprom[setup.index % len(self.eeprom)] = setup.value
            return None
        if req == Request.ERASE_EEPROM:
            self.eeprom = [0xFFFF] * len(self.eeprom)
            return None
        if req == Request.SET_BAUD_RATE:
            return self._set_baud_rate(setup)
        i = self._port_from_index(setup)
        uart, st = self.ports[i], self.state[i]
        if req == Request.RESET:
            if setup.value not in (0, 1, 2):
                raise self.refuse(setup, f"RESET with wValue {setup.value}")
            uart.purge(to_host=setup.value in (0, 1), from_host=setup.value in (0, 2))
            return None
        if req == Request.MODEM_CTRL:
            v = setup.value
            uart.host_set_dtr_rts(dtr=bool(v & 0x01) if v & 0x0100 else None,
                                  rts=bool(v & 0x02) if v & 0x0200 else None)
            return None
        if req == Request.SET_FLOW_CTRL:
            flags = setup.index >> 8
            flow = (FlowControl.RTS_CTS if flags & 0x01 else FlowControl.DTR_DSR if flags & 0x02
                    else FlowControl.XON_XOFF if flags & 0x04 else FlowControl.NONE)
            uart.host_set_line(flow=flow)
            return None
        if req == Request.SET_DATA:
            return self._set_data(setup, uart)
        if req == Request.GET_MODEM_STATUS:
            return bytes((self._modem_byte(uart), LINE_THRE | LINE_TEMT))
        if req == Request.SET_LATENCY_TIMER:
            st.latency_ms = setup.value & 0xFF
            return None
        if req == Request.GET_LATENCY_TIMER:
            return bytes((st.latency_ms,))
        if req == Request.SET_EVENT_CHAR:
            st.event_char = setup.value
            return None
        if req == Request.SET_ERROR_CHAR:
            st.error_char = setup.value
            return None
        if req == Request.SET_BITMODE:
            st.bitmode = setup.value
            return None
        return b"\xff"  # READ_PINS: every pin high, as an idle UART leaves them

    def _set_baud_rate(self, setup: SetupPacket) -> ControlResult:
        if self.model.ports == 1:
            i, bits = 0, setup.index & 0xFF  # the single-port chip carries divisor bit 16 in wIndex
        else:
            i, bits = self._port_from_index(setup), setup.index >> 8
        rate = divisor_rate(setup.value, bits, high_speed_clock=self.model.high_speed_clock)
        self.state[i].divisor = (setup.value, bits)
        self.ports[i].host_set_line(rate=rate)
        return None

    def _set_data(self, setup: SetupPacket, uart: Uart) -> ControlResult:
        v = setup.value
        bits, parity, stop = v & 0xFF, (v >> 8) & 0x07, (v >> 11) & 0x07
        if bits not in (7, 8) or parity not in _PARITY or stop not in _STOP:
            # The chip supports 7 or 8 data bits; ftdi_sio sends 5 and 6 too ("CS5 quirk"), which we keep as given.
            if bits not in (5, 6, 7, 8) or parity not in _PARITY or stop not in _STOP:
                raise self.refuse(setup, f"SET_DATA 0x{v:04x}: {bits} data bits, parity {parity}, stop {stop}")
            log.info("%s: %d data bits are not supported by the %s; kept as sent", uart.where, bits, self.model.name)
        uart.host_set_line(data_bits=bits, parity=_PARITY[parity], stop_bits=_STOP[stop])
        uart.host_set_break(bool(v & 0x4000))
        return None

    # ------------------------------------------------------------ bulk IN with status bytes
    @staticmethod
    def _modem_byte(uart: Uart) -> int:
        m = uart.modem
        return (STATUS_B0 | (STATUS_CTS if m & ModemStatus.CTS else 0) | (STATUS_DSR if m & ModemStatus.DSR else 0)
                | (STATUS_RI if m & ModemStatus.RI else 0) | (STATUS_DCD if m & ModemStatus.DCD else 0))

    def _frame(self, i: int, length: int) -> bytes:
        """One IN transfer: packets of at most max-packet-size bytes, each led by the two status bytes."""
        uart = self.ports[i]
        status = bytes((self._modem_byte(uart), LINE_THRE | LINE_TEMT))
        self.state[i].sent_modem = status[0]
        out = bytearray()
        mps = self.max_packet
        while len(out) + 2 <= length:
            room = min(mps, length - len(out)) - 2
            chunk = uart.to_host.get(room) if room > 0 and len(uart.to_host) else b""
            out += status + chunk
            if len(chunk) < mps - 2 or not len(uart.to_host):
                break  # a short packet (or the data ran out) ends the transfer
        return bytes(out)

    def _bulk_in(self, i: int, urb: Urb) -> Completion | asyncio.Future[Completion]:
        if urb.length < 2:
            return Completion(0, b"")
        uart, st = self.ports[i], self.state[i]
        if len(uart.to_host) or self._modem_byte(uart) != st.sent_modem:
            return Completion(0, self._frame(i, urb.length))
        waiter: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        st.in_waiter = (urb, waiter)
        self._cancel_timer(st)
        st.timer = asyncio.get_running_loop().call_later(max(st.latency_ms, 1) / 1000, self._feed, i, True)
        return waiter

    def _feed(self, i: int, timeout: bool = False) -> None:
        st = self.state[i]
        entry = st.in_waiter
        if entry is None:
            return
        uart = self.ports[i]
        if not (timeout or len(uart.to_host) or self._modem_byte(uart) != st.sent_modem):
            return
        st.in_waiter = None
        self._cancel_timer(st)
        urb, waiter = entry
        if not waiter.done():
            waiter.set_result(Completion(0, self._frame(i, urb.length)))

    @staticmethod
    def _cancel_timer(st: _PortState) -> None:
        if st.timer is not None:
            st.timer.cancel()
            st.timer = None

    def _cancel(self, st: _PortState) -> None:
        self._cancel_timer(st)
        st.in_waiter = None
        st.sent_modem = -1


class FtdiDevice(UsbSerialDevice):
    """An FTDI USB-serial adapter: ``FtdiDevice("ft232r", backend="loopback")``.

    The identity is the chip's own (0403:6001 or 0403:6010, "FTDI", the chip's
    product string); pass ``vendor_id=``... to change it.
    """

    chip: FtdiFunction

    def __init__(self, chip: str = "ft232r", backend: BackendSpec | list[BackendSpec] = None, *,
                 serial_number: str = "A10K1B2C", manufacturer: str = "FTDI", product: str | None = None,
                 buffer_size: int = DEFAULT_BUFFER_SIZE, **kwargs: object) -> None:
        function = FtdiFunction(chip, backend, manufacturer=manufacturer, product=product,
                                serial_number=serial_number, buffer_size=buffer_size)
        model = function.model
        identity: dict[str, object] = {
            "vendor_id": FTDI_VID, "product_id": model.product_id, "device_version": model.bcd_device,
            "manufacturer": manufacturer, "product": product or model.product, "serial_number": serial_number,
            "speed": model.speed, "max_power_ma": 90, "usb_version": 0x0200, "max_packet_size0": 8
            if model is FT232R else 64,
        }
        identity.update(kwargs)
        super().__init__(function, **identity)


class Ft232r(FtdiDevice):
    """An FT232R ("FT232R USB UART", 0403:6001): one port, full speed."""

    def __init__(self, backend: BackendSpec = None, **kwargs: object) -> None:
        super().__init__("ft232r", backend, **kwargs)  # type: ignore[arg-type]


class Ft2232h(FtdiDevice):
    """An FT2232H ("Dual RS232-HS", 0403:6010): two ports, high speed."""

    def __init__(self, backend: BackendSpec | list[BackendSpec] = None, **kwargs: object) -> None:
        super().__init__("ft2232h", backend, **kwargs)  # type: ignore[arg-type]

