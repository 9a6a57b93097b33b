"""The ``uvc`` function kind of YAML profiles: a webcam (registered by :mod:`vusb.devices.video.plugin`).

::

    functions:
      - kind: uvc
        transport: iso            # iso (default) or bulk
        source: bars              # bars (default), image or images
        image: picture.png        # source: image (relative to the profile's folder)
        images: [a.png, b.png]    # source: images, one a frame
        formats:
          - format: yuyv          # yuyv or mjpeg
            frames:
              - {width: 640, height: 480, fps: [30, 15]}
              - {width: 320, height: 240, fps: 30}
        controls:                 # processing-unit controls offered, with ranges of your own
          brightness: {min: -64, max: 64, step: 1, default: 0}
          contrast: {}
        camera_controls:          # camera-terminal controls offered (none by default)
          auto_exposure_mode: {modes: [manual, aperture_priority], default: aperture_priority}
          exposure_time_absolute: {min: 3, max: 2047, step: 1, default: 250}
          pan_absolute: {min: -36000, max: 36000, step: 3600}
        still_method: 2           # 0 (none), 2 (a still in the video stream), 3 (a bulk still endpoint)
        still_image: photo.png    # what stills show (default: the video source)
"""

from __future__ import annotations

from typing import Any

import yaml
from vusb.devices.video.function import DEFAULT_CONTROLS, DEFAULT_FORMATS, UvcFunction, bandwidth_problems
from vusb.devices.video.sources import ColourBars, ImageSequence, StillImage, VideoSource, VideoSourceError
from vusb.devices.video.spec import (
    AE_MODES,
    CAMERA_CONTROL_NAMES,
    CONTROL_NAMES,
    ControlSpec,
    FrameSize,
    PixelFormat,
    VideoFormat,
    control_spec,
)

from vusb.device import Function
from vusb.errors import DeviceDefinitionError
from vusb.profile_fields import Field, Located, ProfileContext, read_mapping

SOURCES = ("bars", "image", "images")

FIELDS: dict[str, Field] = {
    "transport": Field("choice", False, "iso", choices=("iso", "bulk"),
                       help="iso: isochronous alternate settings sized by bandwidth; bulk: one bulk endpoint"),
    "source": Field("choice", False, "bars", choices=SOURCES,
                    help="bars: colour bars with a frame counter; image: one picture; images: pictures in turn"),
    "image": Field("str", False, None, help="source: image: the picture file (PNG, JPEG, ...)"),
    "images": Field("list", False, None, help="source: images: picture files shown one a frame, in a loop"),
    "formats": Field("list", False, None, help="formats, each {format: yuyv|mjpeg, frames: [{width, height, fps}]}; "
                                                "default YUYV and MJPEG at 640x480 and 320x240, 30 and 15 fps"),
    "controls": Field("map", False, None, help="processing-unit controls offered: name -> {min, max, step, default} "
                                                f"(names: {', '.join(CONTROL_NAMES)})"),
    "camera_controls": Field("map", False, None, help="camera-terminal controls offered: name -> {min, max, step, "
                                                      "default}, auto_exposure_mode -> {modes, default} "
                                                      f"(names: {', '.join(CAMERA_CONTROL_NAMES)}); none by default"),
    "still_method": Field("int", False, 0, 0, 3, help="still image capture: 0 none, 2 a still frame in the video "
                                                      "stream, 3 a dedicated bulk still endpoint"),
    "still_image": Field("str", False, None, help="what still images show (a picture file; default: the video "
                                                  "source)"),
    "interface_name": Field("str", False, "Video Control", help="iInterface string of the VideoControl interface"),
    "queued_frames": Field("int", False, 3, 1, 1024,
                           help="frames kept for a host that is late; one more drops the oldest (default 3)"),
}

FORMAT_FIELDS: dict[str, Field] = {
    "format": Field("choice", True, choices=tuple(p.value for p in PixelFormat), help="yuyv or mjpeg"),
    "frames": Field("list", True, help="frame sizes, each {width, height, fps}"),
    "still_sizes": Field("list", False, None, help="still image sizes, each {width, height} (default: the frame "
                                                   "sizes)"),
    "still_compressions": Field("list", False, None, help="MJPEG only: the still compressions offered (1..255)"),
}

FRAME_FIELDS: dict[str, Field] = {
    "width": Field("int", True, None, 2, 4096),
    "height": Field("int", True, None, 1, 4096),
    "fps": Field("list", False, None, help="frame rates (a number or a list; default 30)"),
}
FRAME_SIZE_FIELDS = {k: v for k, v in FRAME_FIELDS.items() if k != "fps"}  # fps is a number or a list: read apart

AE_FIELDS: dict[str, Field] = {
    "modes": Field("list", False, None, help=f"the modes offered, of: {', '.join(AE_MODES)}"),
    "default": Field("choice", False, None, choices=tuple(AE_MODES)),
}

