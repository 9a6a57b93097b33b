"""What :mod:`vusb.proxy` needs from a physical device: the backend interface.

A backend is one device plugged into this machine, opened for exclusive use. The proxy
turns each URB the USB/IP host submits into one :meth:`ProxyBackend.submit` call and
each UNLINK into :meth:`PendingTransfer.cancel` of exactly that transfer; the three
standard requests that change the device's state go to :meth:`ProxyBackend.set_configuration`,
:meth:`ProxyBackend.set_interface` and :meth:`ProxyBackend.clear_halt`, as an operating
system's USB stack wants them (it must know the device's state too).

Two backends ship with vusb: :class:`vusb.proxy_libusb.LibusbBackend` (real hardware
through libusb, the ``proxy`` extra) and :class:`vusb.proxy_fake.FakeBackend` (a test
double that behaves like hardware, for tests without any).

Statuses are negative Linux errno values, as on the USB/IP wire (:class:`vusb.constants.Status`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vusb.constants import Speed, TransferType
from vusb.errors import VusbError
from vusb.urb import SetupPacket


class ProxyError(VusbError):
    """A physical device cannot be proxied: not found, no access, busy, libusb1 missing (vusb.proxy)."""


class DeviceGone(ProxyError):
    """The physical device was unplugged (or otherwise left the bus)."""


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """One transfer for the device: what a URB asks, in the device's terms.

    ``endpoint`` is the address (0x81: IN 1; 0 or 0x80 for the control endpoint, whose
    direction is the setup packet's); ``length`` is the IN buffer size (OUT: ``len(data)``);
    ``iso_lengths`` is each isochronous packet's length (None for other types).
    """

    endpoint: int
    transfer_type: TransferType
    length: int
    data: bytes = b""
    setup: SetupPacket | None = None
    iso_lengths: tuple[int, ...] | None = None
    short_not_ok: bool = False
    zero_packet: bool = False

    @property
    def is_in(self) -> bool:
        if self.setup is not None:
            return self.setup.is_in
        return bool(self.endpoint & 0x80)


@dataclass(frozen=True, slots=True)
class TransferResult:
    """How a transfer ended.

    ``status``: 0 or a negative Linux errno (-32 stall, -19 device gone, -104 cancelled).
    ``data``: IN data (isochronous: the packets' data packed one after the other).
    ``actual_length``: bytes moved (IN: ``len(data)``).  ``iso_packets``: per packet
    ``(actual_length, status)``, in order.
    """

    status: int
    data: bytes = b""
    actual_length: int = 0
    iso_packets: tuple[tuple[int, int], ...] | None = None


class PendingTransfer(abc.ABC):
    """A submitted transfer; its ``done`` callback is called exactly once, also after :meth:`cancel`."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Ask for the transfer to end now (it then ends with -ECONNRESET, or with what it already got)."""


DoneCallback = Callable[[TransferResult], None]


class ProxyBackend(abc.ABC):
    """One physical device, opened for the proxy.

    The descriptor attributes are read when the backend is made; :meth:`open` takes the
    device from the operating system (detaching its kernel drivers), :meth:`close` gives
    it back. ``submit``'s ``done`` may be called from any thread, exactly once per transfer.
    A backend raises :class:`DeviceGone` once the device is unplugged.
    """

    description: str
    """How the device is named in messages: ``"bus 1 device 3 (0627:0001)"``."""
    speed: Speed
    device_descriptor: bytes
    configurations: Sequence[bytes]
    """Each configuration descriptor with its interfaces and endpoints (wTotalLength bytes)."""
    bos: bytes | None = None

    @abc.abstractmethod
    def active_configuration(self) -> int:
        """bConfigurationValue in use (0: unconfigured)."""

    @abc.abstractmethod
    def open(self) -> None:
        """Take the device: detach the kernel drivers of its interfaces and claim them."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the interfaces and re-attach the kernel drivers that were detached."""

    @abc.abstractmethod
    def submit(self, request: TransferRequest, done: DoneCallback) -> PendingTransfer:
        """Start a transfer; ``done`` gets its result. Raises DeviceGone or ProxyError if it cannot start."""

    @abc.abstractmethod
    async def set_configuration(self, value: int) -> None:
        """SET_CONFIGURATION through the operating system (raises ProxyError/DeviceGone on failure)."""

    @abc.abstractmethod
    async def set_interface(self, interface: int, alternate: int) -> None:
        """SET_INTERFACE through the operating system."""

    @abc.abstractmethod
    async def clear_halt(self, endpoint: int) -> None:
        """CLEAR_FEATURE(ENDPOINT_HALT) through the operating system (resets both data toggles)."""


__all__ = [
    "DeviceGone", "DoneCallback", "PendingTransfer", "ProxyBackend", "ProxyError", "TransferRequest",
    "TransferResult",
]
