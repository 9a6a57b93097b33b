"""The sound card's registration: the ``audio`` profile kind and the ``audio-play``/``audio-save`` commands."""

from __future__ import annotations

import argparse
import asyncio
import os
import wave
from typing import Any

from vusb.devices.audio.function import AudioFunction
from vusb.devices.audio.pcm import PcmFormat, read_wav, resample
from vusb.devices.audio.profile import DESCRIPTION, FIELDS, build

from vusb.control_server import ControlError, ControlServer, Request
from vusb.registry import Command, Registry

_PLAYING = "audio.playing"


def _playing(ctl: ControlServer) -> set[asyncio.Future[None]]:
    """``audio-play`` without ``wait``: the plays in progress, held so they are not collected; cancelled at close."""
    plays: set[asyncio.Future[None]] | None = ctl.state.get(_PLAYING)
    if plays is None:
        plays = ctl.state[_PLAYING] = set()
        held = plays

        def cancel_all() -> None:
            for task in list(held):
                task.cancel()
            held.clear()

        ctl.on_close(cancel_all)
    return plays


def _audio(ctl: ControlServer, req: Request) -> tuple[str, AudioFunction]:
    busid, _, f = ctl.function(req, "audio")
    assert isinstance(f, AudioFunction)
    return busid, f


async def _audio_play(ctl: ControlServer, req: Request) -> dict[str, Any]:
    path = req.get("wav", str, required=True)
    wait = bool(req.get("wait", bool, False))
    busid, f = _audio(ctl, req)
    mic = f.microphone
    if mic is None:
        raise ControlError(f"the sound card {busid} has no microphone")
    data, fmt = read_wav(path)  # MediaError (a VusbError) names the file and what is wrong
    data = resample(data, fmt, mic.rate)
    play = mic.play(data, bits=fmt.bits, channels=fmt.channels, wait=True)
    frames = len(data) // fmt.frame_bytes
    if not wait:
        task = asyncio.ensure_future(play)
        plays = _playing(ctl)
        plays.add(task)
        task.add_done_callback(plays.discard)
        return {"busid": busid, "frames": frames, "rate": mic.rate, "queued": True}
    timeout = req.timeout()
    try:
        await asyncio.wait_for(play, timeout)
    except TimeoutError:
        raise ControlError(f"timed out after {timeout:g} s: the host of {busid} did not capture all "
                           f"{frames} frames (is something recording?)") from None
    return {"busid": busid, "frames": frames, "rate": mic.rate, "queued": False}


async def _audio_save(ctl: ControlServer, req: Request) -> dict[str, Any]:
    path = req.get("wav", str, required=True)
    clear = bool(req.get("clear", bool, False))
    busid, f = _audio(ctl, req)
    speaker = f.speaker
    if speaker is None:
        raise ControlError(f"the sound card {busid} has no speaker")
    data, fmt = speaker.recorded(), speaker.recorded_format
    if fmt is None:
        fmt = PcmFormat(2, 16, speaker.rate)
    try:
        with open(path, "wb") as raw, wave.open(raw, "wb") as w:
            w.setnchannels(fmt.channels)
            w.setsampwidth(fmt.subslot)
            w.setframerate(fmt.rate)
            w.writeframes(data)
    except OSError as exc:
        raise ControlError(f"cannot write {path}: {exc.strerror or exc}") from None
    if clear:
        speaker.clear()
    return {"busid": busid, "frames": len(data) // fmt.frame_bytes, "rate": fmt.rate, "channels": fmt.channels,
            "bits": fmt.bits, "truncated": speaker.recorded_truncated}


def _play_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("wav")
    p.add_argument("--wait", action="store_true", help="return once the host has captured it all")


def _play_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    body["wav"] = os.path.abspath(args.wav)
    if args.wait:
        body["wait"] = True


def _save_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("wav")
    p.add_argument("--clear", action="store_true", help="forget the saved samples afterwards")


def _save_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    body["wav"] = os.path.abspath(args.wav)
    if args.clear:
        body["clear"] = True


def register(registry: Registry) -> None:
    registry.add_kind("audio", FIELDS, build, DESCRIPTION, docs="devices/audio.md")
    registry.name_function(AudioFunction, "audio")
    registry.add_command(Command("audio-play", "play a WAV file into a sound card's microphone", _audio_play,
                                 _play_arguments, _play_request))
    registry.add_command(Command("audio-save", "save what the host played on a sound card's speaker as a WAV file",
                                 _audio_save, _save_arguments, _save_request, timeout=False))
