"""Silicon Labs CP2102 and CP2105, as Linux's ``cp210x`` drives them (Silicon Labs AN571).

The chips
=========

=======  =========  ======  =============================================================
chip     id         part    ports (interfaces, endpoints; full speed, 64-byte bulk)
=======  =========  ======  =============================================================
CP2102   10c4:ea60  0x02    1: bulk IN 0x81, OUT 0x01
CP2105   10c4:ea70  0x05    2: ECI (enhanced) 0x81/0x01, SCI (standard) 0x82/0x02
=======  =========  ======  =============================================================

Interfaces are vendor-specific (0xFF/0x00/0x00).  Bytes pass through the bulk pair as
they are; modem status is read with GET_MDMSTS (the chips have no interrupt endpoint).

Requests (bmRequestType 0x41 out, 0xC1 in, wIndex = interface)
==============================================================

======  ==============  ========================================================
0x00    IFC_ENABLE      wValue 1 enables the UART, 0 disables it
0x01/2  SET/GET_BAUDDIV divisor of 3.6864 MHz (2 bytes)
0x03/4  SET/GET_LINE_CTL bits 0-3 stop bits (1, 1.5, 2), 4-7 parity (none, odd,
                        even, mark, space), 8-15 data bits (5-8)
0x05    SET_BREAK       wValue 1 on, 0 off
0x07    SET_MHS         bit 0 DTR, 1 RTS; bits 8/9 say which to change
0x08    GET_MDMSTS      1 byte: DTR 0x01, RTS 0x02, CTS 0x10, DSR 0x20, RI 0x40,
                        DCD 0x80
0x0B/C  SET/GET_EVENTMASK  kept
0x0E/19 GET/SET_CHARS   6 special characters (EOF, error, break, event, XON, XOFF)
0x0F    GET_PROPS       the COMM_PROP structure (maximum rate, capabilities)
0x10    GET_COMM_STATUS errors, hold reasons, bytes queued each way
0x11    RESET, 0x12 PURGE (bit 0/2 transmit queue, 1/3 receive queue)
0x13/4  SET/GET_FLOW    16 bytes: ulControlHandshake (DTR mode, CTS/DSR
                        handshake), ulFlowReplace (RTS mode, XON/XOFF), limits
0x15    EMBED_EVENTS    wValue: escape character (0 off): the chip sends ESC
                        0x00 for a data byte equal to ESC
0x16    GET_EVENTSTATE  2 bytes, 0
0x1D/E  GET/SET_BAUDRATE 4 bytes, bits per second; the chip runs at the rate its
                        generator makes (:func:`cp2102_rate`, :func:`cp2105_eci_rate`)
0xFF    VENDOR_SPECIFIC wValue 0x370B part number, 0x000E firmware version
                        (CP2105), 0x3711 device mode, 0x370C port configuration,
                        0x00C2 GPIO latch read, 0x37E1 latch write
======  ==============  ========================================================

Everything else stalls and is logged.
"""

from __future__ import annotations

import enum
import functools
import logging
import struct
from dataclasses import dataclass

from vusb.devices.cdc_acm.backends import BackendSpec
from vusb.devices.cdc_acm.spec import Parity, StopBits
from vusb.devices.usb_serial.chip import SerialChip, UsbSerialDevice, make_ports
from vusb.devices.usb_serial.uart import DEFAULT_BUFFER_SIZE, FlowControl, ModemStatus, Uart

from vusb.constants import Recipient, RequestType, Speed, TransferType
from vusb.descriptors import InterfaceDescriptor
from vusb.device import NOT_HANDLED, BuildContext, ControlResult, Device
from vusb.errors import DeviceDefinitionError
from vusb.urb import SetupPacket

log = logging.getLogger("vusb.usb_serial.cp210x")

SILABS_VID = 0x10C4


