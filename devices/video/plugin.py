"""The webcam class's registration: the ``uvc`` profile kind and the ``webcam-show`` and ``webcam-still`` commands."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from vusb.devices.video.function import UvcFunction
from vusb.devices.video.profile import FIELDS, FORMAT_FIELDS, build
from vusb.devices.video.sources import ColourBars, StillImage, VideoSource

from vusb.control_server import ControlError, ControlServer, Request
from vusb.registry import Command, Registry


async def _webcam_show(ctl: ControlServer, req: Request) -> dict[str, Any]:
    image = req.get("image", str)
    bars = bool(req.get("bars", bool, False))
    if (image is None) == (not bars):
        raise ControlError("give 'image' (a file on the server) or 'bars': true, exactly one of them")
    if image is not None and not os.path.isabs(image):
        raise ControlError(f"image path {image!r} must be absolute (the server's working folder is not yours)")
    busid, _, f = ctl.function(req, "webcam")
    assert isinstance(f, UvcFunction)
    # An image that cannot be read is a VideoSourceError: the reply names the command and the file.
    source: VideoSource = ColourBars() if bars else await asyncio.to_thread(StillImage, image)
    f.source = source
    return {"busid": busid, "source": source.description, "frames_sent": f.stats.frames_sent}


async def _webcam_still(ctl: ControlServer, req: Request) -> dict[str, Any]:
    image = req.get("image", str)
    video = bool(req.get("video", bool, False))
    if (image is None) == (not video):
        raise ControlError("give 'image' (a file on the server) or 'video': true, exactly one of them")
    if image is not None and not os.path.isabs(image):
        raise ControlError(f"image path {image!r} must be absolute (the server's working folder is not yours)")
    busid, _, f = ctl.function(req, "webcam")
    assert isinstance(f, UvcFunction)
    if not f.still_method:
        raise ControlError(f"the webcam on {busid} offers no still images (its still_method is 0)")
    f.still_source = None if video else await asyncio.to_thread(StillImage, image)
    return {"busid": busid, "still_source": f.still_source.description if f.still_source else "the video source",
            "stills_sent": f.stats.stills_sent}


def _still_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", nargs="?", help="an image file (PNG, JPEG...; made absolute)")
    p.add_argument("--video", action="store_true", help="stills show what the video shows again")


def _still_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    if args.image is not None:
        body["image"] = os.path.abspath(args.image)
    if args.video:
        body["video"] = True


def _show_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", nargs="?", help="an image file (PNG, JPEG...; made absolute)")
    p.add_argument("--bars", action="store_true", help="colour bars with the frame counter")


def _show_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    if args.image is not None:
        body["image"] = os.path.abspath(args.image)
    if args.bars:
        body["bars"] = True


def _describe(f: UvcFunction) -> dict[str, Any]:
    out: dict[str, Any] = {"source": f.source.description, "frames_sent": f.stats.frames_sent}
    if f.still_method:
        out["stills_sent"] = f.stats.stills_sent
    return out


def register(registry: Registry) -> None:
    registry.add_kind("uvc", FIELDS, build, "webcam (USB Video Class 1.1): YUYV and MJPEG, colour bars or images",
                      tables={"formats": FORMAT_FIELDS}, docs="devices/webcam.md")
    registry.name_function(UvcFunction, "webcam", _describe)
    registry.add_command(Command("webcam-show", "show an image file on a webcam (or, with --bars, colour bars again)",
                                 _webcam_show, _show_arguments, _show_request, timeout=False))
    registry.add_command(Command("webcam-still", "what a webcam's still images show: an image file (or, with --video, "
                                                 "the video source again)",
                                 _webcam_still, _still_arguments, _still_request, timeout=False))
