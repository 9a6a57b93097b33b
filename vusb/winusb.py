"""Microsoft OS 2.0 descriptors (Windows binds WinUSB by itself) and WebUSB (browsers offer the device).

Both are BOS platform capabilities (bDevCapabilityType 5, a 16-byte UUID, then data) and
each names a vendor request code the host then uses to fetch more:

* Microsoft OS 2.0 (UUID D8DD60DF-4589-4CC7-9CD2-659D9E648A9F): the capability carries
  dwWindowsVersion, the length of the descriptor set and bMS_VendorCode. Windows 8.1 and
  later read the set with a vendor request (bmRequestType 0xC0, bRequest bMS_VendorCode,
  wIndex 7, MS_OS_20_DESCRIPTOR_INDEX). The set here holds the compatible ID ``WINUSB``
  (Windows loads winusb.sys with no INF) and the registry property ``DeviceInterfaceGUIDs``
  (the interface GUID programs open the device with), for the whole device or, on a
  composite device, for one function (configuration and function subset headers).
* WebUSB (UUID 3408B638-09A9-47A0-8BFD-A0768815B665): bcdVersion 1.00, bVendorCode and
  iLandingPage. A browser fetches the landing page URL with GET_URL (bmRequestType 0xC0,
  bRequest bVendorCode, wValue iLandingPage, wIndex 2): a URL descriptor (bLength, type 3,
  bScheme 0 ``http://`` / 1 ``https://`` / 255 as written, then the rest of the URL).

::

    device = Device(MyVendorFunction(), vendor_id=..., product_id=..., usb_version=0x0210)
    add_platform_descriptors(device, winusb=WinUsb(guid="{...}"), webusb=WebUsb("https://example.com/app"))

In a profile, the top-level ``platform:`` section does the same (docs/winusb-webusb.md).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Final

from vusb.descriptors import BosDescriptor, DeviceCapability, RawCapability
from vusb.device import NOT_HANDLED, ControlHandler, ControlResult, Device
from vusb.errors import DeviceDefinitionError, Stall
from vusb.profile_fields import Field, Node, ProfileContext, read_mapping
from vusb.urb import SetupPacket

log = logging.getLogger("vusb.winusb")

PLATFORM_CAPABILITY: Final = 0x05
MS_OS_20_UUID: Final = uuid.UUID("D8DD60DF-4589-4CC7-9CD2-659D9E648A9F")
WEBUSB_UUID: Final = uuid.UUID("3408B638-09A9-47A0-8BFD-A0768815B665")
WINDOWS_8_1: Final = 0x06030000
MS_OS_20_DESCRIPTOR_INDEX: Final = 7
MS_OS_20_SET_ALT_ENUMERATION: Final = 8
WEBUSB_GET_URL: Final = 2
WEBUSB_URL: Final = 3

# MS OS 2.0 descriptor types (wDescriptorType)
SET_HEADER: Final = 0x00
SUBSET_HEADER_CONFIGURATION: Final = 0x01
SUBSET_HEADER_FUNCTION: Final = 0x02
FEATURE_COMPATIBLE_ID: Final = 0x03
FEATURE_REG_PROPERTY: Final = 0x04
REG_SZ: Final = 1
REG_MULTI_SZ: Final = 7

URL_SCHEMES: Final = {"http://": 0, "https://": 1}


def platform_capability(capability_uuid: uuid.UUID, data: bytes) -> RawCapability:
    """A BOS platform capability: type 5, bReserved 0, the UUID (little-endian GUID layout), then ``data``."""
    return RawCapability(bytes((PLATFORM_CAPABILITY, 0)) + capability_uuid.bytes_le + data)


def ms_os_20_capability(set_length: int, vendor_code: int, *, windows_version: int = WINDOWS_8_1,
                        alt_enum_code: int = 0) -> RawCapability:
    """The Microsoft OS 2.0 platform capability (28 bytes) for a descriptor set of ``set_length`` bytes."""
    return platform_capability(MS_OS_20_UUID, windows_version.to_bytes(4, "little") + set_length.to_bytes(2, "little")
                               + bytes((vendor_code, alt_enum_code)))


def webusb_capability(vendor_code: int, landing_page: int = 1, version: int = 0x0100) -> RawCapability:
    """The WebUSB platform capability (24 bytes); ``landing_page`` 0 means none."""
    return platform_capability(WEBUSB_UUID, version.to_bytes(2, "little") + bytes((vendor_code, landing_page)))


def url_descriptor(url: str) -> bytes:
    """A WebUSB URL descriptor: ``https://`` and ``http://`` become bScheme 1 and 0, anything else is 255."""
    scheme = 255
    rest = url
    for prefix, code in URL_SCHEMES.items():
        if url.lower().startswith(prefix):
            scheme, rest = code, url[len(prefix):]
            break
    raw = rest.encode("utf-8")
    if len(raw) + 3 > 255:
        raise DeviceDefinitionError(f"landing page URL {url!r}: {len(raw)} bytes after the scheme, at most 252 fit")
    return bytes((len(raw) + 3, WEBUSB_URL, scheme)) + raw


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "little")


