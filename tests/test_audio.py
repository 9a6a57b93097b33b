"""The sound card without a kernel: descriptors, class requests, pacing and samples, checked through a local host."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import struct
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from vusb.devices.audio import (
    CallbackSink,
    CallbackSource,
    Counting,
    Format,
    IteratorSource,
    LoopbackSource,
    MediaError,
    Microphone,
    PcmFormat,
    SoundCard,
    Speaker,
    Tone,
    WavSink,
    WavSource,
)
from vusb.devices.audio.iso import FrameCounter, IsoClock
from vusb.devices.audio.pcm import bytes_to_samples, convert

from vusb.client import RemoteDevice
from vusb.constants import URB_ISO_ASAP, Speed
from vusb.descriptors import ConfigurationDescriptor
from vusb.errors import ProfileError, Stall
from vusb.profile import load_device, parse_profile
from vusb.protocol import IsoPacket
from vusb.server import Server
from vusb.testing import LocalHost
from vusb.urb import SetupPacket

# ---------------------------------------------------------------- pacing arithmetic

FRAME_COUNTS = [
    # rate, speed, bInterval, frames each packet may carry
    (48000, Speed.HIGH, 1, {6}),
    (44100, Speed.HIGH, 1, {5, 6}),
    (96000, Speed.HIGH, 4, {96}),
    (44100, Speed.FULL, 1, {44, 45}),
    (48000, Speed.FULL, 1, {48}),
    (22050, Speed.FULL, 1, {22, 23}),
]


@pytest.mark.parametrize(("rate", "speed", "interval", "sizes"), FRAME_COUNTS)
def test_frames_per_packet_are_exact_on_average(rate: int, speed: Speed, interval: int, sizes: set[int]) -> None:
    counter = FrameCounter(rate, speed, interval)
    per_second = (1000 if speed == Speed.FULL else 8000) >> (interval - 1)
    seen = set()
    for _ in range(per_second * 60):  # a minute of packets
        n = counter.due()
        seen.add(n)
        counter.advance(n)
    assert seen == sizes
    assert counter.frames == rate * 60  # not one frame of drift over a minute


def test_a_running_stream_is_scheduled_back_to_back_whatever_start_frame_says() -> None:
    clock = IsoClock(Speed.HIGH, 1, epoch=100.0)
    first = clock.plan(8, URB_ISO_ASAP, 0, now=100.5)
    assert (first.start, first.end) == (100.5, pytest.approx(100.501))
    second = clock.plan(8, 0, 12345, now=100.5002)  # submitted early, with a stale frame
    assert second.start == first.end and second.skipped == 0


START_FRAME_CASES = [
    # start_frame relative to now in microframes, packets skipped, URB status, starts at (relative, s)
    (+40, 0, 0, 40 * 0.000125),  # ahead: waits for its frame
    (-3, 3, 0, -3 * 0.000125),  # partly gone: the first three packets are missed
    (-800, 0, 0, 0.0),  # long gone (a stale frame): starts at once
    (+5000, 0, 0, 0.0),  # further ahead than 0.1 s: taken for stale, starts at once
]


@pytest.mark.parametrize(("offset", "skipped", "status", "starts"), START_FRAME_CASES)
def test_an_idle_stream_honours_start_frame(offset: int, skipped: int, status: int, starts: float) -> None:
    clock = IsoClock(Speed.HIGH, 1, epoch=0.0)
    now = 10.0
    current = int(now / 0.000125)
    slot = clock.plan(8, 0, (current + offset) % 16384, now)
    assert slot.skipped == skipped and slot.status == status
    assert slot.start == pytest.approx(now + starts)
    assert slot.start_frame == (current + (offset if starts else 0)) % 16384


def test_a_host_that_stops_submitting_restarts_the_schedule() -> None:
    clock = IsoClock(Speed.FULL, 1, epoch=0.0)
    clock.plan(10, URB_ISO_ASAP, 0, now=1.0)
    later = clock.plan(10, URB_ISO_ASAP, 0, now=7.0)  # nothing for 6 s
    assert later.start == 7.0 and clock.restarts == 1


def test_a_late_host_or_server_is_caught_up_and_an_unlink_stops_the_schedule() -> None:
    clock = IsoClock(Speed.FULL, 1, epoch=0.0)
    first = clock.plan(10, URB_ISO_ASAP, 0, now=1.0)
    late = clock.plan(10, URB_ISO_ASAP, 0, now=1.5)  # half a second late: completes at once
    assert late.start == first.end and late.end < 1.5
    clock.stopped()
    again = clock.plan(10, URB_ISO_ASAP, 0, now=1.6)
    assert again.start == 1.6


# ---------------------------------------------------------------- PCM conversion


def test_conversions_keep_the_significant_bits_and_copy_mono_to_every_channel() -> None:
    src = PcmFormat(1, 16, 48000)
    data = struct.pack("<3h", 1, -2, 300)
    wide = convert(data, src, PcmFormat(2, 24, 48000))
    assert bytes_to_samples(wide, PcmFormat(2, 24, 48000)) == [(256, 256), (-512, -512), (76800, 76800)]
    assert convert(wide, PcmFormat(2, 24, 48000), src) == data


def test_tone_has_the_asked_frequency() -> None:
    fmt = PcmFormat(1, 16, 48000)
    samples = [s[0] for s in bytes_to_samples(Tone(1000, 0.5).read(4801, fmt), fmt)]
    crossings = sum(1 for a, b in itertools.pairwise(samples) if a < 0 <= b)
    assert crossings == 100  # 1 kHz over 0.1 s (the last sample starts period 101)
    assert max(samples) == round(0.5 * 32767)


# ---------------------------------------------------------------- through a local host

SET = 0x21
GET = 0xA1


async def uac2_request(host: LocalHost, entity: int, selector: int, *, data: bytes | None = None, request: int = 1,
                       length: int = 64) -> bytes:
    """A UAC2 request to an entity of the audio control interface (interface 0)."""
    if data is not None:
        return await host.control(SetupPacket(SET, request, selector << 8, entity << 8, len(data)), data)
    return await host.control(SetupPacket(GET, request, selector << 8, entity << 8, length))


async def stream(host: LocalHost, card: SoundCard, mic: bool, alt: int = 1, rate: int = 48000) -> None:
    await host.enumerate()
    clock = 9 if mic else 8
    await host.control(SetupPacket(SET, 1, 0x0100, clock << 8, 4), struct.pack("<I", rate))
    stream_ = card.microphone if mic else card.speaker
    assert stream_ is not None
    await host.set_interface(stream_.interface, alt)


def in_packets(n: int, size: int) -> tuple[IsoPacket, ...]:
    return tuple(IsoPacket(i * size, size) for i in range(n))


async def capture(host: LocalHost, mic: Microphone, urbs: int, packets: int = 8, size: int = 200) -> list[bytes]:
    out = []
    for _ in range(urbs):
        _, fut = host.submit(mic.address, 1, packets * size, iso_packets=in_packets(packets, size))
        c = await fut
        assert c.status == 0 and c.iso_packets is not None
        assert sum(p.actual_length for p in c.iso_packets) == len(c.data)
        out.append(bytes(c.data))
    return out


async def test_microphone_packets_carry_the_rate_and_a_counting_pattern_without_gaps() -> None:
    mic = Microphone([Format(2, 16)], [44100, 48000], source=Counting())
    card = SoundCard(microphone=mic)
    async with LocalHost(card) as host:
        await stream(host, card, mic=True, rate=44100)
        t0 = time.monotonic()
        chunks = await capture(host, mic, 50)  # 50 URBs x 8 microframes = 50 ms
        elapsed = time.monotonic() - t0
    data = b"".join(chunks)
    fmt = PcmFormat(2, 16, 44100)
    assert len(data) == 44100 * 50 // 1000 * fmt.frame_bytes  # 5.5125 frames a microframe, exactly
    values = [Counting.value(data[i:i + 2], fmt) for i in range(0, len(data), 2)]
    assert values == list(range(len(values)))
    assert elapsed >= 0.045  # paced: 50 ms of audio is not delivered much faster than 50 ms


async def test_a_microphone_without_fresh_samples_sends_silence_and_play_goes_first() -> None:
    mic = Microphone([Format(1, 16)], [48000])
    card = SoundCard(microphone=mic)
    async with LocalHost(card) as host:
        await stream(host, card, mic=True, alt=1)
        assert set(b"".join(await capture(host, mic, 2))) == {0}
        played = asyncio.ensure_future(mic.play([100, 200, 300, -400]))
        data = b"".join(await capture(host, mic, 1))
        await asyncio.wait_for(played, 1)
    assert struct.unpack("<4h", data[:8]) == (100, 200, 300, -400)
    assert set(data[8:]) == {0}


async def test_a_source_that_raises_stops_its_stream_not_the_device(caplog: pytest.LogCaptureFixture) -> None:
    def broken(frames: int, fmt: PcmFormat) -> bytes:
        raise RuntimeError("sensor unplugged")

    mic = Microphone([Format(2, 16)], [48000], source=CallbackSource(broken))
    card = SoundCard(microphone=mic)
    with caplog.at_level(logging.ERROR):
        async with LocalHost(card) as host:
            await stream(host, card, mic=True)
            chunks = await capture(host, mic, 3)
            assert await host.get_configuration() == 1  # the device still answers
    assert all(set(c) == {0} for c in chunks)
    assert isinstance(mic.error, RuntimeError)
    assert "sensor unplugged" in caplog.text


async def test_an_async_iterator_feeds_the_microphone() -> None:
    fmt = PcmFormat(2, 16, 48000)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(4):
            yield struct.pack("<2h", i + 1, -(i + 1)) * 12

    mic = Microphone([Format(2, 16)], [48000], source=IteratorSource(chunks(), fmt))
    card = SoundCard(microphone=mic)
    async with LocalHost(card) as host:
        await stream(host, card, mic=True)
        await asyncio.sleep(0.01)  # the iterator fills the buffer
        data = b"".join(await capture(host, mic, 1))
    assert [s for s in bytes_to_samples(data, fmt)][:48:12] == [(1, -1), (2, -2), (3, -3), (4, -4)]


async def speaker_out(host: LocalHost, speaker: Speaker, data: bytes, packet: int) -> int:
    packets = tuple(IsoPacket(i, min(packet, len(data) - i)) for i in range(0, len(data), packet))
    _, fut = host.submit(speaker.address, 0, len(data), data, iso_packets=packets)
    c = await fut
    assert c.status == 0 and c.iso_packets is not None
    assert [p.actual_length for p in c.iso_packets] == [p.length for p in packets]
    return c.actual_length or 0


async def test_the_speaker_keeps_what_the_host_plays_and_gives_it_to_its_sinks(tmp_path: Path) -> None:
    got: list[bytes] = []
    speaker = Speaker([Format(2, 24)], [96000], sink=CallbackSink(lambda data, fmt: got.append(data)))
    card = SoundCard(speaker=speaker)
    fmt = PcmFormat(2, 24, 96000)
    pcm = Counting().read(96, fmt)
    async with LocalHost(card) as host:
        await stream(host, card, mic=False, rate=96000)
        assert await speaker_out(host, speaker, pcm, 12 * fmt.frame_bytes) == len(pcm)
    assert speaker.recorded() == pcm and b"".join(got) == pcm
    assert speaker.recorded_format == fmt


async def test_a_wav_sink_writes_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "played.wav"
    speaker = Speaker([Format(2, 16)], [48000], sink=WavSink(path))
    card = SoundCard(speaker=speaker)
    pcm = Tone(440).read(480, PcmFormat(2, 16, 48000))
    async with LocalHost(card) as host:
        await stream(host, card, mic=False)
        await speaker_out(host, speaker, pcm, 24)
    with wave.open(str(path)) as w:  # readable while the card still holds it
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 48000)
        assert w.readframes(1000) == pcm
    card.audio.close()


async def test_loopback_sends_the_speaker_to_the_microphone() -> None:
    speaker = Speaker([Format(2, 16)], [48000])
    mic = Microphone([Format(2, 16)], [48000], source=LoopbackSource(speaker))
    card = SoundCard(speaker=speaker, microphone=mic)
    pcm = Counting().read(48, PcmFormat(2, 16, 48000))
    async with LocalHost(card) as host:
        await stream(host, card, mic=False)
        await host.control(SetupPacket(SET, 1, 0x0100, 9 << 8, 4), struct.pack("<I", 48000))
        await host.set_interface(mic.interface, 1)
        await speaker_out(host, speaker, pcm, 24)
        data = b"".join(await capture(host, mic, 1))
    assert data == pcm


async def test_feedback_reports_the_nominal_rate_in_16_16_and_its_average_is_exact() -> None:
    speaker = Speaker([Format(2, 16)], [44100])
    card = SoundCard(speaker=speaker)
    async with LocalHost(card) as host:
        await stream(host, card, mic=False, rate=44100)
        values = []
        for _ in range(20):
            _, fut = host.submit(speaker.feedback_address, 1, 4, iso_packets=(IsoPacket(0, 4),))
            c = await fut
            values.append(int.from_bytes(bytes(c.data), "little"))
    assert set(values) <= {361267, 361268}
    assert sum(values) == 20 * 44100 * 65536 // 8000  # 5.5125 frames a microframe, to the last bit


# ---------------------------------------------------------------- class requests

async def test_uac2_clock_and_feature_unit_answer_as_hardware_does(caplog: pytest.LogCaptureFixture) -> None:
    speaker = Speaker([Format(2, 16)], [44100, 48000, 96000])
    card = SoundCard(speaker=speaker)
    async with LocalHost(card) as host:
        await host.enumerate()
        rng = await uac2_request(host, 8, 1, request=2)
        assert struct.unpack("<H9I", rng) == (3, 44100, 44100, 0, 48000, 48000, 0, 96000, 96000, 0)
        assert await uac2_request(host, 8, 1, request=2, length=2) == b"\x03\x00"
        await uac2_request(host, 8, 1, data=struct.pack("<I", 96000))
        assert await uac2_request(host, 8, 1, length=4) == struct.pack("<I", 96000)
        assert await uac2_request(host, 8, 2, length=1) == b"\x01"  # clock valid
        with caplog.at_level(logging.WARNING), pytest.raises(Stall):
            await uac2_request(host, 8, 1, data=struct.pack("<I", 22050))
        assert "22050" in caplog.text
        assert await uac2_request(host, 2, 2, request=2, length=8) == struct.pack("<Hhhh", 1, -15360, 0, 256)
        await uac2_request(host, 2, 2, data=struct.pack("<h", -2560))
        assert await uac2_request(host, 2, 2, length=2) == struct.pack("<h", -2560)
        await uac2_request(host, 2, 2, data=struct.pack("<h", 5000))  # clamped like hardware
        assert speaker.volume == 0
        await uac2_request(host, 2, 1, data=b"\x01")
        assert await uac2_request(host, 2, 1, length=1) == b"\x01" and speaker.mute
        with pytest.raises(Stall):
            await uac2_request(host, 7, 1, length=4)  # no such entity


async def test_uac1_answers_min_max_res_and_the_endpoint_sampling_frequency() -> None:
    speaker = Speaker([Format(2, 16)], [44100, 48000])
    card = SoundCard(speaker=speaker, version=1)
    async with LocalHost(card) as host:
        await host.enumerate()
        assert card.speed == Speed.FULL
        for request, value in ((0x82, -15360), (0x83, 0), (0x84, 256), (0x81, 0)):
            assert await host.control(SetupPacket(GET, request, 0x0200, 2 << 8, 2)) == struct.pack("<h", value)
        ep = speaker.address
        await host.control(SetupPacket(0x22, 0x01, 0x0100, ep, 3), (44100).to_bytes(3, "little"))
        assert await host.control(SetupPacket(0xA2, 0x81, 0x0100, ep, 3)) == (44100).to_bytes(3, "little")
        with pytest.raises(Stall):
            await host.control(SetupPacket(0x22, 0x01, 0x0100, ep, 3), (32000).to_bytes(3, "little"))


def test_descriptors_have_an_association_and_one_alternate_per_format() -> None:
    card = SoundCard(speaker=Speaker([Format(2, 16), Format(2, 24)], [48000, 96000]),
                     microphone=Microphone([Format(1, 16)], [48000]))
    config = ConfigurationDescriptor.parse(card._config_bytes[0], speed=Speed.HIGH)
    assert config.associations[0].interface_count == 3
    alternates = {n: len(config.alternates(n)) for n in (0, 1, 2)}
    assert alternates == {0: 1, 1: 3, 2: 2}
    assert config.alternates(1)[0].endpoints == ()
    data, feedback = config.alternates(1)[2].endpoints
    assert data.max_packet_size == (12 + 1) * 6 and feedback.max_packet_size == 4 and feedback.attributes == 0x11


# ---------------------------------------------------------------- profiles and bad input

PROFILE = """
identity: {{vendor_id: 0x1209, product_id: 0x10, speed: {speed}}}
functions:
  - kind: audio
    uac: {uac}
    microphone:
      formats:
        - {{channels: {channels}, bits: {bits}}}
      rates: [{rate}]
      source: {source}
