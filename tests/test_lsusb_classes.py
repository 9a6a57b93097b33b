"""`vusb probe` decodes class-specific descriptors field by field, as ``lsusb -v`` does.

Each case is one interface as a device would return it (the bytes written from the class
specification), parsed the way enumeration parses a configuration, then printed; the
expected lines are what a USB developer reads in ``lsusb -v`` for the same bytes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from serve_subprocess import ServeProcesses

from vusb.descriptors import ConfigurationDescriptor, DeviceDescriptor
from vusb.host import DeviceInfo
from vusb.lsusb import class_names, format_device, referenced_strings

ROOT = Path(__file__).resolve().parent.parent
YUY2 = "59 55 59 32 00 00 10 00 80 00 00 aa 00 38 9b 71"


def run_vusb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vusb", *args], capture_output=True, text=True, timeout=30, cwd=ROOT)


def configuration(interface: tuple[int, int, int], class_descriptors: str, endpoint_descriptors: str = "",
                  endpoint: str = "") -> bytes:
    """One configuration with one interface: its class descriptors, then an endpoint with its own."""
    cls, sub, proto = interface
    body = bytes.fromhex(class_descriptors.replace(" ", ""))
    ep = bytes.fromhex((endpoint + endpoint_descriptors).replace(" ", "")) if endpoint else b""
    itf = bytes([9, 4, 0, 0, 1 if endpoint else 0, cls, sub, proto, 0]) + body + ep
    total = 9 + len(itf)
    return bytes([9, 2, total & 0xFF, total >> 8, 1, 1, 0, 0x80, 50]) + itf


def probe_text(raw: bytes, strings: dict[int, str] | None = None, status: int | None = None) -> list[str]:
    info = DeviceInfo(DeviceDescriptor(vendor_id=0x1209, product_id=0x0001), b"",
                      configurations=[ConfigurationDescriptor.parse(raw)], configuration_bytes=[raw],
                      strings=strings or {}, speed=2)
    return [" ".join(line.split()) for line in format_device(info, "1-1", status).splitlines()]


def assert_lines_in_order(text: list[str], expected: list[str]) -> None:
    at = 0
    for line in expected:
        want = " ".join(line.split())
        assert want in text[at:], f"{want!r} missing after line {at}:\n" + "\n".join(text)
        at = text.index(want, at) + 1


CASES = [
    ("UAC1 AudioControl: header, microphone, feature unit", (1, 1, 0),
     "09 24 01 00 01 27 00 01 01  0c 24 02 01 01 02 00 01 00 00 00 00  09 24 06 02 01 01 03 00 00", "", "",
     ["AudioControl Interface Descriptor:", "bDescriptorSubtype 1 (HEADER)", "bcdADC 1.00", "wTotalLength 0x0027",
      "bInCollection 1", "baInterfaceNr(0) 1",
      "bDescriptorSubtype 2 (INPUT_TERMINAL)", "bTerminalID 1", "wTerminalType 0x0201 Microphone",
      "bNrChannels 1", "wChannelConfig 0x0000",
      "bDescriptorSubtype 6 (FEATURE_UNIT)", "bUnitID 2", "bSourceID 1", "bControlSize 1",
      "bmaControls(0) 0x03", "Mute", "Volume", "bmaControls(1) 0x00", "iFeature 0",
      "raw bytes: 09 24 06 02 01 01 03 00 00"]),
    ("UAC1 AudioStreaming: PCM, 2 channels, 16 bits, 48 kHz; its endpoint", (1, 2, 0),
     "07 24 01 01 01 01 00  0b 24 02 01 02 02 10 01 80 bb 00", "07 25 01 01 00 00 00", "09 05 01 0d c0 00 01 00 00",
     ["AudioStreaming Interface Descriptor:", "bDescriptorSubtype 1 (AS_GENERAL)", "bTerminalLink 1",
      "bDelay 1 frames", "wFormatTag 0x0001 PCM",
      "bDescriptorSubtype 2 (FORMAT_TYPE)", "bFormatType 1 (FORMAT_TYPE_I)", "bNrChannels 2", "bSubframeSize 2",
      "bBitResolution 16", "bSamFreqType 1 Discrete", "tSamFreq[ 0] 48000",
      "bEndpointAddress 0x01 EP 1 OUT", "bInterval 1", "bRefresh 0", "bSynchAddress 0",
      "AudioStreaming Endpoint Descriptor:", "bDescriptorSubtype 1 (EP_GENERAL)", "bmAttributes 0x01",
      "Sampling Frequency", "bLockDelayUnits 0 Undefined", "wLockDelay 0"]),
    ("UAC2 AudioControl: header and a clock source", (1, 1, 0x20),
     "09 24 01 00 02 08 40 00 00  08 24 0a 04 03 07 00 00", "", "",
     ["bDescriptorSubtype 1 (HEADER)", "bcdADC 2.00", "bCategory 0x08", "wTotalLength 0x0040", "bmControls 0x00",
      "bDescriptorSubtype 10 (CLOCK_SOURCE)", "bClockID 4", "bmAttributes 0x03", "Internal programmable clock",
      "bmControls 0x07", "Clock Frequency Control (read/write)", "Clock Validity Control (read-only)",
      "bAssocTerminal 0", "iClockSource 0"]),
    ("UAC2 AudioStreaming: general and format type I", (1, 2, 0x20),
     "10 24 01 01 00 01 01 00 00 00 02 03 00 00 00 00  06 24 02 01 02 10", "", "",
     ["bDescriptorSubtype 1 (AS_GENERAL)", "bTerminalLink 1", "bFormatType 1", "bmFormats 0x00000001", "PCM",
      "bNrChannels 2", "bmChannelConfig 0x00000003", "bDescriptorSubtype 2 (FORMAT_TYPE)",
      "bFormatType 1 (FORMAT_TYPE_I)", "bSubslotSize 2", "bBitResolution 16"]),
    ("MIDI: header, embedded IN jack, external OUT jack, endpoint", (1, 3, 0),
     "07 24 01 00 01 41 00  06 24 02 01 01 05  09 24 03 02 03 01 01 01 00", "05 25 01 01 01", "07 05 01 02 40 00 00",
     ["MIDIStreaming Interface Descriptor:", "bDescriptorSubtype 1 (MS_HEADER)", "bcdADC 1.00",
      "wTotalLength 0x0041", "bDescriptorSubtype 2 (MIDI_IN_JACK)", "bJackType 1 Embedded", "bJackID 1",
      "iJack 5 Synth", "bDescriptorSubtype 3 (MIDI_OUT_JACK)", "bJackType 2 External", "bJackID 3",
      "bNrInputPins 1", "baSourceID(0) 1", "BaSourcePin(0) 1", "iJack 0",
      "MIDIStreaming Endpoint Descriptor:", "bDescriptorSubtype 1 (MS_GENERAL)", "bNumEmbMIDIJack 1",
      "baAssocJackID(0) 1"]),
    ("UVC VideoControl: header, camera terminal, interrupt endpoint", (0x0E, 1, 0),
     "0d 24 01 00 01 4d 00 80 8d 5b 00 01 01  12 24 02 01 01 02 00 00 00 00 00 00 00 00 03 02 00 00",
     "05 25 03 10 00", "07 05 83 03 10 00 08",
     ["VideoControl Interface Descriptor:", "bDescriptorSubtype 1 (VC_HEADER)", "bcdUVC 1.00",
      "wTotalLength 0x004d", "dwClockFrequency 6.000000MHz", "bInCollection 1", "baInterfaceNr(0) 1",
      "bDescriptorSubtype 2 (VC_INPUT_TERMINAL)", "bTerminalID 1", "wTerminalType 0x0201 Camera Sensor",
      "wObjectiveFocalLengthMin 0", "bControlSize 3", "bmControls 0x000002", "Auto-Exposure Mode",
      "VideoControl Endpoint Descriptor:", "bDescriptorSubtype 3 (EP_INTERRUPT)", "wMaxTransferSize 16"]),
    ("UVC VideoStreaming: input header, YUY2 format, a 640x480 frame at 30 fps", (0x0E, 2, 0),
     "0e 24 01 01 47 00 81 00 03 00 00 00 01 00"
     f" 1b 24 04 01 01 {YUY2} 10 01 00 00 00 00"
     " 1e 24 05 01 00 80 02 e0 01 00 00 00 01 00 00 00 02 00 60 09 00 15 16 05 00 01 15 16 05 00",
     "", "",
     ["VideoStreaming Interface Descriptor:", "bDescriptorSubtype 1 (VS_INPUT_HEADER)", "bNumFormats 1",
      "wTotalLength 0x0047", "bEndpointAddress 0x81", "bTerminalLink 3", "bControlSize 1", "bmaControls( 0) 0x00",
      "bDescriptorSubtype 4 (VS_FORMAT_UNCOMPRESSED)", "bFormatIndex 1", "bNumFrameDescriptors 1",
      "guidFormat {32595559-0000-0010-8000-00aa00389b71}", "YUY2", "bBitsPerPixel 16", "bDefaultFrameIndex 1",
      "bDescriptorSubtype 5 (VS_FRAME_UNCOMPRESSED)", "bFrameIndex 1", "wWidth 640", "wHeight 480",
      "dwMinBitRate 16777216", "dwMaxBitRate 33554432", "dwMaxVideoFrameBufferSize 614400",
      "dwDefaultFrameInterval 333333 30.00 fps", "bFrameIntervalType 1", "dwFrameInterval(0) 333333 30.00 fps"]),
    ("DFU functional descriptor (type 0x21, not a HID descriptor here)", (0xFE, 1, 1),
     "09 21 0b ff 00 00 04 10 01", "", "",
     ["bInterfaceSubClass 1 Device Firmware Update", "bInterfaceProtocol 1 Runtime",
      "Device Firmware Upgrade Interface Descriptor:", "bmAttributes 0x0b", "Will Detach",
      "Manifestation Intolerant", "Upload Supported", "Download Supported", "wDetachTimeout 255 milliseconds",
      "wTransferSize 1024 bytes", "bcdDFUVersion 1.10"]),
    ("CDC Ethernet networking and NCM", (2, 0x0D, 0),
     "05 24 00 20 01  0d 24 0f 04 00 00 00 00 ea 05 00 00 00  06 24 1a 00 01 21", "", "",
     ["bInterfaceSubClass 13 Network Control Model", "CDC Header:", "bcdCDC 1.20", "CDC Ethernet:",
      "iMacAddress 4 0250f2000001", "bmEthernetStatistics 0x00000000", "wMaxSegmentSize 1514",
      "wNumberMCFilters 0x0000", "bNumberPowerFilters 0", "CDC NCM:", "bcdNcmVersion 1.00",
      "bmNetworkCapabilities 0x21", "packet filter", "8-byte ntb input size"]),
    ("printer: named by subclass and protocol", (7, 1, 2), "", "", "",
     ["bInterfaceClass 7 Printer", "bInterfaceSubClass 1 Printer", "bInterfaceProtocol 2 Bidirectional"]),
    ("a descriptor shorter than its subtype's fields: a warning and its bytes", (1, 1, 0),
     "06 24 02 01 01 02", "", "",
     ["bDescriptorSubtype 2 (INPUT_TERMINAL)", "bTerminalID 1", "wTerminalType 0x0201 Microphone",
      "warning: the descriptor ends after 6 bytes, before all the fields of its subtype",
      "raw bytes: 06 24 02 01 01 02"]),
    ("a vendor class descriptor: its bytes", (0xFF, 0, 0), "05 41 01 02 03", "", "",
     ["Descriptor type 0x41, 5 bytes:", "05 41 01 02 03"]),
]


@pytest.mark.parametrize(("case", "interface", "class_descriptors", "endpoint_descriptors", "endpoint", "expected"),
                         CASES, ids=[c[0] for c in CASES])
def test_class_descriptors_are_decoded(case: str, interface: tuple[int, int, int], class_descriptors: str,
                                       endpoint_descriptors: str, endpoint: str, expected: list[str]) -> None:
    strings = {4: "0250f2000001", 5: "Synth"}
    text = probe_text(configuration(interface, class_descriptors, endpoint_descriptors, endpoint), strings)
    assert_lines_in_order(text, expected)


@pytest.mark.parametrize(("case", "interface", "class_descriptors", "endpoint_descriptors", "endpoint", "expected"),
                         CASES, ids=[c[0] for c in CASES])
def test_vusb_clone_rebuilds_the_exact_bytes_from_the_probe_text(
        case: str, interface: tuple[int, int, int], class_descriptors: str, endpoint_descriptors: str, endpoint: str,
        expected: list[str], tmp_path: Path) -> None:
    from vusb.clone import from_lsusb

    raw = configuration(interface, class_descriptors, endpoint_descriptors, endpoint)
    info = DeviceInfo(DeviceDescriptor(vendor_id=0x1209, product_id=0x0001), b"",
                      configurations=[ConfigurationDescriptor.parse(raw)], configuration_bytes=[raw], speed=2)
    text = format_device(info, "1-1")
    clone = from_lsusb(tmp_path / "probe.txt", text=text)
    assert clone.configurations[0] == raw


def test_strings_named_by_class_descriptors_are_found_for_probe_to_read() -> None:
    raw = configuration((2, 6, 0), "05 24 00 10 01  0d 24 0f 04 00 00 00 00 ea 05 00 00 00")
    info = DeviceInfo(DeviceDescriptor(vendor_id=1, product_id=2), b"", [ConfigurationDescriptor.parse(raw)], [raw])
    assert referenced_strings(info) == {4}  # iMacAddress: vusb probe reads it before printing


@pytest.mark.parametrize(("status", "lines"), [(0, ["Device Status: 0x0000", "(Bus Powered)"]),
                                               (3, ["Device Status: 0x0003", "Self Powered", "Remote Wakeup Enabled"])])
def test_device_status(status: int, lines: list[str]) -> None:
    assert_lines_in_order(probe_text(configuration((0xFF, 0, 0), ""), status=status), lines)


@pytest.mark.parametrize(("triple", "name"), [
    ((3, 1, 1), "Human Interface Device / Boot Interface Subclass / Keyboard"),
    ((8, 6, 0x50), "Mass Storage / SCSI / Bulk-Only"),
    ((0, 0, 0), "(Defined at Interface level)"),
    ((0xEF, 2, 1), "Miscellaneous Device / Common Class / Interface Association"),
    ((0x42, 1, 1), "class 42"),
])
def test_class_names_as_usbip_list_shows_them(triple: tuple[int, int, int], name: str) -> None:
    assert class_names(*triple) == name


def test_list_and_probe_name_speeds_classes_and_status(serve_processes: ServeProcesses) -> None:
    server = serve_processes.start("profiles/composite.yaml", "profiles/keyboard.yaml", "--port", "0",
                                   "--no-control")
    listing = run_vusb("list", "127.0.0.1", "--port", str(server.port))
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines() == [
        "1-1: 1209:0006 high speed, 1 configuration(s), 4 interface(s)",
        "    device class ef/02/01 Miscellaneous Device / Common Class / Interface Association",
        "    interface 0:  03/01/01 Human Interface Device / Boot Interface Subclass / Keyboard",
        "    interface 1:  08/06/50 Mass Storage / SCSI / Bulk-Only",
        "    interface 2:  02/02/01 Communications / Abstract (modem) / AT-commands (v.25ter)",
        "    interface 3:  0a/00/00 CDC Data",
        "1-2: 1209:0001 full speed, 1 configuration(s), 1 interface(s)",
        "    device class 00/00/00 (Defined at Interface level)",
        "    interface 0:  03/01/01 Human Interface Device / Boot Interface Subclass / Keyboard",
    ]
    probe = run_vusb("probe", "127.0.0.1", "1-1", "--port", str(server.port))
    assert probe.returncode == 0, probe.stderr
    text = [" ".join(line.split()) for line in probe.stdout.splitlines()]
    assert_lines_in_order(text, ["CDC Header:", "bcdCDC 1.10", "CDC Call Management:", "bDataInterface 3",
                                 "CDC ACM:", "bmCapabilities 0x06", "line coding and serial state", "sends break",
                                 "CDC Union:", "bMasterInterface 2", "bSlaveInterface 3",
                                 "Device Status: 0x0000", "(Bus Powered)"])