def compatible_id(compatible: str = "WINUSB", sub_compatible: str = "") -> bytes:
    """MS_OS_20_FEATURE_COMPATIBLE_ID: 20 bytes, the two IDs as 8-byte NUL-padded ASCII."""
    for what, text in (("compatible ID", compatible), ("sub-compatible ID", sub_compatible)):
        if len(text) > 8 or not text.isascii():
            raise DeviceDefinitionError(f"{what} {text!r}: at most 8 ASCII characters")
    return _u16(20) + _u16(FEATURE_COMPATIBLE_ID) + compatible.encode().ljust(8, b"\0") \
        + sub_compatible.encode().ljust(8, b"\0")


def registry_property(name: str, values: list[str] | str) -> bytes:
    """MS_OS_20_FEATURE_REG_PROPERTY: a REG_SZ (one string) or REG_MULTI_SZ (a list), names and data UTF-16LE."""
    multi = isinstance(values, list)
    text = ("\0".join(values) + "\0\0") if isinstance(values, list) else values + "\0"
    name_raw = (name + "\0").encode("utf-16-le")
    data = text.encode("utf-16-le")
    body = _u16(REG_MULTI_SZ if multi else REG_SZ) + _u16(len(name_raw)) + name_raw + _u16(len(data)) + data
    return _u16(4 + len(body)) + _u16(FEATURE_REG_PROPERTY) + body


def ms_os_20_descriptor_set(guids: list[str], *, interface: int | None = None,
                            windows_version: int = WINDOWS_8_1, compatible: str = "WINUSB") -> bytes:
    """The descriptor set: header, then (for one function of a composite device) configuration and
    function subset headers, then the compatible ID and the DeviceInterfaceGUIDs property."""
    features = compatible_id(compatible) + registry_property("DeviceInterfaceGUIDs", guids)
    if interface is not None:
        function = _u16(8) + _u16(SUBSET_HEADER_FUNCTION) + bytes((interface, 0)) + _u16(8 + len(features))
        # bConfigurationValue of the configuration subset is, despite its name, the configuration index.
        body = _u16(8) + _u16(SUBSET_HEADER_CONFIGURATION) + bytes((0, 0)) + _u16(8 + len(function) + len(features)) \
            + function + features
    else:
        body = features
    return _u16(10) + _u16(SET_HEADER) + windows_version.to_bytes(4, "little") + _u16(10 + len(body)) + body


def _guid_text(value: str | uuid.UUID) -> str:
    try:
        parsed = value if isinstance(value, uuid.UUID) else uuid.UUID(value.strip("{}"))
    except ValueError:
        raise DeviceDefinitionError(f"interface GUID {value!r} is not a GUID such as "
                                    "{9D32F82C-1FB2-4486-8501-B6145B5BA336}") from None
    return "{" + str(parsed).upper() + "}"


@dataclass
class WinUsb:
    """What Windows is told: bind WinUSB, and register these device interface GUIDs.

    ``guids``: default one GUID derived from the device's VID:PID (stable across runs).
    ``interface``: the first interface of the function WinUSB takes on a composite device
    (None: the whole device, which must then not be composite for Windows to bind it).
    """

    vendor_code: int = 0x20
    guids: list[str] = field(default_factory=list)
    interface: int | None = None
    windows_version: int = WINDOWS_8_1


@dataclass
class WebUsb:
    """What a browser is told: the device speaks WebUSB, and its landing page (None: no page)."""

    landing_page: str | None = None
    vendor_code: int = 0x21


def add_platform_descriptors(device: Device, *, winusb: WinUsb | None = None, webusb: WebUsb | None = None) -> None:
    """Add the capabilities to the device's BOS and answer the vendor requests that fetch the rest.

    The device's own vendor handler (a profile's ``control:`` list) still answers everything else.
    """
    if winusb is None and webusb is None:
        return
    if winusb is not None and webusb is not None and winusb.vendor_code == webusb.vendor_code:
        raise DeviceDefinitionError(f"WinUSB and WebUSB both use vendor code 0x{winusb.vendor_code:02x}; "
                                    "give them different ones")
    caps: list[DeviceCapability] = [c for c in (device.bos.capabilities if device.bos is not None else ())]
    descriptor_set = b""
    url = b""
    if winusb is not None:
        if not 0 <= winusb.vendor_code <= 0xFF:
            raise DeviceDefinitionError(f"WinUSB vendor code {winusb.vendor_code}: a byte")
        numbers = {i.number for i in device.interfaces()}
        if winusb.interface is not None and winusb.interface not in numbers:
            raise DeviceDefinitionError(f"WinUSB interface {winusb.interface}: the device has interfaces "
                                        f"{sorted(numbers)}")
        d = device.descriptor
        guids = [_guid_text(g) for g in winusb.guids] or [
            _guid_text(uuid.uuid5(uuid.NAMESPACE_URL, f"vusb:{d.vendor_id:04x}:{d.product_id:04x}"))]
        descriptor_set = ms_os_20_descriptor_set(guids, interface=winusb.interface,
                                                 windows_version=winusb.windows_version)
        caps.append(ms_os_20_capability(len(descriptor_set), winusb.vendor_code,
                                        windows_version=winusb.windows_version))
    if webusb is not None:
        if not 0 <= webusb.vendor_code <= 0xFF:
            raise DeviceDefinitionError(f"WebUSB vendor code {webusb.vendor_code}: a byte")
        url = url_descriptor(webusb.landing_page) if webusb.landing_page else b""
        caps.append(webusb_capability(webusb.vendor_code, 1 if url else 0))
    device.set_bos(BosDescriptor(tuple(caps)))
    device.vendor_handler = _handler(device.vendor_handler, winusb, descriptor_set, webusb, url)


