"""Replay enumerations captured from real Linux vhci-hcd clients, byte for byte, without sockets.

tests/data/linux-<kernel>-keyboard-attach.client.bin holds what a real kernel sent when
`usbip attach` imported vusb's Keyboard (OP_REQ_IMPORT, then every CMD_SUBMIT of its
enumeration and of usbhid's probe); *.server.bin holds what vusb answered then. The
replay feeds the client bytes through the sans-IO codec and a fresh device and must
produce the same answer bytes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from vusb.devices import Keyboard

from vusb.constants import OpStatus
from vusb.protocol import NEED_DATA, ImportReply, ImportRequest, ServerCodec, SubmitCommand, SubmitReply
from vusb.server import Export
from vusb.urb import Completion, SetupPacket, Urb

DATA = Path(__file__).parent / "data"
CAPTURES = sorted(DATA.glob("linux-*-keyboard-attach.client.bin"))


async def replay(client_bytes: bytes) -> tuple[bytes, list[SetupPacket]]:
    device = Keyboard()
    export = Export(device, "1-1", 1)
    codec = ServerCodec()
    out = bytearray()
    setups: list[SetupPacket] = []

    def sink(urb: Urb, result: Completion) -> None:
        actual = len(result.data) if urb.direction else (urb.length if result.actual_length is None else result.actual_length)
        out.extend(codec.send(SubmitReply(urb.seqnum, result.status, actual, bytes(result.data) if urb.direction else b"")))

    codec.receive_data(client_bytes)
    while (event := codec.next_event()) is not NEED_DATA:
        if isinstance(event, ImportRequest):
            assert event.busid == "1-1"
            device.attach()
            out.extend(codec.send(ImportReply(OpStatus.OK, export.record())))
        elif isinstance(event, SubmitCommand):
            setup = SetupPacket.parse(event.setup) if event.ep == 0 else None
            if setup is not None:
                setups.append(setup)
            device.submit(Urb(event.seqnum, event.ep, event.direction, event.transfer_buffer_length, flags=event.transfer_flags,
                              setup=setup, data=event.data, sink=sink))
            await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    return bytes(out), setups


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.name.split("-keyboard")[0] for c in CAPTURES])
async def test_captured_linux_enumeration_gets_identical_answers(capture: Path) -> None:
    answers, setups = await replay(capture.read_bytes())
    expected = capture.with_name(capture.name.replace(".client.", ".server.")).read_bytes()
    assert answers == expected
    requests = [(s.request_type, s.request, s.value >> 8) for s in setups]
    assert (0x80, 6, 1) in requests and (0x00, 9, 0) in requests  # GET_DESCRIPTOR(DEVICE) ... SET_CONFIGURATION
    assert (0x81, 6, 0x22) in requests  # usbhid fetched the report descriptor


def test_captures_are_present() -> None:
    assert CAPTURES, "tests/data must hold at least one captured Linux enumeration"
