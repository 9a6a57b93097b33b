"""The ``audio`` function kind of YAML profiles.

::

    functions:
      - kind: audio
        uac: 2                      # 2 (default) or 1 (full speed)
        speaker:
          formats: [{channels: 2, bits: 16}, {channels: 2, bits: 24}]
          rates: [44100, 48000, 96000]
          sink: wav                 # discard (default) or wav
          wav: played.wav           # beside the profile
        microphone:
          formats: [{channels: 2, bits: 16}]
          rates: [48000]
          source: tone              # silence, tone (default), wav, counting or loopback
          tone_hz: 440
          wav: voice.wav
          loop: true

A format or rate the card cannot carry is refused at its field with file:line.
"""

from __future__ import annotations

from typing import Any

import yaml
from vusb.devices.audio.function import (
    SUPPORTED_BITS,
    SUPPORTED_RATES,
    AudioFunction,
    Format,
    LoopbackSource,
    Microphone,
    Speaker,
    check_formats,
    max_packet_size,
)
from vusb.devices.audio.pcm import Counting, Discard, MediaError, Silence, Sink, Source, Tone, WavSink, WavSource

from vusb.constants import Speed
from vusb.device import Function
from vusb.errors import DeviceDefinitionError
from vusb.profile_fields import Field, Located, ProfileContext, read_mapping
from vusb.registry import register_kind

DESCRIPTION = "USB sound card (UAC 2.0 or 1.0): speaker and/or microphone"

SOURCES = ("silence", "tone", "wav", "counting", "loopback")
SINKS = ("discard", "wav")

FORMAT_FIELDS: dict[str, Field] = {
    "channels": Field("int", False, 2, 1, 8, help="samples per frame (1 mono, 2 stereo)"),
    "bits": Field("int", False, 16, 16, 32, help="bits per sample: 16, 24 (in 3 bytes) or 32"),
}

COMMON: dict[str, Field] = {
    "formats": Field("list", False, None, help="streaming formats, one alternate setting each: {channels, bits}"),
    "rates": Field("list", False, None, help="sample rates in Hz (default 44100 and 48000)"),
    "name": Field("str", False, None, help="iInterface string of the streaming interface"),
}

SPEAKER_FIELDS: dict[str, Field] = {
    **COMMON,
    "sink": Field("choice", False, "discard", choices=SINKS, help="where played samples go (all are also kept "
                                                                  "for `vusb ctl audio-save`)"),
    "wav": Field("str", False, None, help="sink wav: the file written, relative to the profile"),
}

MICROPHONE_FIELDS: dict[str, Field] = {
    **COMMON,
    "source": Field("choice", False, "tone", choices=SOURCES, help="what the microphone captures"),
    "tone_hz": Field("float", False, 440.0, 0, 48000, low_open=True, help="source tone: frequency in Hz"),
    "amplitude": Field("float", False, 0.5, 0, 1, help="source tone: fraction of full scale"),
    "wav": Field("str", False, None, help="source wav: the file played, relative to the profile"),
    "loop": Field("bool", False, False, help="source wav: start again at the end (else silence)"),
}

FIELDS: dict[str, Field] = {
    "uac": Field("int", False, 2, 1, 2, help="USB Audio Class version: 2 (default) or 1 (full speed only)"),
    "speaker": Field("map", False, None, help="the playback side (isochronous OUT, asynchronous with feedback)"),
    "microphone": Field("map", False, None, help="the capture side (isochronous IN)"),
    "name": Field("str", False, "vusb Sound Card", help="iInterface string of the audio control interface"),
    "data_interval": Field("int", False, 1, 1, 4, help="high speed: bInterval of the data endpoints "
                                                       "(1: every microframe .. 4: every millisecond)"),
}


def _formats(ctx: ProfileContext, loc: Located, speed: Speed, interval: int, rates: list[int]) -> list[Format]:
    if loc.value is None:
        return [Format(2, 16), Format(1, 16)]
    out: list[Format] = []
    for i, item in enumerate(loc.value.value):
        path = f"{loc.path}[{i}]"
        o = read_mapping(ctx, item, path, FORMAT_FIELDS)
        bits = o["bits"].value
        if bits not in SUPPORTED_BITS:
            raise ctx.error(o["bits"].node, o["bits"].path, f"{bits}-bit samples are not supported (16, 24 or 32)")
        fmt = Format(o["channels"].value, bits)
        if fmt in out:
            raise ctx.error(item, path, f"format {fmt.describe()} is listed twice")
        for s in {speed, Speed.FULL}:
            size = max_packet_size(fmt, max(rates), s, interval if s == Speed.HIGH else 1)
            limit = 1023 if s == Speed.FULL else 1024
            if size > limit:
                raise ctx.error(item, path, f"{fmt.describe()} at {max(rates)} Hz needs {size}-byte isochronous "
                                            f"packets; {s.name.lower()} speed carries at most {limit}")
        out.append(fmt)
    if not out:
        raise ctx.error(loc.value, loc.path, "give at least one format")
    return out


