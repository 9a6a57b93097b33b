"""The device model: descriptors plus behaviour, answering the host as hardware does.

A :class:`Device` is made of :class:`Function` objects (a keyboard, a disk, a serial
port...).  Each function declares its interfaces and endpoints through a
:class:`BuildContext`, which hands out interface numbers, endpoint addresses and
string indices, so functions compose into one device without clashes.  A device can
also be made straight from descriptor values (:meth:`Device.from_descriptors`), as
the profile loader and cloning do; a subclass whose ``__init__`` makes descriptor
values itself (several configurations, say) initialises itself from them with
:meth:`Device.init_from_descriptors`.

The device keeps the state and routes: it answers every standard request itself
(chapter 9 of the USB 2.0 specification and its USB 3.2 additions, in
:mod:`vusb.standard`) and routes class and vendor requests to the function that owns
the interface or endpoint.  :class:`Function` (the base of every device class) and
:class:`BuildContext` live in :mod:`vusb.function` and :mod:`vusb.build`; they are
re-exported here and from :mod:`vusb`.  A request nobody handles stalls
(-EPIPE) and is logged with its decoded fields.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, Callable

from vusb import standard
from vusb.build import BuildContext, StringTable
from vusb.constants import (
    LANG_EN_US,
    DescriptorType,
    Recipient,
    Request,
    RequestType,
    Speed,
    Status,
    TransferType,
)
from vusb.descriptors import (
    BosDescriptor,
    ConfigurationDescriptor,
    DeviceDescriptor,
    DeviceQualifierDescriptor,
    InterfaceAssociation,
    InterfaceDescriptor,
    SuperSpeedCapability,
    Usb2Extension,
)
from vusb.endpoint import Endpoint, HandlerResult
from vusb.errors import DescriptorError, DeviceDefinitionError, Stall, UsageError
from vusb.faults import FaultSet, is_get_descriptor
from vusb.function import NOT_HANDLED, AttachedFunction, ControlHandler, ControlResult, Function, NotHandled
from vusb.urb import Completion, SetupPacket, Urb

__all__ = [
    "NOT_HANDLED",
    "AttachedFunction",
    "BuildContext",
    "ControlHandler",
    "ControlResult",
    "Device",
    "Function",
    "NotHandled",
    "StringTable",
]

log = logging.getLogger("vusb.device")


class Device:
    """A USB device: descriptors, state, endpoints and request handling.

    Most users create one from functions::

        dev = Device(KeyboardFunction(), vendor_id=0x1209, product_id=0x0001,
                     manufacturer="vusb", product="Keyboard", speed=Speed.FULL)
    """

    def __init__(
        self,
        *functions: Function,
        vendor_id: int,
        product_id: int,
        device_version: int = 0x0100,
        manufacturer: str | None = None,
        product: str | None = None,
        serial_number: str | None = None,
        speed: Speed | str = Speed.FULL,
        usb_version: int | None = None,
        device_class: tuple[int, int, int] | None = None,
        max_packet_size0: int | None = None,
        max_power_ma: int | None = None,
        self_powered: bool = False,
        remote_wakeup: bool = False,
        configuration_name: str | None = None,
        languages: Sequence[int] = (LANG_EN_US,),
        bos: BosDescriptor | None = None,
    ) -> None:
        speed = Speed.parse(speed) if isinstance(speed, str) else Speed(speed)
        if not functions:
            raise DeviceDefinitionError("a device needs at least one function")
        strings = StringTable(languages)
        manufacturer_index = strings.add(manufacturer)
        product_index = strings.add(product)
        serial_index = strings.add(serial_number)
        config, owners = self._declare(functions, speed, strings, max_power_ma, self_powered, remote_wakeup,
                                       configuration_name)
        owned = [(f, tuple(sorted({i.number for i in declared}))) for f, declared in owners]
        multi = len(functions) > 1 and any(len(numbers) > 1 for _, numbers in owned)
        if device_class is None:
            device_class = (0xEF, 0x02, 0x01) if config.associations or multi else (0, 0, 0)
        if usb_version is None:
            usb_version = 0x0320 if speed == Speed.SUPER else 0x0200
        if max_packet_size0 is None:
            max_packet_size0 = {Speed.LOW: 8, Speed.FULL: 64, Speed.HIGH: 64, Speed.SUPER: 9}[speed]
        descriptor = DeviceDescriptor(
            vendor_id=vendor_id, product_id=product_id, device_version=device_version, usb_version=usb_version,
            device_class=device_class[0], device_subclass=device_class[1], device_protocol=device_class[2],
            max_packet_size0=max_packet_size0, manufacturer_index=manufacturer_index, product_index=product_index,
            serial_number_index=serial_index, num_configurations=1,
        )
        if bos is None and usb_version >= 0x0201:
            caps: list[Any] = [Usb2Extension(0x2)]
            if speed == Speed.SUPER:
                caps.append(SuperSpeedCapability())
            bos = BosDescriptor(tuple(caps))
        other_speed = None
        if speed == Speed.HIGH:
            # What the device would look like at full speed, from the same functions.
            shadow_strings = StringTable(languages)
            for idx_text in strings.strings[strings.languages[0]].items():
                shadow_strings.add(idx_text[1], idx_text[0])
            other_speed = self._declare(functions, Speed.FULL, shadow_strings, max_power_ma, self_powered,
                                        remote_wakeup, configuration_name)[0]
        self.init_from_descriptors(descriptor, (config,), speed=speed, strings=strings, bos=bos,
                                   other_speed=other_speed, functions=owned)

    # ------------------------------------------------------------ construction
    @staticmethod
    def _declare(
        functions: Sequence[Function],
        speed: Speed,
        strings: StringTable,
        max_power_ma: int | None,
        self_powered: bool,
        remote_wakeup: bool,
        configuration_name: str | None,
    ) -> tuple[ConfigurationDescriptor, list[tuple[Function, list[InterfaceDescriptor]]]]:
        ctx = BuildContext(speed, strings)
        config_index = strings.add(configuration_name)
        interfaces: list[InterfaceDescriptor] = []
        owners: list[tuple[Function, list[InterfaceDescriptor]]] = []
        for f in functions:
            declared = f.build(ctx)
            if not declared:
                raise DeviceDefinitionError(f"{type(f).__name__} declared no interface")
            numbers = sorted({i.number for i in declared})
            if len(numbers) > 1 and len(functions) > 1 and f.function_class is not None:
                cls_, sub, proto = f.function_class
                ctx.associations.append(InterfaceAssociation(numbers[0], len(numbers), cls_, sub, proto,
                                                             ctx.string(f.name)))
            interfaces.extend(declared)
            owners.append((f, declared))
        unit = 8 if speed == Speed.SUPER else 2
        power = max_power_ma if max_power_ma is not None else (96 if speed == Speed.SUPER else 100)
        power -= power % unit
        try:
            config = ConfigurationDescriptor(
                1, tuple(interfaces), tuple(ctx.associations), self_powered, remote_wakeup, power, config_index,
                power_unit_ma=unit,
            )
        except DescriptorError as exc:
            raise DeviceDefinitionError(str(exc)) from exc
        return config, owners

    @classmethod
    def from_descriptors(
        cls,
        descriptor: DeviceDescriptor,
        configurations: Sequence[ConfigurationDescriptor],
        *,
        speed: Speed | str,
        strings: StringTable | dict[int, str] | None = None,
        bos: BosDescriptor | None = None,
        qualifier: DeviceQualifierDescriptor | None = None,
        other_speed: ConfigurationDescriptor | Sequence[ConfigurationDescriptor] | None = None,
        functions: Iterable[tuple[Function, Sequence[int]]] = (),
    ) -> Device:
        """A device from descriptor values (profiles, clones).

        ``other_speed`` is what a high-speed device would be at full speed: one
        configuration, or one per configuration (OTHER_SPEED_CONFIGURATION index N).

        ``functions`` optionally attaches behaviour: each function with the interface
        numbers it owns (its :meth:`Function.build` is not called).

        A subclass's ``__init__`` does the same on itself with :meth:`init_from_descriptors`.
        """
        self = cls.__new__(cls)
        self.init_from_descriptors(descriptor, configurations, speed=speed, strings=strings, bos=bos,
                                   qualifier=qualifier, other_speed=other_speed, functions=functions)
        return self

    def init_from_descriptors(
        self,
        descriptor: DeviceDescriptor,
        configurations: Sequence[ConfigurationDescriptor],
        *,
        speed: Speed | str,
        strings: StringTable | dict[int, str] | None = None,
        bos: BosDescriptor | None = None,
        qualifier: DeviceQualifierDescriptor | None = None,
        other_speed: ConfigurationDescriptor | Sequence[ConfigurationDescriptor] | None = None,
        functions: Iterable[tuple[Function, Sequence[int]]] = (),
    ) -> None:
        """Initialise this device from descriptor values; for the ``__init__`` of a subclass.

        ``Device(*functions, ...)`` builds one configuration from functions.  A
        subclass that needs more (several configurations, an other-speed
        configuration per configuration, descriptors written by hand) makes the
        descriptor values itself and calls this instead of ``super().__init__()``::

            class TwoModes(Device):
                def __init__(self) -> None:
                    ...  # descriptor, configurations, strings, a function owning interface 0
                    self.init_from_descriptors(descriptor, configurations, speed=Speed.HIGH,
                                               strings=strings, functions=[(function, (0,))])

        The arguments are those of :meth:`from_descriptors`, which makes a new
        device the same way.  ``configurations`` are served in order
        (GET_DESCRIPTOR index 0, 1, ...) and ``descriptor.num_configurations`` must
        match their count.  ``strings`` is a :class:`StringTable` or ``{index:
        text}``.  ``qualifier`` defaults to the one derived from ``descriptor`` at
        high speed.  Each function in ``functions`` gets the requests and
        endpoints of the interfaces it owns, in every configuration (its
        :meth:`Function.build` is not called); then its :attr:`Function.device` is
        set and :meth:`Function.bind` is called, so it can attach its endpoint
        handlers.  Every endpoint of every configuration exists from then on;
        SET_CONFIGURATION decides which of them the host may use.

        Raises :class:`~vusb.errors.DeviceDefinitionError` if the values do not
        make a valid device at ``speed``, and :class:`~vusb.errors.UsageError` if
        this device was already initialised.
        """
        if "_endpoints" in vars(self):
            raise UsageError(f"device {self.describe()} is already initialised")
        speed = Speed.parse(speed) if isinstance(speed, str) else Speed(speed)
        if isinstance(strings, dict):
            table = StringTable()
            for idx, text in strings.items():
                table.add(text, idx)
            strings = table
        self._interface_owner: dict[int, Function] = {}
        self._endpoint_owner: dict[int, Function] = {}
        self.functions: tuple[Function, ...] = ()
        self._init_state(descriptor, tuple(configurations), strings or StringTable(), speed, bos, other_speed,
                         qualifier)
        funcs = []
        for f, numbers in functions:
            f.interface_numbers = tuple(numbers)
            for config in self.configurations:
                for itf in config.interfaces:
                    if itf.number in numbers:
                        self._interface_owner[itf.number] = f
                        for ep in itf.endpoints:
                            self._endpoint_owner[ep.address] = f
            funcs.append(f)
        self.functions = tuple(funcs)
        for f in funcs:
            f.device = self
            f.bind(self)

    def _init_state(
        self,
        descriptor: DeviceDescriptor,
        configurations: tuple[ConfigurationDescriptor, ...],
        strings: StringTable,
        speed: Speed,
        bos: BosDescriptor | None,
        other_speed: ConfigurationDescriptor | Sequence[ConfigurationDescriptor] | None,
        qualifier: DeviceQualifierDescriptor | None = None,
    ) -> None:
        if other_speed is None:
            other_speed = ()
        elif isinstance(other_speed, ConfigurationDescriptor):
            other_speed = (other_speed,)
        self.speed = speed
        self.descriptor = descriptor
        self.configurations = configurations
        self.strings = strings
        self.bos = bos
        self.other_speed_configurations = tuple(other_speed)
        self.other_speed_configuration = other_speed[0] if other_speed else None
        self.qualifier = qualifier or (DeviceQualifierDescriptor.for_device(descriptor) if speed == Speed.HIGH else None)
        self.vendor_handler: ControlHandler | None = None
        """Class/vendor requests not answered by the owning function go here first (a profile's ``control:``
        list); NOT_HANDLED passes them on to the other functions, then stalls."""
        self._validate()
        # Descriptors are immutable: serialize them once, not on every GET_DESCRIPTOR.
        self._device_bytes = descriptor.to_bytes()
        self._config_bytes = [c.to_bytes() for c in configurations]
        self._bos_bytes = bos.to_bytes() if bos is not None else None
        self._qualifier_bytes = self.qualifier.to_bytes() if self.qualifier is not None else None
        self._other_speed_bytes = [c.to_bytes(DescriptorType.OTHER_SPEED_CONFIGURATION) for c in other_speed]
        self._string_bytes: dict[tuple[int, int], bytes] = {}
        self.ep0 = Endpoint(0, max_packet_size=descriptor.max_packet_size0)
        self.ep0.handler = self._handle_control
        self._endpoints: dict[int, Endpoint] = {0: self.ep0}
        for config in configurations:
            for itf in config.interfaces:
                for ep in itf.endpoints:
                    if ep.address not in self._endpoints:
                        self._endpoints[ep.address] = Endpoint(ep.address, ep)
        self.iso_addresses = frozenset(  # isochronous in some configuration or alternate setting
            ep.address for config in configurations for itf in config.interfaces for ep in itf.endpoints
            if ep.transfer_type == TransferType.ISOCHRONOUS
        )
        self._active_endpoints: frozenset[int] = frozenset()
        self.configuration_value = 0
        self.alternates: dict[int, int] = {}
        self.remote_wakeup_enabled = False
        self.u1_enabled = False
        self.u2_enabled = False
        self.isoch_delay = 0
        self.sel: bytes = b""
        self.attached = False
        self.busid: str | None = None
        self._attach_listeners: list[Callable[[bool], None]] = []
        self._configured_event: asyncio.Event | None = None
        self.disconnect_handler: Callable[[], None] | None = None
        """Set by the server while a client holds the device: drops that client's connection."""
        self.faults = FaultSet(self)
        """Fault rules that make the device misbehave on purpose (:mod:`vusb.faults`)."""

    def _validate(self) -> None:
        speed = self.speed
        try:
            self.descriptor.validate_for_speed(speed)
        except DescriptorError as exc:
            raise DeviceDefinitionError(str(exc)) from exc
        if self.descriptor.num_configurations != len(self.configurations):
            raise DeviceDefinitionError(
                f"bNumConfigurations is {self.descriptor.num_configurations} but {len(self.configurations)} "
                "configuration(s) are defined"
            )
        values = [c.value for c in self.configurations]
        if len(set(values)) != len(values):
            raise DeviceDefinitionError(f"configuration values {values} are not unique")
        for config in self.configurations:
            for itf in config.interfaces:
                for ep in itf.endpoints:
                    where = f"configuration {config.value} interface {itf.number} alt {itf.alternate} endpoint 0x{ep.address:02x}"
                    try:
                        ep.validate_for_speed(speed, where)
                    except DescriptorError as exc:
                        raise DeviceDefinitionError(str(exc)) from exc
        if speed == Speed.SUPER:
            caps = self.bos.capabilities if self.bos else ()
            if not any(isinstance(c, SuperSpeedCapability) for c in caps) and not any(
                getattr(c, "data", b"\x00")[:1] == b"\x03" for c in caps
            ):
                raise DeviceDefinitionError("a SuperSpeed device needs a BOS with the SuperSpeed USB capability")
        if self.descriptor.usb_version >= 0x0201 and self.bos is None:
            raise DeviceDefinitionError(
                f"bcdUSB 0x{self.descriptor.usb_version:04x} makes hosts ask for a BOS descriptor; give one"
            )

    # ------------------------------------------------------------ accessors
    def set_bos(self, bos: BosDescriptor) -> None:
        """Serve another BOS descriptor from now on (vusb.winusb adds platform capabilities this way)."""
        if self.descriptor.usb_version < 0x0201:
            raise UsageError(f"bcdUSB 0x{self.descriptor.usb_version:04x}: hosts ask for a BOS only from 0x0201; "
                             "make the device with usb_version=0x0210")
        self.bos = bos
        self._bos_bytes = bos.to_bytes()

    def endpoint(self, address: int) -> Endpoint:
        try:
            return self._endpoints[address]
        except KeyError:
            raise UsageError(f"the device has no endpoint 0x{address:02x}") from None

    def is_iso(self, address: int) -> bool:
        """Whether endpoint ``address`` is isochronous in the configuration and alternate settings in use."""
        return address in self.iso_addresses and self._endpoints[address].transfer_type == TransferType.ISOCHRONOUS

    @property
    def endpoints(self) -> dict[int, Endpoint]:
        return dict(self._endpoints)

    @property
    def active_configuration(self) -> ConfigurationDescriptor | None:
        for c in self.configurations:
            if c.value == self.configuration_value:
                return c
        return None

    @property
    def configured(self) -> bool:
        return self.configuration_value != 0

    def interfaces(self) -> list[InterfaceDescriptor]:
        """Interfaces of the first configuration (alternate 0), for the USB/IP device list."""
        config = self.configurations[0]
        return [i for i in config.interfaces if i.alternate == 0]

    def describe(self) -> str:
        d = self.descriptor
        product = self.strings.get(d.product_index, self.strings.languages[0]) if d.product_index else None
        return f"{d.vendor_id:04x}:{d.product_id:04x}" + (f" {product}" if product else "")

    async def wait_configured(self, timeout: float | None = None) -> None:
        """Wait until a host has selected a configuration."""
        if self.configured:
            return
        if self._configured_event is None:
            self._configured_event = asyncio.Event()
        await asyncio.wait_for(self._configured_event.wait(), timeout)

    # ------------------------------------------------------------ lifecycle
    async def aclose(self) -> None:
        """Release every function's resources (flush and close disk images, stop backends)."""
        for f in self.functions:
            result = f.close()
            if result is not None:
                await result

    def close_unstarted(self) -> None:
        """Release a device that was built but never served (synchronous resources only)."""
        for f in self.functions:
            result = f.close()
            if inspect.iscoroutine(result):
                result.close()  # an async backend that never started holds nothing

    def add_attach_listener(self, listener: Callable[[bool], None]) -> None:
        self._attach_listeners.append(listener)

    def attach(self) -> None:
        """A client imported the device."""
        if self.attached:
            raise UsageError(f"device {self.describe()} is already attached")
        self.reset()
        self.attached = True
        for listener in self._attach_listeners:
            listener(True)

    def disconnect(self) -> None:
        """The device vanishes from the bus: its client's connection is dropped (a cable pulled).

        Served by a :class:`~vusb.server.Server`, the device can be imported again at once;
        without a server the device is simply detached.  Nothing happens if it is not attached.
        """
        if not self.attached:
            return
        log.info("%s: disconnecting from its client", self.describe())
        if self.disconnect_handler is not None:
            self.disconnect_handler()
        else:
            self.detach()

    def detach(self) -> None:
        """The client went away: drop its URBs and return to the unconfigured state."""
        self.attached = False
        self.reset()
        for listener in self._attach_listeners:
            listener(False)

    def reset(self) -> None:
        was_configured = self.configured
        for ep in self._endpoints.values():
            ep.reset()
        self.configuration_value = 0
        self.alternates = {}
        self._active_endpoints = frozenset()
        self.remote_wakeup_enabled = False
        self.u1_enabled = self.u2_enabled = False
        if self._configured_event is not None:
            self._configured_event.clear()
        for f in self.functions:
            if was_configured:
                f.on_configured(False)
            f.on_reset()

    def submit(self, urb: Urb) -> None:
        """Route a URB to its endpoint's queue."""
        address = urb.ep | (0x80 if urb.direction == 1 else 0) if urb.ep else 0
        ep = self._endpoints.get(address)
        if ep is None or (address and address not in self._active_endpoints):  # _endpoint_active(), inlined
            if log.isEnabledFor(logging.WARNING):
                log.warning("%s: URB seqnum %d for endpoint 0x%02x, which is not active; stalling",
                            self.describe(), urb.seqnum, address)
            urb.complete(Completion(Status.EPIPE))
            return
        ep.submit(urb)

    def _endpoint_active(self, address: int) -> bool:
        return address in self._active_endpoints

    def _update_active_endpoints(self) -> None:
        """Recompute which endpoints the current configuration and alternate settings enable; each takes
        the descriptor (type, max packet size) of the interface in use, since an address may differ
        between configurations and alternate settings."""
        config = self.active_configuration
        active: set[int] = set()
        if config is not None:
            for itf in config.interfaces:
                if itf.alternate == self.alternates.get(itf.number, 0):
                    for epd in itf.endpoints:
                        active.add(epd.address)
                        ep = self._endpoints[epd.address]
                        ep.descriptor = epd
                        ep.max_packet_size = epd.max_packet_size & 0x7FF
        self._active_endpoints = frozenset(active)

    # ------------------------------------------------------------ control transfers
    def _handle_control(self, urb: Urb) -> HandlerResult:
        setup = urb.setup
        if setup is None:
            log.warning("%s: control URB seqnum %d without a setup packet; stalling", self.describe(), urb.seqnum)
            return Completion(Status.EPIPE)
        data = urb.data
        if type(data) is not bytes:
            data = bytes(data)
        try:
            if not setup.request_type & 0x60:  # a standard request
                result = standard.answer(self, setup, data)
                if result is NOT_HANDLED:
                    result = self._route(setup, data)
            else:
                result = self._route(setup, data)
        except Stall:
            return Completion(Status.EPIPE)
        if result is NOT_HANDLED:
            log.warning("%s: unhandled request %s; stalling", self.describe(), setup.describe())
            return Completion(Status.EPIPE)
        if self.faults.descriptor_rules and isinstance(result, (bytes, bytearray)) and is_get_descriptor(setup):
            result = self.faults.patch_descriptor(setup, bytes(result))
        kind = type(result)
        if kind is bytes or result is None:  # the common answers, without the Awaitable check below
            if setup.request_type & 0x80:
                return Completion(0, result[: setup.length] if result is not None else b"")
            return Completion(0, b"", setup.length)
        if isinstance(result, Awaitable):  # type: ignore[misc]
            return self._finish_async(setup, result)
        return self._to_completion(setup, result)

    async def _finish_async(self, setup: SetupPacket, pending: Awaitable[ControlResult]) -> Completion:
        try:
            result = await pending
        except Stall:
            return Completion(Status.EPIPE)
        if result is NOT_HANDLED:
            log.warning("%s: unhandled request %s; stalling", self.describe(), setup.describe())
            return Completion(Status.EPIPE)
        return self._to_completion(setup, result)

    @staticmethod
    def _to_completion(setup: SetupPacket, result: ControlResult) -> Completion:
        if setup.is_in:
            out = b"" if result is None or isinstance(result, NotHandled) else bytes(result)
            return Completion(0, out[: setup.length])
        return Completion(0, b"", setup.length)

    def _high_byte_owner(self, setup: SetupPacket) -> Function | None:
        """The function a class request names in wIndex's high byte, if it declares that request so."""
        if setup.type != RequestType.CLASS:
            return None
        f = self._interface_owner.get(setup.index >> 8)
        return f if f is not None and setup.request in f.interface_in_high_byte else None

    def _route(self, setup: SetupPacket, data: bytes) -> Any:
        owner: Function | None = None
        if setup.recipient == Recipient.INTERFACE:
            owner = self._high_byte_owner(setup) or self._interface_owner.get(setup.index & 0xFF)
        elif setup.recipient == Recipient.ENDPOINT:
            owner = self._endpoint_owner.get(setup.index & 0xFF)
        if owner is not None:
            if setup.type == RequestType.STANDARD and setup.request == Request.GET_DESCRIPTOR and setup.is_in:
                desc = owner.get_descriptor(setup)
                return NOT_HANDLED if desc is None else desc
            result = owner.control(setup, data)
            if result is not NOT_HANDLED:
                return result
        if setup.type != RequestType.STANDARD:
            if self.vendor_handler is not None:  # answers what it knows; the functions get the rest
                result = self.vendor_handler(setup, data)
                if result is not NOT_HANDLED:
                    return result
            for f in self.functions:
                if f is owner:
                    continue
                if setup.recipient == Recipient.DEVICE or owner is None:
                    result = f.control(setup, data)
                    if result is not NOT_HANDLED:
                        return result
        return NOT_HANDLED
