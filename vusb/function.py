"""The base of every device class: :class:`Function`, and the :class:`BuildContext` it declares itself in.

A USB device is made of functions (a keyboard, a disk, a serial port...).  A device
class is a subclass of :class:`Function` that

1. declares its interfaces and endpoints in :meth:`Function.build`, through a
   :class:`BuildContext` that hands out interface numbers, endpoint addresses and
   string indices, so functions compose into one device without clashes;
2. attaches its endpoint handlers in :meth:`Function.bind`, once the device exists;
3. answers the class and vendor requests sent to its interfaces and endpoints,
   each declared on a method with :func:`request` (keyed by direction, type,
   recipient and bRequest; :meth:`Function.control` dispatches through the table);
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
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Self, TypeVar, Union

from vusb.constants import Direction, Recipient, RequestType
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
    "RequestKey",
    "request",
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


class RequestKey(NamedTuple):
    """What a class or vendor request handler is registered for: the fields of bmRequestType and bRequest."""

    direction: Direction
    type: RequestType
    recipient: Recipient
    request: int

    @classmethod
    def of(cls, setup: SetupPacket) -> RequestKey:
        """The key of a setup packet (a reserved recipient is kept as its number)."""
        recipient = setup.recipient
        return cls(Direction.IN if setup.is_in else Direction.OUT, setup.type,
                   Recipient(recipient) if recipient <= Recipient.OTHER else recipient,  # type: ignore[arg-type]
                   setup.request)

    def __str__(self) -> str:
        return f"{self.direction.name} {self.type.name} {self.recipient!s} 0x{self.request:02x}"


_MARK = "__vusb_requests__"
RequestMethod = TypeVar("RequestMethod", bound=Callable[..., Any])


def request(direction: Direction, type: RequestType, recipient: Recipient, code: int) -> Callable[[RequestMethod], RequestMethod]:
    """Declare a :class:`Function` method as the handler of one class or vendor request.

    ::

        class Thermometer(Function):
            @request(Direction.IN, RequestType.VENDOR, Recipient.INTERFACE, 0x01)
            def get_temperature(self, setup: SetupPacket, data: bytes) -> bytes:
                return round(self.celsius * 100).to_bytes(2, "little", signed=True)

    The method takes ``(setup, data)`` and returns what :meth:`Function.control`
    returns (it may be a coroutine, raise :class:`~vusb.errors.Stall`, or return
    :data:`NOT_HANDLED`).  Stack several decorators for one method that handles several
    requests.  The table is collected per class, inherited and extended by subclasses
    (a subclass method of the same name replaces the handler); :meth:`Function.control`
    dispatches through it.
    """
    if not 0 <= code <= 0xFF:
        raise UsageError(f"bRequest {code} is not a byte")
    key = RequestKey(Direction(direction), RequestType(type), Recipient(recipient), code)

    def mark(method: RequestMethod) -> RequestMethod:
        setattr(method, _MARK, (*getattr(method, _MARK, ()), key))
        return method

    return mark


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

    request_table: Mapping[RequestKey, str] = {}
    """This class's request table: each declared request (:func:`request`) and the name of its handler method."""

    interface_in_high_byte: frozenset[int] = frozenset()
    """Class requests (``bRequest`` codes) to an interface whose ``wIndex`` names the interface in its
    HIGH byte (the low byte is the alternate setting), as the printer class's GET_DEVICE_ID does;
    the device routes such a request by its high byte to the function that owns that interface
    and declares the code here. Every other request names the interface in the low byte."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = dict(cls.request_table)
        for name, member in vars(cls).items():
            for key in getattr(member, _MARK, ()):
                if key in table and table[key] != name and table[key] in vars(cls):
                    raise UsageError(f"{cls.__name__}: request {key} has two handlers, {table[key]} and {name}")
                table[key] = name
        cls.request_table = table

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
        to refuse it, or return ``NOT_HANDLED``.  By default the request goes to the
        method declared for it with :func:`request`; a request without one is NOT_HANDLED.
        Override it to check something first (which interface of the function the
        request is for), then call ``super().control(setup, data)``.
        """
        handler = self.request_handler(setup)
        return NOT_HANDLED if handler is None else handler(setup, data)

    def request_handler(self, setup: SetupPacket) -> ControlHandler | None:
        """The bound method declared for this request with :func:`request`, or None."""
        name = self.request_table.get(RequestKey.of(setup))
        if name is None:
            return None
        handler: ControlHandler = getattr(self, name)
        return handler

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
