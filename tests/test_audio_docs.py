"""The examples of docs/devices/audio.md and docs/devices/midi.md run as written: Python, profiles, `vusb ctl`."""

from __future__ import annotations

import asyncio
import re
import shlex
import struct
import wave
from pathlib import Path

import pytest
import yaml
from vusb.devices.audio import AudioFunction
from vusb.devices.midi import MidiFunction

from vusb import IsoPacket, LocalHost, Server, SetupPacket
from vusb.control import ControlServer, build_request
from vusb.profile import load_profile, parse_profile

DOCS = Path(__file__).resolve().parent.parent / "docs" / "devices"
PAGES = ["audio", "midi"]


def blocks(page: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (DOCS / f"{page}.md").read_text(), re.S)


@pytest.mark.parametrize("page", PAGES)
async def test_the_example_tests_pass(page: str) -> None:
    tests = [b for b in blocks(page, "python") if "async def test_" in b]
    assert tests, f"docs/devices/{page}.md has no example test"
    for code in tests:
        namespace: dict[str, object] = {}
        exec(compile(code, f"docs/devices/{page}.md", "exec"), namespace)
        for name, value in namespace.items():
            if name.startswith("test_"):
                await value()  # type: ignore[operator]


@pytest.mark.parametrize("page", PAGES)
def test_the_example_programs_compile_and_the_profiles_load(page: str) -> None:
    for code in blocks(page, "python"):
        compile(code, f"docs/devices/{page}.md", "exec")
    for text in blocks(page, "yaml"):
        profile = {"identity": {"vendor_id": 0x1209, "product_id": 1, "speed": "high"}, **yaml.safe_load(text)}
        parse_profile(yaml.safe_dump(profile), f"docs/devices/{page}.md").build()


def ctl_lines(page: str) -> list[list[str]]:
    """The `vusb ctl` command lines of a page's sh blocks, as argument lists (after `vusb ctl`)."""
    out = []
    for text in blocks(page, "sh"):
        for line in text.splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] == ["vusb", "ctl"]:
                out.append(words[2:])
    return out


async def test_the_ctl_examples_of_the_audio_page_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """Against the built-in sound-card profile as 1-1: audio-play while the host records, then audio-save."""
    monkeypatch.chdir(tmp_path)  # the page's relative WAV paths
    with wave.open("voice.wav", "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(struct.pack("<8h", 1, -1, 2, -2, 3, -3, 4, -4))
    card = load_profile("sound-card", data_dir=tmp_path).build()
    audio = card.functions[0]
    assert isinstance(audio, AudioFunction) and audio.speaker is not None and audio.microphone is not None
    mic, speaker = audio.microphone, audio.speaker
    lines = ctl_lines("audio")
    assert [line[0] for line in lines] == ["audio-play", "audio-save"]
    async with Server([card], port=0) as server, LocalHost(card) as host:
        control = ControlServer(server, tmp_path / "ctl.sock")
        await host.enumerate()
        for clock, stream in ((8, speaker), (9, mic)):  # 48 kHz, stereo 16-bit (alternate 1) both ways
            await host.control(SetupPacket(0x21, 1, 0x0100, clock << 8, 4), struct.pack("<I", 48000))
            await host.set_interface(stream.interface, 1)
        played = asyncio.ensure_future(control.handle(build_request(lines[0])[0]))
        await asyncio.sleep(0)
        _, fut = host.submit(mic.address, 1, 8 * 28, iso_packets=tuple(IsoPacket(i * 28, 28) for i in range(8)))
        captured = bytes((await fut).data)
        assert (await played)["ok"], await played
        assert captured.startswith(struct.pack("<8h", 1, -1, 2, -2, 3, -3, 4, -4))
        _, fut = host.submit(speaker.address, 0, len(captured), captured,
                             iso_packets=tuple(IsoPacket(i * 24, 24) for i in range(8)))
        await fut
        saved = await control.handle(build_request(lines[1])[0])
        assert saved["ok"], saved
    with wave.open(str(tmp_path / "played.wav")) as w:
        assert (w.getnchannels(), w.getframerate(), w.readframes(1000)) == (2, 48000, captured)
    assert speaker.recorded() == b""  # --clear
    await card.aclose()


async def test_the_ctl_examples_of_the_midi_page_run_as_written(tmp_path: Path) -> None:
    """Against the built-in midi profile as 1-1: the host reads the note midi-send sends, midi-read gets the host's."""
    device = load_profile("midi", data_dir=tmp_path).build()
    midi = device.functions[0]
    assert isinstance(midi, MidiFunction)
    lines = ctl_lines("midi")
    assert [line[0] for line in lines] == ["midi-send", "midi-read"]
    async with Server([device], port=0) as server, LocalHost(device) as host:
        control = ControlServer(server, tmp_path / "ctl.sock")
        await host.enumerate()
        sent = asyncio.ensure_future(control.handle(build_request(lines[0])[0]))
        assert await host.transfer_in(midi.in_address, 64) == bytes.fromhex("09 90 3C 7F")
        assert (await sent)["ok"], await sent
        await host.transfer_out(midi.out_address, bytes.fromhex("1B B0 07 64"))
        read = await control.handle(build_request(lines[1])[0])
    assert read["ok"] and read["messages"] == [{"cable": 1, "data": "B0 07 64", "type": "control-change"}], read
    await device.aclose()
