"""USB-serial chips driven as their Linux drivers drive them, through the in-process host.

Each table reads like the chip's documentation: the requests ``ftdi_sio``, ``cp210x``,
``ch341`` and ``pl2303`` send at probe and open, what the chip answers, the rate it really
makes for a requested one, how its data and modem status reach the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import re
import struct
import termios
from collections.abc import Callable
from pathlib import Path

import pytest
from vusb.devices.cdc_acm import ControlLine, Parity, PtyBackend, StopBits
from vusb.devices.usb_serial import (
    Ch340,
    Change,
    Cp2102,
    Cp2105,
    FlowControl,
    Ft232r,
    Ft2232h,
    LineSettings,
    Pl2303,
    Uart,
    UsbSerialDevice,
    register_profile_kinds,
)
from vusb.devices.usb_serial.ch341 import divisor_rate as ch340_rate
from vusb.devices.usb_serial.cp210x import cp2102_rate, cp2105_eci_rate
from vusb.devices.usb_serial.ftdi import divisor_rate, eeprom_checksum, encode_divisor

from vusb.errors import ProfileError, Stall
from vusb.profile import parse_profile
from vusb.testing import LocalHost
from vusb.urb import SetupPacket

pytest_plugins = ["pytester"]

VENDOR_OUT, VENDOR_IN = 0x40, 0xC0  # to the device
IFACE_OUT, IFACE_IN = 0x41, 0xC1  # vendor, to an interface (CP210x)
CLASS_OUT, CLASS_IN = 0x21, 0xA1  # class, to an interface (PL2303)


def setup(request_type: int, request: int, value: int = 0, index: int = 0, length: int = 0) -> SetupPacket:
    return SetupPacket(request_type, request, value, index, length)


# ====================================================================== descriptors

DESCRIPTORS = [
    # device, idVendor:idProduct, bcdDevice, bcdUSB, bMaxPacketSize0, interfaces as (class, subclass, protocol, endpoints)
    (Ft232r, 0x0403, 0x6001, 0x0600, 0x0200, 8, [(0xFF, 0xFF, 0xFF, [(0x81, 2, 64), (0x02, 2, 64)])]),
    (Ft2232h, 0x0403, 0x6010, 0x0700, 0x0200, 64, [(0xFF, 0xFF, 0xFF, [(0x81, 2, 512), (0x02, 2, 512)]),
                                                   (0xFF, 0xFF, 0xFF, [(0x83, 2, 512), (0x04, 2, 512)])]),
    (Cp2102, 0x10C4, 0xEA60, 0x0100, 0x0110, 64, [(0xFF, 0, 0, [(0x81, 2, 64), (0x01, 2, 64)])]),
    (Cp2105, 0x10C4, 0xEA70, 0x0100, 0x0200, 64, [(0xFF, 0, 0, [(0x81, 2, 64), (0x01, 2, 64)]),
                                                  (0xFF, 0, 0, [(0x82, 2, 64), (0x02, 2, 64)])]),
    (Ch340, 0x1A86, 0x7523, 0x0254, 0x0110, 8, [(0xFF, 0x01, 0x02, [(0x82, 2, 32), (0x02, 2, 32), (0x81, 3, 8)])]),
    (Pl2303, 0x067B, 0x23A3, 0x0100, 0x0200, 64, [(0xFF, 0, 0, [(0x81, 3, 10), (0x02, 2, 64), (0x83, 2, 64)])]),
]


@pytest.mark.parametrize(("make", "vid", "pid", "bcd", "usb", "mps0", "interfaces"), DESCRIPTORS,
                         ids=[d[0].__name__ for d in DESCRIPTORS])
async def test_descriptors_are_the_chips_own(make: type[UsbSerialDevice], vid: int, pid: int, bcd: int, usb: int,
                                             mps0: int, interfaces: list[tuple[int, int, int, list[tuple[int, int, int]]]]
                                             ) -> None:
    dev = make()
    async with LocalHost(dev) as host:
        info = await host.enumerate()
    d = info.device
    assert (d.vendor_id, d.product_id, d.device_version, d.usb_version, d.max_packet_size0) == (vid, pid, bcd, usb, mps0)
    assert d.device_class == 0
    got = [(i.interface_class, i.interface_subclass, i.interface_protocol,
            [(e.address, int(e.transfer_type), e.max_packet_size) for e in i.endpoints])
           for i in info.configurations[0].interfaces]
    assert got == interfaces
    await dev.close()


# ====================================================================== FTDI

FTDI_RATES = [
    # requested by the host, what an FT232R makes, what an FT2232H makes
    (300, 300, 300),
    (9600, 9600, 9600),
    (19200, 19200, 19200),
    (57600, 57554, 57588),
    (115200, 115385, 115246),
    (230400, 230769, 230216),
    (921600, 923077, 923077),
    (1_000_000, 1_000_000, 1_000_000),
    (2_000_000, 2_000_000, 2_000_000),
    (3_000_000, 3_000_000, 3_000_000),
    (12_000_000, None, 12_000_000),
]


@pytest.mark.parametrize(("requested", "ft232r", "ft2232h"), FTDI_RATES)
async def test_ftdi_baud_divisor_gives_the_rate_the_chip_makes(requested: int, ft232r: int | None,
                                                               ft2232h: int) -> None:
    for make, expected, high in ((Ft232r, ft232r, False), (Ft2232h, ft2232h, True)):
        if expected is None:
            continue
        value, bits = encode_divisor(requested, high_speed_clock=high)
        assert divisor_rate(value, bits, high_speed_clock=high) == expected
        dev = make()
        async with LocalHost(dev) as host:
            await host.enumerate()
            # ftdi_sio: wIndex carries divisor bits 16-17 (single-port chip) or those bits << 8 | port (H chips)
            index = bits if not high else (bits << 8) | 1
            await host.control(setup(VENDOR_OUT, 0x03, value, index))
            assert dev.line.rate == expected
        await dev.close()


def test_ftdi_divisor_table_of_the_application_note() -> None:
    # wValue for 9600 bps is 0x4138: divisor 312.5 of 3 MHz; 0 and 1 are the 3 and 2 Mbaud specials
    assert divisor_rate(0x4138, 0, high_speed_clock=False) == 9600
    assert divisor_rate(0x0000, 0, high_speed_clock=False) == 3_000_000
    assert divisor_rate(0x0001, 0, high_speed_clock=False) == 2_000_000
    assert divisor_rate(0x0000, 2, high_speed_clock=True) == 12_000_000
    assert divisor_rate(0x0001, 2, high_speed_clock=True) == 8_000_000


async def test_ftdi_probe_and_open_sequence() -> None:
    dev = Ft232r()
    async with LocalHost(dev) as host:
        await host.enumerate()
        # port probe: read, then write, the latency timer
        assert await host.control(setup(VENDOR_IN, 0x0A, 0, 0, 1)) == b"\x10"
        await host.control(setup(VENDOR_OUT, 0x09, 1, 0))
        assert await host.control(setup(VENDOR_IN, 0x0A, 0, 0, 1)) == b"\x01"
        # open: reset, line, rate, flow control, DTR and RTS
        await host.control(setup(VENDOR_OUT, 0x00, 0, 0))
        await host.control(setup(VENDOR_OUT, 0x04, 0x0008 | (2 << 8) | (2 << 11), 0))  # 8 bits, even, 2 stop
        value, bits = encode_divisor(115200, high_speed_clock=False)
        await host.control(setup(VENDOR_OUT, 0x03, value, bits))
        await host.control(setup(VENDOR_OUT, 0x02, 0, 0x0100))  # RTS/CTS
        await host.control(setup(VENDOR_OUT, 0x01, 0x0303, 0))  # DTR and RTS on
        assert dev.line == LineSettings(115385, 8, Parity.EVEN, StopBits.TWO, FlowControl.RTS_CTS)
        assert dev.control_lines == ControlLine.DTR | ControlLine.RTS
        await host.control(setup(VENDOR_OUT, 0x01, 0x0100, 0))  # DTR off, RTS untouched (mask)
        assert dev.control_lines == ControlLine.RTS
        # break: bit 14 of SET_DATA
        await host.control(setup(VENDOR_OUT, 0x04, 0x4008, 0))
        assert dev.break_active
        await host.control(setup(VENDOR_OUT, 0x04, 0x0008, 0))
        assert not dev.break_active and dev.port.breaks == 1
    await dev.close()


async def test_ftdi_eeprom_reads_like_a_factory_chip() -> None:
    dev = Ft232r(serial_number="A50285BI")
    async with LocalHost(dev) as host:
        await host.enumerate()
        words = [int.from_bytes(await host.control(setup(VENDOR_IN, 0x90, 0, n, 2)), "little") for n in range(64)]
    image = b"".join(w.to_bytes(2, "little") for w in words)
    assert struct.unpack_from("<HHH", image, 2) == (0x0403, 0x6001, 0x0600)
    assert image[0x14:0x17] == bytes((0x23, 0x10, 0x05))  # CBUS0..4: TXLED#, RXLED#, TXDEN, PWREN#, SLEEP#
    offset, length = image[0x12] & 0x7F, image[0x13]
    assert image[offset : offset + length].decode("utf-16-le", errors="replace")[1:] == "A50285BI"
    assert words[-1] == eeprom_checksum(words)
    await dev.close()


def split_packets(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def test_ftdi_every_in_packet_starts_with_the_status_bytes() -> None:
    dev = Ft232r()
    payload = bytes(range(200))
    async with LocalHost(dev) as host:
        await host.enumerate()
        await dev.write(payload)
        got = await host.transfer_in(0x81, 512)
        packets = split_packets(got, 64)
        # 62 data bytes per 64-byte packet: 200 bytes are 3 full packets and one of 14 bytes
        assert [len(p) for p in packets] == [64, 64, 64, 16]
        assert all(p[:2] == b"\x31\x60" for p in packets)  # CTS, DSR; transmitter empty
        assert b"".join(p[2:] for p in packets) == payload
        # nothing to send: a status-only packet when the latency timer runs out
        assert await host.transfer_in(0x81, 512, timeout=1) == b"\x31\x60"
        # a modem change is sent at once, without data
        waiting = asyncio.ensure_future(host.transfer_in(0x81, 512, timeout=5))
        await asyncio.sleep(0)
        dev.update_modem(cts=False, ri=True, dcd=True)
        assert await waiting == bytes((0x01 | 0x20 | 0x40 | 0x80, 0x60))
        assert await host.control(setup(VENDOR_IN, 0x05, 0, 0, 2)) == bytes((0xE1, 0x60))
    await dev.close()


async def test_ft2232h_ports_are_independent() -> None:
    dev = Ft2232h(backend=[None, "loopback"])
    async with LocalHost(dev) as host:
        await host.enumerate()
        await host.control(setup(VENDOR_OUT, 0x01, 0x0101, 2))  # port B: DTR on
        assert dev.ports[1].dtr and not dev.ports[0].dtr
        await host.transfer_out(0x04, b"echo")
        got = b""
        while len(got) < 6:
            got += await host.transfer_in(0x83, 512, timeout=2)
        assert got == b"\x31\x60echo"  # 512-byte packets at high speed: one packet, status first
        await host.transfer_out(0x02, b"to python")
        assert await dev.read(timeout=2) == b"to python"
    await dev.close()


# ====================================================================== CP210x

CP210X_RATES = [
    # requested, what a CP2102 makes (AN205 table 1), what the CP2105's enhanced port makes
    (300, 300, 300),
    (9600, 9600, 9600),
    (100_000, 115_200, 100_000),
    (115_200, 115_200, 115_384),
    (250_000, 250_000, 250_000),
    (500_000, 500_000, 500_000),
    (921_600, 921_600, 923_076),
    (1_000_000, 921_600, 1_000_000),
]


@pytest.mark.parametrize(("requested", "cp2102", "cp2105"), CP210X_RATES)
async def test_cp210x_baud_rate_is_what_the_chip_makes(requested: int, cp2102: int, cp2105: int) -> None:
    assert cp2102_rate(requested) == cp2102 and cp2105_eci_rate(requested) == cp2105
    dev = Cp2102()
    async with LocalHost(dev) as host:
        await host.enumerate()
        await host.control(setup(IFACE_OUT, 0x1E, 0, 0, 4), requested.to_bytes(4, "little"))
        assert dev.line.rate == cp2102
        assert await host.control(setup(IFACE_IN, 0x1D, 0, 0, 4)) == cp2102.to_bytes(4, "little")
    await dev.close()


async def test_cp210x_probe_and_open_sequence() -> None:
    dev = Cp2102()
    async with LocalHost(dev) as host:
        await host.enumerate()
        # attach: part number (a genuine chip fills the 2 bytes cp210x asks for to spot clones)
        assert await host.control(setup(VENDOR_IN, 0xFF, 0x370B, 0, 1)) == b"\x02"
        assert await host.control(setup(VENDOR_IN, 0xFF, 0x370B, 0, 2)) == b"\x02\x00"
        # open: enable, rate, line control, flow control read-modify-write, DTR/RTS
        await host.control(setup(IFACE_OUT, 0x00, 1, 0))
        await host.control(setup(IFACE_OUT, 0x1E, 0, 0, 4), (115200).to_bytes(4, "little"))
        await host.control(setup(IFACE_OUT, 0x03, 0x0712, 0))  # 7 data bits, odd, 2 stop bits
        assert await host.control(setup(IFACE_IN, 0x04, 0, 0, 2)) == b"\x12\x07"
        flow = await host.control(setup(IFACE_IN, 0x14, 0, 0, 16))
        assert struct.unpack("<IIII", flow) == (0x01, 0x40, 128, 128)
        await host.control(setup(IFACE_OUT, 0x13, 0, 0, 16), struct.pack("<IIII", 0x09, 0x80, 128, 128))
        assert dev.line == LineSettings(115200, 7, Parity.ODD, StopBits.TWO, FlowControl.RTS_CTS)
        await host.control(setup(IFACE_OUT, 0x07, 0x0301, 0))  # DTR on, RTS off
        assert dev.control_lines == ControlLine.DTR
        # close: tx_empty, purge, disable
        status = await host.control(setup(IFACE_IN, 0x10, 0, 0, 19))
        assert len(status) == 19 and struct.unpack_from("<I", status, 12)[0] == 0
        await host.control(setup(IFACE_OUT, 0x12, 0x0F, 0))
        await host.control(setup(IFACE_OUT, 0x00, 0, 0))
        assert not dev.port.enabled
    await dev.close()


async def test_cp210x_modem_status_and_event_escape() -> None:
    dev = Cp2102()
    async with LocalHost(dev) as host:
        await host.enumerate()
        await host.control(setup(IFACE_OUT, 0x07, 0x0303, 0))
        dev.update_modem(cts=True, dsr=False, ri=True, dcd=True)
        assert await host.control(setup(IFACE_IN, 0x08, 0, 0, 1)) == bytes((0x01 | 0x02 | 0x10 | 0x40 | 0x80,))
        # event-insertion mode (cp210x turns it on for INPCK): the escape character is sent doubled as ESC 0
        await host.control(setup(IFACE_OUT, 0x15, 0xEC, 0))
        await dev.write(b"a\xecb")
        assert await host.transfer_in(0x81, 64) == b"a\xec\x00b"
    await dev.close()


async def test_cp2105_has_an_enhanced_and_a_standard_port() -> None:
    dev = Cp2105(backend=[None, None])
    async with LocalHost(dev) as host:
        await host.enumerate()
        assert await host.control(setup(VENDOR_IN, 0xFF, 0x370B, 0, 1)) == b"\x05"
        assert await host.control(setup(VENDOR_IN, 0xFF, 0x000E, 0, 3)) == bytes((1, 0, 8))  # firmware version
        assert await host.control(setup(VENDOR_IN, 0xFF, 0x3711, 0, 2)) == b"\x00\x00"  # both ports: modem mode
        for interface, port, expected in ((0, 0, 115_384), (1, 1, 115_200)):
            await host.control(setup(IFACE_OUT, 0x1E, 0, interface, 4), (115200).to_bytes(4, "little"))
            assert dev.ports[port].line.rate == expected
    await dev.close()


# ====================================================================== CH340

CH340_RATES = [
    # prescaler/divisor word ch341 writes to registers 0x12/0x13 (wIndex of WRITE_REG 0x1312), rate made
    (0xB282, 9615),  # asked for 9600
    (0xCC83, 115385),  # asked for 115200
    (0xFA83, 1_000_000),
    (0xF387, 923077),  # divisor 13 at ps 3 with the doubled clock (fact 1)
    (0xF383, 461538),  # ... and without
]


@pytest.mark.parametrize(("word", "rate"), CH340_RATES)
async def test_ch340_rate_from_prescaler_and_divisor(word: int, rate: int) -> None:
    assert ch340_rate(word & 0xFF, word >> 8) == rate
    dev = Ch340()
    async with LocalHost(dev) as host:
        await host.enumerate()
        await host.control(setup(VENDOR_OUT, 0x9A, 0x1312, word))
        assert dev.line.rate == rate
    await dev.close()


async def test_ch340_probe_and_open_sequence() -> None:
    dev = Ch340()
    async with LocalHost(dev) as host:
        await host.enumerate()
        assert await host.control(setup(VENDOR_IN, 0x5F, 0, 0, 2)) == b"\x31\x00"  # version
        await host.control(setup(VENDOR_OUT, 0xA1, 0, 0))  # serial init
        await host.control(setup(VENDOR_OUT, 0x9A, 0x1312, 0xB282))  # 9600
        await host.control(setup(VENDOR_OUT, 0x9A, 0x2518, 0x00CA))  # LCR: RX, TX, parity (odd), 7 bits
        await host.control(setup(VENDOR_OUT, 0xA4, 0xFF9F, 0))  # modem control: ~(DTR|RTS)
        assert await host.control(setup(VENDOR_IN, 0x95, 0x0005, 0, 2)) == b"\x01\x00"  # break register: no stall
        assert dev.line == LineSettings(9615, 7, Parity.ODD, StopBits.ONE)
        assert dev.control_lines == ControlLine.DTR | ControlLine.RTS
        # the modem status register is inverted and mirrors DTR/RTS in bits 5 and 6
        dev.update_modem(cts=True, dsr=False, ri=False, dcd=True)
        assert await host.control(setup(VENDOR_IN, 0x95, 0x0706, 0, 2)) == bytes((0x96, 0xEE))
        assert await host.transfer_in(0x81, 8, timeout=2) == bytes((0x08, 0x00, 0x96, 0xEE))
        # break: clear bit 0 of register 0x05 and TX enable of the LCR
        await host.control(setup(VENDOR_OUT, 0x9A, 0x1805, 0x8A00))
        assert dev.break_active
    await dev.close()


# ====================================================================== PL2303

async def test_pl2303_is_a_g_chip_to_linux() -> None:
    dev = Pl2303()
    async with LocalHost(dev) as host:
        await host.enumerate()
        # 5.10's type probe: the legacy HX status read stalls on a G chip
        with pytest.raises(Stall):
            await host.control(setup(VENDOR_IN, 0x01, 0x8080, 0, 1))
        assert await host.control(setup(CLASS_IN, 0x21, 0, 0, 7)) == struct.pack("<IBBB", 9600, 0, 0, 8)
        await host.control(setup(VENDOR_OUT, 0x80, 0x07, 0x03))  # open: reset both pipes
        await host.control(setup(CLASS_OUT, 0x20, 0, 0, 7), struct.pack("<IBBB", 50, 1, 4, 5))
        assert dev.line == LineSettings(75, 5, Parity.SPACE, StopBits.ONE_AND_HALF)
        assert await host.control(setup(CLASS_IN, 0x21, 0, 0, 7)) == struct.pack("<IBBB", 75, 1, 4, 5)
        # crtscts: read-modify-write of the G chip's flow control register
        assert await host.control(setup(VENDOR_IN, 0x81, 0x0A, 0, 1)) == b"\x1c"
        await host.control(setup(VENDOR_OUT, 0x80, 0x0A, 0x18))
        assert dev.line.flow == FlowControl.RTS_CTS
        await host.control(setup(CLASS_OUT, 0x22, 0x03, 0))
        assert dev.control_lines == ControlLine.DTR | ControlLine.RTS
        await host.control(setup(CLASS_OUT, 0x23, 0xFFFF, 0))
        assert dev.break_active
    await dev.close()


@pytest.mark.parametrize(("requested", "made"), [(9600, 9600), (115200, 115200), (50, 75), (20_000_000, 12_000_000)])
async def test_pl2303_rates(requested: int, made: int) -> None:
    dev = Pl2303()
    async with LocalHost(dev) as host:
        await host.enumerate()
        await host.control(setup(CLASS_OUT, 0x20, 0, 0, 7), struct.pack("<IBBB", requested, 0, 0, 8))
        assert dev.line.rate == made
    await dev.close()


async def test_pl2303_interrupt_endpoint_reports_modem_inputs() -> None:
    dev = Pl2303()
    async with LocalHost(dev) as host:
        await host.enumerate()
        assert await host.transfer_in(0x81, 10, timeout=2) == bytes((0xA1, 0x20, 0, 0, 0, 0, 2, 0, 0x82, 0))
        waiting = asyncio.ensure_future(host.transfer_in(0x81, 10, timeout=5))
        await asyncio.sleep(0)
        dev.update_modem(cts=False, dsr=False, ri=True, dcd=True)
        assert (await waiting)[8] == 0x01 | 0x08
    await dev.close()


# ====================================================================== shared behaviour

@pytest.mark.parametrize(("make", "packet"), [
    (Ft232r, setup(VENDOR_OUT, 0x42)),
    (Cp2102, setup(IFACE_OUT, 0x42)),
    (Ch340, setup(VENDOR_OUT, 0x42)),
    (Pl2303, setup(VENDOR_OUT, 0x42)),
    (Cp2102, setup(VENDOR_IN, 0xFF, 0x1234, 0, 1)),
])
async def test_unknown_vendor_request_stalls_and_is_logged(make: type[UsbSerialDevice], packet: SetupPacket,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    dev = make()
    async with LocalHost(dev) as host:
        await host.enumerate()
        with caplog.at_level(logging.WARNING), pytest.raises(Stall):
            await host.control(packet)
    assert any("stalling" in r.getMessage() for r in caplog.records)
    await dev.close()


async def test_change_callback_and_rts_cts_holds_host_data() -> None:
    dev = Ft232r()
    changes: list[Change] = []
    dev.port.on_change = lambda port, what: changes.append(what)
    async with LocalHost(dev) as host:
        await host.enumerate()
        await host.control(setup(VENDOR_OUT, 0x02, 0, 0x0100))  # RTS/CTS handshake
        dev.set_cts(False)
        sending = asyncio.ensure_future(host.transfer_out(0x02, b"held", timeout=5))
        await asyncio.sleep(0.05)
        assert not sending.done()  # the chip does not transmit while CTS is off: the host sees NAKs
        dev.set_cts(True)
        assert await sending == 4
        assert await dev.read(timeout=2) == b"held"
    assert changes == [Change.LINE, Change.MODEM, Change.MODEM]
    await dev.close()


async def test_backends_are_those_of_cdc_acm() -> None:
    dev = Cp2102(backend="loopback")
    async with LocalHost(dev) as host:
        await host.enumerate()
        await host.transfer_out(0x01, b"ping")
        assert await host.transfer_in(0x81, 64, timeout=2) == b"ping"
    await dev.close()

    pty = PtyBackend()
    dev = Ch340(backend=pty)
    async with LocalHost(dev) as host:
        await host.enumerate()
        await host.transfer_out(0x02, b"to the pty")
        loop = asyncio.get_running_loop()
        got = b""
        while len(got) < 10:
            got += await asyncio.wait_for(loop.run_in_executor(None, os.read, pty.slave, 64), 2)
        assert got == b"to the pty"
        os.write(pty.slave, b"from the pty")
        got = b""
        while len(got) < 12:
            got += await host.transfer_in(0x82, 32, timeout=2)
        assert got == b"from the pty"
        # the line settings the chip makes are applied to the pty as a CDC line coding
        await host.control(setup(VENDOR_OUT, 0x9A, 0x2518, 0x00C7))  # 8 data bits, 2 stop bits
        assert termios.tcgetattr(pty.slave)[2] & termios.CSTOPB  # (a pty keeps CS8 without parity)
    await dev.close()


def test_uart_api_matches_the_cdc_serial_port() -> None:
    from vusb.devices.cdc_acm import SerialPort

    wanted = {"read", "readexactly", "readline", "write", "flush", "line_coding", "control_lines", "dtr", "rts",
              "wait_dtr", "wait_rts", "wait_control_lines", "wait_line_coding", "dcd", "dsr", "set_dcd", "set_dsr",
              "start", "close", "backend", "break_active"}
    assert wanted <= set(dir(SerialPort))
    assert wanted <= set(dir(UsbSerialDevice))
    assert wanted <= set(dir(Uart()))


# ====================================================================== profiles

@pytest.mark.parametrize(("text", "message"), [
    ("  - kind: ftdi\n    chip: ft245\n", "not one of"),
    ("  - kind: ftdi\n    second_port: none\n", "second_port: the ft232r has one port"),
    ("  - kind: cp210x\n    backend: loopback\n    tcp_port: 1\n", "only applies to backend: tcp"),
    ("  - kind: ch340\n    chip: ch341\n", "unknown field 'chip'"),
])
def test_profile_errors_name_the_field(text: str, message: str) -> None:
    register_profile_kinds()
    with pytest.raises(ProfileError, match=message):
        parse_profile("identity:\n  vendor_id: 0x0403\n  product_id: 0x6001\nfunctions:\n" + text, "p.yaml").build()


def test_dual_port_profile() -> None:
    register_profile_kinds()
    device = parse_profile("identity:\n  vendor_id: 0x10c4\n  product_id: 0xea70\nfunctions:\n"
                           "  - kind: cp210x\n    chip: cp2105\n    backend: none\n    second_port: loopback\n",
                           "p.yaml").build()
    chip = device.functions[0]
    assert [p.backend.kind for p in chip.ports] == ["none", "loopback"]  # type: ignore[attr-defined]


# ====================================================================== the documentation

DOC = Path(__file__).resolve().parent.parent / "docs" / "devices" / "usb-serial.md"


def test_documented_rate_table_is_what_the_chips_make() -> None:
    from vusb.devices.usb_serial.ch341 import encode_rate
    from vusb.devices.usb_serial.pl2303 import g_rate

    makers: list[Callable[[int], int]] = [
        lambda r: divisor_rate(*encode_divisor(r, high_speed_clock=False), high_speed_clock=False),
        lambda r: divisor_rate(*encode_divisor(r, high_speed_clock=True), high_speed_clock=True),
        cp2102_rate,
        cp2105_eci_rate,
        lambda r: ch340_rate(*encode_rate(r)),
        g_rate,
    ]
    text = DOC.read_text()
    table = text[text.index("| Linux asks for |"):].split("\n\n")[0].splitlines()[2:]
    assert len(table) >= 5
    for row in table:
        cells = [c.strip() for c in row.strip("|").split("|")]
        requested = int(cells[0])
        for cell, make in zip(cells[1:], makers, strict=True):
            assert int(cell) == make(requested), f"{requested}: documented {cell}"


def test_ch340_encoding_round_trips() -> None:
    from vusb.devices.usb_serial.ch341 import encode_rate

    assert encode_rate(9600) == (0x82, 0xB2) and encode_rate(115200) == (0x83, 0xCC)


DOC_BLOCK = re.compile(r"```python\n# (?P<name>test_[\w]+\.py)\n(?P<body>.*?)```", re.S)


@pytest.mark.kernel
def test_documentation_example_runs_as_written(pytester: pytest.Pytester) -> None:
    blocks = {m["name"]: m["body"] for m in DOC_BLOCK.finditer(DOC.read_text())}
    assert list(blocks) == ["test_cp2102.py"]
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    for name, body in blocks.items():
        pytester.path.joinpath(name).write_text(body)
    pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider").assert_outcomes(passed=2)


@pytest.mark.parametrize(("argv", "request_body"), [
    (["ctl", "serial-write", "1-1", "AT\\r", "--port", "1"],
     {"cmd": "serial-write", "busid": "1-1", "port": 1, "data": "AT\r"}),
    (["ctl", "--port", "4000", "serial-read", "1-1", "--port", "1", "--line"],
     {"cmd": "serial-read", "busid": "1-1", "port": 1, "line": True}),
    (["ctl", "serial-read", "1-1", "-n", "5"], {"cmd": "serial-read", "busid": "1-1", "n": 5}),
])
def test_vusb_ctl_port_flag_picks_a_chip_port(argv: list[str], request_body: dict[str, object]) -> None:
    from vusb.cli import build_parser
    from vusb.control_cli import build_request

    args = build_parser().parse_args(argv)
    assert build_request(args.ctl_args) == (request_body, False)


async def test_vusb_ctl_serial_commands_reach_a_chip_port(tmp_path: Path) -> None:
    import json

    from vusb.client import RemoteDevice
    from vusb.control import ControlServer, ctl_main
    from vusb.server import Server

    dev = Cp2105(backend=[None, None])
    server = Server([dev], port=0)
    await server.start()
    control = ControlServer(server, tmp_path / "vusb.sock")
    await control.start()
    reader, writer = await asyncio.open_unix_connection(str(control.path))

    async def ctl(**body: object) -> dict[str, object]:
        writer.write(json.dumps({"id": 1, **body}).encode() + b"\n")
        await writer.drain()
        reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
        assert isinstance(reply, dict)
        return reply

    try:
        listing = await ctl(cmd="list")
        assert listing["devices"][0]["functions"][0]["kind"] == "serial"  # type: ignore[index]
        async with await RemoteDevice.open("127.0.0.1", "1-1", server.port) as remote:
            await remote.enumerate()
            assert (await ctl(cmd="serial-write", busid="1-1", port=1, data="AT\r"))["written"] == 3
            assert await remote.transfer_in(0x82, 64, timeout=2) == b"AT\r"
            await remote.transfer_out(0x01, b"OK\r\n")
            assert (await ctl(cmd="serial-read", busid="1-1", line=True, timeout=2))["data"] == "OK\r\n"
            assert "no port 2" in str((await ctl(cmd="serial-write", busid="1-1", port=2, data="x"))["error"])
            # the same through `vusb ctl ... --port 1` (the --port before the command is the server's port)
            sock = str(control.path)
            assert await asyncio.to_thread(ctl_main, sock, 0, ["serial-write", "1-1", "hi\\n", "--port", "1"]) == 0
            assert await remote.transfer_in(0x82, 64, timeout=2) == b"hi\n"
            await remote.transfer_out(0x02, b"from port B\n")
            await remote.transfer_out(0x01, b"from port A\n")
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                assert await asyncio.to_thread(ctl_main, sock, 0, ["serial-read", "1-1", "--line", "--port", "1"]) == 0
                assert await asyncio.to_thread(ctl_main, sock, 0, ["serial-read", "1-1", "--line"]) == 0
            assert out.getvalue() == "from port B\nfrom port A\n"
    finally:
        writer.close()
        await control.close()
        await server.close()
        await dev.close()