def _handler(previous: ControlHandler | None, winusb: WinUsb | None, descriptor_set: bytes,
             webusb: WebUsb | None, url: bytes) -> ControlHandler:
    def handle(setup: SetupPacket, data: bytes) -> ControlResult | Awaitable[ControlResult]:
        if setup.request_type == 0xC0:  # IN, vendor, device
            if winusb is not None and setup.request == winusb.vendor_code and setup.index == MS_OS_20_DESCRIPTOR_INDEX:
                return descriptor_set
            if webusb is not None and setup.request == webusb.vendor_code and setup.index == WEBUSB_GET_URL:
                if url and setup.value == 1:
                    return url
                raise Stall(f"GET_URL for URL index {setup.value}: the device has "
                            + ("only index 1" if url else "no landing page"))
        if previous is not None:
            result: Any = previous(setup, data)
            return result  # type: ignore[no-any-return]
        return NOT_HANDLED

    return handle


# ------------------------------------------------------------------ the profile's ``platform:`` section


PLATFORM_FIELDS: dict[str, Field] = {
    "winusb": Field("map", help="Microsoft OS 2.0 descriptors: Windows binds WinUSB with no driver install"),
    "webusb": Field("map", help="WebUSB: browsers offer the device and show its landing page"),
}
"""The fields of a profile's ``platform:`` section."""

WINUSB_FIELDS: dict[str, Field] = {
    "vendor_code": Field("int", False, 0x20, 0, 0xFF, help="bMS_VendorCode (default 0x20)"),
    "guid": Field("str", help="DeviceInterfaceGUIDs value (default: derived from VID:PID)"),
    "interface": Field("int", False, None, 0, 0xFF,
                       help="first interface of the function WinUSB takes (composite devices)"),
}
"""The fields of ``platform.winusb``."""

WEBUSB_FIELDS: dict[str, Field] = {
    "landing_page": Field("str", help="URL the browser offers (https://... recommended)"),
    "vendor_code": Field("int", False, 0x21, 0, 0xFF, help="bVendorCode (default 0x21)"),
}
"""The fields of ``platform.webusb``."""


@dataclass
class PlatformSection:
    """A profile's ``platform:`` section, checked; :meth:`apply` adds it to a built device."""

    winusb: WinUsb | None
    webusb: WebUsb | None
    node: Any
    path: str

    def apply(self, device: Device) -> None:
        add_platform_descriptors(device, winusb=self.winusb, webusb=self.webusb)


def read_platform_section(ctx: ProfileContext, node: Node) -> PlatformSection:
    """Check ``platform: {winusb: {...}, webusb: {...}}`` field by field (errors name file, line and field)."""
    top = read_mapping(ctx, node, "platform", PLATFORM_FIELDS)
    winusb = webusb = None
    if top["winusb"].value is not None:
        w = read_mapping(ctx, top["winusb"].value, "platform.winusb", WINUSB_FIELDS)
        guids = []
        if w["guid"].value is not None:
            try:
                guids = [_guid_text(w["guid"].value)]
            except DeviceDefinitionError as exc:
                raise ctx.error(w["guid"].node, w["guid"].path, str(exc)) from None
        winusb = WinUsb(w["vendor_code"].value, guids, w["interface"].value)
    if top["webusb"].value is not None:
        b = read_mapping(ctx, top["webusb"].value, "platform.webusb", WEBUSB_FIELDS)
        page = b["landing_page"].value
        if page is not None:
            try:
                url_descriptor(page)
            except DeviceDefinitionError as exc:
                raise ctx.error(b["landing_page"].node, b["landing_page"].path, str(exc)) from None
        webusb = WebUsb(page, b["vendor_code"].value)
    if winusb is None and webusb is None:
        raise ctx.error(node, "platform", "expected 'winusb:', 'webusb:' or both")
    return PlatformSection(winusb, webusb, node, "platform")


__all__ = [
    "MS_OS_20_UUID", "PLATFORM_FIELDS", "WEBUSB_FIELDS", "WEBUSB_UUID", "WINDOWS_8_1", "WINUSB_FIELDS",
    "PlatformSection", "WebUsb", "WinUsb", "add_platform_descriptors", "compatible_id", "ms_os_20_capability",
    "ms_os_20_descriptor_set", "platform_capability", "read_platform_section", "registry_property",
    "url_descriptor", "webusb_capability",
]