def _rates(ctx: ProfileContext, loc: Located) -> list[int]:
    if loc.value is None:
        return [44100, 48000]
    out: list[int] = []
    for i, item in enumerate(loc.value.value):
        path = f"{loc.path}[{i}]"
        value: Any = yaml.safe_load(yaml.serialize(item)) if isinstance(item, yaml.ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(item, path, "a sample rate is an integer number of Hz")
        if value not in SUPPORTED_RATES:
            raise ctx.error(item, path, f"sample rate {value} Hz is not supported "
                                        f"(supported: {', '.join(str(r) for r in SUPPORTED_RATES)})")
        if value in out:
            raise ctx.error(item, path, f"sample rate {value} Hz is listed twice")
        out.append(value)
    if not out:
        raise ctx.error(loc.value, loc.path, "give at least one sample rate")
    return out


def _only(ctx: ProfileContext, o: dict[str, Located], field: str, owner: str, chosen: str, what: str) -> None:
    loc = o[field]
    if loc.value is not None and chosen != owner:
        raise ctx.error(loc.node, loc.path, f"{field} only applies to {what}: {owner} (this one is {chosen})")


def build(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    version = o["uac"].value
    speed = Speed.HIGH if version == 2 else Speed.FULL
    interval = o["data_interval"].value
    if version == 1 and interval != 1:
        raise ctx.error(o["data_interval"].node, o["data_interval"].path, "uac 1 runs at full speed: data_interval 1")
    speaker: Speaker | None = None
    microphone: Microphone | None = None
    if o["speaker"].value is None and o["microphone"].value is None:
        raise ctx.error(o["uac"].node, o["speaker"].path, "a sound card needs a speaker, a microphone or both")
    if o["speaker"].value is not None:
        s = read_mapping(ctx, o["speaker"].value, o["speaker"].path, SPEAKER_FIELDS)
        rates = _rates(ctx, s["rates"])
        formats = _formats(ctx, s["formats"], speed, interval, rates)
        sink_kind = s["sink"].value
        _only(ctx, s, "wav", "wav", sink_kind, "sink")
        sink: Sink = Discard()
        if sink_kind == "wav":
            if s["wav"].value is None:
                raise ctx.error(s["sink"].node, s["wav"].path, "sink: wav needs wav: FILE")
            try:
                sink = WavSink(ctx.resolve(s["wav"].value, s["wav"]))
            except MediaError as exc:
                raise ctx.error(s["wav"].node, s["wav"].path, str(exc)) from None
        speaker = Speaker(formats, rates, sink=sink, name=s["name"].value)
    if o["microphone"].value is not None:
        m = read_mapping(ctx, o["microphone"].value, o["microphone"].path, MICROPHONE_FIELDS)
        rates = _rates(ctx, m["rates"])
        formats = _formats(ctx, m["formats"], speed, interval, rates)
        kind = m["source"].value
        _only(ctx, m, "wav", "wav", kind, "source")
        if m["loop"].value:
            _only(ctx, m, "loop", "wav", kind, "source")
        source: Source
        if kind == "silence":
            source = Silence()
        elif kind == "tone":
            source = Tone(m["tone_hz"].value, m["amplitude"].value)
        elif kind == "counting":
            source = Counting()
        elif kind == "loopback":
            if speaker is None:
                raise ctx.error(m["source"].node, m["source"].path, "source: loopback needs a speaker on this card")
            source = LoopbackSource(speaker)
        else:
            if m["wav"].value is None:
                raise ctx.error(m["source"].node, m["wav"].path, "source: wav needs wav: FILE")
            try:
                source = WavSource(ctx.resolve(m["wav"].value, m["wav"]), loop=bool(m["loop"].value))
            except MediaError as exc:
                raise ctx.error(m["wav"].node, m["wav"].path, str(exc)) from None
        microphone = Microphone(formats, rates, source=source, name=m["name"].value)
    try:
        for stream in (speaker, microphone):
            if stream is not None:
                check_formats(stream.formats, stream.rates, speed, interval, stream.direction)
        return AudioFunction(speaker=speaker, microphone=microphone, version=version, name=o["name"].value,
                             data_interval=interval)
    except DeviceDefinitionError as exc:
        raise ctx.error(o["uac"].node, o["uac"].path, str(exc)) from None


def register_profile_kinds() -> None:
    """Make ``kind: audio`` available to profiles (older API; the class registers through its plugin module)."""
    register_kind("audio", FIELDS, build, DESCRIPTION)
