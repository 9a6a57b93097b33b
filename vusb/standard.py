"""The standard requests of chapter 9 (USB 2.0 section 9.4, with the USB 3.2 additions).

Every device answers them the same way, from its descriptors and state
(:class:`~vusb.device.Device` keeps both): GET_DESCRIPTOR of the device, its
configurations, strings, qualifier, other-speed configurations and BOS;
GET_STATUS; SET/CLEAR_FEATURE (remote wakeup, endpoint halt, U1/U2, function
suspend); SET/GET_CONFIGURATION; SET/GET_INTERFACE; SYNCH_FRAME; SET_ADDRESS;
SET_SEL and SET_ISOCH_DELAY at SuperSpeed.  :func:`answer` is the entry point;
requests it does not know (class descriptors fetched from an interface) return
:data:`~vusb.function.NOT_HANDLED` so the device routes them to the function
that owns the interface.  A refused request raises :class:`~vusb.errors.Stall`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vusb.constants import DescriptorType, Feature, Recipient, Request, Speed, TransferType
from vusb.descriptors import LanguageTable, StringDescriptor
from vusb.errors import Stall
from vusb.function import NOT_HANDLED
from vusb.urb import SetupPacket

if TYPE_CHECKING:
    from vusb.device import Device

__all__ = ["answer"]


def answer(device: Device, setup: SetupPacket, data: bytes) -> Any:
    """Answer a standard request from ``device``'s descriptors and state; NOT_HANDLED if it is not one."""
    req = setup.request
    recipient = setup.recipient
    if req == Request.GET_DESCRIPTOR and setup.is_in:
        if recipient == Recipient.DEVICE:
            return get_descriptor(device, setup)
        return NOT_HANDLED  # interface-level class descriptors go to the function
    if req == Request.GET_STATUS and setup.is_in:
        return get_status(device, setup)
    if req in (Request.SET_FEATURE, Request.CLEAR_FEATURE) and not setup.is_in:
        return set_or_clear_feature(device, setup, req == Request.SET_FEATURE)
    if recipient != Recipient.DEVICE:
        if req == Request.GET_INTERFACE and setup.is_in and recipient == Recipient.INTERFACE:
            return get_interface(device, setup)
        if req == Request.SET_INTERFACE and not setup.is_in and recipient == Recipient.INTERFACE:
            return set_interface(device, setup)
        if req == Request.SYNCH_FRAME and setup.is_in and recipient == Recipient.ENDPOINT:
            ep = device._endpoints.get(setup.index & 0xFF)
            if ep is not None and ep.transfer_type == TransferType.ISOCHRONOUS:
                return b"\x00\x00"
            raise Stall()
        return NOT_HANDLED
    if req == Request.SET_CONFIGURATION and not setup.is_in:
        return set_configuration(device, setup.value & 0xFF)
    if req == Request.GET_CONFIGURATION and setup.is_in:
        return bytes((device.configuration_value,))
    if req == Request.SET_ADDRESS and not setup.is_in:
        return None  # handled by the host controller; accept if forwarded
    if req == Request.SET_ISOCH_DELAY and not setup.is_in:
        if device.speed != Speed.SUPER:
            raise Stall()
        device.isoch_delay = setup.value
        return None
    if req == Request.SET_SEL and not setup.is_in:
        if device.speed != Speed.SUPER or setup.length != 6:
            raise Stall()
        device.sel = data
        return None
    return NOT_HANDLED


def get_descriptor(device: Device, setup: SetupPacket) -> Any:
    """GET_DESCRIPTOR to the device: device, configuration, string, qualifier, other speed, BOS; else asks the functions."""
    dtype, index = setup.descriptor_type, setup.descriptor_index
    if dtype == DescriptorType.DEVICE:
        return device._device_bytes
    if dtype == DescriptorType.CONFIGURATION:
        if index >= len(device._config_bytes):
            raise Stall()
        return device._config_bytes[index]
    if dtype == DescriptorType.STRING:
        return string_descriptor(device, index, setup.index)
    if dtype == DescriptorType.DEVICE_QUALIFIER:
        if device.speed != Speed.HIGH or device._qualifier_bytes is None:
            raise Stall()
        return device._qualifier_bytes
    if dtype == DescriptorType.OTHER_SPEED_CONFIGURATION:
        if device.speed != Speed.HIGH or index >= len(device._other_speed_bytes):
            raise Stall()
        return device._other_speed_bytes[index]
    if dtype == DescriptorType.BOS:
        if device._bos_bytes is None:
            raise Stall()
        return device._bos_bytes
    # Device-level class/vendor descriptors (e.g. HID report on a device recipient): ask the functions.
    for f in device.functions:
        desc = f.get_descriptor(setup)
        if desc is not None:
            return desc
    return NOT_HANDLED


