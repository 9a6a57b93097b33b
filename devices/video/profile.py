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
"""

from __future__ import annotations

from typing import Any

import yaml
from vusb.devices.video.function import DEFAULT_CONTROLS, DEFAULT_FORMATS, UvcFunction, bandwidth_problems
from vusb.devices.video.sources import ColourBars, ImageSequence, StillImage, VideoSource, VideoSourceError
from vusb.devices.video.spec import CONTROL_NAMES, FrameSize, PixelFormat, VideoFormat, control_spec

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
    "interface_name": Field("str", False, "Video Control", help="iInterface string of the VideoControl interface"),
    "queued_frames": Field("int", False, 3, 1, 1024,
                           help="frames kept for a host that is late; one more drops the oldest (default 3)"),
}

FORMAT_FIELDS: dict[str, Field] = {
    "format": Field("choice", True, choices=tuple(p.value for p in PixelFormat), help="yuyv or mjpeg"),
    "frames": Field("list", True, help="frame sizes, each {width, height, fps}"),
}

FRAME_FIELDS: dict[str, Field] = {
    "width": Field("int", True, None, 2, 4096),
    "height": Field("int", True, None, 1, 4096),
    "fps": Field("list", False, None, help="frame rates (a number or a list; default 30)"),
}
FRAME_SIZE_FIELDS = {k: v for k, v in FRAME_FIELDS.items() if k != "fps"}  # fps is a number or a list: read apart

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
        formats.append(VideoFormat(PixelFormat(f["format"].value), tuple(frames)))
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
    source = _source(ctx, o)
    try:
        return UvcFunction(formats, source=source, transport=o["transport"].value, controls=controls,
                           interface_name=o["interface_name"].value, queued_frames=o["queued_frames"].value)
    except DeviceDefinitionError as exc:
        raise ctx.error(o["formats"].node, o["formats"].path, str(exc)) from None
