"""MIDI 1.0 messages and the 4-byte USB-MIDI event packets that carry them (USB MIDI 1.0, chapter 4).

A packet is ``cable << 4 | CIN`` followed by three MIDI bytes (unused ones zero);
the Code Index Number says how many of them count.  System exclusive messages
travel three bytes at a time (CIN 4) and end with CIN 5, 6 or 7.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from vusb.errors import UsageError

# Code Index Numbers
CIN_SYSCOMMON_2 = 0x2
CIN_SYSCOMMON_3 = 0x3
CIN_SYSEX = 0x4
CIN_SYSEX_END_1 = 0x5  # also a one-byte system common message
CIN_SYSEX_END_2 = 0x6
CIN_SYSEX_END_3 = 0x7
CIN_SINGLE_BYTE = 0xF

_STATUS_LENGTH = {0x8: 3, 0x9: 3, 0xA: 3, 0xB: 3, 0xC: 2, 0xD: 2, 0xE: 3}
_SYSTEM_LENGTH = {0xF1: 2, 0xF2: 3, 0xF3: 2, 0xF6: 1}
_NAMES = {0x8: "note-off", 0x9: "note-on", 0xA: "poly-pressure", 0xB: "control-change", 0xC: "program-change",
          0xD: "channel-pressure", 0xE: "pitch-bend"}


@dataclass(frozen=True)
class Message:
    """One complete MIDI message on a cable (0..15) of the interface."""

    data: bytes
    cable: int = 0

    @property
    def type(self) -> str:
        status = self.data[0] if self.data else 0
        if status == 0xF0:
            return "sysex"
        if status >= 0xF0:
            return f"system 0x{status:02x}"
        return _NAMES.get(status >> 4, "data")

    @property
    def channel(self) -> int | None:
        return self.data[0] & 0x0F if self.data and 0x80 <= self.data[0] < 0xF0 else None

    def hex(self) -> str:
        return self.data.hex(" ").upper()

    def __str__(self) -> str:
        return f"cable {self.cable} {self.type}: {self.hex()}"


def _check(name: str, value: int, high: int) -> int:
    if not 0 <= value <= high:
        raise UsageError(f"{name} {value} is outside 0..{high}")
    return value


def note_on(note: int, velocity: int = 100, channel: int = 0) -> bytes:
    return bytes((0x90 | _check("channel", channel, 15), _check("note", note, 127), _check("velocity", velocity, 127)))


def note_off(note: int, velocity: int = 0, channel: int = 0) -> bytes:
    return bytes((0x80 | _check("channel", channel, 15), _check("note", note, 127), _check("velocity", velocity, 127)))


def control_change(controller: int, value: int, channel: int = 0) -> bytes:
    return bytes((0xB0 | _check("channel", channel, 15), _check("controller", controller, 127),
                  _check("value", value, 127)))


def program_change(program: int, channel: int = 0) -> bytes:
    return bytes((0xC0 | _check("channel", channel, 15), _check("program", program, 127)))


def pitch_bend(value: int, channel: int = 0) -> bytes:
    """``value`` -8192..8191 (0 is centre)."""
    if not -8192 <= value <= 8191:
        raise UsageError(f"pitch bend {value} is outside -8192..8191")
    raw = value + 8192
    return bytes((0xE0 | _check("channel", channel, 15), raw & 0x7F, raw >> 7))


def sysex(payload: bytes) -> bytes:
    """A system exclusive message: F0, ``payload`` (7-bit bytes), F7."""
    if any(b > 0x7F for b in payload):
        raise UsageError("system exclusive data bytes must be 0..0x7F")
    return b"\xF0" + bytes(payload) + b"\xF7"


def split_messages(data: bytes) -> list[bytes]:
    """Raw MIDI bytes (as ``amidi -S`` takes them) to whole messages; raises on bytes that make none."""
    out: list[bytes] = []
    i = 0
    while i < len(data):
        status = data[i]
        if status < 0x80:
            raise UsageError(f"byte {i} (0x{status:02x}) is a data byte where a status byte was due "
                             "(running status is not accepted)")
        if status == 0xF0:
            end = data.find(b"\xF7", i)
            if end < 0:
                raise UsageError(f"the system exclusive message at byte {i} has no F7 end")
            out.append(data[i:end + 1])
            i = end + 1
            continue
        length = _STATUS_LENGTH.get(status >> 4) if status < 0xF0 else _SYSTEM_LENGTH.get(status, 1)
        if length is None or status == 0xF7:
            raise UsageError(f"byte {i} (0x{status:02x}) starts no message")
        msg = data[i:i + length]
        if len(msg) < length or any(b >= 0x80 for b in msg[1:]):
            raise UsageError(f"the message at byte {i} (status 0x{status:02x}) needs {length - 1} data byte(s)")
        out.append(msg)
        i += length
    return out


def encode(message: bytes, cable: int = 0) -> bytes:
    """One MIDI message to its USB-MIDI event packets."""
    _check("cable", cable, 15)
    if not message:
        raise UsageError("an empty MIDI message")
    status = message[0]
    head = cable << 4
    if status == 0xF0:
        if message[-1] != 0xF7 or len(message) < 2:
            raise UsageError("a system exclusive message starts with F0 and ends with F7")
        out = bytearray()
        rest = message
        while len(rest) > 3:
            out += bytes((head | CIN_SYSEX,)) + rest[:3]
            rest = rest[3:]
        cin = {1: CIN_SYSEX_END_1, 2: CIN_SYSEX_END_2, 3: CIN_SYSEX_END_3}[len(rest)]
        return bytes(out + bytes((head | cin,)) + rest.ljust(3, b"\0"))
    if status < 0x80:
        raise UsageError(f"0x{status:02x} is not a status byte")
    if status < 0xF0:
        length = _STATUS_LENGTH[status >> 4]
        cin = status >> 4
    elif status >= 0xF8:
        length, cin = 1, CIN_SINGLE_BYTE
    else:
        length = _SYSTEM_LENGTH.get(status, 0)
        if length == 0:
            raise UsageError(f"0x{status:02x} is not a message a device sends")
        cin = {1: CIN_SYSEX_END_1, 2: CIN_SYSCOMMON_2, 3: CIN_SYSCOMMON_3}[length]
    if len(message) != length:
        raise UsageError(f"a 0x{status:02x} message has {length} byte(s), not {len(message)}")
    return bytes((head | cin,)) + message.ljust(3, b"\0")


_CIN_LENGTH = {0x2: 2, 0x3: 3, 0x4: 3, 0x5: 1, 0x6: 2, 0x7: 3, 0x8: 3, 0x9: 3, 0xA: 3, 0xB: 3, 0xC: 2, 0xD: 2,
               0xE: 3, 0xF: 1}


class Decoder:
    """USB-MIDI event packets to whole messages, one system exclusive assembly per cable."""

    def __init__(self) -> None:
        self._sysex: dict[int, bytearray] = {}
        self.ignored = 0

    def feed(self, data: bytes) -> Iterator[Message]:
        for i in range(0, len(data) - 3, 4):
            head = data[i]
            cable, cin = head >> 4, head & 0x0F
            length = _CIN_LENGTH.get(cin)
            if length is None:  # 0 and 1 are reserved; hosts pad with all-zero packets
                self.ignored += 1 if head else 0
                continue
            body = data[i + 1:i + 1 + length]
            if cin == CIN_SYSEX or (cin in (CIN_SYSEX_END_1, CIN_SYSEX_END_2, CIN_SYSEX_END_3)
                                    and (cable in self._sysex or body[:1] == b"\xF0")):
                buf = self._sysex.setdefault(cable, bytearray())
                buf += body
                if cin != CIN_SYSEX:
                    del self._sysex[cable]
                    yield Message(bytes(buf), cable)
                continue
            yield Message(bytes(body), cable)
