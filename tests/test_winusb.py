"""Microsoft OS 2.0 and WebUSB descriptors, byte for byte, and the vendor requests that fetch them.

The expected bytes are written out field by field from the specifications' tables, with the
values of their examples: Microsoft's "Microsoft OS 2.0 Descriptors Specification" (Windows 8.1,
bMS_VendorCode 0x02, a 0xB2-byte descriptor set with configuration and function subset headers,
compatible ID WINUSB and the DeviceInterfaceGUIDs property) and the WebUSB specification
(platform capability with bVendorCode 0x01 and iLandingPage 1; URL descriptors).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from vusb.devices import Keyboard

from vusb.descriptors import BosDescriptor
from vusb.errors import DeviceDefinitionError, ProfileError, Stall, UsageError
from vusb.profile import parse_profile
from vusb.testing import LocalHost
from vusb.urb import SetupPacket
from vusb.winusb import (
    WebUsb,
    WinUsb,
    add_platform_descriptors,
    ms_os_20_capability,
    ms_os_20_descriptor_set,
    url_descriptor,
    webusb_capability,
)

ROOT = Path(__file__).resolve().parent.parent
GUID = "{9D32F82C-1FB2-4486-8501-B6145B5BA336}"


def h(text: str) -> bytes:
    return bytes.fromhex(re.sub(r"#.*", "", text))


MS_OS_20_CAPABILITY = h("""
    1C 10 05 00                                       # bLength 28, DEVICE CAPABILITY, PLATFORM, bReserved
    DF 60 DD D8 89 45 C7 4C 9C D2 65 9D 9E 64 8A 9F   # {D8DD60DF-4589-4CC7-9CD2-659D9E648A9F}
    00 00 03 06                                       # dwWindowsVersion 0x06030000 (Windows 8.1)
    B2 00                                             # wMSOSDescriptorSetTotalLength 0x00B2
    02 00                                             # bMS_VendorCode 0x02, bAltEnumCode 0
""")

WEBUSB_CAPABILITY = h("""
    18 10 05 00                                       # bLength 24, DEVICE CAPABILITY, PLATFORM, bReserved
    38 B6 08 34 A9 09 A0 47 8B FD A0 76 88 15 B6 65   # {3408B638-09A9-47A0-8BFD-A0768815B665}
    00 01                                             # bcdVersion 1.00
    01 01                                             # bVendorCode 0x01, iLandingPage 1
""")

DEVICE_INTERFACE_GUIDS = "DeviceInterfaceGUIDs\0".encode("utf-16-le")
GUID_MULTI_SZ = (GUID + "\0\0").encode("utf-16-le")

MS_OS_20_SET_FOR_FUNCTION_0 = h("""
    0A 00 00 00  00 00 03 06  B2 00       # set header: wLength 10, type 0, Windows 8.1, wTotalLength 0xB2
    08 00 01 00  00 00  A8 00             # configuration subset: wLength 8, type 1, index 0, wTotalLength 0xA8
    08 00 02 00  00 00  A0 00             # function subset: wLength 8, type 2, bFirstInterface 0, wSubsetLength 0xA0
    14 00 03 00  57 49 4E 55 53 42 00 00  00 00 00 00 00 00 00 00   # compatible ID "WINUSB", sub-ID empty
    84 00 04 00  07 00  2A 00             # registry property: wLength 0x84, type 4, REG_MULTI_SZ, name 42 bytes
""") + DEVICE_INTERFACE_GUIDS + h("50 00") + GUID_MULTI_SZ

MS_OS_20_SET_FOR_THE_DEVICE = h("""
    0A 00 00 00  00 00 03 06  A2 00       # set header: wTotalLength 0xA2 (no subset headers)
    14 00 03 00  57 49 4E 55 53 42 00 00  00 00 00 00 00 00 00 00
    84 00 04 00  07 00  2A 00
