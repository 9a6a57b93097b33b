"""The webcam (UVC 1.1) without a kernel: descriptors, probe/commit, controls, payloads, sources, profiles.

The kernel proof is tests/kernel/test_video_kernel.py; here an in-process host
(:class:`vusb.testing.LocalHost`) plays uvcvideo's part.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import re
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from vusb.devices.video import (
    CallbackSource,
    ColourBars,
    FrameSize,
    ImageSequence,
    PixelFormat,
    StillImage,
    StreamingControl,
    VideoFormat,
    VideoSourceError,
    Webcam,
    frame_counter,
)
from vusb.devices.video.spec import PayloadHeader, RequestError

from vusb.errors import DeviceDefinitionError, ProfileError
from vusb.profile import parse_profile
from vusb.profile_fields import ProfileErrors
from vusb.protocol import IsoPacket
from vusb.testing import LocalHost
from vusb.urb import SetupPacket

VS, VC = 1, 0
PU = 2


def probe_request(request: int, selector: int = 1, length: int = 34) -> SetupPacket:
    return SetupPacket(0xA1 if request & 0x80 else 0x21, request, selector << 8, VS, length)


def pu_request(request: int, selector: int, length: int = 2) -> SetupPacket:
    return SetupPacket(0xA1 if request & 0x80 else 0x21, request, selector << 8, PU << 8 | VC, length)


async def configured(cam: Webcam) -> LocalHost:
    host = LocalHost(cam)
    host.attach()
    await host.enumerate()
    return host


async def commit(host: LocalHost, fmt: int, frame: int, interval: int = 0) -> StreamingControl:
    asked = StreamingControl(bFormatIndex=fmt, bFrameIndex=frame, dwFrameInterval=interval).to_bytes()
    await host.control(probe_request(0x01), asked)
    got = await host.control(probe_request(0x81))
    await host.control(probe_request(0x01, 2), got)
    return StreamingControl.parse(got)


# ---------------------------------------------------------------- descriptors
def walk(config: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(config):
        out.append(config[i:i + config[i]])
        i += config[i]
    return out


async def test_descriptors_tie_the_interfaces_and_size_every_alternate_setting() -> None:
    cam = Webcam()
    async with LocalHost(cam) as host:
        await host.enumerate()
        config = await host.get_descriptor(2, 0, 4096)
    descs = walk(config)
    iad = next(d for d in descs if d[1] == 0x0B)
    assert tuple(iad[2:6]) == (0, 2, 0x0E, 0x03)
    assert cam.descriptor.device_class == 0xEF
    vc_header = next(d for d in descs if d[1] == 0x24 and d[2] == 0x01 and len(d) == 13)
    vc_total = struct.unpack_from("<H", vc_header, 5)[0]
    vc_start = config.index(vc_header)
    assert vc_total == sum(len(d) for d in walk(config[vc_start:vc_start + vc_total]))
    assert vc_header[3:5] == b"\x10\x01"  # bcdUVC 1.10
    vs_header = next(d for d in descs if d[1] == 0x24 and d[2] == 0x01 and len(d) == 15)
    assert vs_header[3] == 2  # two formats
    endpoints = [d for d in descs if d[1] == 0x05]
    sizes = [struct.unpack_from("<H", d, 4)[0] for d in endpoints]
    assert sizes == [128, 256, 512, 1024, 0x0C00, 0x1400]  # 0x0C00: 2 x 1024, 0x1400: 3 x 1024
    assert all(d[3] == 0x05 for d in endpoints)  # isochronous, asynchronous


async def test_bulk_transport_has_one_bulk_endpoint_and_no_alternate_settings() -> None:
    cam = Webcam(transport="bulk")
    config = cam._config_bytes[0]
    endpoints = [d for d in walk(config) if d[1] == 0x05]
    assert [(d[2], d[3]) for d in endpoints] == [(0x81, 0x02)]
    assert all(i.alternate == 0 for i in cam.configurations[0].interfaces)


# ---------------------------------------------------------------- probe and commit
NEGOTIATIONS = [
    # (what the host asks: format, frame, interval) -> (format, frame, interval, frame size, payload size)
    ((1, 1, 333333), (1, 1, 333333, 614400, 3072)),
    ((1, 1, 0), (1, 1, 333333, 614400, 3072)),            # 0: the device's default interval
    ((1, 1, 600000), (1, 1, 666666, 614400, 2048)),       # not offered: the closest offered one
    ((1, 2, 333333), (1, 2, 333333, 153600, 1024)),
    ((2, 1, 333333), (2, 1, 333333, 614400, 2048)),       # MJPEG: half the raw rate is assumed
    ((2, 2, 666666), (2, 2, 666666, 153600, 256)),
]


@pytest.mark.parametrize(("asked", "agreed"), NEGOTIATIONS, ids=[str(a) for a, _ in NEGOTIATIONS])
async def test_probe_negotiates_sizes_and_bandwidth(asked: tuple[int, int, int], agreed: tuple[int, ...]) -> None:
    host = await configured(Webcam())
    c = await commit(host, *asked)
    assert (c.bFormatIndex, c.bFrameIndex, c.dwFrameInterval, c.dwMaxVideoFrameSize,
            c.dwMaxPayloadTransferSize) == agreed
    assert StreamingControl.parse(await host.control(probe_request(0x81, 2))) == c
    host.detach()


REFUSED = [("format 0", 0, 1), ("format 3", 3, 1), ("frame 0", 1, 0), ("frame 3", 1, 3)]


@pytest.mark.parametrize(("what", "fmt", "frame"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_an_unsupported_format_or_frame_stalls_and_sets_the_error_code(
    what: str, fmt: int, frame: int, caplog: pytest.LogCaptureFixture
) -> None:
    host = await configured(Webcam())
    before = await host.control(probe_request(0x81))
    asked = StreamingControl(bFormatIndex=fmt, bFrameIndex=frame, dwFrameInterval=333333).to_bytes()
    result = await host._run(0, 0, 34, asked, probe_request(0x01), 0, 2)
    assert result.status == -32
    assert await host.control(probe_request(0x81)) == before  # the probe is unchanged
    error = await host.control(SetupPacket(0xA1, 0x81, 0x0200, VC, 1))
    assert error == bytes((RequestError.OUT_OF_RANGE,))
    assert "webcam: stalling SET_CUR" in caplog.text and "is not offered" in caplog.text
    host.detach()


async def test_probe_min_max_def_len_info() -> None:
    host = await configured(Webcam())
    lo = StreamingControl.parse(await host.control(probe_request(0x82)))
    hi = StreamingControl.parse(await host.control(probe_request(0x83)))
    default = StreamingControl.parse(await host.control(probe_request(0x87)))
    assert (lo.dwFrameInterval, hi.dwFrameInterval) == (333333, 666666)
    assert (default.bFormatIndex, default.bFrameIndex) == (1, 1)
    assert await host.control(probe_request(0x85, length=2)) == b"\x22\x00"
    assert await host.control(probe_request(0x86, length=1)) == b"\x03"
    host.detach()


# ---------------------------------------------------------------- processing unit
CONTROL_ANSWERS = [
    # (request, selector, answer): brightness (2) is signed -64..64 default 0, gamma (9) 100..500 default 100
    (0x81, 0x02, struct.pack("<h", 0)),
    (0x82, 0x02, struct.pack("<h", -64)),
    (0x83, 0x02, struct.pack("<h", 64)),
    (0x84, 0x02, struct.pack("<h", 1)),
    (0x87, 0x09, struct.pack("<H", 100)),
    (0x86, 0x02, b"\x03"),
    (0x85, 0x02, b"\x02\x00"),
    (0x81, 0x05, b"\x01"),  # power line frequency: one byte, 50 Hz
]


@pytest.mark.parametrize(("request_", "selector", "answer"), CONTROL_ANSWERS,
                         ids=[f"{r:02x}-{s}" for r, s, _ in CONTROL_ANSWERS])
async def test_processing_unit_answers_from_declared_ranges(request_: int, selector: int, answer: bytes) -> None:
    host = await configured(Webcam())
    assert await host.control(pu_request(request_, selector, len(answer))) == answer
    host.detach()


SETS = [
    ("in range", 0x02, struct.pack("<h", -20), None),
    ("below min", 0x02, struct.pack("<h", -65), RequestError.OUT_OF_RANGE),
    ("above max", 0x09, struct.pack("<H", 501), RequestError.OUT_OF_RANGE),
    ("wrong length", 0x02, b"\x01", RequestError.INVALID_REQUEST),
    ("unknown control", 0x0B, b"\x00\x00", RequestError.INVALID_CONTROL),
]


@pytest.mark.parametrize(("what", "selector", "data", "error"), SETS, ids=[s[0] for s in SETS])
async def test_set_cur_is_checked(what: str, selector: int, data: bytes, error: RequestError | None) -> None:
    cam = Webcam()
    host = await configured(cam)
    result = await host._run(0, 0, len(data), data, pu_request(0x01, selector, len(data)), 0, 2)
    code = (await host.control(SetupPacket(0xA1, 0x81, 0x0200, VC, 1)))[0]
    if error is None:
        assert result.status == 0 and cam.camera.control_value("brightness") == -20 and code == 0
    else:
        assert result.status == -32 and code == error
    host.detach()


def test_declared_ranges_are_checked() -> None:
    from vusb.devices.video.spec import control_spec
    with pytest.raises(DeviceDefinitionError, match=r"default 70 is outside -64\.\.64"):
        Webcam(controls=[control_spec("brightness", default=70)])


# ---------------------------------------------------------------- streaming
async def iso_frames(host: LocalHost, count: int, psize: int = 3072) -> tuple[list[bytes], list[PayloadHeader]]:
    """Read isochronous URBs of 32 packets until ``count`` frames ended (EOF), as uvcvideo assembles them."""
    frames: list[bytes] = []
    headers: list[PayloadHeader] = []
    buf = bytearray()
    while len(frames) < count:
        packets = tuple(IsoPacket(i * psize, psize) for i in range(32))
        _, fut = host.submit(0x81, 1, 32 * psize, iso_packets=packets)
        result = await asyncio.wait_for(fut, 5)
        assert result.iso_packets is not None and result.status == 0
        assert len(result.data) == sum(p.actual_length for p in result.iso_packets)
        data = bytes(result.data)
        offset = 0
        for p in result.iso_packets:
            payload = data[offset:offset + p.actual_length]
            offset += p.actual_length
            assert 12 <= len(payload) <= psize
            header = PayloadHeader.parse(payload)
            headers.append(header)
            buf += payload[header.length:]
            if header.eof:
                frames.append(bytes(buf))
                buf.clear()
    return frames, headers


async def test_iso_stream_delivers_consecutive_frames_with_toggling_fid() -> None:
    cam = Webcam()
    host = await configured(cam)
    await commit(host, 1, 2)  # YUYV 320x240 at 30 fps
    await host.set_interface(VS, 4)  # 1024 bytes a microframe
    frames, headers = await iso_frames(host, 4, 1024)
    assert [frame_counter(f) for f in frames] == [0, 1, 2, 3]
    assert frames[1] == ColourBars().yuyv(1, 320, 240)
    data = [h for h in headers if h.length < 1024]  # every header is 12 bytes
    assert all(h.length == 12 and h.pts is not None and h.scr is not None for h in data)
    ends = [i for i, h in enumerate(headers) if h.eof]
    fids = [headers[i].fid for i in ends]
    assert fids == [0, 1, 0, 1]
    first = headers[ends[0] + 1:ends[1] + 1]
    assert len({h.pts for h in first if h.fid == 1}) == 1  # one PTS per frame
    stcs = [h.scr[0] for h in headers if h.scr is not None]
    assert stcs == sorted(stcs)
    await host.set_interface(VS, 0)
    assert not cam.camera.streaming
    host.detach()


async def test_frames_come_at_the_committed_rate() -> None:
    cam = Webcam()
    host = await configured(cam)
    await commit(host, 1, 2, 666666)  # 15 fps
    await host.set_interface(VS, 4)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await iso_frames(host, 7, 1024)
    elapsed = loop.time() - start
    assert 6 / 15 - 0.05 < elapsed < 7 / 15 + 0.3
    host.detach()


async def test_mjpeg_frames_are_jpegs_with_the_counter() -> None:
    cam = Webcam()
    host = await configured(cam)
    await commit(host, 2, 2)
    await host.set_interface(VS, 3)
    frames, _ = await iso_frames(host, 2, 512)
    for i, frame in enumerate(frames):
        assert frame_counter(frame) == i
        with Image.open(io.BytesIO(frame)) as image:
            assert image.size == (320, 240) and image.format == "JPEG"
    host.detach()


async def test_bulk_stream_one_payload_a_frame() -> None:
    cam = Webcam([VideoFormat(PixelFormat.YUYV, (FrameSize(160, 120, (30,)),))], transport="bulk")
    host = await configured(cam)
    c = await commit(host, 1, 1)
    assert c.dwMaxPayloadTransferSize == 160 * 120 * 2 + 12
    counters = []
    for _ in range(3):
        payload = bytearray()
        while True:
            chunk = await host.transfer_in(0x81, 16384)
            payload += chunk
            if len(chunk) < 16384 or len(payload) >= c.dwMaxPayloadTransferSize:
                break
        header = PayloadHeader.parse(payload)
        assert header.eof and len(payload) == c.dwMaxPayloadTransferSize
        counters.append(frame_counter(payload[12:]))
    assert counters == [0, 1, 2]
    await host.clear_halt(0x81)  # how a host stops a bulk camera
    assert not cam.camera.streaming
    host.detach()


# ---------------------------------------------------------------- sources
def png(tmp_path: Path, name: str, colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Path:
    path = tmp_path / name
    Image.new("RGB", size, colour).save(path)
    return path


async def test_still_image_and_image_sequence(tmp_path: Path) -> None:
    still = StillImage(png(tmp_path, "red.png", (255, 0, 0)))
    yuyv = await still.frame(0, PixelFormat.YUYV, FrameSize(32, 16))
    assert len(yuyv) == 32 * 16 * 2
    y, u, _, v = yuyv[:4]
    assert (abs(y - 76) <= 2, u < 100, v > 230) == (True, True, True)  # red in full-range YCbCr
    seq = ImageSequence([png(tmp_path, "a.png", (0, 0, 0)), png(tmp_path, "b.png", (255, 255, 255))])
    firsts = [(await seq.frame(i, PixelFormat.YUYV, FrameSize(8, 8)))[0] for i in range(4)]
    assert firsts == [0, 255, 0, 255]
    jpeg = await seq.frame(1, PixelFormat.MJPEG, FrameSize(64, 48))
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.size == (64, 48)


MEDIA_ERRORS = [
    ("missing", lambda p: p / "nope.png", "does not exist"),
    ("a folder", lambda p: p, "is not a file"),
    ("not an image", lambda p: (p / "x.png", (p / "x.png").write_bytes(b"not a png"))[0], "cannot be read"),
]


@pytest.mark.parametrize(("what", "make", "message"), MEDIA_ERRORS, ids=[m[0] for m in MEDIA_ERRORS])
def test_a_missing_or_unreadable_image_is_a_clear_error(tmp_path: Path, what: str, make: object, message: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(VideoSourceError, match=message) as info:
        StillImage(path)
    assert str(path) in str(info.value)


async def test_a_source_that_raises_stops_its_stream_not_the_device(caplog: pytest.LogCaptureFixture) -> None:
    def broken(index: int, width: int, height: int) -> bytes:
        if index == 2:
            raise RuntimeError("camera unplugged")
        return ColourBars().yuyv(index, width, height)

    cam = Webcam(source=CallbackSource(broken))
    host = await configured(cam)
    await commit(host, 1, 2)
    await host.set_interface(VS, 4)
    frames, _ = await iso_frames(host, 2, 1024)
    assert [frame_counter(f) for f in frames] == [0, 1]
    await asyncio.sleep(0.1)
    assert cam.stats.last_error == "callback: camera unplugged"
    assert "frame 2 from callback failed" in caplog.text
    # The stream goes on with empty payloads; the device still answers requests.
    packets = tuple(IsoPacket(i * 1024, 1024) for i in range(8))
    _, fut = host.submit(0x81, 1, 8 * 1024, iso_packets=packets)
    result = await asyncio.wait_for(fut, 2)
    assert result.status == 0 and all(p.actual_length == 12 for p in result.iso_packets or ())
    assert await host.get_configuration() == 1
    host.detach()


async def test_a_callback_frame_of_the_wrong_size_is_reported() -> None:
    cam = Webcam(source=lambda i, w, h: b"\x00" * 10)
    host = await configured(cam)
    await commit(host, 1, 2)
    await host.set_interface(VS, 4)
    await asyncio.sleep(0.1)
    assert cam.stats.last_error == "callback: frame from the callback: a 320x240 YUYV frame is 153600 bytes, got 10"
    host.detach()


async def test_an_async_iterator_of_images_and_show_switches_live(tmp_path: Path) -> None:
    async def frames() -> AsyncIterator[Image.Image]:
        for shade in itertools.count(0, 10):
            yield Image.new("RGB", (8, 8), (shade, shade, shade))

    cam = Webcam([VideoFormat(PixelFormat.YUYV, (FrameSize(16, 8, (30,)),))], source=frames())
    host = await configured(cam)
    await commit(host, 1, 1)
    await host.set_interface(VS, 1)
    got, _ = await iso_frames(host, 2, 128)
    assert got[0][0] < got[1][0]  # lighter each frame
    cam.show(png(tmp_path, "white.png", (255, 255, 255)))
    got, _ = await iso_frames(host, 3, 128)
    assert got[-1][0] == 255
    host.detach()


# ---------------------------------------------------------------- profiles
HEAD = "identity:\n  vendor_id: 0x1209\n  product_id: 9\n  speed: {speed}\nfunctions:\n  - kind: uvc\n"

PROFILE_ERRORS = [
    ("frame too large for iso at high speed",
     "    formats:\n      - format: yuyv\n        frames:\n          - {width: 1280, height: 720, fps: 30}\n", "high",
     "p.yaml:10:13: field 'functions[0].formats[0].frames[0]': yuyv 1280x720 at 30 fps needs 6924 bytes per "
     "microframe, more than the 3072 an isochronous endpoint carries at high speed"),
    ("VGA at full speed",
     "    formats:\n      - format: yuyv\n        frames:\n          - {width: 160, height: 120, fps: 5}\n"
     "          - {width: 640, height: 480, fps: [30, 5]}\n", "full",
     "p.yaml:11:13: field 'functions[0].formats[0].frames[1]': yuyv 640x480 at 30 fps needs 18444 bytes per frame"),
    ("odd width", "    formats:\n      - format: yuyv\n        frames:\n          - {width: 321, height: 240}\n", "high",
     "p.yaml:10:21: field 'functions[0].formats[0].frames[0].width': width 321 must be even"),
    ("bad format", "    formats:\n      - format: h264\n        frames: []\n", "high",
     "p.yaml:8:17: field 'functions[0].formats[0].format': 'h264' is not one of: yuyv, mjpeg"),
    ("bad fps", "    formats:\n      - format: yuyv\n        frames:\n          - {width: 320, height: 240, fps: fast}\n",
     "high", "field 'functions[0].formats[0].frames[0].fps': expected a frame rate (a number), got 'fast'"),
    ("missing image", "    source: image\n    image: nope.png\n", "high",
     "p.yaml:8:12: field 'functions[0].image': image "),
    ("image without source: image", "    image: a.png\n", "high",
     "p.yaml:7:12: field 'functions[0].image': image only applies to source: image (this webcam uses bars)"),
    ("unknown control", "    controls:\n      zoom: {}\n", "high",
     "p.yaml:8:7: field 'functions[0].controls.zoom': no processing-unit control 'zoom'"),
    ("control range", "    controls:\n      brightness: {min: 10, max: 0}\n", "high",
     "p.yaml:8:19: field 'functions[0].controls.brightness': min 10 is above max 0"),
]


@pytest.mark.parametrize(("what", "body", "speed", "message"), PROFILE_ERRORS, ids=[e[0] for e in PROFILE_ERRORS])
def test_profile_errors_name_the_field(tmp_path: Path, what: str, body: str, speed: str, message: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(HEAD.format(speed=speed) + body, "p.yaml", tmp_path).build()
    assert message in str(info.value)


@pytest.mark.parametrize(("what", "body", "speed", "message"), PROFILE_ERRORS, ids=[e[0] for e in PROFILE_ERRORS])
def test_vusb_check_reports_the_same_errors(tmp_path: Path, what: str, body: str, speed: str, message: str) -> None:
    """``vusb check`` collects every function's errors: the webcam's first one is among them, speed checks too."""
    with pytest.raises(ProfileErrors) as info:
        parse_profile(HEAD.format(speed=speed) + body + "  - kind: keyboard\n    type_dealy: 3\n", "p.yaml", tmp_path,
                      all_errors=True)
    assert any(message in str(e) for e in info.value.errors), str(info.value)
    assert any("type_dealy" in str(e) for e in info.value.errors), str(info.value)


def test_profile_sources_and_controls(tmp_path: Path) -> None:
    png(tmp_path, "a.png", (1, 2, 3))
    png(tmp_path, "b.png", (4, 5, 6))
    body = ("    source: images\n    images: [a.png, b.png]\n    transport: bulk\n"
            "    controls:\n      brightness: {min: -10, max: 10, default: 2}\n      gamma: {}\n")
    device = parse_profile(HEAD.format(speed="high") + body, "p.yaml", tmp_path).build()
    camera = device.functions[0]
    assert camera.source.description == "2 images"  # type: ignore[attr-defined]
    assert camera.transport == "bulk"  # type: ignore[attr-defined]
    assert camera.control_value("brightness") == 2  # type: ignore[attr-defined]


# ---------------------------------------------------------------- vusb ctl webcam-show
async def test_ctl_webcam_show_switches_the_source(tmp_path: Path) -> None:
    from vusb.devices import Keyboard

    from vusb.control import ControlServer, build_request
    from vusb.server import Server

    picture = png(tmp_path, "logo.png", (0, 255, 0))
    cam = Webcam()
    async with Server([cam, Keyboard()], port=0) as server:
        control = ControlServer(server, tmp_path / "ctl.sock")
        body, _ = build_request(["webcam-show", "1-1", str(picture)])
        assert body == {"cmd": "webcam-show", "busid": "1-1", "image": str(picture)}
        reply = await control.handle(body)
        assert reply["ok"] and reply["source"] == f"image {picture}"
        assert cam.camera.source.description == f"image {picture}"
        reply = await control.handle(build_request(["webcam-show", "1-1", "--bars"])[0])
        assert reply["ok"] and isinstance(cam.camera.source, ColourBars)
        refused = [
            ({"cmd": "webcam-show", "busid": "1-1", "image": str(tmp_path / "nope.png")},
             f"webcam-show: image '{tmp_path / 'nope.png'}' does not exist"),
            ({"cmd": "webcam-show", "busid": "1-1"}, "give 'image' (a file on the server) or 'bars': true"),
            ({"cmd": "webcam-show", "busid": "1-1", "image": "logo.png"}, "image path 'logo.png' must be absolute"),
            ({"cmd": "webcam-show", "busid": "1-2", "bars": True}, "has no webcam function"),
        ]
        for request, message in refused:
            reply = await control.handle(request)
            assert not reply["ok"] and message in reply["error"], reply
        assert isinstance(cam.camera.source, ColourBars)  # a refused request changes nothing
        listed = (await control.handle({"cmd": "list"}))["devices"][0]["functions"]
        assert [(f["kind"], f["source"]) for f in listed] == [("webcam", "colour bars")]


# ---------------------------------------------------------------- the docs page's example
def test_docs_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "devices" / "webcam.md").read_text()
    match = re.search(r"```python\n# webcam_example.py\n(.*?)```", page, re.S)
    assert match is not None, "docs/devices/webcam.md has no webcam_example.py block"
    exec(compile(match.group(1), "docs/devices/webcam.md", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert "streaming MJPEG 320x240: 512 bytes a microframe" in out
    assert "frame 2: a " in out


SPEEDS = [
    # (speed, formats, what happens)
    ("full", [VideoFormat(PixelFormat.YUYV, (FrameSize(160, 120, (5,)),))], [128, 256, 512, 1023]),
    ("full", None, "yuyv 640x480 at 30 fps needs 18444 bytes per frame, more than the 1023"),
    ("super", None, "the webcam runs at full or high speed, not super"),
    ("low", None, "the webcam runs at full or high speed, not low"),
]


@pytest.mark.parametrize(("speed", "formats", "outcome"), SPEEDS, ids=[f"{s[0]}-{i}" for i, s in enumerate(SPEEDS)])
def test_speeds(speed: str, formats: list[VideoFormat] | None, outcome: object) -> None:
    kwargs = {"formats": formats} if formats is not None else {}
    if isinstance(outcome, str):
        with pytest.raises(DeviceDefinitionError, match=re.escape(outcome)):
            Webcam(speed=speed, **kwargs)  # type: ignore[arg-type]
        return
    cam = Webcam(speed=speed, **kwargs)  # type: ignore[arg-type]
    sizes = [e.max_packet_size for i in cam.configurations[0].interfaces for e in i.endpoints]
    assert sizes == outcome