CONTROL_FIELDS: dict[str, Field] = {
    "min": Field("int", False, None), "max": Field("int", False, None), "step": Field("int", False, None, 1),
    "default": Field("int", False, None),
}


def _fps(ctx: ProfileContext, node: yaml.Node, path: str) -> tuple[float, ...]:
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    out = []
    for i, item in enumerate(items):
        where = f"{path}[{i}]" if isinstance(node, yaml.SequenceNode) else path
        try:
            value = float(str(item.value))
        except (ValueError, AttributeError):
            raise ctx.error(item, where, f"expected a frame rate (a number), got {getattr(item, 'value', item)!r}") from None
        if not 0.1 <= value <= 1000:
            raise ctx.error(item, where, f"{value:g} fps is outside 0.1..1000")
        out.append(value)
    if not out:
        raise ctx.error(node, path, "give at least one frame rate")
    if len({int(10_000_000 / f) for f in out}) != len(out):
        raise ctx.error(node, path, "frame rates repeat")
    return tuple(out)


def _formats(ctx: ProfileContext, loc: Located) -> tuple[tuple[VideoFormat, ...], list[list[yaml.Node]], list[str]]:
    formats: list[VideoFormat] = []
    nodes: list[list[yaml.Node]] = []
    paths: list[str] = []
    if not loc.value.value:
        raise ctx.error(loc.node, loc.path, "give at least one format")
    for i, item in enumerate(loc.value.value):
        fpath = f"{loc.path}[{i}]"
        f = read_mapping(ctx, item, fpath, FORMAT_FIELDS)
        frames = []
        frame_nodes = []
        if not f["frames"].value.value:
            raise ctx.error(f["frames"].node, f["frames"].path, "give at least one frame size")
        for j, fr in enumerate(f["frames"].value.value):
            spath = f"{f['frames'].path}[{j}]"
            size = read_mapping(ctx, fr, spath, FRAME_SIZE_FIELDS, allow_extra=("fps",))
            fps_node = next((v for k, v in fr.value if str(k.value) == "fps"), None)
            fps = _fps(ctx, fps_node, f"{spath}.fps") if fps_node is not None else (30.0,)
            if size["width"].value % 2:
                raise ctx.error(size["width"].node, size["width"].path, f"width {size['width'].value} must be even (YUYV pairs pixels)")
            frames.append(FrameSize(size["width"].value, size["height"].value, fps))
            frame_nodes.append(fr)
        stills: list[tuple[int, int]] = []
        if f["still_sizes"].value is not None:
            for j, item in enumerate(f["still_sizes"].value.value):
                spath = f"{f['still_sizes'].path}[{j}]"
                size = read_mapping(ctx, item, spath, FRAME_SIZE_FIELDS)
                if size["width"].value % 2:
                    raise ctx.error(size["width"].node, size["width"].path, f"width {size['width'].value} must be even")
                stills.append((size["width"].value, size["height"].value))
        compressions: list[int] = []
        if f["still_compressions"].value is not None:
            loc = f["still_compressions"]
            if f["format"].value != PixelFormat.MJPEG.value:
                raise ctx.error(loc.node, loc.path, "only MJPEG stills have compressions to choose")
            for j, item in enumerate(loc.value.value):
                try:
                    value = int(str(item.value), 0)
                except (ValueError, AttributeError):
                    value = 0
                if not 1 <= value <= 255:
                    raise ctx.error(item, f"{loc.path}[{j}]", f"a still compression is 1..255, not {getattr(item, 'value', item)!r}")
                compressions.append(value)
        formats.append(VideoFormat(PixelFormat(f["format"].value), tuple(frames), tuple(stills), tuple(compressions)))
        nodes.append(frame_nodes)
        paths.append(f["frames"].path)
    return tuple(formats), nodes, paths


def _source(ctx: ProfileContext, o: dict[str, Located]) -> VideoSource:
    kind = o["source"].value
    for name, wanted in (("image", "image"), ("images", "images")):
        if o[name].value is not None and kind != wanted:
            raise ctx.error(o[name].node, o[name].path, f"{name} only applies to source: {wanted} (this webcam uses {kind})")
    try:
        if kind == "image":
            if o["image"].value is None:
                raise ctx.error(o["source"].node, o["image"].path, "source: image needs an image file")
            return StillImage(ctx.resolve(o["image"].value, o["image"]))
        if kind == "images":
            loc = o["images"]
            if loc.value is None or not loc.value.value:
                raise ctx.error(o["source"].node, loc.path, "source: images needs a list of image files")
            paths = []
            for i, item in enumerate(loc.value.value):
                if not isinstance(item, yaml.ScalarNode):
                    raise ctx.error(item, f"{loc.path}[{i}]", "expected a file name")
                paths.append(ctx.resolve(str(item.value), Located(item.value, item, f"{loc.path}[{i}]")))
            return ImageSequence(paths)
    except VideoSourceError as exc:
        where = o["image"] if kind == "image" else o["images"]
        raise ctx.error(where.node, where.path, str(exc)) from None
    return ColourBars()


