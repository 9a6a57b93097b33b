"""A device made of one function, that offers the function's API as its own.

Most ready-made devices are one function with USB identity around it: a keyboard,
a serial port, a flash drive.  :class:`SingleFunctionDevice` is that device, for any
function type ``F``; its :attr:`~SingleFunctionDevice.function` is typed ``F``.  A
subclass lists which members of the function it offers, each in one line, and the
type checker derives every signature from the function's own::

    class Thermometer(SingleFunctionDevice[ThermometerFunction]):
        def __init__(self, **options: Any) -> None:
            super().__init__(ThermometerFunction(), vendor_id=0x1209, product_id=0x7E57, **options)

        set_temperature = forward(ThermometerFunction.set_temperature)   # a method
        celsius = forward_property(ThermometerFunction.celsius)          # a property
        alarms: Forwarded[int] = Forwarded()                             # an instance attribute

    thermometer = Thermometer()
    thermometer.set_temperature(21.5)     # checked against ThermometerFunction.set_temperature

Nothing is copied: each forwarded member is looked up on the function when it is
used, under the same name.  (Python's type system cannot add a class's members to
another automatically, so the list is explicit; ``tests/test_single.py`` checks
that the built-in devices offer every public member of their function.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, Concatenate, Generic, ParamSpec, TypedDict, TypeVar, Unpack, overload

from vusb.constants import Speed
from vusb.descriptors import BosDescriptor
from vusb.device import Device
from vusb.errors import UsageError
from vusb.function import Function

__all__ = ["DeviceOptions", "Forwarded", "SingleFunctionDevice", "forward", "forward_property"]

F = TypeVar("F", bound=Function)
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class DeviceOptions(TypedDict, total=False):
    """The keyword arguments of :class:`~vusb.device.Device` (for ``**options: Unpack[DeviceOptions]``)."""

    vendor_id: int
    product_id: int
    device_version: int
    manufacturer: str | None
    product: str | None
    serial_number: str | None
    speed: Speed | str
    usb_version: int | None
    device_class: tuple[int, int, int] | None
    max_packet_size0: int | None
    max_power_ma: int | None
    self_powered: bool
    remote_wakeup: bool
    configuration_name: str | None
    languages: Sequence[int]
    bos: BosDescriptor | None


class SingleFunctionDevice(Device, Generic[F]):
    """A device of one function, :attr:`function`; subclasses offer its members with :func:`forward`.

    ``options`` are those of :class:`~vusb.device.Device` (``vendor_id`` and
    ``product_id`` are required there).
    """

    def __init__(self, function: F, **options: Unpack[DeviceOptions]) -> None:
        self.function: F = function
        """The device's function, with its whole API."""
        super().__init__(function, **options)


def _function_of(device: object, name: str) -> Function:
    function = getattr(device, "function", None)
    if not isinstance(function, Function):
        raise UsageError(f"{type(device).__name__}.{name} forwards to .function, which it does not have")
    return function


class _Method(Generic[P, R]):
    """The descriptor :func:`forward` makes: on an instance, the function's bound method of the same name."""

    def __init__(self, method: Callable[..., R]) -> None:
        self.name = getattr(method, "__name__", "")
        self.__doc__ = getattr(method, "__doc__", None)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, device: None, owner: type) -> _Method[P, R]: ...
    @overload
    def __get__(self, device: object, owner: type) -> Callable[P, R]: ...
    def __get__(self, device: object | None, owner: type) -> _Method[P, R] | Callable[P, R]:
        if device is None:
            return self
        method: Callable[P, R] = getattr(_function_of(device, self.name), self.name)
        return method


def forward(method: Callable[Concatenate[F, P], R]) -> _Method[P, R]:
    """Offer the function's method ``method`` (``SomeFunction.name``) on the device, with its signature."""
    return _Method(method)


class Forwarded(Generic[T]):
    """A member of the device that reads (and writes, if the function allows) the function's member of the same name.

    Declare it with its type for an instance attribute (``leds: Forwarded[Led] = Forwarded()``);
    :func:`forward_property` makes one from a property and takes its type from there.
    """

    def __init__(self, doc: str | None = None) -> None:
        self.name = ""
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, device: None, owner: type) -> Forwarded[T]: ...
    @overload
    def __get__(self, device: object, owner: type) -> T: ...
    def __get__(self, device: object | None, owner: type) -> Forwarded[T] | T:
        if device is None:
            return self
        value: T = getattr(_function_of(device, self.name), self.name)
        return value

    def __set__(self, device: object, value: T) -> None:
        setattr(_function_of(device, self.name), self.name, value)


def forward_property(getter: Callable[[F], T]) -> Forwarded[T]:
    """Offer the function's property ``getter`` (``SomeFunction.name``) on the device, with its type."""
    doc = getattr(getter, "__doc__", None)
    return Forwarded(doc)
