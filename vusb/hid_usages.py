"""HID Usage Tables, the parts vusb needs on both sides of the cable: the Keyboard/Keypad page
(chapter 10 of the HID Usage Tables) and the characters a US layout types with each key.

The keyboard device class (:mod:`vusb.devices.keyboard`) types text with them; ``vusb host``
decodes what a keyboard sends with the same table.
"""

from __future__ import annotations

import enum


class Key(enum.IntEnum):
    """Keyboard/Keypad page usages (HID Usage Tables, chapter 10)."""

    A = 0x04
    B = 0x05
    C = 0x06
    D = 0x07
    E = 0x08
    F = 0x09
    G = 0x0A
    H = 0x0B
    I = 0x0C  # noqa: E741
    J = 0x0D
    K = 0x0E
    L = 0x0F
    M = 0x10
    N = 0x11
    O = 0x12  # noqa: E741
    P = 0x13
    Q = 0x14
    R = 0x15
    S = 0x16
    T = 0x17
    U = 0x18
    V = 0x19
    W = 0x1A
    X = 0x1B
    Y = 0x1C
    Z = 0x1D
    N1 = 0x1E
    N2 = 0x1F
    N3 = 0x20
    N4 = 0x21
    N5 = 0x22
    N6 = 0x23
    N7 = 0x24
    N8 = 0x25
    N9 = 0x26
    N0 = 0x27
    ENTER = 0x28
    ESCAPE = 0x29
    BACKSPACE = 0x2A
    TAB = 0x2B
    SPACE = 0x2C
    MINUS = 0x2D
    EQUAL = 0x2E
    LEFT_BRACKET = 0x2F
    RIGHT_BRACKET = 0x30
    BACKSLASH = 0x31
    SEMICOLON = 0x33
    APOSTROPHE = 0x34
    GRAVE = 0x35
    COMMA = 0x36
    PERIOD = 0x37
    SLASH = 0x38
    CAPS_LOCK = 0x39
    F1 = 0x3A
    F2 = 0x3B
    F3 = 0x3C
    F4 = 0x3D
    F5 = 0x3E
    F6 = 0x3F
    F7 = 0x40
    F8 = 0x41
    F9 = 0x42
    F10 = 0x43
    F11 = 0x44
    F12 = 0x45
    PRINT_SCREEN = 0x46
    SCROLL_LOCK = 0x47
    PAUSE = 0x48
    INSERT = 0x49
    HOME = 0x4A
    PAGE_UP = 0x4B
    DELETE = 0x4C
    END = 0x4D
    PAGE_DOWN = 0x4E
    RIGHT = 0x4F
    LEFT = 0x50
    DOWN = 0x51
    UP = 0x52
    NUM_LOCK = 0x53
    KP_SLASH = 0x54
    KP_ASTERISK = 0x55
    KP_MINUS = 0x56
    KP_PLUS = 0x57
    KP_ENTER = 0x58
    KP_1 = 0x59
    KP_2 = 0x5A
    KP_3 = 0x5B
    KP_4 = 0x5C
    KP_5 = 0x5D
    KP_6 = 0x5E
    KP_7 = 0x5F
    KP_8 = 0x60
    KP_9 = 0x61
    KP_0 = 0x62
    KP_PERIOD = 0x63
    NON_US_BACKSLASH = 0x64
    APPLICATION = 0x65


def _us_layout() -> dict[str, tuple[Key, bool]]:
    table: dict[str, tuple[Key, bool]] = {}
    for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz"):
        table[ch] = (Key(Key.A + i), False)
        table[ch.upper()] = (Key(Key.A + i), True)
    for ch, shifted, key in zip("1234567890", "!@#$%^&*()", [Key.N1, Key.N2, Key.N3, Key.N4, Key.N5, Key.N6,
                                                               Key.N7, Key.N8, Key.N9, Key.N0], strict=False):
        table[ch] = (key, False)
        table[shifted] = (key, True)
    pairs = [("-", "_", Key.MINUS), ("=", "+", Key.EQUAL), ("[", "{", Key.LEFT_BRACKET),
             ("]", "}", Key.RIGHT_BRACKET), ("\\", "|", Key.BACKSLASH), (";", ":", Key.SEMICOLON),
             ("'", '"', Key.APOSTROPHE), ("`", "~", Key.GRAVE), (",", "<", Key.COMMA), (".", ">", Key.PERIOD),
             ("/", "?", Key.SLASH)]
    for plain, shifted, key in pairs:
        table[plain] = (key, False)
        table[shifted] = (key, True)
    table[" "] = (Key.SPACE, False)
    table["\n"] = (Key.ENTER, False)
    table["\t"] = (Key.TAB, False)
    table["\b"] = (Key.BACKSPACE, False)
    table["\x1b"] = (Key.ESCAPE, False)
    return table


US_LAYOUT = _us_layout()
