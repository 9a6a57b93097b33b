"""USB MIDI 1.0 interface: MIDI messages over bulk endpoints as 4-byte USB-MIDI event packets."""

from vusb.devices.midi.function import MidiDevice, MidiFunction
from vusb.devices.midi.messages import (
    Decoder,
    Message,
    control_change,
    encode,
    note_off,
    note_on,
    pitch_bend,
    program_change,
    split_messages,
    sysex,
)


def register_profile_kinds() -> None:
    """Make ``kind: midi`` available to profiles."""
    from vusb.devices.midi.profile import register_profile_kinds as register

    register()


__all__ = [
    "Decoder", "Message", "MidiDevice", "MidiFunction", "control_change", "encode", "note_off", "note_on",
    "pitch_bend", "program_change", "register_profile_kinds", "split_messages", "sysex",
]
