"""The base of every device class: :class:`Function`, and the :class:`BuildContext` it declares itself in.

A USB device is made of functions (a keyboard, a disk, a serial port...).  A device
class is a subclass of :class:`Function` that

1. declares its interfaces and endpoints in :meth:`Function.build`, through a
   :class:`BuildContext` that hands out interface numbers, endpoint addresses and
   string indices, so functions compose into one device without clashes;
2. attaches its endpoint handlers in :meth:`Function.bind`, once the device exists;
3. answers the class and vendor requests sent to its interfaces and endpoints
   (:meth:`Function.control`);
4. reacts to the host through the hooks (:meth:`Function.on_configured`,
   :meth:`Function.on_alternate`, :meth:`Function.on_reset`,
   :meth:`Function.on_clear_halt`).

Standard requests (chapter 9) never reach a function: the device answers them
(:mod:`vusb.standard`).  A control handler returns the IN data (truncated to
``wLength``), ``None`` for an OUT request, :data:`NOT_HANDLED` when it does not
know the request, or raises :class:`~vusb.errors.Stall` to refuse it; it may be a
coroutine.

A function whose descriptors the device writes itself (a device made with
:meth:`~vusb.device.Device.init_from_descriptors`) derives from
:class:`AttachedFunction`, which has no :meth:`~Function.build`.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Callable, Self, Union

from vusb.errors import UsageError
from vusb.urb import SetupPacket

if TYPE_CHECKING:
    from vusb.build import BuildContext
    from vusb.descriptors import InterfaceDescriptor
    from vusb.device import Device
    from vusb.endpoint import Endpoint

__all__ = [
    "NOT_HANDLED",
    "AttachedFunction",
    "ControlHandler",
    "ControlResult",
    "Function",
    "NotHandled",
]


class NotHandled:
    """Type of :data:`NOT_HANDLED` (a singleton)."""

    _instance: NotHandled | None = None

    def __new__(cls) -> NotHandled:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_HANDLED"


NOT_HANDLED = NotHandled()
"""Returned by a control handler that does not know the request (the device then stalls it)."""

ControlResult = Union[bytes, bytearray, memoryview, None, NotHandled]
"""What a control handler returns: IN data (truncated to wLength), None for OUT, or NOT_HANDLED."""

ControlHandler = Callable[[SetupPacket, bytes], Union[ControlResult, Awaitable[ControlResult]]]
"""A control request handler: ``(setup, data) -> result``, or an awaitable of the result."""


class Function(abc.ABC):
    """A function of a device: its interfaces, endpoints and class behaviour; the base of every device class.

    Subclasses implement :meth:`build` (declare descriptors through the context) and
    may override the hooks.  After the device is assembled, :attr:`device` is set and
    :meth:`bind` is called so the function can attach endpoint handlers.
    """

    function_class: tuple[int, int, int] | None = None
    """Class, subclass and protocol of the interface association (IAD) a device adds when it has
    other functions too and this one has several interfaces; ``None``: no IAD."""

    name: str | None = None
    """Name given to the IAD (iFunction string), when there is one."""

    def __new__(cls, *args: object, **kwargs: object) -> Self:
        if getattr(cls, "__abstractmethods__", frozenset()) == frozenset({"build"}):
            # Before build() was abstract, a function of a device made from descriptors simply had none.
            warnings.warn(
                f"{cls.__name__} does not implement build(): derive it from vusb.AttachedFunction if the device "
                "writes its descriptors itself (Device.init_from_descriptors), or implement build()",
                DeprecationWarning, stacklevel=2,
            )
            setattr(cls, "__abstractmethods__", frozenset())  # noqa: B010 -- the instantiation check reads it
        return super().__new__(cls)

    def __init__(self) -> None:
        self.device: Device | None = None
        """The device this function is part of; ``None`` until the device is assembled."""
        self.interface_numbers: tuple[int, ...] = ()
        """The interface numbers this function owns, set when the device is assembled."""

    # -- declaration
    @abc.abstractmethod
    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        """Declare this function's interfaces (every alternate setting) with their endpoints.

        Take numbers, addresses and strings from ``ctx`` (:meth:`BuildContext.interface_number`,
        :meth:`BuildContext.endpoint_in`, :meth:`BuildContext.endpoint_out`, :meth:`BuildContext.string`).
        A high-speed device calls it twice: once at its speed, once at full speed for the
        other-speed configuration; the function must not assume a single call.
        """

    def bind(self, device: Device) -> None:
        """Called once the device exists; attach endpoint handlers here."""
        return None  # a hook: nothing to do unless a subclass overrides it

    # -- hooks
    def on_configured(self, configured: bool) -> None:
        """The host selected (True) or deselected (False) the configuration."""
        return None  # a hook: nothing to do unless a subclass overrides it

    def on_alternate(self, interface: int, alternate: int) -> None:
        """The host switched an interface to another alternate setting."""
        return None  # a hook: nothing to do unless a subclass overrides it

    def on_reset(self) -> None:
        """The connection ended or the device was reset: drop transient state."""
        return None  # a hook: nothing to do unless a subclass overrides it

    def on_clear_halt(self, address: int) -> None:
        """The host cleared ENDPOINT_HALT on one of this function's endpoints."""
        return None  # a hook: nothing to do unless a subclass overrides it

    def close(self) -> Awaitable[None] | None:
        """Release what the function holds (files, sockets, backends); may be a coroutine."""
        return None

    def get_descriptor(self, setup: SetupPacket) -> bytes | None:
        """Class descriptors fetched with GET_DESCRIPTOR to an interface (HID report...); None if unknown."""
        return None

    def control(self, setup: SetupPacket, data: bytes) -> ControlResult | Awaitable[ControlResult]:
        """Class or vendor request addressed to one of this function's interfaces or endpoints.

        Return the IN data (or None for an OUT request), raise :class:`~vusb.errors.Stall`
        to refuse it, or return ``NOT_HANDLED``.
        """
        return NOT_HANDLED

    # -- helpers for subclasses
    def endpoint(self, address: int) -> Endpoint:
        """The device's endpoint at ``address``; raises :class:`~vusb.errors.UsageError` before the device exists."""
        if self.device is None:
            raise UsageError(f"{type(self).__name__} is not part of a device yet")
        return self.device.endpoint(address)

    @property
    def configured(self) -> bool:
        """Whether the device is part of a device whose host has selected a configuration."""
        return self.device is not None and self.device.configuration_value != 0

    @property
    def attached(self) -> bool:
        """Whether the device is part of a device a client has imported."""
        return self.device is not None and self.device.attached


class AttachedFunction(Function):
    """A function attached to interfaces whose descriptors the device writes itself.

    Used with :meth:`~vusb.device.Device.init_from_descriptors` and
    :meth:`~vusb.device.Device.from_descriptors` (``functions=[(function, (0,))]``),
    which never call :meth:`build`; building one raises :class:`~vusb.errors.UsageError`.
    """

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        """Not available: this function's descriptors are given to the device directly."""
        raise UsageError(f"{type(self).__name__} is attached to descriptors the device writes; it has no build()")