def build(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    """A :class:`UvcFunction` from checked fields; the first error inside ``formats`` or ``controls`` is raised
    (their later checks need every field of an entry), whether or not the context collects errors."""
    ctx = ctx.first_error_only()
    formats = DEFAULT_FORMATS
    if o["formats"].value is not None:
        formats, nodes, _ = _formats(ctx, o["formats"])
        speed = ctx.speed
        if speed is not None:
            problems = bandwidth_problems(formats, speed, o["transport"].value)
            if problems:
                fi, si, why = problems[0]
                raise ctx.error(nodes[fi][si], f"{o['formats'].path}[{fi}].frames[{si}]", why)
    controls: list[Any] = list(DEFAULT_CONTROLS)
    if o["controls"].value is not None:
        controls = []
        for key_node, value_node in o["controls"].value.value:
            name = str(key_node.value)
            path = f"{o['controls'].path}.{name}"
            if name not in CONTROL_NAMES:
                raise ctx.error(key_node, path, f"no processing-unit control {name!r}; known: {', '.join(CONTROL_NAMES)}")
            r = read_mapping(ctx, value_node, path, CONTROL_FIELDS) if not (
                isinstance(value_node, yaml.ScalarNode) and value_node.value in ("", "~", "null")) else {}
            cs = control_spec(name, **{k: r[f].value for k, f in (("minimum", "min"), ("maximum", "max"),
                                                                 ("step", "step"), ("default", "default")) if f in r})
            problem = cs.check()
            if problem:
                raise ctx.error(value_node, path, problem)
            controls.append(cs)
    camera_controls = _camera_controls(ctx, o["camera_controls"]) if o["camera_controls"].value is not None else []
    source = _source(ctx, o)
    method = o["still_method"]
    if method.value == 1:
        raise ctx.error(method.node, method.path, "still method 1 needs nothing from the device (the host keeps a "
                                                  "video frame): use 0, 2 or 3")
    still_source = None
    if o["still_image"].value is not None:
        if not method.value:
            raise ctx.error(o["still_image"].node, o["still_image"].path, "still_image needs still_method 2 or 3")
        try:
            still_source = StillImage(ctx.resolve(o["still_image"].value, o["still_image"]))
        except VideoSourceError as exc:
            raise ctx.error(o["still_image"].node, o["still_image"].path, str(exc)) from None
    try:
        return UvcFunction(formats, source=source, transport=o["transport"].value, controls=controls,
                           camera_controls=camera_controls, interface_name=o["interface_name"].value,
                           queued_frames=o["queued_frames"].value, still_method=method.value,
                           still_source=still_source)
    except DeviceDefinitionError as exc:
        raise ctx.error(o["formats"].node, o["formats"].path, str(exc)) from None


def _camera_controls(ctx: ProfileContext, loc: Located) -> list[ControlSpec]:
    out: list[ControlSpec] = []
    for key_node, value_node in loc.value.value:
        name = str(key_node.value)
        path = f"{loc.path}.{name}"
        if name not in CAMERA_CONTROL_NAMES:
            raise ctx.error(key_node, path, f"no camera control {name!r}; known: {', '.join(CAMERA_CONTROL_NAMES)}")
        empty = isinstance(value_node, yaml.ScalarNode) and value_node.value in ("", "~", "null")
        if name == "auto_exposure_mode":
            r = {} if empty else read_mapping(ctx, value_node, path, AE_FIELDS)
            mask = None
            if "modes" in r and r["modes"].value is not None:
                mask = 0
                for i, item in enumerate(r["modes"].value.value):
                    mode = str(getattr(item, "value", ""))
                    if mode not in AE_MODES:
                        raise ctx.error(item, f"{path}.modes[{i}]", f"{mode!r} is not one of: {', '.join(AE_MODES)}")
                    mask |= AE_MODES[mode]
            default = AE_MODES[r["default"].value] if "default" in r and r["default"].value is not None else None
            cs = control_spec(name, step=mask, default=default)
        else:
            r = {} if empty else read_mapping(ctx, value_node, path, CONTROL_FIELDS)
            cs = control_spec(name, **{k: r[f].value for k, f in (("minimum", "min"), ("maximum", "max"),
                                                                 ("step", "step"), ("default", "default"))
                                       if f in r and r[f].value is not None})
        problem = cs.check()
        if problem:
            raise ctx.error(value_node, path, problem)
        out.append(cs)
    return out
