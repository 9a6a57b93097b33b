"""The fast struct codecs are derived from the construct declarations and must read the same."""

from __future__ import annotations

import random

import pytest

from vusb import layouts

CASES = [
    ("CMD_SUBMIT", layouts.CMD_SUBMIT, layouts.CMD_SUBMIT_FAST),
    ("RET_SUBMIT", layouts.RET_SUBMIT, layouts.RET_SUBMIT_FAST),
    ("CMD_UNLINK", layouts.CMD_UNLINK, layouts.CMD_UNLINK_FAST),
    ("RET_UNLINK", layouts.RET_UNLINK, layouts.RET_UNLINK_FAST),
    ("SETUP", layouts.SETUP, layouts.SETUP_FAST),
    ("OP_HEADER", layouts.OP_HEADER, layouts.OP_HEADER_FAST),
    ("ISO_PACKET", layouts.ISO_PACKET, layouts.ISO_PACKET_FAST),
]


@pytest.mark.parametrize(("name", "declared", "fast"), CASES, ids=[c[0] for c in CASES])
def test_fast_codec_matches_declaration(name: str, declared: object, fast: object) -> None:
    rng = random.Random(name)
    assert declared.sizeof() == fast.size  # type: ignore[attr-defined]
    names = layouts.field_names(declared)
    for _ in range(200):
        raw = bytes(rng.randrange(256) for _ in range(fast.size))  # type: ignore[attr-defined]
        parsed = declared.parse(raw)  # type: ignore[attr-defined]
        values = fast.unpack(raw)  # type: ignore[attr-defined]
        assert tuple(parsed[n] for n in names) == values
        assert fast.pack(*values) == declared.build(parsed)  # type: ignore[attr-defined]
