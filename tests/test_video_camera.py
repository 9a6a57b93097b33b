"""The webcam's camera-terminal controls and still image capture (methods 2 and 3), host side.

An in-process host (:class:`vusb.testing.LocalHost`) plays uvcvideo's part; the kernel
proof is tests/kernel/test_video_kernel.py.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import struct
from pathlib import Path

import pytest
from PIL import Image
from vusb.devices.video import (
    ColourBars,
    FrameSize,
    PayloadHeader,
    PixelFormat,
    UvcFunction,
    VideoFormat,
    Webcam,
    frame_counter,
)
from vusb.devices.video.spec import RequestError, StillControl, StreamingControl, control_spec

from vusb.errors import DeviceDefinitionError, ProfileError, UsageError
from vusb.profile import load_device, parse_profile
from vusb.protocol import IsoPacket
from vusb.testing import LocalHost
from vusb.urb import SetupPacket

VC, VS = 0, 1
CT = 1
SET_CUR, GET_CUR, GET_MIN, GET_MAX, GET_RES, GET_LEN, GET_INFO, GET_DEF = 0x01, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87
ALL_CAMERA = ("scanning_mode", "auto_exposure_mode", "auto_exposure_priority", "exposure_time_absolute",
              "focus_absolute", "focus_auto", "iris_absolute", "zoom_absolute", "pan_absolute", "roll_absolute",
              "privacy")


def ct_request(request: int, selector: int, length: int) -> SetupPacket:
    return SetupPacket(0xA1 if request & 0x80 else 0x21, request, selector << 8, CT << 8 | VC, length)


def vs_request(request: int, selector: int, length: int) -> SetupPacket:
    return SetupPacket(0xA1 if request & 0x80 else 0x21, request, selector << 8, VS, length)


async def configured(cam: Webcam) -> LocalHost:
    host = LocalHost(cam)
    host.attach()
    await host.enumerate()
    return host


async def error_code(host: LocalHost) -> int:
    return (await host.control(SetupPacket(0xA1, GET_CUR, 0x0200, VC, 1)))[0]


async def set_cur(host: LocalHost, setup: SetupPacket, data: bytes) -> int:
    """SET_CUR's status: 0, or -32 (EPIPE) for a stall."""
    return (await host._run(0, 0, len(data), data, setup, 0, 2)).status