""") + DEVICE_INTERFACE_GUIDS + h("50 00") + GUID_MULTI_SZ

BUILT = [
    ("MS OS 2.0 platform capability", lambda: ms_os_20_capability(0xB2, 0x02).to_bytes(), MS_OS_20_CAPABILITY),
    ("WebUSB platform capability", lambda: webusb_capability(0x01, 1).to_bytes(), WEBUSB_CAPABILITY),
    ("BOS with both", lambda: BosDescriptor((webusb_capability(0x01, 1), ms_os_20_capability(0xB2, 0x02))).to_bytes(),
     h("05 0F 39 00 02") + WEBUSB_CAPABILITY + MS_OS_20_CAPABILITY),
    ("descriptor set for function 0", lambda: ms_os_20_descriptor_set([GUID], interface=0), MS_OS_20_SET_FOR_FUNCTION_0),
    ("descriptor set for the device", lambda: ms_os_20_descriptor_set([GUID]), MS_OS_20_SET_FOR_THE_DEVICE),
    ("URL https://example.com", lambda: url_descriptor("https://example.com"), h("0E 03 01") + b"example.com"),
    ("URL http://", lambda: url_descriptor("http://localhost:8000/app"), h("15 03 00") + b"localhost:8000/app"),
    ("URL with another scheme", lambda: url_descriptor("chrome-extension://x"), h("17 03 FF") + b"chrome-extension://x"),
]


@pytest.mark.parametrize(("case", "build", "expected"), BUILT, ids=[c[0] for c in BUILT])
def test_descriptors_match_the_published_examples(case: str, build: object, expected: bytes) -> None:
    assert build() == expected  # type: ignore[operator]


def test_sizes_the_specifications_state() -> None:
    assert len(MS_OS_20_CAPABILITY) == 28 and len(WEBUSB_CAPABILITY) == 24
    assert len(MS_OS_20_SET_FOR_FUNCTION_0) == 0xB2 and len(MS_OS_20_SET_FOR_THE_DEVICE) == 0xA2


# ---------------------------------------------------------------- served by a device


def windows_ready_keyboard() -> Keyboard:
    kb = Keyboard(speed="high", usb_version=0x0210)
    add_platform_descriptors(kb, winusb=WinUsb(0x02, [GUID], interface=0),
                             webusb=WebUsb("https://example.com", vendor_code=0x01))
    return kb


async def test_host_reads_bos_then_the_descriptor_set_and_the_url() -> None:
    kb = windows_ready_keyboard()
    async with LocalHost(kb) as host:
        await host.enumerate()
        head = await host.get_descriptor(0x0F, 0, 5)
        bos = await host.get_descriptor(0x0F, 0, int.from_bytes(head[2:4], "little"))
        assert bos[4] == 3 and bos[5:12] == h("07 10 02 02 00 00 00")  # USB 2.0 extension stays first
        assert bos[12:] == MS_OS_20_CAPABILITY + WEBUSB_CAPABILITY
        # Windows: bmRequestType 0xC0, bRequest bMS_VendorCode, wIndex 7 (MS_OS_20_DESCRIPTOR_INDEX)
        assert await host.control(SetupPacket(0xC0, 0x02, 0, 7, 0xB2)) == MS_OS_20_SET_FOR_FUNCTION_0
        # A browser: GET_URL, bRequest bVendorCode, wValue iLandingPage, wIndex 2
        assert await host.control(SetupPacket(0xC0, 0x01, 1, 2, 255)) == h("0E 03 01") + b"example.com"
        with pytest.raises(Stall):
            await host.control(SetupPacket(0xC0, 0x01, 2, 2, 255))  # no URL 2
        with pytest.raises(Stall):
            await host.control(SetupPacket(0xC0, 0x07, 0, 7, 255))  # another vendor code


def test_default_guid_is_stable_and_per_device() -> None:
    sets = []
    for pid in (1, 1, 2):
        kb = Keyboard(product_id=pid, usb_version=0x0210)
        add_platform_descriptors(kb, winusb=WinUsb())
        assert kb.bos is not None
        sets.append(kb.vendor_handler(SetupPacket(0xC0, 0x20, 0, 7, 255), b""))  # type: ignore[misc]
    assert sets[0] == sets[1] != sets[2]


BAD = [
    ("same vendor code", dict(winusb=WinUsb(0x05), webusb=WebUsb(None, 0x05)), DeviceDefinitionError,
     "WinUSB and WebUSB both use vendor code 0x05"),
    ("bad GUID", dict(winusb=WinUsb(guids=["not-a-guid"])), DeviceDefinitionError, "is not a GUID"),
    ("missing interface", dict(winusb=WinUsb(interface=3)), DeviceDefinitionError,
     "WinUSB interface 3: the device has interfaces [0]"),
    ("URL too long", dict(webusb=WebUsb("https://" + "x" * 300)), DeviceDefinitionError, "at most 252 fit"),
]


@pytest.mark.parametrize(("case", "options", "error", "message"), BAD, ids=[c[0] for c in BAD])
def test_bad_options_are_refused_by_name(case: str, options: dict[str, object], error: type[Exception],
                                         message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        add_platform_descriptors(Keyboard(usb_version=0x0210), **options)  # type: ignore[arg-type]


def test_usb_2_0_device_cannot_carry_a_bos() -> None:
    with pytest.raises(UsageError, match="hosts ask for a BOS only from 0x0201"):
        add_platform_descriptors(Keyboard(), webusb=WebUsb("https://example.com"))


# ---------------------------------------------------------------- profiles

PROFILE = """identity: {{vendor_id: 0x1209, product_id: 0x0001, speed: high}}
functions:
  - kind: keyboard
{platform}"""


async def test_profile_platform_section_serves_both() -> None:
    text = PROFILE.format(platform=f"platform:\n  winusb: {{vendor_code: 2, guid: '{GUID}', interface: 0}}\n"
                                   "  webusb: {landing_page: 'https://example.com', vendor_code: 1}\n")
    device = parse_profile(text, "p.yaml").build()
    assert device.descriptor.usb_version == 0x0210  # raised so that hosts ask for the BOS
    async with LocalHost(device) as host:
        await host.enumerate()
        assert await host.control(SetupPacket(0xC0, 0x02, 0, 7, 0xB2)) == MS_OS_20_SET_FOR_FUNCTION_0
        assert await host.control(SetupPacket(0xC0, 0x01, 1, 2, 255)) == h("0E 03 01") + b"example.com"


@pytest.mark.parametrize(("case", "platform", "message"), [
    ("empty", "platform: {}\n", "p.yaml:4:11: field 'platform': expected 'winusb:', 'webusb:' or both"),
    ("bad guid", "platform:\n  winusb: {guid: nope}\n", "p.yaml:5:18: field 'platform.winusb.guid': interface GUID"),
    ("vendor code", "platform:\n  webusb: {vendor_code: 300}\n",
     "field 'platform.webusb.vendor_code': 300 is out of range 0..255"),
    ("unknown field", "platform:\n  winusb: {colour: red}\n", "field 'platform.winusb.colour': unknown field"),
    ("clash", "platform:\n  winusb: {vendor_code: 1}\n  webusb: {vendor_code: 1}\n",
     "field 'platform': WinUSB and WebUSB both use vendor code 0x01"),
])
def test_profile_errors_name_the_field(case: str, platform: str, message: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(PROFILE.format(platform=platform), "p.yaml")
    assert message in str(info.value)


def test_the_docs_example_runs_as_written(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "winusb-webusb.md").read_text()
    code = re.search(r"## Example.*?```python\n(.*?)```", page, re.S)
    assert code is not None, "docs/winusb-webusb.md: no example"
    script = tmp_path / "example.py"
    script.write_text(code.group(1))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "landing page: https://example.com/app"
