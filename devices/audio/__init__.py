"""USB Audio Class sound card: speaker and microphone over isochronous endpoints (UAC 2.0 and 1.0)."""

from vusb.devices.audio.function import (
    AudioFunction,
    Format,
    LoopbackSource,
    Microphone,
    SoundCard,
    Speaker,
)
from vusb.devices.audio.pcm import (
    CallbackSink,
    CallbackSource,
    Counting,
    Discard,
    IteratorSource,
    MediaError,
    PcmFormat,
    Silence,
    Tone,
    WavSink,
    WavSource,
)


def register_profile_kinds() -> None:
    """Make ``kind: audio`` available to profiles."""
    from vusb.devices.audio.profile import register_profile_kinds as register

    register()


__all__ = [
    "AudioFunction", "CallbackSink", "CallbackSource", "Counting", "Discard", "Format", "IteratorSource",
    "LoopbackSource", "MediaError", "Microphone", "PcmFormat", "Silence", "SoundCard", "Speaker", "Tone", "WavSink",
    "WavSource", "register_profile_kinds",
]
