"""The ``ncm``, ``ecm`` and ``rndis`` function kinds of YAML profiles.

::

    functions:
      - kind: ncm
        mac: "02:76:75:73:62:01"     # the host interface's address (default: from the serial number)
        backend: endpoint            # endpoint (default), callback, pair or tap
        address: 169.254.77.1/16     # endpoint: the IP host's address
      - kind: ecm
        backend: pair
        pair: lab                    # the other adapter with pair: lab gets this one's frames
      - kind: rndis
        backend: tap
        tap_name: vusb0
"""

from __future__ import annotations

from vusb.devices.net.backends import (
    CallbackBackend,
    EndpointBackend,
    NetBackend,
    PairBackend,
    TapBackend,
    tap_permission_problem,
)
from vusb.devices.net.function import DEFAULT_SPEED, FUNCTIONS
from vusb.devices.net.spec import DEFAULT_MTU, NetFormatError, parse_mac

from vusb.device import Function
from vusb.profile_fields import Field, Located, ProfileContext
from vusb.registry import FunctionBuilder

BACKENDS = ("endpoint", "callback", "pair", "tap")

FIELDS: dict[str, Field] = {
    "backend": Field("choice", False, "endpoint", choices=BACKENDS,
                     help="endpoint: a small IP host inside vusb; callback: Python code; pair: another adapter; "
                          "tap: a TAP interface on the server"),
    "mac": Field("str", False, None, help="MAC address of the host's interface (default: derived from serial_number)"),
    "mtu": Field("int", False, DEFAULT_MTU, 576, 9000, help="largest IP packet, bytes"),
    "speed": Field("int", False, DEFAULT_SPEED, 0, 0xFFFF_FFFF, help="link speed reported to the host, bits/s"),
    "link": Field("choice", False, "up", choices=("up", "down"), help="cable connected at start"),
    "pcap": Field("str", False, None, help="write every frame to and from the host to this pcap file"),
    "interface_name": Field("str", False, None, help="iInterface string of the communications interface"),
    "address": Field("str", False, None, help="endpoint: IPv4 address/prefix of the IP host (169.254.77.1/16)"),
    "ipv6": Field("str", False, None, help="endpoint: an extra IPv6 address/prefix (it always has fe80:: from its MAC)"),
    "endpoint_mac": Field("str", False, None, help="endpoint: the IP host's own MAC (default: derived)"),
    "pair": Field("str", False, None, help="pair: the name both adapters of the pair give"),
    "tap_name": Field("str", False, None, help="tap: interface name (default vusb%d: the next free number)"),
}
OWNERS = {"address": "endpoint", "ipv6": "endpoint", "endpoint_mac": "endpoint", "pair": "pair", "tap_name": "tap"}


def build_for(kind: str) -> FunctionBuilder:
    """The profile builder of ``kind: ncm``, ``ecm`` or ``rndis``."""
    def build(ctx: ProfileContext, o: dict[str, Located]) -> Function:
        backend_kind = o["backend"].value
        for name, owner in OWNERS.items():
            loc = o[name]
            if loc.value is not None and owner != backend_kind:
                raise ctx.error(loc.node, loc.path, f"{name} only applies to backend: {owner} (this adapter uses "
                                                    f"{backend_kind})")
        for name in ("mac", "endpoint_mac"):
            loc = o[name]
            if loc.value is not None:
                try:
                    parse_mac(str(loc.value))
                except NetFormatError as exc:
                    raise ctx.error(loc.node, loc.path, str(exc)) from None
        backend: NetBackend
        if backend_kind == "endpoint":
            address = o["address"].value or "169.254.77.1/16"
            try:
                backend = EndpointBackend(address, mac=o["endpoint_mac"].value, ipv6=o["ipv6"].value)
            except Exception as exc:  # noqa: BLE001
                raise ctx.error(o["address"].node, o["address"].path, str(exc)) from None
        elif backend_kind == "callback":
            backend = CallbackBackend()
        elif backend_kind == "pair":
            if not o["pair"].value:
                raise ctx.error(o["backend"].node, o["backend"].path, "backend: pair needs pair: NAME (the same "
                                "name on both adapters)")
            backend = PairBackend(o["pair"].value)
        else:
            problem = tap_permission_problem()
            if problem is not None and o["tap_name"].value is None:
                raise ctx.error(o["backend"].node, o["backend"].path, f"backend: tap is not possible here: {problem}")
            backend = TapBackend(o["tap_name"].value or "vusb%d")
        pcap = ctx.resolve(o["pcap"].value, o["pcap"], follow_final=False) if o["pcap"].value else None
        if ctx.dry_run:
            pcap = None  # a check creates no file: the capture is opened only when serving
        cls = FUNCTIONS[kind]
        return cls(backend, mac=o["mac"].value, mtu=o["mtu"].value, speed_bps=o["speed"].value,
                   link_up=o["link"].value == "up", pcap=pcap, interface_name=o["interface_name"].value)
    return build