def string_descriptor(device: Device, index: int, lang: int) -> bytes:
    """String descriptor ``index`` in language ``lang`` (index 0: the language table), cached."""
    key = (index, lang)
    cached = device._string_bytes.get(key)
    if cached is None:
        if index == 0:
            cached = LanguageTable(device.strings.languages).to_bytes()
        else:
            text = device.strings.get(index, lang)
            if text is None:
                raise Stall()
            cached = StringDescriptor(text).to_bytes()
        if len(device._string_bytes) < 1024:  # bounded: hosts choose the language id
            device._string_bytes[key] = cached
    return cached


def get_status(device: Device, setup: SetupPacket) -> bytes:
    """GET_STATUS of the device (self powered, remote wakeup, U1/U2), an interface or an endpoint (halted)."""
    if setup.length < 2 and setup.length != 0:
        raise Stall()
    recipient = setup.recipient
    if recipient == Recipient.DEVICE:
        config = device.active_configuration or device.configurations[0]
        bits = (1 if config.self_powered else 0) | (2 if device.remote_wakeup_enabled else 0)
        if device.speed == Speed.SUPER:
            bits |= (4 if device.u1_enabled else 0) | (8 if device.u2_enabled else 0)
        return bits.to_bytes(2, "little")
    if recipient == Recipient.INTERFACE:
        if not device.configured or (setup.index & 0xFF) not in interface_numbers(device):
            raise Stall()
        return b"\x00\x00"
    if recipient == Recipient.ENDPOINT:
        address = setup.index & 0xFF
        if address in (0, 0x80):
            return b"\x00\x00"
        if not device._endpoint_active(address):
            raise Stall()
        return (1 if device._endpoints[address].halted else 0).to_bytes(2, "little")
    raise Stall()


def interface_numbers(device: Device) -> set[int]:
    """Interface numbers of the configuration in use (none when unconfigured)."""
    config = device.active_configuration
    return {i.number for i in config.interfaces} if config else set()


def set_or_clear_feature(device: Device, setup: SetupPacket, on: bool) -> Any:
    """SET_FEATURE (``on``) or CLEAR_FEATURE: remote wakeup, test mode, U1/U2/LTM, function suspend, endpoint halt."""
    recipient, feature = setup.recipient, setup.value
    if recipient == Recipient.DEVICE:
        if feature == Feature.DEVICE_REMOTE_WAKEUP:
            config = device.active_configuration or device.configurations[0]
            if not config.remote_wakeup:
                raise Stall()
            device.remote_wakeup_enabled = on
            return None
        if feature == Feature.TEST_MODE and on:
            return None
        if device.speed == Speed.SUPER and feature in (Feature.U1_ENABLE, Feature.U2_ENABLE, Feature.LTM_ENABLE):
            if feature == Feature.U1_ENABLE:
                device.u1_enabled = on
            elif feature == Feature.U2_ENABLE:
                device.u2_enabled = on
            return None
        raise Stall()
    if recipient == Recipient.INTERFACE:
        if feature == 0 and device.speed == Speed.SUPER and (setup.index & 0xFF) in interface_numbers(device):
            return None  # FUNCTION_SUSPEND
        raise Stall()
    if recipient == Recipient.ENDPOINT and feature == Feature.ENDPOINT_HALT:
        address = setup.index & 0xFF
        if address in (0, 0x80):
            return None
        if not device._endpoint_active(address):
            raise Stall()
        ep = device._endpoints[address]
        if on:
            ep.halt()
        else:
            ep.clear_halt()
            owner = device._endpoint_owner.get(address)
            if owner is not None:
                owner.on_clear_halt(address)
        return None
    raise Stall()


def set_configuration(device: Device, value: int) -> None:
    """SET_CONFIGURATION: reset the endpoints, select configuration ``value`` (0: none) and tell the functions."""
    if value != 0 and not any(c.value == value for c in device.configurations):
        raise Stall()
    was = device.configured
    for address, ep in device._endpoints.items():
        if address:
            ep.reset(answer_pending=True)
    device.alternates = {}
    device.configuration_value = value
    device._update_active_endpoints()
    if was:
        for f in device.functions:
            f.on_configured(False)
    if value:
        for f in device.functions:
            f.on_configured(True)
        if device._configured_event is not None:
            device._configured_event.set()
    elif device._configured_event is not None:
        device._configured_event.clear()
    return None


def get_interface(device: Device, setup: SetupPacket) -> bytes:
    """GET_INTERFACE: the alternate setting in use."""
    number = setup.index & 0xFF
    if not device.configured or number not in interface_numbers(device):
        raise Stall()
    return bytes((device.alternates.get(number, 0),))


def set_interface(device: Device, setup: SetupPacket) -> None:
    """SET_INTERFACE: switch an interface to another alternate setting and tell its function."""
    number, alt = setup.index & 0xFF, setup.value
    config = device.active_configuration
    if config is None or config.interface(number, alt) is None:
        raise Stall()
    old = config.interface(number, device.alternates.get(number, 0))
    for itf in (old, config.interface(number, alt)):
        if itf is None:
            continue
        for epd in itf.endpoints:
            device._endpoints[epd.address].reset(answer_pending=True)
    device.alternates[number] = alt
    device._update_active_endpoints()
    owner = device._interface_owner.get(number)
    if owner is not None:
        owner.on_alternate(number, alt)
    return None