class Request(enum.IntEnum):
    IFC_ENABLE = 0x00
    SET_BAUDDIV = 0x01
    GET_BAUDDIV = 0x02
    SET_LINE_CTL = 0x03
    GET_LINE_CTL = 0x04
    SET_BREAK = 0x05
    IMM_CHAR = 0x06
    SET_MHS = 0x07
    GET_MDMSTS = 0x08
    SET_XON = 0x09
    SET_XOFF = 0x0A
    SET_EVENTMASK = 0x0B
    GET_EVENTMASK = 0x0C
    SET_CHAR = 0x0D
    GET_CHARS = 0x0E
    GET_PROPS = 0x0F
    GET_COMM_STATUS = 0x10
    RESET = 0x11
    PURGE = 0x12
    SET_FLOW = 0x13
    GET_FLOW = 0x14
    EMBED_EVENTS = 0x15
    GET_EVENTSTATE = 0x16
    SET_CHARS = 0x19
    GET_BAUDRATE = 0x1D
    SET_BAUDRATE = 0x1E
    VENDOR_SPECIFIC = 0xFF


class Vendor(enum.IntEnum):
    """wValue of VENDOR_SPECIFIC."""

    GET_FW_VER = 0x000E
    READ_LATCH = 0x00C2
    GET_PARTNUM = 0x370B
    GET_PORTCONFIG = 0x370C
    GET_DEVICEMODE = 0x3711
    WRITE_LATCH = 0x37E1


IN_REQUESTS = {Request.GET_BAUDDIV, Request.GET_LINE_CTL, Request.GET_MDMSTS, Request.GET_EVENTMASK,
               Request.GET_CHARS, Request.GET_PROPS, Request.GET_COMM_STATUS, Request.GET_FLOW,
               Request.GET_EVENTSTATE, Request.GET_BAUDRATE}

# GET_MDMSTS / SET_MHS bits
MHS_DTR, MHS_RTS, MHS_CTS, MHS_DSR, MHS_RI, MHS_DCD = 0x01, 0x02, 0x10, 0x20, 0x40, 0x80
# SET_FLOW: ulControlHandshake
HS_DTR_MASK, HS_CTS_HANDSHAKE, HS_DSR_HANDSHAKE = 0x03, 0x08, 0x10
# SET_FLOW: ulFlowReplace
FR_AUTO_TRANSMIT, FR_AUTO_RECEIVE, FR_RTS_SHIFT = 0x01, 0x02, 6

BAUD_CLOCK = 3_686_400
"""The CP2102's baud generator clock for SET_BAUDDIV."""

_PARITY = {0: Parity.NONE, 1: Parity.ODD, 2: Parity.EVEN, 3: Parity.MARK, 4: Parity.SPACE}
_STOP = {0: StopBits.ONE, 1: StopBits.ONE_AND_HALF, 2: StopBits.TWO}

# AN205 table 1: each rate a CP2102 makes, and the highest request it serves with it.
AN205_RATES = (
    (300, 300), (600, 600), (1200, 1200), (1800, 1800), (2400, 2400), (4000, 4000), (4800, 4803),
    (7200, 7207), (9600, 9612), (14400, 14428), (16000, 16062), (19200, 19250), (28800, 28912),
    (38400, 38601), (51200, 51558), (56000, 56280), (57600, 58053), (64000, 64111), (76800, 77608),
    (115200, 117028), (128000, 129347), (153600, 156868), (230400, 237832), (250000, 254234),
    (256000, 273066), (460800, 491520), (500000, 567138), (576000, 670254), (921600, 1 << 32),
)


def cp2102_rate(requested: int) -> int:
    """The rate a CP2102 (and the CP2105's standard port) makes when asked for ``requested`` (AN205 table 1)."""
    for rate, highest in AN205_RATES:
        if requested <= highest:
            return rate
    return AN205_RATES[-1][0]


