"""What every USB-serial chip shares: its ports, their lifecycle, and the device API.

A chip is a :class:`~vusb.device.Function` (:class:`SerialChip`) owning one
interface per port; :class:`UsbSerialDevice` is a whole device made of one chip with
the plain API of :class:`~vusb.devices.cdc_acm.SerialPort` for its first port.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from vusb.devices.cdc_acm.backends import BackendSpec, SerialBackend
from vusb.devices.cdc_acm.spec import ControlLine, LineCoding
from vusb.devices.usb_serial.uart import LineSettings, ModemStatus, ModemStatusInterrupt, Uart

from vusb.device import Device, Function
from vusb.errors import DeviceDefinitionError, Stall
from vusb.urb import SetupPacket

log = logging.getLogger("vusb.usb_serial")


def make_ports(count: int, backends: BackendSpec | Sequence[BackendSpec], names: Sequence[str],
               buffer_size: int) -> list[Uart]:
    """One :class:`Uart` per port; ``backends`` is one spec for all (each gets its own) or one per port."""
    if isinstance(backends, (list, tuple)):
        if len(backends) != count:
            raise DeviceDefinitionError(f"{count} ports need {count} backends, got {len(backends)}")
        specs: list[BackendSpec] = list(backends)
    else:
        spec = backends
        if isinstance(spec, SerialBackend) and count > 1:
            raise DeviceDefinitionError("one backend instance cannot serve several ports: pass one per port")
        specs = [spec] * count  # type: ignore[list-item]
    return [Uart(spec, name=names[i], buffer_size=buffer_size) for i, spec in enumerate(specs)]


class SerialChip(Function):
    """Base of the chip functions: ports, the start of their backends, what a reset does."""

    chip_name = "USB-serial chip"

    def __init__(self, ports: list[Uart]) -> None:
        super().__init__()
        self.ports = ports
        self.requests: list[tuple[int, int, int, int, int]] = []
        """Every vendor or class request the host made: (bmRequestType, bRequest, wValue, wIndex, wLength)."""

    @property
    def port(self) -> Uart:
        return self.ports[0]

    def serial_ports(self) -> Sequence[Uart]:
        """The ports ``vusb ctl serial-write``/``serial-read`` choose from with ``port`` (0, 1...)."""
        return self.ports

    def bind(self, device: Device) -> None:
        for i, uart in enumerate(self.ports):
            uart.where = f"{device.describe()} {self.chip_name} port {self.port_label(i)}"
            device.add_attach_listener(uart.attached)

    def port_label(self, index: int) -> str:
        return "ABCD"[index]

    def on_configured(self, configured: bool) -> None:
        for uart in self.ports:
            if configured:
                uart.drop_urbs()
                uart.attached(True)
            else:
                uart.host_gone()

    def on_reset(self) -> None:
        for uart in self.ports:
            uart.host_gone()

    async def close(self) -> None:  # type: ignore[override]
        for uart in self.ports:
            await uart.close()

    def record(self, setup: SetupPacket) -> None:
        self.requests.append((setup.request_type, setup.request, setup.value, setup.index, setup.length))
        if len(self.requests) > 4096:
            del self.requests[:2048]

    def refuse(self, setup: SetupPacket, why: str) -> Stall:
        """Log a request the chip does not know and return the Stall to raise."""
        where = self.device.describe() if self.device is not None else self.chip_name
        log.warning("%s: %s: %s; stalling it as the chip would", where, self.chip_name, f"{why} ({setup.describe()})")
        return Stall(why)


class StatusInterruptChip(SerialChip):
    """A one-port chip with a bulk pair and an interrupt endpoint reporting its modem status (CH340, PL2303).

    ``status`` encodes the modem-status word as the chip does, ``packet`` the interrupt
    packet carrying it (see :class:`~vusb.devices.usb_serial.uart.ModemStatusInterrupt`);
    the subclass's ``build`` sets :attr:`in_address`, :attr:`out_address` and
    :attr:`interrupt_address`.
    """

    def __init__(self, ports: list[Uart], status: Callable[[], int], packet: Callable[[int], bytes]) -> None:
        super().__init__(ports)
        self.interface = 0
        self.in_address = self.out_address = self.interrupt_address = 0
        self.interrupt = ModemStatusInterrupt(self.port, status, packet)
        """The interrupt endpoint: the modem status each time it changes."""

    def bind(self, device: Device) -> None:
        super().bind(device)
        device.endpoint(self.in_address).handler = self.port.bulk_in_raw
        device.endpoint(self.out_address).handler = self.port.bulk_out
        device.endpoint(self.interrupt_address).handler = self.interrupt.handler

    def on_configured(self, configured: bool) -> None:
        self.interrupt.reset()
        super().on_configured(configured)

    def on_reset(self) -> None:
        self.interrupt.reset()
        super().on_reset()


class UsbSerialDevice(Device):
    """A device made of one USB-serial chip, with the API of :class:`~vusb.devices.cdc_acm.SerialPort`.

    The methods act on the first port; ``device.ports[1]`` is the second port of a
    dual chip.
    """

    chip: SerialChip

    def __init__(self, chip: SerialChip, **kwargs: object) -> None:
        self.chip = chip
        super().__init__(chip, **kwargs)  # type: ignore[arg-type]

    @property
    def ports(self) -> list[Uart]:
        return self.chip.ports

    @property
    def port(self) -> Uart:
        return self.chip.ports[0]

    @property
    def backend(self) -> SerialBackend:
        return self.port.backend

    # -- lifecycle
    def start(self) -> None:
        for uart in self.ports:
            uart.start()

    async def close(self) -> None:
        for uart in self.ports:
            await uart.close()

    async def __aenter__(self) -> UsbSerialDevice:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- data
    async def read(self, n: int = -1, timeout: float | None = None) -> bytes:
        return await self.port.read(n, timeout)

    async def readexactly(self, n: int, timeout: float | None = None) -> bytes:
        return await self.port.readexactly(n, timeout)

    async def readline(self, separator: bytes = b"\n", timeout: float | None = None) -> bytes:
        return await self.port.readline(separator, timeout)

    async def write(self, data: bytes | bytearray | memoryview, timeout: float | None = None) -> None:
        await self.port.write(data, timeout)

    async def flush(self, timeout: float | None = None) -> None:
        await self.port.flush(timeout)

    # -- what the host set
    @property
    def line(self) -> LineSettings:
        return self.port.line

    @property
    def line_coding(self) -> LineCoding:
        return self.port.line_coding

    @property
    def control_lines(self) -> ControlLine:
        return self.port.control_lines

    @property
    def dtr(self) -> bool:
        return self.port.dtr

    @property
    def rts(self) -> bool:
        return self.port.rts

    @property
    def break_active(self) -> bool:
        return self.port.break_active

    async def wait_line_settings(self, predicate: Callable[[LineSettings], bool] | None = None,
                                 timeout: float | None = None) -> LineSettings:
        return await self.port.wait_line_settings(predicate, timeout)

    async def wait_line_coding(self, predicate: Callable[[LineCoding], bool] | None = None,
                               timeout: float | None = None) -> LineCoding:
        return await self.port.wait_line_coding(predicate, timeout)

    async def wait_control_lines(self, predicate: Callable[[ControlLine], bool] | None = None,
                                 timeout: float | None = None) -> ControlLine:
        return await self.port.wait_control_lines(predicate, timeout)

    async def wait_dtr(self, state: bool = True, timeout: float | None = None) -> None:
        await self.port.wait_dtr(state, timeout)

    async def wait_rts(self, state: bool = True, timeout: float | None = None) -> None:
        await self.port.wait_rts(state, timeout)

    async def wait_break(self, state: bool = True, timeout: float | None = None) -> None:
        await self.port.wait_break(state, timeout)

    # -- what the device reports
    @property
    def modem(self) -> ModemStatus:
        return self.port.modem

    @property
    def cts(self) -> bool:
        return self.port.cts

    @property
    def dsr(self) -> bool:
        return self.port.dsr

    @property
    def ri(self) -> bool:
        return self.port.ri

    @property
    def dcd(self) -> bool:
        return self.port.dcd

    def set_cts(self, on: bool) -> None:
        self.port.set_cts(on)

    def set_dsr(self, on: bool) -> None:
        self.port.set_dsr(on)

    def set_ri(self, on: bool) -> None:
        self.port.set_ri(on)

    def set_dcd(self, on: bool) -> None:
        self.port.set_dcd(on)

    def update_modem(self, *, cts: bool | None = None, dsr: bool | None = None, ri: bool | None = None,
                     dcd: bool | None = None) -> None:
        self.port.update_modem(cts=cts, dsr=dsr, ri=ri, dcd=dcd)
