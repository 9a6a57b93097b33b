"""The MIDI interface attached to a real Linux kernel: snd-usb-audio's MIDI driver, amidi both ways."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from vusb.devices.midi import Message, MidiFunction, control_change, note_on, sysex

from vusb.harness import Guest
from vusb.profile import load_device
from vusb.server import Server

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server([], port=0) as srv:
        yield srv


async def test_amidi_lists_the_ports_and_messages_flow_both_ways(any_guest: Guest, server: Server) -> None:
    device = load_device(ROOT / "profiles" / "midi.yaml")
    midi = device.functions[0]
    assert isinstance(midi, MidiFunction)
    server.add(device)
    await any_guest.attach(any_guest.host_address, server.port, server.exports[-1].busid)
    d = device.descriptor
    devdir = await any_guest.wait_for_usb_device(d.vendor_id, d.product_id, timeout=60)
    card = int(re.sub(r".*card", "", (await any_guest.wait_for_path(f"{devdir}:1.0/sound/card*", timeout=60))[0]))
    await any_guest.wait_for_path(f"/dev/snd/midiC{card}D0", timeout=30)
    listing = (await any_guest.run("amidi -l", check=True)).stdout
    ports = re.findall(rf"hw:{card},0,(\d+)", listing)
    assert ports == ["0", "1"], listing

    # host -> device, one port per cable
    for port, data in ((0, "90 3C 7F"), (1, "B0 07 64")):
        await any_guest.run(f"amidi -p hw:{card},0,{port} -S '{data}'", check=True)
        msg = await midi.receive(timeout=10)
        assert msg == Message(bytes.fromhex(data), port)
    await any_guest.run(f"amidi -p hw:{card},0,0 -S 'F0 7D 01 02 03 04 05 F7'", check=True)
    assert await midi.receive(timeout=10) == Message(bytes.fromhex("F0 7D 01 02 03 04 05 F7"), 0)

    # device -> host
    job = await any_guest.start_background(f"amidi -p hw:{card},0,1 -d -t 3")
    await asyncio.sleep(1.0)  # amidi opens the port
    await midi.send(note_on(60, 127, channel=1), cable=1, timeout=10)
    await midi.send(control_change(7, 100), cable=1, timeout=10)
    await midi.send(sysex(b"\x7d\x10\x20"), cable=1, timeout=10)
    await midi.send(note_on(61), cable=0, timeout=10)  # another port: amidi on port 1 must not see it
    result = await job.wait(timeout=30)
    dumped = bytes.fromhex("".join(result.stdout.split()))  # amidi -d prints each message as hex digits
    assert dumped == bytes.fromhex("91 3C 7F B0 07 64 F0 7D 10 20 F7"), result.stdout
