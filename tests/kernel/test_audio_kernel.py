"""The sound card attached to a real Linux kernel: snd-usb-audio binds, ALSA records and plays through it.

The microphone plays a counting pattern (sample i holds i), so the capture that
``arecord`` makes in the guest shows any lost, repeated or reordered packet; the
speaker keeps what ``aplay`` played, compared byte for byte with the file.

By default (about a minute of test time beyond the guests' boots) the UAC 2.0 card runs on
every kernel and the UAC 1.0 cards and the refused rate on 6.1. ``VUSB_FULL_KERNEL=1``
adds the exhaustive variants: the UAC 1.0 cards and the refused rate on 5.10 and 6.12 too,
UAC 2.0 cards with the widest formats (192 kHz stereo and 32-bit, 8 channels), and a long run
(20 s of capture, 10 s of playback) that must stay sample-exact.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from vusb.devices.audio import Counting, Format, Microphone, PcmFormat, SoundCard, Speaker

from vusb.harness import Guest
from vusb.profile import load_device
from vusb.server import Server

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]

ALSA_FORMAT = {16: "S16_LE", 24: "S24_3LE", 32: "S32_LE"}

FULL = os.environ.get("VUSB_FULL_KERNEL") == "1"
full_only = pytest.mark.skipif(not FULL, reason="an exhaustive variant: set VUSB_FULL_KERNEL=1 to run it")


def kernels(*default: str) -> list[object]:
    """Every supported kernel for the ``guest`` of a test; those not in ``default`` only with VUSB_FULL_KERNEL=1."""
    return [pytest.param(k, id=f"linux-{k}", marks=() if k in default else full_only) for k in ("5.10", "6.1", "6.12")]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server([], port=0) as srv:
        yield srv


async def attach_card(guest: Guest, server: Server, card: SoundCard) -> int:
    """Attach the card; wait until ALSA has it; return its card number."""
    server.add(card)
    await guest.attach(guest.host_address, server.port, server.exports[-1].busid)
    d = card.descriptor
    devdir = await guest.wait_for_usb_device(d.vendor_id, d.product_id, timeout=60)
    paths = await guest.wait_for_path(f"{devdir}:1.0/sound/card*", timeout=60)
    number = int(re.sub(r".*card", "", paths[0]))
    await guest.wait_for_path(f"/proc/asound/card{number}/stream0", timeout=30)
    return number


def stream_formats(text: str, section: str) -> set[tuple[str, int, tuple[int, ...]]]:
    """(ALSA format, channels, rates) of every alternate setting listed under Playback: or Capture:."""
    part = text.split(f"{section}:", 1)
    if len(part) < 2:
        return set()
    body = re.split(r"\n(?:Playback|Capture):", part[1])[0]
    found = set()
    for block in re.split(r"\n\s*Altset \d+\n", body)[1:]:
        fmt = re.search(r"Format: (\S+)", block)
        ch = re.search(r"Channels: (\d+)", block)
        rates = re.search(r"Rates: ([\d, ]+)", block)
        assert fmt and ch and rates, block
        found.add((fmt.group(1), int(ch.group(1)), tuple(int(r) for r in rates.group(1).replace(" ", "").split(","))))
    return found


def expected_formats(formats: tuple[Format, ...], rates: tuple[int, ...]) -> set[tuple[str, int, tuple[int, ...]]]:
    return {(ALSA_FORMAT[f.bits], f.channels, tuple(sorted(rates))) for f in formats}


def counting_values(data: bytes, fmt: PcmFormat) -> list[int]:
    w = fmt.subslot
    shift = w * 8 - fmt.bits
    return [int.from_bytes(data[i:i + w], "little") >> shift for i in range(0, len(data) - w + 1, w)]


def assert_consecutive(values: list[int], bits: int) -> None:
    """After the first non-zero sample, each sample is the previous plus one (mod 2**bits)."""
    start = next(i for i, v in enumerate(values) if v)
    mask = (1 << bits) - 1
    first = values[start]
    for i, v in enumerate(values[start:]):
        if v != (first + i) & mask:
            raise AssertionError(f"sample {start + i}: {v} where {(first + i) & mask} was due "
                                 f"(a packet lost or repeated {i} samples into the pattern)")


async def checked(guest: Guest, command: str) -> None:
    """Run ``command``; on failure the error shows what the kernel said."""
    result = await guest.run(command, timeout=120)
    if result.returncode != 0:
        dmesg = (await guest.run("dmesg | tail -40")).stdout
        raise AssertionError(f"{command} failed ({result.returncode}): {result.stderr}\nkernel log:\n{dmesg}")


async def record(guest: Guest, card: int, fmt: PcmFormat, frames: int) -> bytes:
    await checked(guest, f"arecord -q -D hw:{card},0 -t raw -f {ALSA_FORMAT[fmt.bits]} -c {fmt.channels} "
                         f"-r {fmt.rate} -s {frames} /tmp/capture.raw")
    return await guest.read_file("/tmp/capture.raw")


async def play(guest: Guest, card: int, fmt: PcmFormat, data: bytes) -> None:
    await guest.write_file("/tmp/play.raw", data)
    await checked(guest, f"aplay -q -D hw:{card},0 -t raw -f {ALSA_FORMAT[fmt.bits]} -c {fmt.channels} "
                         f"-r {fmt.rate} /tmp/play.raw")


def counting_file(fmt: PcmFormat, frames: int) -> bytes:
    """A counting pattern starting at 1 (no zero sample, so it cannot be confused with silence)."""
    source = Counting()
    source.position = 1
    return source.read(frames, fmt)


async def check_playback(guest: Guest, card: int, speaker: Speaker, fmt: PcmFormat, frames: int) -> None:
    """aplay plays a counting pattern then 0.3 s of silence; the speaker receives the pattern exactly.

    snd-usb-audio stops the stream as soon as the last samples are queued, unlinking the
    URBs still in flight (a real card loses those too), so only the silence may be cut.
    """
    data = counting_file(fmt, frames)
    speaker.clear()
    await play(guest, card, fmt, data + bytes(fmt.rate * 3 // 10 * fmt.frame_bytes))
    got = await speaker.wait_recorded(len(data), timeout=30)
    assert speaker.recorded_format == fmt
    at = got.find(data)
    assert at >= 0, f"the {len(data)} bytes aplay played are not in the {len(got)} bytes the speaker received"
    assert not got[:at].strip(b"\0") and not got[at + len(data):].strip(b"\0"), "the speaker received other samples"


async def test_uac2_card_binds_lists_its_formats_and_moves_exact_samples(any_guest: Guest, server: Server) -> None:
    card = load_device(ROOT / "profiles" / "sound-card.yaml")
    assert isinstance(card, SoundCard) or card.functions
    audio = card.functions[0]
    speaker, mic = audio.speaker, audio.microphone  # type: ignore[attr-defined]
    assert isinstance(speaker, Speaker) and isinstance(mic, Microphone)
    mic.source = Counting()
    number = await attach_card(any_guest, server, card)  # type: ignore[arg-type]
    text = (await any_guest.run(f"cat /proc/asound/card{number}/stream0", check=True)).stdout
    assert stream_formats(text, "Playback") == expected_formats(speaker.formats, speaker.rates), text
    assert stream_formats(text, "Capture") == expected_formats(mic.formats, mic.rates), text
    assert "snd-usb-audio" in (await any_guest.run(
        f"basename $(readlink /sys/class/sound/card{number}/device/driver)", check=True)).stdout
    fmt = PcmFormat(2, 16, 48000)
    captured = await record(any_guest, number, fmt, 48000)
    assert len(captured) == 48000 * fmt.frame_bytes
    assert_consecutive(counting_values(captured, fmt), 16)
    # again at 44.1 kHz (5.5125 frames a microframe): the stream restarts, with the URBs of its last run
    mono = PcmFormat(1, 16, 44100)
    captured = await record(any_guest, number, mono, 22050)
    assert len(captured) == 22050 * mono.frame_bytes
    assert_consecutive(counting_values(captured, mono), 16)
    await check_playback(any_guest, number, speaker, fmt, 24000)


UAC1_CASES = [
    # (formats, rates, the format recorded and played)
    ((Format(2, 16), Format(1, 16)), (44100, 48000), PcmFormat(2, 16, 44100)),
    ((Format(2, 24),), (48000, 96000), PcmFormat(2, 24, 96000)),
]


@pytest.mark.parametrize("any_guest", kernels("6.1"), indirect=True)
@pytest.mark.parametrize(("formats", "rates", "fmt"), UAC1_CASES, ids=["16bit-44k1", "24bit-96k"])
async def test_uac1_card_moves_exact_samples(any_guest: Guest, server: Server, formats: tuple[Format, ...],
                                             rates: tuple[int, ...], fmt: PcmFormat) -> None:
    guest = any_guest
    speaker = Speaker(formats, rates)
    mic = Microphone(formats, rates, source=Counting())
    card = SoundCard(speaker=speaker, microphone=mic, version=1)
    number = await attach_card(guest, server, card)
    text = (await guest.run(f"cat /proc/asound/card{number}/stream0", check=True)).stdout
    assert "full speed" in text
    assert stream_formats(text, "Playback") == expected_formats(speaker.formats, speaker.rates), text
    assert stream_formats(text, "Capture") == expected_formats(mic.formats, mic.rates), text
    frames = fmt.rate // 2
    captured = await record(guest, number, fmt, frames)
    assert len(captured) == frames * fmt.frame_bytes
    assert_consecutive(counting_values(captured, fmt), fmt.bits)
    await check_playback(guest, number, speaker, fmt, frames)


@pytest.mark.parametrize("any_guest", kernels("6.1"), indirect=True)
async def test_host_asking_an_unlisted_rate_is_refused(any_guest: Guest, server: Server) -> None:
    guest = any_guest
    mic = Microphone((Format(2, 16),), (48000,), source=Counting())
    card = SoundCard(microphone=mic)
    number = await attach_card(guest, server, card)
    result = await guest.run(f"arecord -D hw:{number},0 -t raw -f S16_LE -c 2 -r 44100 -s 100 /tmp/x.raw", check=True)
    # the card offers only what it lists, so ALSA takes the nearest listed rate (hw: does not resample)
    assert "got = 48000Hz" in result.stderr, result.stderr


WIDE_CASES = [
    # (formats, rates, what is recorded and played): the biggest packets the card's full-speed
    # configuration also carries (1023 bytes a frame), at the highest rate and with the most channels
    ((Format(2, 16), Format(1, 32)), (192000,), (PcmFormat(2, 16, 192000), PcmFormat(1, 32, 192000))),
    ((Format(8, 16),), (48000,), (PcmFormat(8, 16, 48000),)),
]


@full_only
@pytest.mark.parametrize(("formats", "rates", "streams"), WIDE_CASES, ids=["192k", "8ch-48k"])
async def test_uac2_card_with_wide_formats_moves_exact_samples(
        guest: Guest, server: Server, formats: tuple[Format, ...], rates: tuple[int, ...],
        streams: tuple[PcmFormat, ...]) -> None:
    speaker = Speaker(formats, rates)
    mic = Microphone(formats, rates, source=Counting())
    number = await attach_card(guest, server, SoundCard(speaker=speaker, microphone=mic))
    text = (await guest.run(f"cat /proc/asound/card{number}/stream0", check=True)).stdout
    assert stream_formats(text, "Capture") == expected_formats(mic.formats, mic.rates), text
    for fmt in streams:
        frames = fmt.rate // 2
        captured = await record(guest, number, fmt, frames)
        assert len(captured) == frames * fmt.frame_bytes
        assert_consecutive(counting_values(captured, fmt), fmt.bits)
        await check_playback(guest, number, speaker, fmt, frames // 2)


@full_only
async def test_a_long_run_stays_sample_exact(guest: Guest, server: Server) -> None:
    """20 s of capture and 10 s of playback at 48 kHz stereo: nothing lost, repeated or drifting over time."""
    speaker = Speaker((Format(2, 16),), (48000,))
    mic = Microphone((Format(2, 16),), (48000,), source=Counting())
    number = await attach_card(guest, server, SoundCard(speaker=speaker, microphone=mic))
    fmt = PcmFormat(2, 16, 48000)
    captured = await record(guest, number, fmt, 20 * fmt.rate)
    assert len(captured) == 20 * fmt.rate * fmt.frame_bytes
    assert_consecutive(counting_values(captured, fmt), 16)
    await check_playback(guest, number, speaker, fmt, 10 * fmt.rate)