def walk(config: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(config):
        out.append(config[i:i + config[i]])
        i += config[i]
    return out


# ---------------------------------------------------------------- camera terminal
BITMAPS = [
    # (controls declared, bmControls of the camera terminal (3 bytes, little-endian))
    ((), 0),
    (("exposure_time_absolute",), 1 << 3),
    (("auto_exposure_mode", "auto_exposure_priority", "exposure_time_absolute"), 0b1110),
    (ALL_CAMERA, sum(1 << bit for bit in (0, 1, 2, 3, 5, 7, 9, 11, 13, 17, 18))),  # D17 focus auto, D18 privacy
]


@pytest.mark.parametrize(("declared", "bitmap"), BITMAPS, ids=[str(len(b[0])) for b in BITMAPS])
def test_camera_terminal_bmcontrols_come_from_the_declared_controls(declared: tuple[str, ...], bitmap: int) -> None:
    cam = Webcam(camera_controls=declared)
    terminal = next(d for d in walk(cam._config_bytes[0]) if d[1] == 0x24 and d[2] == 0x02)
    assert len(terminal) == 18 and terminal[14] == 3  # bControlSize 3
    assert int.from_bytes(terminal[15:18], "little") == bitmap


ANSWERS = [
    # (request, selector, answer) with the default ranges
    (GET_MIN, 0x04, struct.pack("<I", 3)),                      # exposure time: 0.3 ms
    (GET_MAX, 0x04, struct.pack("<I", 2047)),
    (GET_RES, 0x04, struct.pack("<I", 1)),
    (GET_DEF, 0x04, struct.pack("<I", 250)),
    (GET_CUR, 0x04, struct.pack("<I", 250)),
    (GET_LEN, 0x04, b"\x04\x00"),
    (GET_INFO, 0x04, b"\x07"),                                  # GET, SET, and under auto-exposure's control
    (GET_CUR, 0x02, b"\x08"),                                   # aperture priority
    (GET_RES, 0x02, b"\x09"),                                   # manual and aperture priority offered
    (GET_DEF, 0x02, b"\x08"),
    (GET_CUR, 0x03, b"\x00"),
    (GET_MIN, 0x06, struct.pack("<H", 0)),                      # focus
    (GET_RES, 0x06, struct.pack("<H", 5)),
    (GET_INFO, 0x06, b"\x07"),                                  # auto focus is on
    (GET_CUR, 0x08, b"\x01"),
    (GET_MIN, 0x0D, struct.pack("<ii", -36000, -36000)),        # pan and tilt: one 8-byte control
    (GET_RES, 0x0D, struct.pack("<ii", 3600, 3600)),
    (GET_LEN, 0x0D, b"\x08\x00"),
    (GET_MAX, 0x0B, struct.pack("<H", 500)),                    # zoom
    (GET_MIN, 0x0F, struct.pack("<h", -180)),                   # roll
    (GET_CUR, 0x11, b"\x00"),                                   # privacy
    (GET_INFO, 0x11, b"\x03"),
]


@pytest.mark.parametrize(("request_", "selector", "answer"), ANSWERS, ids=[f"{r:02x}-{s:02x}" for r, s, _ in ANSWERS])
async def test_camera_controls_answer_from_declared_ranges(request_: int, selector: int, answer: bytes) -> None:
    host = await configured(Webcam(camera_controls=ALL_CAMERA))
    assert await host.control(ct_request(request_, selector, len(answer))) == answer
    host.detach()


SETS = [
    # (what, [(selector, data)...] sent in order, the last one's error (None: accepted), values after)
    ("exposure in manual mode", [(0x02, b"\x01"), (0x04, struct.pack("<I", 500))], None,
     {"auto_exposure_mode": 1, "exposure_time_absolute": 500}),
    ("exposure above max", [(0x02, b"\x01"), (0x04, struct.pack("<I", 2048))], RequestError.OUT_OF_RANGE,
     {"exposure_time_absolute": 250}),
    ("exposure below min", [(0x02, b"\x01"), (0x04, struct.pack("<I", 2))], RequestError.OUT_OF_RANGE,
     {"exposure_time_absolute": 250}),
    ("exposure under auto exposure", [(0x04, struct.pack("<I", 500))], RequestError.WRONG_STATE,
     {"exposure_time_absolute": 250}),
    ("a mode not offered", [(0x02, b"\x02")], RequestError.OUT_OF_RANGE, {"auto_exposure_mode": 8}),
    ("two modes at once", [(0x02, b"\x09")], RequestError.OUT_OF_RANGE, {"auto_exposure_mode": 8}),
    ("focus off the step", [(0x08, b"\x00"), (0x06, struct.pack("<H", 7))], RequestError.INVALID_VALUE_WITHIN_RANGE,
     {"focus_absolute": 0}),
    ("focus with auto focus off", [(0x08, b"\x00"), (0x06, struct.pack("<H", 35))], None,
     {"focus_auto": 0, "focus_absolute": 35}),
    ("focus under auto focus", [(0x06, struct.pack("<H", 35))], RequestError.WRONG_STATE, {"focus_absolute": 0}),
    ("iris under aperture priority", [(0x09, struct.pack("<H", 400))], None, {"iris_absolute": 400}),
    ("pan and tilt", [(0x0D, struct.pack("<ii", 7200, -3600))], None, {"pan_absolute": 7200, "tilt_absolute": -3600}),
    ("tilt out of range", [(0x0D, struct.pack("<ii", 0, 39600))], RequestError.OUT_OF_RANGE,
     {"pan_absolute": 0, "tilt_absolute": 0}),
    ("privacy on", [(0x11, b"\x01")], None, {"privacy": 1}),
    ("boolean of 2", [(0x11, b"\x02")], RequestError.OUT_OF_RANGE, {"privacy": 0}),
    ("zoom of the wrong length", [(0x0B, b"\x64")], RequestError.INVALID_REQUEST, {"zoom_absolute": 100}),
    ("a control not declared", [(0x0A, b"\x00")], RequestError.INVALID_CONTROL, {}),
]


@pytest.mark.parametrize(("what", "sent", "error", "after"), SETS, ids=[s[0] for s in SETS])
async def test_set_cur_checks_range_step_and_automatic_modes(what: str, sent: list[tuple[int, bytes]],
                                                             error: RequestError | None, after: dict[str, int]) -> None:
    cam = Webcam(camera_controls=ALL_CAMERA)
    host = await configured(cam)
    status = 0
    for selector, data in sent:
        status = await set_cur(host, ct_request(SET_CUR, selector, len(data)), data)
    code = await error_code(host)
    if error is None:
        assert (status, code) == (0, 0)
    else:
        assert (status, code) == (-32, error)
    assert {k: cam.camera.control_value(k) for k in after} == after
    host.detach()


async def test_boolean_and_bitmap_controls_stall_range_requests() -> None:
    host = await configured(Webcam(camera_controls=ALL_CAMERA))
    for selector, request in ((0x11, GET_MIN), (0x01, GET_RES), (0x02, GET_MAX)):
        result = await host._run(0, 0, 1, b"", ct_request(request, selector, 1), 0, 2)
        assert result.status == -32 and await error_code(host) == RequestError.INVALID_REQUEST
    host.detach()


def test_declared_camera_ranges_are_checked() -> None:
    refused = [
        ([control_spec("exposure_time_absolute", default=1)], "default 1 is outside 3..2047"),
        ([control_spec("auto_exposure_mode", step=0x09, default=0x02)], "default 0x2 must be one of the modes"),
        (["brightness"], "no camera control 'brightness'"),
        ([control_spec("privacy", maximum=2)], "privacy is on or off"),
    ]
    for controls, message in refused:
        with pytest.raises(DeviceDefinitionError, match=message):
            Webcam(camera_controls=controls)


async def test_the_device_side_can_change_a_control() -> None:
    cam = Webcam(camera_controls=["privacy", "zoom_absolute"])
    host = await configured(cam)
    cam.camera.set_control_value("privacy", 1)  # the shutter slid shut
    assert await host.control(ct_request(GET_CUR, 0x11, 1)) == b"\x01"
    with pytest.raises(UsageError, match=re.escape("zoom_absolute 501 is outside 100..500")):
        cam.camera.set_control_value("zoom_absolute", 501)
    host.detach()


# ---------------------------------------------------------------- still images
STILL_FORMATS = [
    VideoFormat(PixelFormat.YUYV, (FrameSize(160, 120, (30,)),), still_sizes=((320, 240), (64, 48))),
    VideoFormat(PixelFormat.MJPEG, (FrameSize(160, 120, (30,)),), still_compressions=(90, 60)),
]


def streaming_descriptors(cam: Webcam) -> list[bytes]:
    """The class-specific descriptors of the VideoStreaming interface (from its input header on)."""
    descs = walk(cam._config_bytes[0])
    start = next(i for i, d in enumerate(descs) if d[1] == 0x24 and d[2] == 0x01 and len(d) == 15)
    return [d for d in descs[start:] if d[1] == 0x24]


def still_descriptors(cam: Webcam) -> list[bytes]:
    return [d for d in streaming_descriptors(cam) if d[2] == 0x03]


@pytest.mark.parametrize("method", [2, 3])
def test_still_descriptors_and_the_input_header(method: int) -> None:
    cam = Webcam(STILL_FORMATS, still_method=method)
    descs = walk(cam._config_bytes[0])
    header = next(d for d in descs if d[1] == 0x24 and d[2] == 0x01 and len(d) == 15)
    assert header[9] == method  # bStillCaptureMethod
    endpoint = 0x82 if method == 3 else 0
    assert still_descriptors(cam) == [
        bytes((6 + 8 + 0, 0x24, 0x03, endpoint, 2)) + struct.pack("<HHHH", 320, 240, 64, 48) + b"\x00",
        bytes((6 + 4 + 2, 0x24, 0x03, endpoint, 1)) + struct.pack("<HH", 160, 120) + b"\x02\x5a\x3c",
    ]
    # Each still descriptor follows its format's frames and comes before its colour matching descriptor.
    assert [d[2] for d in streaming_descriptors(cam)] == [0x01, 0x04, 0x05, 0x03, 0x0D, 0x06, 0x07, 0x03, 0x0D]
    bulk = [(d[2], d[3]) for d in descs if d[1] == 0x05 and d[3] == 0x02]
    assert bulk == ([(0x82, 0x02)] * 7 if method == 3 else [])  # in every alternate setting, 0 included


def test_no_still_method_no_still_descriptor() -> None:
    assert still_descriptors(Webcam()) == []
    with pytest.raises(DeviceDefinitionError, match="still_method 1 is not one of"):
        Webcam(still_method=1)
    with pytest.raises(DeviceDefinitionError, match="uncompressed: its stills have no compression"):
        Webcam([VideoFormat(PixelFormat.YUYV, (FrameSize(160, 120),), still_compressions=(1,))], still_method=2)


async def still_commit(host: LocalHost, fmt: int, frame: int, compression: int = 0) -> StillControl:
    asked = StillControl(fmt, frame, compression).to_bytes()
    assert await set_cur(host, vs_request(SET_CUR, 0x03, 11), asked) == 0
    got = await host.control(vs_request(GET_CUR, 0x03, 11))
    assert await set_cur(host, vs_request(SET_CUR, 0x04, 11), got) == 0
    assert await host.control(vs_request(GET_CUR, 0x04, 11)) == got
    return StillControl.parse(got)


async def test_still_probe_and_commit_negotiate() -> None:
    host = await configured(Webcam(STILL_FORMATS, still_method=3))
    c = await still_commit(host, 1, 2)
    assert c == StillControl(1, 2, 0, 64 * 48 * 2, 64 * 48 * 2 + 12)  # method 3: one payload a still
    c = await still_commit(host, 2, 1, 0)  # compression 0: the device picks the first
    assert (c.bCompressionIndex, c.dwMaxVideoFrameSize) == (1, 160 * 120 * 2)
    assert StillControl.parse(await host.control(vs_request(GET_MAX, 0x03, 11))).bCompressionIndex == 2
    assert await host.control(vs_request(GET_LEN, 0x03, 2)) == b"\x0b\x00"
    for asked, error in ((StillControl(3, 1, 0), RequestError.OUT_OF_RANGE), (StillControl(1, 3, 0), RequestError.OUT_OF_RANGE),
                         (StillControl(2, 1, 3), RequestError.OUT_OF_RANGE)):
        assert await set_cur(host, vs_request(SET_CUR, 0x03, 11), asked.to_bytes()) == -32
        assert await error_code(host) == error
    assert await set_cur(host, vs_request(SET_CUR, 0x03, 4), b"\x01\x01\x00\x00") == -32
    assert await error_code(host) == RequestError.INVALID_REQUEST
    host.detach()


async def iso_payloads(host: LocalHost, until: int, psize: int = 1024) -> list[tuple[PayloadHeader, bytes]]:
    """Read isochronous URBs until ``until`` EOFs have passed; every non-empty payload (header, data)."""
    got: list[tuple[PayloadHeader, bytes]] = []
    ends = 0
    while ends < until:
        packets = tuple(IsoPacket(i * psize, psize) for i in range(32))
        _, fut = host.submit(0x81, 1, 32 * psize, iso_packets=packets)
        result = await asyncio.wait_for(fut, 5)
        data, offset = bytes(result.data), 0
        for p in result.iso_packets or ():
            payload = data[offset:offset + p.actual_length]
            offset += p.actual_length
            header = PayloadHeader.parse(payload)
            if len(payload) > header.length or header.eof:
                got.append((header, payload[header.length:]))
            ends += header.eof
    return got


async def test_method_2_sends_the_still_in_the_stream_with_sti() -> None:
    cam = Webcam(STILL_FORMATS, still_method=2, queued_frames=8)
    host = await configured(cam)
    video = StreamingControl(bFormatIndex=1, bFrameIndex=1, dwFrameInterval=333333).to_bytes()
    await host.control(vs_request(SET_CUR, 0x01, 34), video)
    await host.control(vs_request(SET_CUR, 0x02, 34), await host.control(vs_request(GET_CUR, 0x01, 34)))
    await still_commit(host, 1, 1)  # 320x240, larger than the 160x120 video
    await host.set_interface(VS, 4)
    waiting = asyncio.ensure_future(cam.camera.still())
    await set_cur(host, vs_request(SET_CUR, 0x05, 1), b"\x01")
    assert await host.control(vs_request(GET_CUR, 0x05, 1)) == b"\x01"
    payloads = await iso_payloads(host, 6)
    frames: list[tuple[bool, int, bytes]] = []
    current = bytearray()
    for header, data in payloads:
        current += data
        if header.eof:
            frames.append((header.still, header.fid, bytes(current)))
            current.clear()
    stills = [f for f in frames if f[0]]
    assert len(stills) == 1
    still = stills[0][2]
    assert still == ColourBars().yuyv(0, 320, 240)  # still number 0 of the source, byte for byte
    assert await waiting == still and cam.camera.last_still == still
    fids = [fid for _, fid, _ in frames]
    assert all(a != b for a, b in itertools.pairwise(fids))  # the FID toggles at the still as at every frame
    videos = [frame_counter(data) for is_still, _, data in frames if not is_still]
    assert videos == list(range(videos[0], videos[0] + len(videos)))  # the still took no video frame's counter
    assert await host.control(vs_request(GET_CUR, 0x05, 1)) == b"\x00"  # back to normal
    assert cam.stats.stills_sent == 1
    host.detach()


async def test_method_2_needs_a_stream() -> None:
    host = await configured(Webcam(STILL_FORMATS, still_method=2))
    assert await set_cur(host, vs_request(SET_CUR, 0x05, 1), b"\x01") == -32
    assert await error_code(host) == RequestError.WRONG_STATE
    assert await set_cur(host, vs_request(SET_CUR, 0x05, 1), b"\x02") == -32  # the bulk pipe is method 3's
    assert await error_code(host) == RequestError.OUT_OF_RANGE
    host.detach()


async def read_still(host: LocalHost, max_payload: int) -> bytes:
    payload = bytearray()
    while True:
        chunk = await asyncio.wait_for(host.transfer_in(0x82, 16384), 5)
        payload += chunk
        if len(chunk) < 16384 or len(payload) >= max_payload:
            return bytes(payload)


@pytest.mark.parametrize("fmt", [1, 2], ids=["yuyv", "mjpeg"])
async def test_method_3_sends_the_still_on_the_bulk_endpoint(fmt: int) -> None:
    picture = Image.new("RGB", (40, 30), (200, 30, 30))
    cam = Webcam(STILL_FORMATS, still_method=3)
    host = await configured(cam)
    c = await still_commit(host, fmt, 1)
    waiting = asyncio.ensure_future(cam.camera.still(picture))  # no streaming needed for method 3
    await asyncio.sleep(0)
    await set_cur(host, vs_request(SET_CUR, 0x05, 1), b"\x02")
    payload = await read_still(host, c.dwMaxPayloadTransferSize)
    header = PayloadHeader.parse(payload)
    assert header.still and header.eof
    image = payload[header.length:]
    assert image == await asyncio.wait_for(waiting, 5)
    source = cam.camera.still_source
    assert source is not None
    width, height = STILL_FORMATS[fmt - 1].stills()[0]
    assert image == await source.frame(0, STILL_FORMATS[fmt - 1].format, FrameSize(width, height))
    assert await host.control(vs_request(GET_CUR, 0x05, 1)) == b"\x00"
    assert not cam.camera.streaming
    host.detach()


async def test_a_still_can_be_aborted() -> None:
    cam = Webcam(STILL_FORMATS, still_method=3)
    host = await configured(cam)
    await set_cur(host, vs_request(SET_CUR, 0x05, 1), b"\x02")
    assert await set_cur(host, vs_request(SET_CUR, 0x05, 1), b"\x03") == 0
    assert await host.control(vs_request(GET_CUR, 0x05, 1)) == b"\x00"
    _, fut = host.submit(0x82, 1, 16384)
    await asyncio.sleep(0.1)
    assert not fut.done()  # nothing to send: the read waits (NAK)
    host.detach()


async def test_still_needs_a_still_method() -> None:
    cam = Webcam()
    with pytest.raises(UsageError, match="no still image capture"):
        await cam.camera.still()
    host = await configured(cam)
    assert await set_cur(host, vs_request(SET_CUR, 0x05, 1), b"\x01") == -32
    assert await error_code(host) == RequestError.INVALID_CONTROL
    host.detach()


# ---------------------------------------------------------------- profiles and vusb ctl
HEAD = "identity:\n  vendor_id: 0x1209\n  product_id: 9\n  speed: high\nfunctions:\n  - kind: uvc\n"


def test_profile_camera_controls_and_stills(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "photo.png")
    body = ("    still_method: 3\n    still_image: photo.png\n"
            "    formats:\n      - format: mjpeg\n        frames: [{width: 320, height: 240}]\n"
            "        still_sizes: [{width: 640, height: 480}]\n        still_compressions: [90, 50]\n"
            "    camera_controls:\n"
            "      auto_exposure_mode: {modes: [manual, auto], default: auto}\n"
            "      exposure_time_absolute: {min: 10, max: 100, default: 20}\n"
            "      tilt_absolute: {min: -3600, max: 3600, step: 3600}\n"
            "      privacy:\n")
    camera = parse_profile(HEAD + body, "p.yaml", tmp_path).build().functions[0]
    assert isinstance(camera, UvcFunction)
    assert camera.still_method == 3 and camera.still_source is not None
    assert camera.still_source.description == f"image {tmp_path / 'photo.png'}"
    assert camera.formats[0].stills() == ((640, 480),) and camera.formats[0].compressions() == (90, 50)
    assert camera._spec("auto_exposure_mode").resolution == 0x03
    assert camera.control_value("auto_exposure_mode") == 0x02
    assert camera.control_value("exposure_time_absolute") == 20
    assert camera._spec("tilt_absolute").maximum == 3600
    assert camera._spec("pan_absolute").maximum == 36000  # pan came with tilt, at its usual range
    assert camera.control_value("privacy") == 0


PROFILE_ERRORS = [
    ("unknown camera control", "    camera_controls:\n      exposure: {}\n",
     "p.yaml:8:7: field 'functions[0].camera_controls.exposure': no camera control 'exposure'"),
    ("unknown mode", "    camera_controls:\n      auto_exposure_mode: {modes: [manual, night]}\n",
     "p.yaml:8:44: field 'functions[0].camera_controls.auto_exposure_mode.modes[1]': 'night' is not one of"),
    ("default mode not offered", "    camera_controls:\n      auto_exposure_mode: {modes: [manual], default: auto}\n",
     "field 'functions[0].camera_controls.auto_exposure_mode': default 0x2 must be one of the modes offered"),
    ("camera range", "    camera_controls:\n      zoom_absolute: {min: 500, max: 100}\n",
     "p.yaml:8:22: field 'functions[0].camera_controls.zoom_absolute': min 500 is above max 100"),
    ("still method 1", "    still_method: 1\n", "p.yaml:7:19: field 'functions[0].still_method': still method 1 needs nothing"),
    ("still image without a method", "    still_image: a.png\n",
     "p.yaml:7:18: field 'functions[0].still_image': still_image needs still_method 2 or 3"),
    ("missing still image", "    still_method: 2\n    still_image: nope.png\n",
     "p.yaml:8:18: field 'functions[0].still_image': image "),
    ("compressions of YUYV", "    formats:\n      - format: yuyv\n        frames: [{width: 32, height: 24}]\n"
     "        still_compressions: [1]\n",
     "p.yaml:10:29: field 'functions[0].formats[0].still_compressions': only MJPEG stills have compressions"),
    ("odd still width", "    formats:\n      - format: yuyv\n        frames: [{width: 32, height: 24}]\n"
     "        still_sizes: [{width: 33, height: 24}]\n",
     "field 'functions[0].formats[0].still_sizes[0].width': width 33 must be even"),
]


@pytest.mark.parametrize(("what", "body", "message"), PROFILE_ERRORS, ids=[e[0] for e in PROFILE_ERRORS])
def test_profile_errors_name_the_field(tmp_path: Path, what: str, body: str, message: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(HEAD + body, "p.yaml", tmp_path).build()
    assert message in str(info.value)


def test_the_shipped_profile_offers_stills_and_camera_controls() -> None:
    camera = load_device(Path(__file__).resolve().parent.parent / "profiles" / "webcam.yaml").functions[0]
    assert isinstance(camera, UvcFunction) and camera.still_method == 2
    assert {"auto_exposure_mode", "exposure_time_absolute", "pan_absolute", "privacy"} <= set(camera.values)


async def test_ctl_webcam_still(tmp_path: Path) -> None:
    from vusb.control import ControlServer, build_request
    from vusb.server import Server

    Image.new("RGB", (8, 8), (0, 200, 0)).save(tmp_path / "photo.png")
    cam = Webcam(still_method=3)
    plain = Webcam(serial_number="plain")
    async with Server([cam, plain], port=0) as server:
        control = ControlServer(server, tmp_path / "ctl.sock")
        body, _ = build_request(["webcam-still", "1-1", str(tmp_path / "photo.png")])
        reply = await control.handle(body)
        assert reply["ok"] and reply["still_source"] == f"image {tmp_path / 'photo.png'}", reply
        assert cam.camera.still_source is not None
        reply = await control.handle(build_request(["webcam-still", "1-1", "--video"])[0])
        assert reply["ok"] and cam.camera.still_source is None
        reply = await control.handle({"cmd": "webcam-still", "busid": "1-2", "video": True})
        assert not reply["ok"] and "offers no still images" in reply["error"], reply
        listed = (await control.handle({"cmd": "list"}))["devices"][0]["functions"]
        assert listed[0]["stills_sent"] == 0


def test_docs_still_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "devices" / "webcam.md").read_text()
    match = re.search(r"```python\n# webcam_still_example.py\n(.*?)```", page, re.S)
    assert match is not None, "docs/devices/webcam.md has no webcam_still_example.py block"
    exec(compile(match.group(1), "docs/devices/webcam.md", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert "exposure refused while the camera chooses it" in out
    assert "exposure 100 x 100 us (at most 2047)" in out
    assert "still: 614400 bytes, STI set; trigger now 0" in out


async def test_a_method_2_still_is_dropped_when_the_stream_stops() -> None:
    cam = Webcam(STILL_FORMATS, still_method=2)
    host = await configured(cam)
    await host.set_interface(VS, 4)
    await set_cur(host, vs_request(SET_CUR, 0x05, 1), b"\x01")
    await host.set_interface(VS, 0)
    assert await host.control(vs_request(GET_CUR, 0x05, 1)) == b"\x00"
    await host.set_interface(VS, 4)
    assert await set_cur(host, vs_request(SET_CUR, 0x05, 1), b"\x01") == 0  # a new still can be taken
    host.detach()


def test_the_benchmark_in_process_part_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/bench_video.py --no-guest: its references still make the same bytes and it prints its figures."""
    import sys

    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:  # benchmarks/ is not installed with the package
        sys.path.insert(0, root)
    from benchmarks import bench_video

    assert bench_video.main(["--quick", "--no-guest"]) == 0
    out = capsys.readouterr().out
    assert "making a VGA YUYV colour-bars frame" in out and "7 URBs of 32 x 3072 bytes" in out


async def test_method_2_on_a_bulk_stream() -> None:
    """A bulk-transport webcam sends a method 2 still as the next payload of its stream, with STI."""
    fmt = VideoFormat(PixelFormat.YUYV, (FrameSize(32, 24, (30,)),), still_sizes=((64, 48),))
    cam = Webcam([fmt], transport="bulk", still_method=2, queued_frames=8)
    host = await configured(cam)
    video = StreamingControl(bFormatIndex=1, bFrameIndex=1, dwFrameInterval=333333).to_bytes()
    await host.control(vs_request(SET_CUR, 0x01, 34), video)
    await host.control(vs_request(SET_CUR, 0x02, 34), await host.control(vs_request(GET_CUR, 0x01, 34)))
    still = StillControl.parse(await host.control(vs_request(GET_CUR, 0x03, 11)))
    assert still.dwMaxPayloadTransferSize == 32 * 24 * 2 + 12  # the stream's payloads carry the still
    await set_cur(host, vs_request(SET_CUR, 0x05, 1), b"\x01")
    image = bytearray()
    for _ in range(40):
        payload = await asyncio.wait_for(host.transfer_in(0x81, 65536), 5)
        header = PayloadHeader.parse(payload)
        assert len(payload) <= still.dwMaxPayloadTransferSize
        if header.still:
            image += payload[header.length:]
            if header.eof:
                break
    else:
        raise AssertionError("no whole still in 40 payloads")
    assert image == ColourBars().yuyv(0, 64, 48)
    assert cam.stats.stills_sent == 1
    await host.clear_halt(0x81)
    host.detach()
