"""USB network adapters: CDC NCM, CDC ECM and RNDIS, and what they are plugged into.

Linux binds ``cdc_ncm``, ``cdc_ether`` or ``rndis_host`` and makes a network interface whose
MAC address is the adapter's.  The frames go to a backend:

* ``endpoint`` (default): a small IP host inside vusb at 169.254.77.1/16 that answers
  ARP/NDP, ping (v4 and v6), TCP and UDP echo on port 7 and discard on port 9;
* ``callback``: Python sends and receives frames (``await nic.send(frame)``, ``async for frame in nic``);
* ``pair``: two adapters wired back to back;
* ``tap``: a TAP interface on the serving machine.

::

    nic = NetworkAdapter("ncm")                      # ping 169.254.77.1 from the host
    nic = NetworkAdapter("ecm", backend="callback", pcap="frames.pcap")
    nic.set_link(False)                              # NETWORK_CONNECTION: disconnected
"""

from vusb.devices.net.backends import (
    BackendSpec,
    CallbackBackend,
    EndpointBackend,
    NetBackend,
    NetBackendError,
    PairBackend,
    PcapWriter,
    TapBackend,
    make_backend,
    read_pcap,
    tap_permission_problem,
)
from vusb.devices.net.function import (
    EcmFunction,
    NcmFunction,
    NetFunction,
    NetworkAdapter,
    RndisFunction,
)
from vusb.devices.net.spec import NetFormatError, mac_from_serial, mac_text, parse_mac
from vusb.devices.net.stack import IpHost

__all__ = [
    "BackendSpec",
    "CallbackBackend",
    "EcmFunction",
    "EndpointBackend",
    "IpHost",
    "NcmFunction",
    "NetBackend",
    "NetBackendError",
    "NetFormatError",
    "NetFunction",
    "NetworkAdapter",
    "PairBackend",
    "PcapWriter",
    "RndisFunction",
    "TapBackend",
    "mac_from_serial",
    "mac_text",
    "make_backend",
    "parse_mac",
    "read_pcap",
    "tap_permission_problem",
]
