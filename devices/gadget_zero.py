"""Gadget Zero: the Linux USB test device (0525:a4a0), source/sink and loopback.

Linux's ``g_zero`` gadget is what the host-side ``usbtest`` driver was written
against.  This module behaves like its two functions (``f_sourcesink`` and
``f_loopback`` in drivers/usb/gadget/function), so ``usbtest`` binds to a vusb
device and runs its control, bulk, unlink and halt tests against it.

One vendor-specific interface (class 0xFF) with a bulk IN and a bulk OUT
endpoint, in one of two modes:

source/sink (g_zero's configuration 3, the default one)
    Every bulk IN transfer is filled with the data pattern; every bulk OUT
    transfer is accepted and its bytes checked against the pattern.  A byte that
    does not match is logged (``bad OUT byte, buf[i] = v``), counted, and halts
    the OUT endpoint, as g_zero does: the transfer that carried it completes, the
    following ones stall until the host clears the halt.  The pattern restarts at
    each transfer, which is what the host side expects.

    ========  =======  =============================================================
    pattern   name     bytes
    ========  =======  =============================================================
    0         zeros    all zero (the default, also usbtest's default)
    1         mod63    byte *i* of a transfer is ``(i % wMaxPacketSize) % 63``
    2         none     IN sends zeros, OUT is not checked
    ========  =======  =============================================================

    Two vendor requests test control OUT and IN data stages, as usbtest's
    ``ctrl_out`` (tests 14 and 21) uses them; both need wValue = wIndex = 0 and
    wLength <= 4096 (g_zero's ep0 buffer), anything else stalls:

    ====  ==================  ================================================
    0x5b  bmRequestType 0x40  write wLength bytes into the buffer
    0x5c  bmRequestType 0xc0  read wLength bytes back from the buffer
    ====  ==================  ================================================

loopback (g_zero's configuration 2)
    What the host writes to bulk OUT comes back, transfer by transfer, on bulk
    IN.  OUT data is kept in ``buflen``-byte buffers, at most ``qlen`` of them
    (g_zero's defaults: 4096 bytes, 32 buffers).  When they are all full the OUT
    endpoint holds the host's next transfer (a NAK on the wire) until the host
    reads; an IN transfer with nothing queued waits likewise.  One IN transfer
    returns one buffer (or its first part if the host asks for less).  The
    vendor requests stall in this mode, as in g_zero.

Isochronous and interrupt endpoints (g_zero's alternate setting 1) are not
modelled: usbtest picks the first alternate setting with a bulk pair anyway.

::

    gz = GadgetZero()                        # both configurations, like g_zero
    async with Server([gz]):
        await gz.wait_configured()
        ...
        print(gz.stats.bytes_sunk, gz.stats.pattern_errors)

    Device(GadgetZeroFunction(Mode.LOOPBACK), vendor_id=0x0525, product_id=0xA4A0)
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
from collections import deque

from vusb.constants import LANG_EN_US, Direction, Recipient, RequestType, Speed, TransferType
from vusb.descriptors import (
    BosDescriptor,
    ConfigurationDescriptor,
    DeviceDescriptor,
    InterfaceDescriptor,
    SuperSpeedCapability,
    Usb2Extension,
)
from vusb.device import NOT_HANDLED, BuildContext, ControlResult, Device, Function, StringTable
from vusb.endpoint import HandlerResult
from vusb.errors import ArgumentError, DeviceDefinitionError, Stall
from vusb.function import request
from vusb.profile import Field, Located, ProfileContext
from vusb.registry import register_kind
from vusb.urb import Completion, SetupPacket, Urb

log = logging.getLogger("vusb.gadget_zero")

VENDOR_ID = 0x0525
"""NetChip, which donated the id to Linux-USB."""
PRODUCT_ID = 0xA4A0
"""Linux-USB "Gadget Zero"; usbtest binds to 0525:a4a0."""

SOURCESINK_CONFIGURATION = 3
LOOPBACK_CONFIGURATION = 2

REQUEST_WRITE_BUFFER = 0x5B
REQUEST_READ_BUFFER = 0x5C
CONTROL_BUFFER_SIZE = 4096
"""g_zero answers the vendor requests from its ep0 buffer (USB_COMP_EP0_BUFSIZ)."""

DEFAULT_BUFLEN = 4096
DEFAULT_QLEN = 32
MAX_BUFLEN = 1 << 20
MAX_QLEN = 1024

SOURCESINK_NAME = "source and sink data"
LOOPBACK_NAME = "loop input to output"
DEFAULT_SERIAL = "0123456789.0123456789.0123456789"  # g_zero's: a string that takes several packets


class Pattern(enum.IntEnum):
    """The data pattern of source/sink mode (g_zero's ``pattern`` parameter)."""

    ZEROS = 0
    MOD63 = 1
    NONE = 2


class Mode(enum.StrEnum):
    """What the interface does with bulk data."""

    SOURCE_SINK = "sourcesink"
    LOOPBACK = "loopback"


@dataclasses.dataclass
class GadgetZeroStats:
    """Counters since the function was made (or since :meth:`GadgetZeroFunction.reset_stats`)."""

    bytes_sourced: int = 0
    """Pattern bytes sent to the host on bulk IN (source/sink)."""
    bytes_sunk: int = 0
    """Bytes the host wrote to bulk OUT (source/sink)."""
    bytes_looped_out: int = 0
    """Bytes the host wrote to bulk OUT (loopback)."""
    bytes_looped_in: int = 0
    """Bytes sent back to the host on bulk IN (loopback)."""
    transfers_in: int = 0
    transfers_out: int = 0
    pattern_errors: int = 0
    """OUT transfers whose bytes did not match the pattern (each halted the OUT endpoint)."""
    control_writes: int = 0
    control_reads: int = 0
    last_error: str | None = None
    """The message of the last pattern error."""


def pattern_bytes(pattern: Pattern | int, length: int, max_packet_size: int) -> bytes:
    """The bytes a source sends (and a sink expects) in a transfer of ``length`` bytes."""
    if length < 0:
        raise ArgumentError(f"length {length} is negative")
    if max_packet_size < 1:
        raise ArgumentError(f"max_packet_size {max_packet_size} must be at least 1")
    if Pattern(pattern) != Pattern.MOD63:
        return bytes(length)
    packet = bytes((i % 63) for i in range(max_packet_size))
    count = -(-length // max_packet_size)
    return (packet * count)[:length]


class _PatternCache:
    """One pattern buffer, grown on demand, sliced for each transfer."""

    def __init__(self) -> None:
        self._key: tuple[int, int] = (-1, -1)
        self._data = b""
        self._view = memoryview(self._data)

    def _ensure(self, pattern: Pattern, length: int, max_packet_size: int) -> None:
        key = (int(pattern), max_packet_size)
        if key != self._key or len(self._data) < length:
            size = max(length, 2 * len(self._data) if key == self._key else 0, 64 * 1024)
            size += -size % max_packet_size
            self._data = pattern_bytes(pattern, size, max_packet_size)
            self._view = memoryview(self._data)
            self._key = key

    def get(self, pattern: Pattern, length: int, max_packet_size: int) -> memoryview:
        self._ensure(pattern, length, max_packet_size)
        return self._view[:length]

    def matches(self, pattern: Pattern, data: bytes | memoryview, max_packet_size: int) -> bool:
        """Whether ``data`` is what a transfer of its length should hold.

        ``bytes.startswith`` compares with memcmp; ``==`` on a memoryview goes
        item by item and costs milliseconds per MiB.
        """
        self._ensure(pattern, len(data), max_packet_size)
        return self._data.startswith(data)


class GadgetZeroFunction(Function):
    """The source/sink or loopback interface of Gadget Zero.

    ``mode`` is what the interface does in a single-configuration device.  A
    device with several configurations (see :class:`GadgetZero`) sets
    :attr:`configuration_modes` instead: the mode follows the configuration the
    host selected.

    ``pattern`` (0 zeros, 1 mod63, 2 none) is the source/sink data pattern;
    ``buflen`` and ``qlen`` size the loopback queue (and ``buflen`` is what
    g_zero calls its bulk buffer length).
    """

    name: str | None = "Gadget Zero"

    def __init__(
        self,
        mode: Mode | str = Mode.SOURCE_SINK,
        *,
        pattern: Pattern | int = Pattern.ZEROS,
        buflen: int = DEFAULT_BUFLEN,
        qlen: int = DEFAULT_QLEN,
        interface_name: str | None = None,
    ) -> None:
        super().__init__()
        try:
            self.mode = Mode(mode)
        except ValueError:
            choices = ", ".join(m.value for m in Mode)
            raise DeviceDefinitionError(f"gadget zero mode {mode!r} is not one of: {choices}") from None
        try:
            self.pattern = Pattern(pattern)
        except ValueError:
            raise DeviceDefinitionError(
                f"gadget zero pattern {pattern!r} is not 0 (zeros), 1 (mod63) or 2 (none)") from None
        if not 1 <= buflen <= MAX_BUFLEN:
            raise DeviceDefinitionError(f"gadget zero buflen {buflen} is out of range 1..{MAX_BUFLEN}")
        if not 1 <= qlen <= MAX_QLEN:
            raise DeviceDefinitionError(f"gadget zero qlen {qlen} is out of range 1..{MAX_QLEN}")
        self.buflen = buflen
        self.qlen = qlen
        self.interface_name = interface_name
        self.configuration_modes: dict[int, Mode] = {}
        """Mode per bConfigurationValue; values not listed use :attr:`mode`."""
        self.stats = GadgetZeroStats()
        self.active_mode: Mode | None = None
        """The mode of the selected configuration (None while unconfigured)."""
        self.in_address = 0
        self.out_address = 0
        self._control_buffer = bytearray(CONTROL_BUFFER_SIZE)
        self._source = _PatternCache()
        self._sink = _PatternCache()
        # Loopback: buffers waiting for the host to read them, the IN URB waiting for
        # data, and the OUT transfer held while the buffers are full.
        self._loop: deque[bytes] = deque()
        self._in_waiter: tuple[int, asyncio.Future[Completion]] | None = None
        self._held_out: tuple[list[bytes], int, asyncio.Future[Completion]] | None = None

    # ------------------------------------------------------------ declaration
    def declare(self, ctx: BuildContext, name_index: int) -> InterfaceDescriptor:
        """The interface (number from ``ctx``) with its bulk IN and OUT endpoints."""
        if ctx.speed == Speed.LOW:
            raise DeviceDefinitionError("gadget zero needs bulk endpoints, which low-speed devices cannot have")
        number = ctx.interface_number()
        source = ctx.endpoint_in(TransferType.BULK, number=(self.in_address & 0x0F) or None)
        try:
            sink = ctx.endpoint_out(TransferType.BULK, number=(self.out_address & 0x0F) or source.number)
        except DeviceDefinitionError:
            sink = ctx.endpoint_out(TransferType.BULK)
        self.in_address, self.out_address = source.address, sink.address
        self.interface_numbers = (number,)
        return InterfaceDescriptor(number, 0, 0xFF, 0, 0, name_index, (source, sink))

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        default = SOURCESINK_NAME if self.mode == Mode.SOURCE_SINK else LOOPBACK_NAME
        name = self.interface_name if self.interface_name is not None else default
        return [self.declare(ctx, ctx.string(name))]

    def bind(self, device: Device) -> None:
        device.endpoint(self.in_address).handler = self._bulk_in
        device.endpoint(self.out_address).handler = self._bulk_out

    # ------------------------------------------------------------ state
    def mode_for(self, configuration_value: int) -> Mode:
        return self.configuration_modes.get(configuration_value, self.mode)

    def reset_stats(self) -> None:
        self.stats = GadgetZeroStats()

    @property
    def queued(self) -> int:
        """Loopback buffers waiting for the host to read them."""
        return len(self._loop)

    def on_configured(self, configured: bool) -> None:
        device = self.device
        self.active_mode = self.mode_for(device.configuration_value) if configured and device is not None else None
        self._flush()

    def on_alternate(self, interface: int, alternate: int) -> None:
        self._flush()  # g_zero restarts its endpoints on SET_INTERFACE: queued data is gone

    def on_reset(self) -> None:
        self.active_mode = None
        self._flush()

    def _flush(self) -> None:
        """Forget loopback data and waiters (their URBs were answered or dropped by the endpoint)."""
        self._loop.clear()
        self._in_waiter = None
        self._held_out = None

    # ------------------------------------------------------------ bulk IN
    def _bulk_in(self, urb: Urb) -> HandlerResult:
        mode = self.active_mode
        if mode is None:
            raise Stall()
        self.stats.transfers_in += 1
        if mode == Mode.SOURCE_SINK:
            data = self._source.get(self.pattern, urb.length, self._max_packet(self.in_address))
            self.stats.bytes_sourced += len(data)
            return Completion(0, data)
        if self._loop:
            return Completion(0, self._take(urb.length))
        fut: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._in_waiter = (urb.length, fut)
        return fut

    def _take(self, length: int) -> bytes:
        """The next loopback buffer (or as much of it as an IN transfer of ``length`` holds)."""
        head = self._loop[0]
        if len(head) <= length:
            self._loop.popleft()
            data = head
        else:
            data, self._loop[0] = head[:length], head[length:]
        self.stats.bytes_looped_in += len(data)
        self._release_held()
        return data

    # ------------------------------------------------------------ bulk OUT
    def _bulk_out(self, urb: Urb) -> HandlerResult:
        mode = self.active_mode
        if mode is None:
            raise Stall()
        self.stats.transfers_out += 1
        data = urb.data
        if mode == Mode.SOURCE_SINK:
            self.stats.bytes_sunk += len(data)
            if self.pattern != Pattern.NONE:
                self._check(data)
            return Completion(0, b"", len(data))
        chunks = [bytes(data[i:i + self.buflen]) for i in range(0, len(data), self.buflen)] or [b""]
        if self._loop and len(self._loop) + len(chunks) > self.qlen:
            fut: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
            self._held_out = (chunks, len(data), fut)
            return fut  # the host's transfer waits (NAK) until it reads
        self._queue(chunks, len(data))
        return Completion(0, b"", len(data))

    def _queue(self, chunks: list[bytes], length: int) -> None:
        self._loop.extend(chunks)
        self.stats.bytes_looped_out += length
        waiter = self._in_waiter
        if waiter is not None:
            self._in_waiter = None
            want, fut = waiter
            if not fut.done():
                fut.set_result(Completion(0, self._take(want)))

    def _release_held(self) -> None:
        held = self._held_out
        if held is None:
            return
        chunks, length, fut = held
        if fut.done():  # unlinked, or the endpoint was reset
            self._held_out = None
            return
        if not self._loop or len(self._loop) + len(chunks) <= self.qlen:
            self._held_out = None
            fut.set_result(Completion(0, b"", length))
            self._queue(chunks, length)

    def _check(self, data: bytes | memoryview) -> None:
        max_packet_size = self._max_packet(self.out_address)
        if self._sink.matches(self.pattern, data, max_packet_size):
            return
        expected = self._sink.get(self.pattern, len(data), max_packet_size)
        got = bytes(data)
        index = next(i for i in range(len(got)) if got[i] != expected[i])
        message = f"bad OUT byte, buf[{index}] = {got[index]}"
        self.stats.pattern_errors += 1
        self.stats.last_error = message
        log.error("gadget zero: %s (pattern %d); halting endpoint 0x%02x", message, self.pattern, self.out_address)
        device = self.device
        if device is not None:
            # Like usb_ep_set_halt() in g_zero's completion: this transfer was received,
            # the following ones stall until the host clears the halt.
            device.endpoint(self.out_address).halted = True

    def _max_packet(self, address: int) -> int:
        device = self.device
        return device.endpoint(address).max_packet_size if device is not None else 64

    # ------------------------------------------------------------ control
    # Vendor requests of f_sourcesink (usbtest's "control write/read" tests): a 4 KiB buffer, wValue and
    # wIndex 0.  g_zero's loopback configuration has none.
    @request(Direction.OUT, RequestType.VENDOR, Recipient.DEVICE, REQUEST_WRITE_BUFFER)
    def _write_buffer(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if self.active_mode != Mode.SOURCE_SINK:
            return NOT_HANDLED
        self._check_buffer_request(setup)
        self._control_buffer[: len(data)] = data
        self.stats.control_writes += 1
        return None

    @request(Direction.IN, RequestType.VENDOR, Recipient.DEVICE, REQUEST_READ_BUFFER)
    def _read_buffer(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if self.active_mode != Mode.SOURCE_SINK:
            return NOT_HANDLED
        self._check_buffer_request(setup)
        self.stats.control_reads += 1
        return bytes(self._control_buffer[: setup.length])

    @staticmethod
    def _check_buffer_request(setup: SetupPacket) -> None:
        if setup.value or setup.index or setup.length > CONTROL_BUFFER_SIZE:
            raise Stall()


class GadgetZero(Device):
    """A device like Linux's g_zero: 0525:a4a0 with a source/sink and a loopback configuration.

    Source/sink is configuration 3 and comes first (hosts select the first
    configuration), loopback is configuration 2; ``loopback_first=True`` swaps
    them as g_zero's ``loopdefault`` does.  The interface's function is
    :attr:`function` (its :attr:`~GadgetZeroFunction.stats` are also :attr:`stats`).

    It writes its descriptors itself and initialises with
    :meth:`~vusb.device.Device.init_from_descriptors`, as any device with several
    configurations does.
    """

    def __init__(
        self,
        *,
        pattern: Pattern | int = Pattern.ZEROS,
        buflen: int = DEFAULT_BUFLEN,
        qlen: int = DEFAULT_QLEN,
        loopback_first: bool = False,
        speed: Speed | str = Speed.HIGH,
        vendor_id: int = VENDOR_ID,
        product_id: int = PRODUCT_ID,
        device_version: int = 0x0100,
        manufacturer: str | None = "vusb",
        product: str | None = "Gadget Zero",
        serial_number: str | None = DEFAULT_SERIAL,
        max_power_ma: int = 2,
    ) -> None:
        speed = Speed.parse(speed) if isinstance(speed, str) else Speed(speed)
        function = GadgetZeroFunction(Mode.SOURCE_SINK, pattern=pattern, buflen=buflen, qlen=qlen)
        strings = StringTable((LANG_EN_US,))
        manufacturer_index = strings.add(manufacturer)
        product_index = strings.add(product)
        serial_index = strings.add(serial_number)
        names = {Mode.SOURCE_SINK: strings.add(SOURCESINK_NAME), Mode.LOOPBACK: strings.add(LOOPBACK_NAME)}
        order = [(SOURCESINK_CONFIGURATION, Mode.SOURCE_SINK), (LOOPBACK_CONFIGURATION, Mode.LOOPBACK)]
        if loopback_first:
            order.reverse()
        function.configuration_modes = dict(order)

        def configurations(at: Speed) -> tuple[ConfigurationDescriptor, ...]:
            unit = 8 if at == Speed.SUPER else 2
            power = max(max_power_ma - max_power_ma % unit, 0)
            out = []
            for value, mode in order:
                itf = function.declare(BuildContext(at, strings), names[mode])
                out.append(ConfigurationDescriptor(value, (itf,), (), True, False, power, names[mode],
                                                   power_unit_ma=unit))
            return tuple(out)

        configs = configurations(speed)
        usb_version = 0x0320 if speed == Speed.SUPER else 0x0200
        descriptor = DeviceDescriptor(
            vendor_id=vendor_id, product_id=product_id, device_version=device_version, usb_version=usb_version,
            device_class=0xFF, max_packet_size0=9 if speed == Speed.SUPER else 64,
            manufacturer_index=manufacturer_index, product_index=product_index,
            serial_number_index=serial_index, num_configurations=len(configs),
        )
        bos = BosDescriptor((Usb2Extension(0x2), SuperSpeedCapability())) if speed == Speed.SUPER else None
        # At high speed, what the device would be at full speed: g_zero has an other-speed
        # configuration per configuration (usbtest's chapter 9 test reads them all).
        other = configurations(Speed.FULL) if speed == Speed.HIGH else ()
        self.function = function
        # The one function owns interface 0 (and its two endpoints) in every configuration.
        self.init_from_descriptors(descriptor, configs, speed=speed, strings=strings, bos=bos, other_speed=other,
                                   functions=[(function, function.interface_numbers)])

    @property
    def stats(self) -> GadgetZeroStats:
        return self.function.stats


# ------------------------------------------------------------ profiles

PROFILE_FIELDS: dict[str, Field] = {
    "mode": Field("choice", False, Mode.SOURCE_SINK.value, choices=tuple(m.value for m in Mode),
                  help="sourcesink: IN sends the pattern, OUT is checked against it; loopback: OUT comes back on IN"),
    "pattern": Field("int", False, int(Pattern.ZEROS), 0, 2,
                     help="source/sink data: 0 zeros, 1 mod63 ((i % wMaxPacketSize) % 63), 2 none (not checked)"),
    "buflen": Field("int", False, DEFAULT_BUFLEN, 1, MAX_BUFLEN, help="loopback: bytes per queued buffer"),
    "qlen": Field("int", False, DEFAULT_QLEN, 1, MAX_QLEN,
                  help="loopback: buffers queued before the OUT endpoint holds the host's writes"),
    "interface_name": Field("str", False, None, help="iInterface string (default: g_zero's name for the mode)"),
}


def register_profile_kinds() -> None:
    """Make ``kind: gadget-zero`` available to profiles (one configuration in the given mode)."""

    def build(ctx: ProfileContext, o: dict[str, Located]) -> Function:
        return GadgetZeroFunction(o["mode"].value, pattern=o["pattern"].value, buflen=o["buflen"].value,
                                  qlen=o["qlen"].value, interface_name=o["interface_name"].value)

    register_kind("gadget-zero", PROFILE_FIELDS, build,
                  "Linux gadget zero test interface (source/sink or loopback), for the usbtest driver")