"""

BAD_PROFILES = [
    # what changes, the line of the error, words the message contains
    ({"rate": 12345}, 9, "12345 Hz is not supported"),
    ({"bits": 20}, 8, "20-bit"),
    ({"channels": 8, "bits": 32, "rate": 192000}, 8, "1023"),  # too big for full speed packets
    ({"source": "wav"}, 10, "wav needs wav: FILE"),
    ({"uac": 3}, 5, "1..2"),
]


@pytest.mark.parametrize(("change", "line", "words"), BAD_PROFILES)
def test_an_impossible_profile_is_refused_at_the_field(change: dict[str, object], line: int, words: str) -> None:
    fields: dict[str, object] = {"speed": "high", "uac": 2, "channels": 2, "bits": 16, "rate": 48000, "source": "tone"}
    fields.update(change)
    with pytest.raises(ProfileError) as err:
        parse_profile(PROFILE.format(**fields), "card.yaml").build()
    assert err.value.line == line, str(err.value)
    assert words in str(err.value) and "card.yaml" in str(err.value)


def test_a_missing_wav_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="does not exist"):
        WavSource(tmp_path / "nothing.wav")
    (tmp_path / "bad.wav").write_bytes(b"not a wav file at all")
    with pytest.raises(MediaError, match="not a PCM WAV"):
        WavSource(tmp_path / "bad.wav")
    text = PROFILE.format(speed="high", uac=2, channels=2, bits=16, rate=48000, source="wav") + "      wav: gone.wav\n"
    (tmp_path / "card.yaml").write_text(text)
    with pytest.raises(ProfileError, match=r"gone\.wav does not exist"):
        load_device(tmp_path / "card.yaml")


def test_a_wav_source_converts_to_the_stream_format(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(struct.pack("<4h", 1, 2, 3, 4))
    src = WavSource(path)
    fmt = PcmFormat(2, 16, 48000)
    assert bytes_to_samples(src.read(10, fmt), fmt) == [(1, 1), (1, 1), (2, 2), (2, 2), (3, 3), (3, 3), (4, 4),
                                                        (4, 4), (0, 0), (0, 0)]


def test_the_shipped_profile_is_a_uac2_card_with_a_48k_stereo_speaker_and_a_tone() -> None:
    device = load_device(Path(__file__).resolve().parents[1] / "profiles" / "sound-card.yaml")
    card = device.functions[0]
    assert card.version == 2 and device.speed == Speed.HIGH  # type: ignore[attr-defined]
    assert Format(2, 16) in card.speaker.formats and 48000 in card.speaker.rates  # type: ignore[attr-defined]
    assert isinstance(card.microphone.source, Tone)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the wire: start_frame comes back

async def test_iso_replies_carry_the_frame_the_urb_started_in() -> None:
    mic = Microphone([Format(2, 16)], [48000], source=Counting())
    card = SoundCard(microphone=mic)
    async with Server([card], port=0) as server, await RemoteDevice.open("127.0.0.1", "1-1", server.port) as host:
        await stream(host, card, mic=True)  # type: ignore[arg-type]
        replies = []
        for _ in range(3):
            _, fut = host.submit(mic.address, 1, 8 * 200, iso_packets=in_packets(8, 200))
            replies.append(await asyncio.wait_for(fut, 5))
    frames = [r.start_frame for r in replies]
    assert all(r.status == 0 and r.number_of_packets == 8 for r in replies)
    assert [(b - a) % 16384 for a, b in itertools.pairwise(frames)] == [8, 8]  # back to back, 8 microframes each
    assert math.isclose(len(replies[0].data), 6 * 8 * 4)