def cp2105_eci_rate(requested: int) -> int:
    """The rate the CP2105's enhanced port makes: 48 MHz / (2 x prescale x divisor), nearest divisor."""
    requested = min(max(requested, 300), 2_000_000)
    prescale = 4 if requested <= 365 else 1
    divisor = max(1, round(48_000_000 / (2 * prescale * requested)))
    return 48_000_000 // (2 * prescale * divisor)


@dataclass(frozen=True)
class ChipModel:
    name: str
    product_id: int
    part_number: int
    product: str
    port_names: tuple[str, ...]


CP2102 = ChipModel("CP2102", 0xEA60, 0x02, "CP2102 USB to UART Bridge Controller", ("",))
CP2105 = ChipModel("CP2105", 0xEA70, 0x05, "CP2105 Dual USB to UART Bridge Controller",
                   ("Enhanced Com Port", "Standard Com Port"))
CHIPS = {"cp2102": CP2102, "cp2105": CP2105}

_FLOW_LAYOUT = struct.Struct("<IIII")


class _PortState:
    def __init__(self) -> None:
        self.line_ctl = 0x0800  # 8N1
        self.requested_rate = 9600
        self.control_handshake = 0x01  # DTR active
        self.flow_replace = 0x40  # RTS active
        self.xon_limit = 128
        self.xoff_limit = 128
        self.chars = bytes((0, 0, 0, 0, 0x11, 0x13))
        self.event_mask = 0
        self.escape = 0


