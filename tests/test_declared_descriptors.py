"""The network and DFU class descriptors are declared (ClassSpecificDescriptor) and build the bytes they always did.

Each table row is a descriptor made through the public API beside the bytes the
hand-written packing used to produce (kept here as the reference: ``struct.pack``
of the fields in the specification's order), plus a fixed hex string for one row
of each, so a change in either the layout or the reference shows.
"""

from __future__ import annotations

import struct

import pytest
from vusb.devices.dfu import functional_descriptor
from vusb.devices.net.spec import EthernetDescriptor, NcmCapability, NcmDescriptor

from vusb.errors import DescriptorError


def ethernet_reference(mac_index: int, statistics: int, segment: int, mc_filters: int, power_filters: int) -> bytes:
    """ECM 1.2 table 3: bFunctionLength 13, CS_INTERFACE, subtype 0x0F, then the five fields."""
    return bytes((13, 0x24, 0x0F)) + struct.pack("<BIHHB", mac_index, statistics, segment, mc_filters, power_filters)


def ncm_reference(version: int, capabilities: int) -> bytes:
    """NCM 1.0 table 5-2: bFunctionLength 6, CS_INTERFACE, subtype 0x1A, bcdNcmVersion, bmNetworkCapabilities."""
    return bytes((6, 0x24, 0x1A)) + struct.pack("<HB", version, capabilities)


def dfu_reference(attributes: int, detach_timeout: int, transfer_size: int, version: int) -> bytes:
    """DFU 1.1 section 4.1.3: bLength 9, type 0x21, bmAttributes (4 bits), three 16-bit fields."""
    return bytes((9, 0x21, attributes & 0x0F)) + struct.pack("<HHH", detach_timeout, transfer_size, version)


ETHERNET = [  # mac index, bmEthernetStatistics, wMaxSegmentSize, wNumberMCFilters, bNumberPowerFilters
    (4, 0x1F, 1514, 0, 0),
    (1, 0, 0, 0, 0),
    (255, 0xFFFF_FFFF, 0xFFFF, 0xFFFF, 0xFF),
    (7, 0x1F, 9014, 0x8010, 2),
]


@pytest.mark.parametrize("fields", ETHERNET, ids=[f"mac{row[0]}-mss{row[2]}" for row in ETHERNET])
def test_ethernet_descriptor_builds_the_bytes_of_ecm_table_3(fields: tuple[int, int, int, int, int]) -> None:
    mac, stats, segment, mc, power = fields
    descriptor = EthernetDescriptor(mac, statistics=stats, max_segment_size=segment, multicast_filters=mc,
                                    power_filters=power)
    assert descriptor.to_bytes() == ethernet_reference(*fields)


def test_ethernet_descriptor_defaults() -> None:
    assert EthernetDescriptor(4).to_bytes() == bytes.fromhex("0d 24 0f 04 1f000000 ea05 0000 00")


NCM = [(0x0100, NcmCapability.PACKET_FILTER | NcmCapability.MAX_DATAGRAM_SIZE), (0x0100, 0x29), (0x0100, 0),
       (0x9999, 0x3F)]


@pytest.mark.parametrize(("version", "capabilities"), NCM, ids=[f"{v:04x}-{int(c):02x}" for v, c in NCM])
def test_ncm_descriptor_builds_the_bytes_of_ncm_table_5_2(version: int, capabilities: int) -> None:
    assert NcmDescriptor(capabilities, version).to_bytes() == ncm_reference(version, capabilities)


def test_ncm_descriptor_defaults() -> None:
    assert NcmDescriptor().to_bytes() == bytes.fromhex("06 24 1a 0001 09")


DFU = [(0x07, 1000, 1024, 0x0110), (0x0F, 0, 0, 0x011A), (0x0B, 0xFFFF, 0xFFFF, 0x0100), (0xF7, 255, 64, 0x0110)]


@pytest.mark.parametrize("fields", DFU, ids=[f"attr{row[0]:02x}-{row[2]}B" for row in DFU])
def test_dfu_functional_descriptor_builds_the_bytes_of_dfu_4_1_3(fields: tuple[int, int, int, int]) -> None:
    assert functional_descriptor(*fields).to_bytes() == dfu_reference(*fields)


def test_dfu_functional_descriptor_fixed_bytes() -> None:
    assert functional_descriptor(0x07, 1000, 1024).to_bytes() == bytes.fromhex("09 21 07 e803 0004 1001")


@pytest.mark.parametrize("make", [
    lambda: EthernetDescriptor(0),
    lambda: EthernetDescriptor(256),
    lambda: EthernetDescriptor(4, max_segment_size=0x10000),
    lambda: functional_descriptor(0x07, 0x10000, 64),
    lambda: functional_descriptor(0x07, 100, -1),
], ids=["mac-index-0", "mac-index-256", "segment-17-bits", "detach-17-bits", "negative-transfer-size"])
def test_out_of_range_fields_are_refused_naming_them(make: object) -> None:
    with pytest.raises((DescriptorError, ValueError)):
        make()  # type: ignore[operator]
