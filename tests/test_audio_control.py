"""`vusb ctl` for the sound card and the MIDI interface: audio-play, audio-save, midi-send, midi-read."""

from __future__ import annotations

import asyncio
import struct
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from vusb.devices.audio import Format, Microphone, PcmFormat, SoundCard, Speaker
from vusb.devices.audio.pcm import bytes_to_samples
from vusb.devices.midi import MidiDevice, encode, note_on

from vusb.control import ControlServer, build_request
from vusb.protocol import IsoPacket
from vusb.server import Server
from vusb.testing import LocalHost
from vusb.urb import SetupPacket


@dataclass
class Rig:
    control: ControlServer
    card: SoundCard
    midi: MidiDevice

    async def ok(self, cmd: str, **fields: Any) -> dict[str, Any]:
        reply = await self.control.handle({"id": 1, "cmd": cmd, **fields})
        assert reply["ok"] is True, reply
        return reply

    async def error(self, cmd: str, **fields: Any) -> str:
        reply = await self.control.handle({"id": 1, "cmd": cmd, **fields})
        assert reply["ok"] is False, reply
        return str(reply["error"])


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    card = SoundCard(speaker=Speaker([Format(2, 16)], [48000]), microphone=Microphone([Format(2, 16)], [48000]))
    midi = MidiDevice(cables=2)
    async with Server([card, midi], port=0) as server:
        yield Rig(ControlServer(server, tmp_path / "ctl.sock"), card, midi)


def write_wav(path: Path, samples: list[int], rate: int = 48000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))


async def start_streaming(host: LocalHost, card: SoundCard, mic: bool) -> None:
    await host.enumerate()
    stream = card.microphone if mic else card.speaker
    assert stream is not None
    await host.control(SetupPacket(0x21, 1, 0x0100, (9 if mic else 8) << 8, 4), struct.pack("<I", 48000))
    await host.set_interface(stream.interface, 1)


async def test_audio_play_puts_a_wav_file_into_the_microphone(rig: Rig, tmp_path: Path) -> None:
    write_wav(tmp_path / "voice.wav", [10, 20, 30, 40, 50, 60])
    mic = rig.card.microphone
    assert mic is not None
    async with LocalHost(rig.card) as host:
        await start_streaming(host, rig.card, mic=True)
        reply = asyncio.ensure_future(rig.ok("audio-play", busid="1-1", wav=str(tmp_path / "voice.wav"), wait=True))
        await asyncio.sleep(0)
        _, fut = host.submit(mic.address, 1, 8 * 28, iso_packets=tuple(IsoPacket(i * 28, 28) for i in range(8)))
        data = bytes((await fut).data)
        assert (await reply)["frames"] == 6
    assert bytes_to_samples(data, PcmFormat(2, 16, 48000))[:7] == [(10, 10), (20, 20), (30, 30), (40, 40), (50, 50),
                                                                   (60, 60), (0, 0)]


async def test_audio_save_writes_what_the_host_played(rig: Rig, tmp_path: Path) -> None:
    speaker = rig.card.speaker
    assert speaker is not None
    pcm = struct.pack("<12h", *range(1, 13))
    async with LocalHost(rig.card) as host:
        await start_streaming(host, rig.card, mic=False)
        _, fut = host.submit(speaker.address, 0, len(pcm), pcm, iso_packets=(IsoPacket(0, 24),))
        await fut
    reply = await rig.ok("audio-save", busid="1-1", wav=str(tmp_path / "out.wav"), clear=True)
    assert (reply["frames"], reply["rate"], reply["channels"], reply["bits"]) == (6, 48000, 2, 16)
    with wave.open(str(tmp_path / "out.wav")) as w:
        assert w.readframes(100) == pcm
    assert speaker.recorded() == b""


async def test_midi_send_and_read(rig: Rig) -> None:
    midi = rig.midi.midi
    async with LocalHost(rig.midi) as host:
        await host.enumerate()
        sent = asyncio.ensure_future(rig.ok("midi-send", busid="1-2", data="90 3C 7F B0 07 64", cable=1))
        assert await host.transfer_in(midi.in_address, 64) == bytes.fromhex("19 90 3C 7F 1B B0 07 64")
        assert (await sent)["messages"] == 2
        await host.transfer_out(midi.out_address, encode(note_on(61), 0) + encode(note_on(62), 1))
        reply = await rig.ok("midi-read", busid="1-2", timeout=1)
    assert reply["messages"] == [{"cable": 0, "data": "90 3D 64", "type": "note-on"},
                                 {"cable": 1, "data": "90 3E 64", "type": "note-on"}]


ERRORS = [
    ("audio-play", {"busid": "1-1", "wav": "/nonexistent/voice.wav"}, "does not exist"),
    ("audio-play", {"busid": "1-2", "wav": "/x.wav"}, "has no audio function"),
    ("midi-send", {"busid": "1-2", "data": "zz"}, "hexadecimal"),
    ("midi-send", {"busid": "1-2", "data": "3C 7F"}, "status byte was due"),
    ("midi-send", {"busid": "1-2", "data": "90 3C 7F", "cable": 5}, "cables 0..1"),
    ("midi-read", {"busid": "1-2", "timeout": 0.05}, "no MIDI message"),
]


@pytest.mark.parametrize(("cmd", "fields", "words"), ERRORS)
async def test_bad_requests_name_what_is_wrong(rig: Rig, cmd: str, fields: dict[str, Any], words: str) -> None:
    assert words in await rig.error(cmd, **fields)


def test_ctl_arguments() -> None:
    assert build_request(["audio-play", "1-1", "/a.wav", "--wait"])[0] == {
        "cmd": "audio-play", "busid": "1-1", "wav": "/a.wav", "wait": True}
    assert build_request(["audio-save", "1-1", "/b.wav", "--clear"])[0] == {
        "cmd": "audio-save", "busid": "1-1", "wav": "/b.wav", "clear": True}
    assert build_request(["midi-send", "1-2", "90 3C 7F", "--cable", "1"])[0] == {
        "cmd": "midi-send", "busid": "1-2", "data": "90 3C 7F", "cable": 1}