class Cp210xFunction(SerialChip):
    """A CP2102 or CP2105: ``chip="cp2102"`` or ``"cp2105"``."""

    def __init__(self, chip: str = "cp2102", backend: BackendSpec | list[BackendSpec] = None, *,
                 buffer_size: int = DEFAULT_BUFFER_SIZE, firmware_version: tuple[int, int, int] = (1, 0, 8)) -> None:
        model = CHIPS.get(chip.lower())
        if model is None:
            raise DeviceDefinitionError(f"unknown CP210x chip {chip!r}: expected one of {', '.join(CHIPS)}")
        self.model = model
        self.chip_name = model.name
        names = [f"{model.name} {n or 'port'}" for n in model.port_names]
        super().__init__(make_ports(len(model.port_names), backend, names, buffer_size))
        self.firmware_version = firmware_version
        self.state = [_PortState() for _ in self.ports]
        self.latch = 0xFF
        self.interfaces: list[int] = []
        self.in_addresses: list[int] = []
        self.out_addresses: list[int] = []
        for i, uart in enumerate(self.ports):
            uart.enabled = False
            uart.in_transform = functools.partial(self._escape, i)

    def port_label(self, index: int) -> str:
        return ("ECI", "SCI")[index] if self.model is CP2105 else "A"

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        if ctx.speed != Speed.FULL:
            raise DeviceDefinitionError(f"the {self.model.name} is a full-speed device")
        out = []
        for i, port_name in enumerate(self.model.port_names):
            number = ctx.interface_number()
            bulk_in = ctx.endpoint(True, TransferType.BULK, max_packet_size=64, preferred=0x81 + i)
            bulk_out = ctx.endpoint(False, TransferType.BULK, max_packet_size=64, preferred=0x01 + i)
            self.interfaces.append(number)
            self.in_addresses.append(bulk_in.address)
            self.out_addresses.append(bulk_out.address)
            name = ctx.string(port_name or self.model.product)
            out.append(InterfaceDescriptor(number, 0, 0xFF, 0x00, 0x00, name, (bulk_in, bulk_out)))
        return out

    def bind(self, device: Device) -> None:
        super().bind(device)
        for i, uart in enumerate(self.ports):
            device.endpoint(self.in_addresses[i]).handler = uart.bulk_in_raw
            device.endpoint(self.out_addresses[i]).handler = uart.bulk_out

    # ------------------------------------------------------------ requests
    def control(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if setup.type != RequestType.VENDOR or setup.recipient not in (Recipient.INTERFACE, Recipient.DEVICE):
            return NOT_HANDLED
        self.record(setup)
        interface = setup.index & 0xFF
        if interface not in self.interfaces:
            raise self.refuse(setup, f"wIndex {setup.index} is not an interface of the {self.model.name}")
        i = self.interfaces.index(interface)
        try:
            req = Request(setup.request)
        except ValueError:
            raise self.refuse(setup, f"unknown request 0x{setup.request:02x}") from None
        if req == Request.VENDOR_SPECIFIC:
            return self._vendor(setup, data, i)
        if setup.recipient != Recipient.INTERFACE:
            raise self.refuse(setup, f"{req.name} sent to the device instead of the interface")
        if (req in IN_REQUESTS) != setup.is_in:
            raise self.refuse(setup, f"{req.name} in the wrong direction")
        return self._request(req, setup, data, i)

    def _request(self, req: Request, setup: SetupPacket, data: bytes, i: int) -> ControlResult:
        uart, st = self.ports[i], self.state[i]
        v = setup.value
        if req == Request.IFC_ENABLE:
            uart.enabled = bool(v & 1)
            if not uart.enabled:
                st.escape = 0  # disabling the interface ends event insertion
            return None
        if req == Request.SET_BAUDRATE:
            if len(data) != 4:
                raise self.refuse(setup, f"SET_BAUDRATE carries 4 bytes, not {len(data)}")
            st.requested_rate = int.from_bytes(data, "little")
            if st.requested_rate == 0:
                raise self.refuse(setup, "SET_BAUDRATE of 0 bps")
            uart.host_set_line(rate=self._actual_rate(i, st.requested_rate))
            return None
        if req == Request.GET_BAUDRATE:
            return uart.line.rate.to_bytes(4, "little")
        if req == Request.SET_BAUDDIV:
            if v == 0:
                raise self.refuse(setup, "SET_BAUDDIV with divisor 0")
            uart.host_set_line(rate=BAUD_CLOCK // v)
            return None
        if req == Request.GET_BAUDDIV:
            return (max(1, round(BAUD_CLOCK / uart.line.rate)) & 0xFFFF).to_bytes(2, "little")
        if req == Request.SET_LINE_CTL:
            return self._set_line_ctl(setup, uart, st)
        if req == Request.GET_LINE_CTL:
            return st.line_ctl.to_bytes(2, "little")
        if req == Request.SET_BREAK:
            uart.host_set_break(bool(v & 1))
            return None
        if req == Request.SET_MHS:
            uart.host_set_dtr_rts(dtr=bool(v & MHS_DTR) if v & 0x0100 else None,
                                  rts=bool(v & MHS_RTS) if v & 0x0200 else None)
            return None
        if req == Request.GET_MDMSTS:
            return bytes((self._modem_status(uart),))
        if req == Request.SET_FLOW:
            return self._set_flow(setup, data, uart, st)
        if req == Request.GET_FLOW:
            return _FLOW_LAYOUT.pack(st.control_handshake, st.flow_replace, st.xon_limit, st.xoff_limit)
        if req == Request.PURGE:
            uart.purge(to_host=bool(v & 0x0A), from_host=bool(v & 0x05))
            return None
        if req == Request.GET_COMM_STATUS:
            queued_out = min(len(uart.from_host), 640)  # what the host sent that has not left the chip
            queued_in = min(len(uart.to_host), 576)
            return struct.pack("<IIIIBBB", 0, 0, queued_in, queued_out, 0, 0, 0)
        if req == Request.EMBED_EVENTS:
            st.escape = v & 0xFF
            return None
        if req == Request.GET_EVENTSTATE:
            return b"\x00\x00"
        if req == Request.SET_EVENTMASK:
            st.event_mask = v
            return None
        if req == Request.GET_EVENTMASK:
            return st.event_mask.to_bytes(2, "little")
        if req == Request.SET_CHARS:
            if len(data) != 6:
                raise self.refuse(setup, f"SET_CHARS carries 6 bytes, not {len(data)}")
            st.chars = bytes(data)
            return None
        if req == Request.GET_CHARS:
            return st.chars
        if req == Request.SET_CHAR:
            index = v & 0xFF
            if index > 5:
                raise self.refuse(setup, f"SET_CHAR index {index}")
            chars = bytearray(st.chars)
            chars[index] = (v >> 8) & 0xFF
            st.chars = bytes(chars)
            return None
        if req == Request.GET_PROPS:
            return self._props(i)
        # RESET, IMM_CHAR, SET_XON, SET_XOFF: accepted, nothing to keep
        return None

    def _actual_rate(self, i: int, requested: int) -> int:
        if self.model is CP2105 and i == 0:
            return cp2105_eci_rate(requested)
        return cp2102_rate(requested)

    def _set_line_ctl(self, setup: SetupPacket, uart: Uart, st: _PortState) -> ControlResult:
        v = setup.value
        stop, parity, bits = v & 0x0F, (v >> 4) & 0x0F, v >> 8
        if stop not in _STOP or parity not in _PARITY or bits not in (5, 6, 7, 8):
            raise self.refuse(setup, f"SET_LINE_CTL 0x{v:04x}: {bits} data bits, parity {parity}, stop code {stop}")
        st.line_ctl = v
        uart.host_set_line(data_bits=bits, parity=_PARITY[parity], stop_bits=_STOP[stop])
        return None

    def _set_flow(self, setup: SetupPacket, data: bytes, uart: Uart, st: _PortState) -> ControlResult:
        if len(data) != _FLOW_LAYOUT.size:
            raise self.refuse(setup, f"SET_FLOW carries 16 bytes, not {len(data)}")
        st.control_handshake, st.flow_replace, st.xon_limit, st.xoff_limit = _FLOW_LAYOUT.unpack(data)
        dtr_mode = st.control_handshake & HS_DTR_MASK
        rts_mode = (st.flow_replace >> FR_RTS_SHIFT) & 0x03
        if st.control_handshake & HS_CTS_HANDSHAKE:
            flow = FlowControl.RTS_CTS
        elif st.control_handshake & HS_DSR_HANDSHAKE:
            flow = FlowControl.DTR_DSR
        elif st.flow_replace & (FR_AUTO_TRANSMIT | FR_AUTO_RECEIVE):
            flow = FlowControl.XON_XOFF
        else:
            flow = FlowControl.NONE
        uart.host_set_line(flow=flow)
        # Mode 1 asserts the line, 2 hands it to the handshake (asserted while the chip can take bytes).
        uart.host_set_dtr_rts(dtr=dtr_mode in (1, 2), rts=rts_mode in (1, 2))
        return None

    @staticmethod
    def _modem_status(uart: Uart) -> int:
        m = uart.modem
        return ((MHS_DTR if uart.dtr else 0) | (MHS_RTS if uart.rts else 0) | (MHS_CTS if m & ModemStatus.CTS else 0)
                | (MHS_DSR if m & ModemStatus.DSR else 0) | (MHS_RI if m & ModemStatus.RI else 0)
                | (MHS_DCD if m & ModemStatus.DCD else 0))

    def _props(self, i: int) -> bytes:
        """The COMM_PROP structure (AN571 table 8): the port's limits and capabilities."""
        max_rate = 2_000_000 if self.model is CP2105 and i == 0 else 921_600
        return struct.pack(
            "<HH9IHH4I",
            66, 0x0100,  # wLength, bcdVersion
            1,  # ulServiceMask: serial
            0,  # reserved
            640, 576,  # ulMaxTxQueue, ulMaxRxQueue
            max_rate,  # ulMaxBaud
            1,  # ulProvSubType: RS-232
            0x3F,  # ulProvCapabilities: DTR/DSR, RTS/CTS, DCD, parity check, XON/XOFF, settable XON/XOFF
            0x7F,  # ulSettableParams
            0x1007FFFF,  # ulSettableBaud
            0x000F,  # wSettableData: 5, 6, 7, 8 data bits
            0x1F07,  # wSettableStopParity
            640, 576,  # ulCurrentTxQueue, ulCurrentRxQueue
            0, 0,  # ulProvSpec1, ulProvSpec2
        ).ljust(66, b"\x00")  # the provider name, empty

    def _vendor(self, setup: SetupPacket, data: bytes, i: int) -> ControlResult:
        what = setup.value
        if what == Vendor.WRITE_LATCH and not setup.is_in:
            if self.model is CP2105 and len(data) >= 2:
                mask, state = data[0], data[1]
            else:
                mask, state = setup.index & 0xFF, setup.index >> 8
            self.latch = (self.latch & ~mask) | (state & mask)
            return None
        if not setup.is_in:
            raise self.refuse(setup, f"vendor-specific write 0x{what:04x}")
        if what == Vendor.GET_PARTNUM:
            answer = bytes((self.model.part_number,))
        elif what == Vendor.GET_FW_VER and self.model is CP2105:
            answer = bytes(self.firmware_version)
        elif what == Vendor.GET_DEVICEMODE and self.model is CP2105:
            answer = b"\x00\x00"  # both ports in modem mode: their pins are RS-232 lines, not GPIOs
        elif what == Vendor.GET_PORTCONFIG and self.model is CP2105:
            answer = b""  # factory configuration: reset and suspend latches and modes all zero
        elif what == Vendor.READ_LATCH:
            answer = bytes((self.latch,))
        else:
            raise self.refuse(setup, f"unknown vendor-specific read 0x{what:04x}")
        # The chip fills the whole data stage a genuine part is asked for (cp210x tells clones by a short answer).
        return answer.ljust(setup.length, b"\x00")[: setup.length]

    # ------------------------------------------------------------ data path
    def _escape(self, i: int, data: bytes) -> bytes:
        esc = self.state[i].escape
        if not esc or esc not in data:
            return data
        return data.replace(bytes((esc,)), bytes((esc, 0)))


class Cp210xDevice(UsbSerialDevice):
    """A Silicon Labs CP210x adapter: ``Cp210xDevice("cp2102", backend="loopback")``."""

    chip: Cp210xFunction

    def __init__(self, chip: str = "cp2102", backend: BackendSpec | list[BackendSpec] = None, *,
                 serial_number: str = "0001", buffer_size: int = DEFAULT_BUFFER_SIZE, **kwargs: object) -> None:
        function = Cp210xFunction(chip, backend, buffer_size=buffer_size)
        model = function.model
        identity: dict[str, object] = {
            "vendor_id": SILABS_VID, "product_id": model.product_id, "device_version": 0x0100,
            "manufacturer": "Silicon Labs", "product": model.product, "serial_number": serial_number,
            "speed": Speed.FULL, "max_power_ma": 100, "usb_version": 0x0110 if model is CP2102 else 0x0200,
            "max_packet_size0": 64,
        }
        identity.update(kwargs)
        super().__init__(function, **identity)


class Cp2102(Cp210xDevice):
    """A CP2102 (10c4:ea60): one port."""

    def __init__(self, backend: BackendSpec = None, **kwargs: object) -> None:
        super().__init__("cp2102", backend, **kwargs)  # type: ignore[arg-type]


class Cp2105(Cp210xDevice):
    """A CP2105 (10c4:ea70): the enhanced port (interface 0) and the standard port (interface 1)."""

    def __init__(self, backend: BackendSpec | list[BackendSpec] = None, **kwargs: object) -> None:
        super().__init__("cp2105", backend, **kwargs)  # type: ignore[arg-type]
