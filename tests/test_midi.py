"""The MIDI interface without a kernel: event packets, descriptors, both directions through a local host."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from vusb.devices.midi import (
    Decoder,
    Message,
    MidiDevice,
    MidiFunction,
    control_change,
    encode,
    note_off,
    note_on,
    pitch_bend,
    program_change,
    split_messages,
    sysex,
)

from vusb.constants import Speed
from vusb.descriptors import ConfigurationDescriptor
from vusb.errors import ProfileError, UsageError
from vusb.profile import load_device, parse_profile
from vusb.testing import LocalHost

PACKETS = [
    # message, cable, USB-MIDI event packets (USB MIDI 1.0 table 4-1)
    (note_on(60, 127), 0, "09 90 3C 7F"),
    (note_off(60, channel=2), 1, "18 82 3C 00"),
    (control_change(7, 100), 0, "0B B0 07 64"),
    (program_change(5, channel=9), 3, "3C C9 05 00"),
    (pitch_bend(0), 0, "0E E0 00 40"),
    (bytes.fromhex("F8"), 0, "0F F8 00 00"),  # timing clock: single byte
    (bytes.fromhex("F2 10 20"), 0, "03 F2 10 20"),  # song position: three-byte system common
    (bytes.fromhex("F3 05"), 0, "02 F3 05 00"),  # song select: two-byte system common
    (sysex(b""), 0, "06 F0 F7 00"),
    (sysex(b"\x01"), 0, "07 F0 01 F7"),
    (sysex(b"\x01\x02"), 2, "24 F0 01 02 25 F7 00 00"),
    (sysex(b"\x01\x02\x03\x04"), 0, "04 F0 01 02 07 03 04 F7"),
    (sysex(b"\x01\x02\x03\x04\x05"), 0, "04 F0 01 02 04 03 04 05 05 F7 00 00"),
]


@pytest.mark.parametrize(("message", "cable", "packets"), PACKETS)
def test_messages_become_event_packets_and_back(message: bytes, cable: int, packets: str) -> None:
    raw = encode(message, cable)
    assert raw == bytes.fromhex(packets)
    assert list(Decoder().feed(raw)) == [Message(message, cable)]


def test_sysex_on_two_cables_interleaved_is_reassembled_per_cable() -> None:
    a, b = encode(sysex(b"\x11\x12\x13\x14"), 0), encode(sysex(b"\x21\x22\x23\x24"), 1)
    mixed = a[:4] + b[:4] + a[4:] + b[4:]
    assert list(Decoder().feed(mixed)) == [Message(sysex(b"\x11\x12\x13\x14"), 0), Message(sysex(b"\x21\x22\x23\x24"), 1)]


BAD = [
    (lambda: note_on(128), "note 128"),
    (lambda: encode(b"\x3c"), "not a status byte"),
    (lambda: encode(b"\x90\x3c"), "has 3 byte"),
    (lambda: sysex(b"\x80"), "0..0x7F"),
    (lambda: split_messages(b"\x90\x3c\x7f\x3c\x00"), "running status"),
    (lambda: split_messages(b"\xf0\x01"), "no F7"),
]


@pytest.mark.parametrize(("make", "words"), BAD)
def test_bad_messages_are_refused_with_the_reason(make: object, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        make()  # type: ignore[operator]


def test_descriptors_have_one_embedded_and_one_external_jack_each_way_per_cable() -> None:
    dev = MidiDevice(cables=3)
    config = ConfigurationDescriptor.parse(dev._config_bytes[0], speed=Speed.FULL)
    ms = config.interface(1)
    assert ms is not None and (ms.interface_class, ms.interface_subclass) == (1, 3)
    jacks = [d.to_bytes() for d in ms.extra if d.to_bytes()[2] in (2, 3)]
    assert len(jacks) == 12
    out_ep, in_ep = ms.endpoints
    assert out_ep.to_bytes()[0] == 9 and out_ep.extra[0].to_bytes() == bytes((7, 0x25, 1, 3, 1, 5, 9))
    assert in_ep.extra[0].to_bytes() == bytes((7, 0x25, 1, 3, 4, 8, 12))


async def test_messages_flow_both_ways_through_the_bulk_endpoints() -> None:
    dev = MidiDevice(cables=2)
    midi = dev.midi
    async with LocalHost(dev) as host:
        await host.enumerate()
        await host.transfer_out(midi.out_address, encode(note_on(64), 1) + encode(sysex(b"\x7d\x01"), 0) + bytes(4))
        assert await midi.receive(timeout=1) == Message(note_on(64), 1)
        async for msg in midi:
            assert msg == Message(sysex(b"\x7d\x01"), 0)
            break
        sent = asyncio.ensure_future(midi.send(note_on(60) + control_change(1, 2), cable=1))
        assert await host.transfer_in(midi.in_address, 64) == encode(note_on(60), 1) + encode(control_change(1, 2), 1)
        await asyncio.wait_for(sent, 1)
        with pytest.raises(UsageError, match=r"cables 0\.\.1"):
            await midi.send(note_on(60), cable=2)


async def test_a_message_on_a_cable_the_interface_lacks_is_dropped() -> None:
    dev = MidiDevice(cables=1)
    async with LocalHost(dev) as host:
        await host.enumerate()
        await host.transfer_out(dev.midi.out_address, encode(note_on(1), 5) + encode(note_on(2), 0))
        assert await dev.midi.receive(timeout=1) == Message(note_on(2), 0)
        assert dev.midi.received.empty()


def test_the_shipped_profile_has_two_named_ports() -> None:
    device = load_device(Path(__file__).resolve().parents[1] / "profiles" / "midi.yaml")
    midi = device.functions[0]
    assert isinstance(midi, MidiFunction) and midi.cables == 2 and midi.port_names == ["vusb MIDI 1", "vusb MIDI 2"]


def test_port_names_must_match_the_cables() -> None:
    text = "identity: {vendor_id: 1, product_id: 2}\nfunctions:\n  - kind: midi\n    cables: 3\n    port_names: [a, b]\n"
    with pytest.raises(ProfileError, match="2 port names for 3 cable") as err:
        parse_profile(text, "m.yaml").build()
    assert err.value.line == 5
