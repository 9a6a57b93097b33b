"""The ``midi`` function kind of YAML profiles.

::

    functions:
      - kind: midi
        cables: 2                       # MIDI ports each way (1..16)
        port_names: [Synth, Drums]      # optional, one per cable
"""

from __future__ import annotations

import yaml
from vusb.devices.midi.function import MidiFunction

from vusb.device import Function
from vusb.profile_fields import Field, Located, ProfileContext
from vusb.registry import register_kind

DESCRIPTION = "USB MIDI 1.0 interface (bulk), one port per cable each way"

FIELDS: dict[str, Field] = {
    "cables": Field("int", False, 1, 1, 16, help="MIDI ports in each direction"),
    "name": Field("str", False, "vusb MIDI", help="iInterface string"),
    "port_names": Field("list", False, None, help="a name per cable (iJack strings)"),
}


def build(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    names: list[str] | None = None
    loc = o["port_names"]
    if loc.value is not None:
        names = []
        for i, item in enumerate(loc.value.value):
            if not isinstance(item, yaml.ScalarNode) or not str(item.value):
                raise ctx.error(item, f"{loc.path}[{i}]", "a port name is a non-empty string")
            names.append(str(item.value))
        if len(names) != o["cables"].value:
            raise ctx.error(loc.value, loc.path, f"{len(names)} port names for {o['cables'].value} cable(s); "
                                                 "give one per cable")
    return MidiFunction(cables=o["cables"].value, name=o["name"].value, port_names=names)


def register_profile_kinds() -> None:
    """Make ``kind: midi`` available to profiles (older API; the class registers through its plugin module)."""
    register_kind("midi", FIELDS, build, DESCRIPTION)
