"""A USB Video Class 1.1 webcam (YUYV and MJPEG, isochronous or bulk) for Linux's uvcvideo.

::

    from vusb.devices.video import Webcam
    cam = Webcam()                                   # colour bars with a frame counter
    cam = Webcam(source="picture.png")               # a still image
    async with Server([cam]):
        ...
        cam.show("other.png")                        # change what it shows, live
        print(cam.stats.frames_sent, cam.stats.frames_dropped)

See docs/devices/webcam.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vusb.devices.video.function import (
    DEFAULT_CONTROLS,
    DEFAULT_FORMATS,
    UvcFunction,
    VideoStats,
    bandwidth_problems,
    controls_from,
)
from vusb.devices.video.sources import (
    CallbackSource,
    ColourBars,
    ImageSequence,
    IteratorSource,
    StillImage,
    VideoSource,
    VideoSourceError,
    frame_counter,
    load_image,
)
from vusb.devices.video.spec import (
    ALT_SETTINGS,
    ControlSpec,
    FrameSize,
    PayloadHeader,
    PixelFormat,
    StillControl,
    StreamingControl,
    VideoFormat,
    control_spec,
)

from vusb.constants import Speed
from vusb.device import Device

VENDOR_ID = 0x1209
PRODUCT_ID = 0x0009


class Webcam(Device):
    """A device with one :class:`UvcFunction` (high speed by default); the function is :attr:`camera`."""

    def __init__(
        self,
        formats: Sequence[VideoFormat] = DEFAULT_FORMATS,
        *,
        source: Any = None,
        transport: str = "iso",
        controls: Sequence[str | ControlSpec] = DEFAULT_CONTROLS,
        camera_controls: Sequence[str | ControlSpec] = (),
        still_method: int = 0,
        still_source: Any = None,
        speed: Speed | str = Speed.HIGH,
        vendor_id: int = VENDOR_ID,
        product_id: int = PRODUCT_ID,
        manufacturer: str | None = "vusb",
        product: str | None = "Virtual Webcam",
        serial_number: str | None = None,
        queued_frames: int = 3,
    ) -> None:
        self.camera = UvcFunction(formats, source=source, transport=transport, controls=controls,
                                  camera_controls=camera_controls, queued_frames=queued_frames,
                                  still_method=still_method, still_source=still_source)
        super().__init__(self.camera, vendor_id=vendor_id, product_id=product_id, manufacturer=manufacturer,
                         product=product, serial_number=serial_number, speed=speed, max_power_ma=200)

    @property
    def stats(self) -> VideoStats:
        return self.camera.stats

    def show(self, value: Any) -> None:
        """Show something else from the next frame on: a source, an image path, a PIL image, a callback..."""
        self.camera.show(value)

    async def still(self, picture: Any = None, *, timeout: float | None = None) -> bytes:
        """Wait for the host to take a still image (showing ``picture``, if given) and return its bytes."""
        return await self.camera.still(picture, timeout=timeout)


__all__ = [
    "ALT_SETTINGS", "DEFAULT_FORMATS", "CallbackSource", "ColourBars", "ControlSpec", "FrameSize", "ImageSequence",
    "IteratorSource", "PayloadHeader", "PixelFormat", "StillControl", "StillImage", "StreamingControl", "UvcFunction", "VideoFormat",
    "VideoSource", "VideoSourceError", "VideoStats", "Webcam", "bandwidth_problems", "control_spec", "controls_from",
    "frame_counter", "load_image",
]
