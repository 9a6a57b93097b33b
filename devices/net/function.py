"""The network functions (CDC ECM, CDC NCM, RNDIS) and the ready-made adapter device.

All three share :class:`NetFunction`: a queue of Ethernet frames for the host, the
decoding of what the host sends, link state and speed, statistics, and a backend that
frames go to and come from (:mod:`vusb.devices.net.backends`).  The subclasses differ in
their descriptors, control requests and how frames are framed on the bulk endpoints:

* ECM: one frame per bulk transfer;
* NCM: network transfer blocks (NTB16 or NTB32) carrying several frames each, both ways;
* RNDIS: REMOTE_NDIS_PACKET_MSG around each frame, control messages encapsulated in
  SEND_ENCAPSULATED_COMMAND / GET_ENCAPSULATED_RESPONSE.
"""

from __future__ import annotations

import logging
import os
import struct
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from vusb.devices.cdc_acm.port import BackendLifecycle, WaitingIn
from vusb.devices.cdc_acm.spec import (
    CDC_CLASS,
    CDC_DATA_CLASS,
    AcmDescriptor,
    CallManagementDescriptor,
    HeaderDescriptor,
    UnionDescriptor,
)
from vusb.devices.net.spec import (
    DEFAULT_MTU,
    ECM_SUBCLASS,
    ETH_HEADER,
    NCM_DATA_PROTOCOL,
    NCM_SUBCLASS,
    NTB16,
    NTB32,
    NTB_FORMAT_NAMES,
    PACKET_HEADER,
    RESPONSE_AVAILABLE,
    RNDIS_CLASS,
    EthernetDescriptor,
    NcmCapability,
    NcmDescriptor,
    NetFormatError,
    NetRequest,
    NtbParameters,
    Oid,
    PacketFilter,
    RndisControl,
    RndisMessage,
    RndisStatus,
    Statistic,
    build_ntb,
    build_packet,
    mac_from_serial,
    mac_text,
    network_connection,
    ntb_overhead,
    parse_mac,
    parse_ntb,
    parse_packets,
    rndis_indicate,
    rndis_query_reply,
    rndis_reply,
    speed_change,
)

from vusb.constants import Direction, Recipient, RequestType, Speed, TransferType
from vusb.descriptors import InterfaceDescriptor
from vusb.device import NOT_HANDLED, BuildContext, ControlResult, Device, Function
from vusb.errors import DeviceDefinitionError, Stall, UsageError
from vusb.function import RequestMethod, request
from vusb.single import Forwarded, SingleFunctionDevice, forward, forward_property
from vusb.urb import Completion, SetupPacket, Urb

if TYPE_CHECKING:
    from vusb.devices.net.backends import BackendSpec, NetBackend

log = logging.getLogger("vusb.devices.net")

DEFAULT_SPEED = 480_000_000
"""Link speed reported to the host (bits per second) unless the profile or Python says otherwise."""
QUEUE_FRAMES = 1024
"""Frames waiting for the host before more are dropped (a full NIC queue drops, it does not block)."""
LOG_FIRST = 5
"""Each drop reason is logged as a warning this many times, then only counted (and logged at debug)."""


class NetFunction(BackendLifecycle, Function):
    """What ECM, NCM and RNDIS share: frames, link, statistics, the backend.

    ``mac`` is the address the host's interface takes (``/sys/class/net/X/address``); by
    default it is derived from the device's serial number (locally administered, stable).
    ``backend``: ``"endpoint"`` (default: a small IP host inside vusb), ``"callback"``
    (Python code sends and receives frames), or a :class:`~vusb.devices.net.backends.NetBackend`.
    """

    kind = "net"
    subclass = 0
    data_protocol = 0

    def __init__(
        self,
        backend: BackendSpec = "endpoint",
        *,
        mac: str | bytes | None = None,
        mtu: int = DEFAULT_MTU,
        link_up: bool = True,
        speed_bps: int = DEFAULT_SPEED,
        queue_frames: int = QUEUE_FRAMES,
        interface_name: str | None = None,
        name: str | None = None,
        pcap: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        from vusb.devices.net.backends import PcapWriter, make_backend

        if not 576 <= mtu <= 9000:
            raise DeviceDefinitionError(f"mtu {mtu}: an Ethernet adapter's MTU is 576..9000 bytes")
        if speed_bps < 0 or speed_bps > 0xFFFF_FFFF * 100:
            raise DeviceDefinitionError(f"speed_bps {speed_bps} is out of range")
        self._mac = (parse_mac(mac) if isinstance(mac, str) else bytes(mac)) if mac is not None else None
        if self._mac is not None and len(self._mac) != 6:
            raise DeviceDefinitionError("mac must be 6 bytes")
        self.mtu = mtu
        self.link_up = link_up
        self.speed_bps = speed_bps
        self.queue_frames = queue_frames
        self.interface_name = interface_name
        if name is not None:
            self.name = name
        self.comm_interface = self.data_interface = 0
        self.notify_address = self.in_address = self.out_address = 0
        self._mac_index = 0
        self.packet_filter = self.default_filter()
        self.stats: Counter[str] = Counter()
        """Counters: frames/bytes each way, and ``dropped:<reason>`` for everything dropped."""
        self._to_host: deque[bytes] = deque()
        # Frames made together (in one loop turn) share one bulk IN transfer (NCM, RNDIS).
        self._in = WaitingIn(lambda: bool(self._to_host), self._take, deferred=True)
        self._notes: deque[bytes] = deque(maxlen=32)
        self._interrupt = WaitingIn(lambda: bool(self._notes), lambda length: self._notes.popleft()[:length])
        self.capture = PcapWriter(pcap) if pcap is not None else None
        """Every frame to and from the host goes to this pcap file too (``pcap`` option)."""
        self.backend: NetBackend = make_backend(backend)
        self.backend.attach(self)

    # ------------------------------------------------------------ identity
    @property
    def mac(self) -> bytes:
        """The host interface's MAC address (6 bytes)."""
        if self._mac is None:
            raise UsageError("the MAC address is derived from the serial number once the function is in a device")
        return self._mac

    @property
    def max_frame(self) -> int:
        """Largest Ethernet frame (without FCS) either way: MTU plus the 14-byte header."""
        return self.mtu + ETH_HEADER

    def default_filter(self) -> PacketFilter:
        return PacketFilter.DIRECTED | PacketFilter.BROADCAST | PacketFilter.MULTICAST

    def where(self) -> str:
        dev = self.device
        return f"{dev.describe()} {self.kind}" if dev is not None else self.kind

    # ------------------------------------------------------------ declaration
    def _endpoints(self, ctx: BuildContext) -> tuple[Any, Any, Any]:
        if ctx.speed == Speed.LOW:
            raise DeviceDefinitionError(f"a {self.kind} function needs bulk endpoints, which low-speed devices cannot have")
        notify = ctx.endpoint(True, TransferType.INTERRUPT, max_packet_size=16,
                              interval=9 if ctx.speed != Speed.FULL else 32)
        bulk_in = ctx.endpoint(True, TransferType.BULK)
        try:
            bulk_out = ctx.endpoint(False, TransferType.BULK, preferred=bulk_in.address & 0x0F)
        except DeviceDefinitionError:
            bulk_out = ctx.endpoint(False, TransferType.BULK)
        self.notify_address, self.in_address, self.out_address = notify.address, bulk_in.address, bulk_out.address
        return notify, bulk_in, bulk_out

    def _mac_string(self, ctx: BuildContext) -> int:
        # A placeholder unique to this function until bind() knows the serial number.
        text = self._mac.hex().upper() if self._mac is not None else f"vusb-mac-pending-{id(self):x}"
        return ctx.string(text)

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        comm = ctx.interface_number()
        data = ctx.interface_number()
        self.comm_interface, self.data_interface = comm, data
        notify, bulk_in, bulk_out = self._endpoints(ctx)
        self._mac_index = self._mac_string(ctx)
        functional: list[Any] = [
            HeaderDescriptor(0x0110),
            UnionDescriptor(comm, (data,)),
            EthernetDescriptor(self._mac_index, max_segment_size=self.max_frame),
        ]
        functional += self.extra_functional()
        name = ctx.string(self.interface_name)
        return [
            InterfaceDescriptor(comm, 0, CDC_CLASS, self.subclass, 0, name, (notify,), tuple(functional)),
            InterfaceDescriptor(data, 0, CDC_DATA_CLASS, 0, self.data_protocol, 0, ()),
            InterfaceDescriptor(data, 1, CDC_DATA_CLASS, 0, self.data_protocol, 0, (bulk_out, bulk_in)),
        ]

    def extra_functional(self) -> list[Any]:
        return []

    def bind(self, device: Device) -> None:
        if self._mac is None:
            serial_index = device.descriptor.serial_number_index
            serial = device.strings.get(serial_index, device.strings.languages[0]) if serial_index else None
            seed = serial or f"{device.descriptor.vendor_id:04x}:{device.descriptor.product_id:04x}:{self.comm_interface}"
            self._mac = mac_from_serial(seed)
            if self._mac_index:
                for lang in device.strings.languages:
                    device.strings.set(lang, self._mac_index, self._mac.hex().upper())
        device.endpoint(self.notify_address).handler = self._interrupt.handler
        device.endpoint(self.in_address).handler = self._in.handler
        device.endpoint(self.out_address).handler = self._bulk_out
        device.add_attach_listener(self._attached)

    # ------------------------------------------------------------ lifecycle
    def _where(self) -> str:
        return self.where()

    def _noun(self) -> str:
        return f"the {self.kind} adapter"

    async def _release(self) -> None:
        await super()._release()
        if self.capture is not None:
            self.capture.close()

    def on_configured(self, configured: bool) -> None:
        self._drop_urb_state()
        self._to_host.clear()
        self.packet_filter = self.default_filter()
        if configured:
            self._attached(True)

    def on_reset(self) -> None:
        self._drop_urb_state()
        self._to_host.clear()

    def _drop_urb_state(self) -> None:
        self._in.drop()
        self._interrupt.drop()
        self._notes.clear()

    def on_alternate(self, interface: int, alternate: int) -> None:
        if interface != self.data_interface:
            return
        self._in.drop()
        self._to_host.clear()
        if alternate == 1:
            self.queue_link_notifications()

    @property
    def data_active(self) -> bool:
        """Frames can flow: configured, and the data interface at its alternate setting with endpoints."""
        dev = self.device
        return dev is not None and dev.configured and dev.alternates.get(self.data_interface, 0) == 1

    # ------------------------------------------------------------ link state
    def set_link(self, up: bool) -> None:
        """Connect or disconnect the cable: the host is notified; no frame flows while down."""
        if up == self.link_up:
            return
        self.link_up = up
        log.info("%s: link %s", self.where(), "up" if up else "down")
        if not up:
            self._to_host.clear()
        self.queue_link_notifications()
        self.backend.link_changed(up)

    def set_speed(self, bps: int) -> None:
        """Report a new link speed (bits per second) to the host."""
        if bps < 0:
            raise UsageError("a link speed is not negative")
        self.speed_bps = bps
        if self.link_up:
            self.queue_link_notifications()

    def queue_link_notifications(self) -> None:
        if not self.data_active:
            return
        if self.link_up:
            self._notify(speed_change(self.comm_interface, self.speed_bps, self.speed_bps))
        self._notify(network_connection(self.comm_interface, self.link_up))

    def _notify(self, packet: bytes) -> None:
        self._notes.append(packet)
        self._interrupt.feed()

    # ------------------------------------------------------------ drops
    def drop(self, reason: str, detail: str = "") -> None:
        """Count (and log, the first few times) a frame or block dropped for ``reason``."""
        key = f"dropped:{reason}"
        self.stats[key] += 1
        n = self.stats[key]
        text = f"{self.where()}: dropped ({reason}){': ' + detail if detail else ''}"
        if n <= LOG_FIRST:
            log.warning("%s%s", text, " (further drops for this reason are only counted)" if n == LOG_FIRST else "")
        else:
            log.debug("%s", text)

    @property
    def dropped(self) -> dict[str, int]:
        return {k.split(":", 1)[1]: v for k, v in self.stats.items() if k.startswith("dropped:")}

    # ------------------------------------------------------------ frames to the host
    def _passes_filter(self, frame: bytes) -> bool:
        f = self.packet_filter
        if f & PacketFilter.PROMISCUOUS:
            return True
        dst = frame[:6]
        if dst == b"\xff" * 6:
            return bool(f & PacketFilter.BROADCAST)
        if dst[0] & 1:
            return bool(f & (PacketFilter.MULTICAST | PacketFilter.ALL_MULTICAST))
        return bool(f & PacketFilter.DIRECTED) and dst == self._mac

    def send_frame(self, frame: bytes | bytearray | memoryview) -> bool:
        """Queue an Ethernet frame (no FCS) for the host; False (and counted) if it was dropped."""
        frame = bytes(frame)
        if len(frame) < ETH_HEADER:
            self.drop("runt to host", f"{len(frame)} bytes")
            return False
        if len(frame) > self.max_frame:
            self.drop("oversize to host", f"{len(frame)} bytes > {self.max_frame} (MTU {self.mtu})")
            return False
        if not self.link_up:
            self.drop("link down")
            return False
        if not self.data_active:
            self.drop("host not ready", "the data interface is not active")
            return False
        if not self._passes_filter(frame):
            self.stats["filtered"] += 1
            return False
        if len(self._to_host) >= self.queue_frames:
            self.drop("queue full", f"{self.queue_frames} frames wait for the host")
            return False
        self._to_host.append(frame)
        if self.capture is not None:
            self.capture.write(frame)
        self._in.feed()
        return True

    def _count_out(self, frames: int, nbytes: int) -> None:
        self.stats["frames to host"] += frames
        self.stats["bytes to host"] += nbytes

    def _take(self, limit: int) -> bytes:
        """One bulk IN transfer of at most ``limit`` bytes from the queued frames."""
        frame = self._to_host.popleft()
        self._count_out(1, len(frame))
        return frame

    # ------------------------------------------------------------ frames from the host
    def _bulk_out(self, urb: Urb) -> Completion:
        data = urb.data
        n = len(data)
        if n:
            try:
                frames = self.decode(data)
            except NetFormatError as exc:
                self.drop("malformed", str(exc))
                frames = []
            for frame in frames:
                self._from_host(frame)
        return Completion(0, b"", n)

    def decode(self, data: bytes | memoryview) -> list[memoryview]:
        """The Ethernet frames in one bulk OUT transfer (raises NetFormatError)."""
        return [memoryview(data)]

    def _from_host(self, frame: memoryview | bytes) -> None:
        n = len(frame)
        if n < ETH_HEADER:
            self.drop("runt from host", f"{n} bytes")
            return
        if n > self.max_frame:
            self.drop("oversize from host", f"{n} bytes > {self.max_frame} (MTU {self.mtu})")
            return
        if not self.link_up:
            self.drop("link down")
            return
        self.stats["frames from host"] += 1
        self.stats["bytes from host"] += n
        if self.capture is not None:
            self.capture.write(frame)
        try:
            self.backend.frame_from_host(bytes(frame))
        except Exception as exc:
            self.drop("backend error", repr(exc))
            log.debug("%s: backend traceback", self.where(), exc_info=True)

    def statistic(self, selector: int) -> int:
        """GET_ETHERNET_STATISTIC values (ECM table 9) and the RNDIS OID_GEN_* counters."""
        if selector == Statistic.XMIT_OK:
            return self.stats["frames to host"]
        if selector == Statistic.RCV_OK:
            return self.stats["frames from host"]
        if selector == Statistic.XMIT_ERROR:
            return sum(v for k, v in self.stats.items() if k.startswith("dropped:") and "to host" in k)
        if selector == Statistic.RCV_ERROR:
            return sum(v for k, v in self.stats.items()
                       if k.startswith("dropped:") and ("from host" in k or k == "dropped:malformed"))
        if selector == Statistic.RCV_NO_BUFFER:
            return self.stats["dropped:queue full"]
        raise Stall(f"statistic selector {selector} is not counted")

    # ------------------------------------------------------------ Python frame API (callback backend)
    async def send(self, frame: bytes | bytearray | memoryview) -> None:
        """Send one frame to the host (the ``callback`` backend); dropped frames raise nothing."""
        self.send_frame(frame)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.backend.frames()

    # ------------------------------------------------------------ control
    def control(self, setup: SetupPacket, data: bytes) -> ControlResult | Awaitable[ControlResult]:
        """Class requests to the communications interface go through the request table."""
        if (setup.index & 0xFF) != self.comm_interface:
            return NOT_HANDLED
        return super().control(setup, data)


def _class_request(direction: Direction, code: int) -> Callable[[RequestMethod], RequestMethod]:
    return request(direction, RequestType.CLASS, Recipient.INTERFACE, code)


class CdcNetFunction(NetFunction):
    """What ECM and NCM share: the Ethernet class requests of ECM 1.2 section 6.2 (NCM 1.0 table 6-2 keeps them)."""

    @_class_request(Direction.OUT, NetRequest.SET_ETHERNET_PACKET_FILTER)
    def _set_packet_filter(self, setup: SetupPacket, data: bytes) -> ControlResult:
        self.packet_filter = PacketFilter(setup.value & 0x1F)
        log.debug("%s: packet filter %s", self.where(), self.packet_filter)
        return None

    @_class_request(Direction.OUT, NetRequest.SET_ETHERNET_MULTICAST_FILTERS)
    def _set_multicast_filters(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if len(data) % 6:
            raise Stall("multicast filter list is not a whole number of 6-byte addresses")
        return None

    @_class_request(Direction.IN, NetRequest.GET_ETHERNET_STATISTIC)
    def _get_statistic(self, setup: SetupPacket, data: bytes) -> ControlResult:
        return struct.pack("<I", self.statistic(setup.value) & 0xFFFF_FFFF)


class EcmFunction(CdcNetFunction):
    """CDC Ethernet Control Model (ECM 1.2): Linux binds ``cdc_ether``; one frame per transfer."""

    kind = "ecm"
    subclass = ECM_SUBCLASS
    name: str | None = "CDC Ethernet"
    function_class: tuple[int, int, int] | None = (CDC_CLASS, ECM_SUBCLASS, 0)

    def decode(self, data: bytes | memoryview) -> list[memoryview]:
        if len(data) > self.max_frame:
            raise NetFormatError(f"an ECM transfer of {len(data)} bytes is longer than wMaxSegmentSize {self.max_frame}")
        return [memoryview(data)]


class NcmFunction(CdcNetFunction):
    """CDC Network Control Model (NCM 1.0): Linux binds ``cdc_ncm``; frames travel in NTBs.

    ``formats`` says which NTB formats GET_NTB_PARAMETERS offers (bit 0 NTB16, bit 1
    NTB32); the host picks one with SET_NTB_FORMAT while the data interface is at alternate
    setting 0.  CRC mode is not supported (the capability bit is clear, GET/SET_CRC_MODE
    stall, an NDP asking for CRCs is dropped).
    """

    kind = "ncm"
    subclass = NCM_SUBCLASS
    data_protocol = NCM_DATA_PROTOCOL
    name: str | None = "CDC NCM"
    function_class: tuple[int, int, int] | None = (CDC_CLASS, NCM_SUBCLASS, 0)

    def __init__(self, backend: BackendSpec = "endpoint", *, ntb_max_size: int = 16384, formats: int = 0x03,
                 capabilities: int = NcmCapability.PACKET_FILTER | NcmCapability.MAX_DATAGRAM_SIZE
                 | NcmCapability.NTB_INPUT_SIZE_8, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        if not 2048 <= ntb_max_size <= 0xFFFF:
            raise DeviceDefinitionError(f"ntb_max_size {ntb_max_size}: NTBs here are 2048..65535 bytes")
        if formats not in (1, 3):
            raise DeviceDefinitionError("formats is 1 (NTB16) or 3 (NTB16 and NTB32): NTB16 is mandatory")
        if capabilities & NcmCapability.CRC_MODE:
            raise DeviceDefinitionError("CRC mode is not supported")
        self.capabilities = NcmCapability(capabilities)
        self.parameters = NtbParameters(formats=formats, in_max_size=ntb_max_size, out_max_size=ntb_max_size)
        self._reset_ntb()

    def _reset_ntb(self) -> None:
        self.ntb_format = NTB16
        self.ntb_in_size = self.parameters.in_max_size
        self.ntb_in_max_datagrams = 0
        self.max_datagram_size = self.max_frame
        self._sequence = 0

    def extra_functional(self) -> list[Any]:
        return [NcmDescriptor(int(self.capabilities))]

    def on_configured(self, configured: bool) -> None:
        super().on_configured(configured)
        self._reset_ntb()

    def on_alternate(self, interface: int, alternate: int) -> None:
        if interface == self.data_interface and alternate == 0:
            self._sequence = 0  # NCM 7.2: alternate setting 0 resets the data path
        super().on_alternate(interface, alternate)

    def decode(self, data: bytes | memoryview) -> list[memoryview]:
        frames = parse_ntb(data, self.parameters.out_max_size, self.ntb_format)
        self.stats["ntbs from host"] += 1
        limit = self.max_datagram_size
        keep = []
        for frame in frames:
            if len(frame) > limit:
                self.drop("oversize from host", f"datagram of {len(frame)} bytes > wMaxDatagramSize {limit}")
            else:
                keep.append(frame)
        return keep

    def _take(self, limit: int) -> bytes:
        limit = min(limit, self.ntb_in_size)
        fmt = self.ntb_format
        p = self.parameters
        frames: list[bytes] = []
        size = 0
        cap = self.ntb_in_max_datagrams or 1 << 30
        while self._to_host and len(frames) < cap:
            nxt = self._to_host[0]
            if frames and size + len(nxt) + ntb_overhead(fmt, len(frames) + 1, p.in_divisor) > limit:
                break
            frames.append(self._to_host.popleft())
            size += len(nxt)
        block = build_ntb(frames, fmt, self._sequence, p.in_divisor, p.in_remainder)
        self._sequence += 1
        self.stats["ntbs to host"] += 1
        self._count_out(len(frames), size)
        return block

    @_class_request(Direction.IN, NetRequest.GET_NTB_PARAMETERS)
    def _get_ntb_parameters(self, setup: SetupPacket, data: bytes) -> ControlResult:
        return self.parameters.to_bytes()

    @_class_request(Direction.IN, NetRequest.GET_NTB_FORMAT)
    def _get_ntb_format(self, setup: SetupPacket, data: bytes) -> ControlResult:
        return struct.pack("<H", self.ntb_format)

    @_class_request(Direction.OUT, NetRequest.SET_NTB_FORMAT)
    def _set_ntb_format(self, setup: SetupPacket, data: bytes) -> ControlResult:
        fmt = setup.value
        if fmt not in (NTB16, NTB32) or not self.parameters.formats & (1 << fmt):
            raise Stall(f"NTB format {fmt} is not offered")
        if self.device is not None and self.device.alternates.get(self.data_interface, 0) != 0:
            raise Stall("SET_NTB_FORMAT while the data interface is active (NCM 6.2.5 allows it only at alt 0)")
        self.ntb_format = fmt
        log.debug("%s: NTB format %s", self.where(), NTB_FORMAT_NAMES[fmt])
        return None

    @_class_request(Direction.IN, NetRequest.GET_NTB_INPUT_SIZE)
    def _get_ntb_input_size(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if setup.length >= 8 and self.capabilities & NcmCapability.NTB_INPUT_SIZE_8:
            return struct.pack("<IHH", self.ntb_in_size, self.ntb_in_max_datagrams, 0)
        return struct.pack("<I", self.ntb_in_size)

    @_class_request(Direction.OUT, NetRequest.SET_NTB_INPUT_SIZE)
    def _set_ntb_input_size(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if len(data) == 8 and self.capabilities & NcmCapability.NTB_INPUT_SIZE_8:
            size, count, _ = struct.unpack("<IHH", data)
        elif len(data) == 4:
            size, count = struct.unpack("<I", data)[0], 0
        else:
            raise Stall(f"SET_NTB_INPUT_SIZE carries 4 (or 8) bytes, not {len(data)}")
        if not 2048 <= size <= self.parameters.in_max_size:
            raise Stall(f"NTB input size {size} is outside 2048..{self.parameters.in_max_size}")
        self.ntb_in_size, self.ntb_in_max_datagrams = size, count
        return None

    @_class_request(Direction.IN, NetRequest.GET_MAX_DATAGRAM_SIZE)
    def _get_max_datagram_size(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if not self.capabilities & NcmCapability.MAX_DATAGRAM_SIZE:
            return NOT_HANDLED
        return struct.pack("<H", self.max_datagram_size)

    @_class_request(Direction.OUT, NetRequest.SET_MAX_DATAGRAM_SIZE)
    def _set_max_datagram_size(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if not self.capabilities & NcmCapability.MAX_DATAGRAM_SIZE:
            return NOT_HANDLED
        if len(data) != 2:
            raise Stall("SET_MAX_DATAGRAM_SIZE carries 2 bytes")
        size = struct.unpack("<H", data)[0]
        if not ETH_HEADER + 576 <= size <= self.max_frame:
            raise Stall(f"datagram size {size} is outside {ETH_HEADER + 576}..{self.max_frame}")
        self.max_datagram_size = size
        return None

    @_class_request(Direction.IN, NetRequest.GET_CRC_MODE)
    @_class_request(Direction.OUT, NetRequest.SET_CRC_MODE)
    def _crc_mode(self, setup: SetupPacket, data: bytes) -> ControlResult:
        raise Stall("CRC mode is not supported")


class RndisFunction(NetFunction):
    """Microsoft RNDIS over USB: Linux binds ``rndis_host``, Windows its class driver.

    Control messages arrive with SEND_ENCAPSULATED_COMMAND; each answer waits for
    GET_ENCAPSULATED_RESPONSE and is announced by a RESPONSE_AVAILABLE notification.
    The data interface has one alternate setting with both bulk endpoints (RNDIS has no
    alternate 0 without endpoints); frames flow once the host has initialised the device
    and set a packet filter.  Link changes are INDICATE_STATUS messages (media connect /
    disconnect).
    """

    kind = "rndis"
    name: str | None = "RNDIS"
    function_class: tuple[int, int, int] | None = RNDIS_CLASS
    MAX_TRANSFER = 16384
    MAX_PACKETS = 8

    def __init__(self, backend: BackendSpec = "endpoint", *, vendor_description: str = "vusb RNDIS adapter",
                 **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self.vendor_description = vendor_description
        self.initialized = False
        self.host_max_transfer = 0
        self._responses: deque[bytes] = deque(maxlen=64)
        self.multicast: list[bytes] = []

    def default_filter(self) -> PacketFilter:
        return PacketFilter.NONE

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        comm = ctx.interface_number()
        data = ctx.interface_number()
        self.comm_interface, self.data_interface = comm, data
        notify, bulk_in, bulk_out = self._endpoints(ctx)
        self._mac_index = 0
        functional = (
            HeaderDescriptor(0x0110),
            CallManagementDescriptor(data, 0),
            AcmDescriptor(0),
            UnionDescriptor(comm, (data,)),
        )
        cls, sub, proto = RNDIS_CLASS
        return [
            InterfaceDescriptor(comm, 0, cls, sub, proto, ctx.string(self.interface_name), (notify,), functional),
            InterfaceDescriptor(data, 0, CDC_DATA_CLASS, 0, 0, 0, (bulk_out, bulk_in)),
        ]

    @property
    def data_active(self) -> bool:
        dev = self.device
        return dev is not None and dev.configured and self.initialized and self.packet_filter != 0

    def on_configured(self, configured: bool) -> None:
        super().on_configured(configured)
        self.initialized = False
        self._responses.clear()

    def on_reset(self) -> None:
        super().on_reset()
        self.initialized = False
        self._responses.clear()

    def queue_link_notifications(self) -> None:
        dev = self.device
        if dev is None or not dev.configured or not self.initialized:
            return
        self._respond(rndis_indicate(RndisStatus.MEDIA_CONNECT if self.link_up else RndisStatus.MEDIA_DISCONNECT))

    def _respond(self, message: bytes) -> None:
        self._responses.append(message)
        self._notify(RESPONSE_AVAILABLE)

    def decode(self, data: bytes | memoryview) -> list[memoryview]:
        if not self.initialized:
            raise NetFormatError("data before REMOTE_NDIS_INITIALIZE_MSG")
        frames, problem = parse_packets(data)
        if problem is not None:
            self.drop("malformed", problem)
        return frames

    def _take(self, limit: int) -> bytes:
        if self.host_max_transfer:
            limit = min(limit, self.host_max_transfer)
        out = bytearray()
        count = 0
        while self._to_host:
            frame = self._to_host[0]
            if out and len(out) + PACKET_HEADER + len(frame) > limit:
                break
            self._to_host.popleft()
            out += build_packet(frame)
            count += 1
            self._count_out(1, len(frame))
        return bytes(out)

    # ------------------------------------------------------------ control messages
    @_class_request(Direction.OUT, NetRequest.SEND_ENCAPSULATED_COMMAND)
    def _send_encapsulated_command(self, setup: SetupPacket, data: bytes) -> ControlResult:
        self._command(bytes(data))
        return None

    @_class_request(Direction.IN, NetRequest.GET_ENCAPSULATED_RESPONSE)
    def _get_encapsulated_response(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if not self._responses:
            return b"\x00"  # MS-RNDIS 2.2.2: a single zero byte when nothing is pending
        return self._responses.popleft()

    def _command(self, data: bytes) -> None:
        try:
            msg = RndisControl.parse(data)
        except NetFormatError as exc:
            self.stats["malformed control"] += 1
            self.drop("malformed control message", str(exc))
            return
        kind, rid = msg.kind, msg.request_id
        if kind == RndisMessage.INITIALIZE:
            major, _minor, host_max = msg.fields
            self.host_max_transfer = host_max
            self.initialized = True
            self._to_host.clear()
            log.debug("%s: INITIALIZE (RNDIS %d, host takes %d-byte transfers)", self.where(), major, host_max)
            self._respond(rndis_reply(RndisMessage.INITIALIZE_CMPLT, rid, RndisStatus.SUCCESS, 1, 0, 1, 0,
                                      self.MAX_PACKETS, self.MAX_TRANSFER, 0, 0, 0))
        elif kind == RndisMessage.HALT:
            log.debug("%s: HALT", self.where())
            self.initialized = False
            self._to_host.clear()
        elif kind == RndisMessage.RESET:
            self._to_host.clear()
            self._respond(rndis_reply(RndisMessage.RESET_CMPLT, RndisStatus.SUCCESS, 0))
        elif kind == RndisMessage.KEEPALIVE:
            self._respond(rndis_reply(RndisMessage.KEEPALIVE_CMPLT, rid, RndisStatus.SUCCESS))
        elif kind == RndisMessage.QUERY:
            oid = msg.fields[0]
            value = self._query(oid)
            if value is None:
                log.debug("%s: QUERY of OID 0x%08x not supported", self.where(), oid)
                self._respond(rndis_query_reply(rid, RndisStatus.NOT_SUPPORTED, b""))
            else:
                self._respond(rndis_query_reply(rid, RndisStatus.SUCCESS, value))
        elif kind == RndisMessage.SET:
            was_active = self.data_active
            status = self._set(msg.fields[0], msg.payload)
            self._respond(rndis_reply(RndisMessage.SET_CMPLT, rid, status))
            if not was_active and self.data_active:
                self.queue_link_notifications()  # the media state, once frames can flow

    SUPPORTED = tuple(o for o in Oid if o not in (Oid.PNP_CAPABILITIES, Oid.PNP_QUERY_POWER, Oid.PNP_SET_POWER,
                                                  Oid.GEN_RNDIS_CONFIG_PARAMETER))
    """OID_GEN_SUPPORTED_LIST: the OIDs a QUERY answers (power management is not offered)."""

    def _query(self, oid: int) -> bytes | None:
        u32 = struct.Struct("<I").pack
        frame = self.max_frame
        answers: dict[int, Any] = {
            Oid.GEN_SUPPORTED_LIST: lambda: b"".join(u32(o) for o in self.SUPPORTED),
            Oid.GEN_HARDWARE_STATUS: lambda: u32(0),
            Oid.GEN_MEDIA_SUPPORTED: lambda: u32(0),
            Oid.GEN_MEDIA_IN_USE: lambda: u32(0),
            Oid.GEN_PHYSICAL_MEDIUM: lambda: u32(0),
            Oid.GEN_MAXIMUM_FRAME_SIZE: lambda: u32(self.mtu),
            Oid.GEN_MAXIMUM_LOOKAHEAD: lambda: u32(self.mtu),
            Oid.GEN_CURRENT_LOOKAHEAD: lambda: u32(self.mtu),
            Oid.GEN_LINK_SPEED: lambda: u32(min(self.speed_bps // 100, 0xFFFF_FFFF)),
            Oid.GEN_TRANSMIT_BLOCK_SIZE: lambda: u32(frame),
            Oid.GEN_RECEIVE_BLOCK_SIZE: lambda: u32(frame),
            Oid.GEN_MAXIMUM_TOTAL_SIZE: lambda: u32(frame + PACKET_HEADER),
            Oid.GEN_VENDOR_ID: lambda: u32(0x00FFFFFF),
            Oid.GEN_VENDOR_DESCRIPTION: lambda: self.vendor_description.encode() + b"\x00",
            Oid.GEN_VENDOR_DRIVER_VERSION: lambda: u32(0x0100),
            Oid.GEN_DRIVER_VERSION: lambda: struct.pack("<H", 0x0501),
            Oid.GEN_CURRENT_PACKET_FILTER: lambda: u32(self.packet_filter),
            Oid.GEN_MAC_OPTIONS: lambda: u32(0),
            Oid.GEN_MEDIA_CONNECT_STATUS: lambda: u32(0 if self.link_up else 1),
            Oid.GEN_MAXIMUM_SEND_PACKETS: lambda: u32(self.MAX_PACKETS),
            Oid.GEN_XMIT_OK: lambda: u32(self.statistic(Statistic.XMIT_OK) & 0xFFFF_FFFF),
            Oid.GEN_RCV_OK: lambda: u32(self.statistic(Statistic.RCV_OK) & 0xFFFF_FFFF),
            Oid.GEN_XMIT_ERROR: lambda: u32(self.statistic(Statistic.XMIT_ERROR) & 0xFFFF_FFFF),
            Oid.GEN_RCV_ERROR: lambda: u32(self.statistic(Statistic.RCV_ERROR) & 0xFFFF_FFFF),
            Oid.GEN_RCV_NO_BUFFER: lambda: u32(self.statistic(Statistic.RCV_NO_BUFFER) & 0xFFFF_FFFF),
            Oid.PERMANENT_ADDRESS: lambda: self.mac,
            Oid.CURRENT_ADDRESS: lambda: self.mac,
            Oid.MULTICAST_LIST: lambda: b"".join(self.multicast),
            Oid.MAXIMUM_LIST_SIZE: lambda: u32(32),
            Oid.RCV_ERROR_ALIGNMENT: lambda: u32(0),
            Oid.XMIT_ONE_COLLISION: lambda: u32(0),
            Oid.XMIT_MORE_COLLISIONS: lambda: u32(0),
        }
        make = answers.get(oid)
        return None if make is None else bytes(make())

    def _set(self, oid: int, value: bytes) -> int:
        if oid == Oid.GEN_CURRENT_PACKET_FILTER:
            if len(value) != 4:
                return RndisStatus.INVALID_DATA
            self.packet_filter = PacketFilter(struct.unpack("<I", value)[0] & 0x1F)
            log.debug("%s: packet filter %s", self.where(), self.packet_filter)
            return RndisStatus.SUCCESS
        if oid == Oid.MULTICAST_LIST:
            if len(value) % 6 or len(value) > 32 * 6:
                return RndisStatus.INVALID_DATA
            self.multicast = [value[i:i + 6] for i in range(0, len(value), 6)]
            return RndisStatus.SUCCESS
        if oid in (Oid.GEN_CURRENT_LOOKAHEAD, Oid.PNP_SET_POWER, Oid.GEN_RNDIS_CONFIG_PARAMETER):
            return RndisStatus.SUCCESS
        log.debug("%s: SET of OID 0x%08x not supported", self.where(), oid)
        return RndisStatus.NOT_SUPPORTED


FUNCTIONS: dict[str, type[NetFunction]] = {"ecm": EcmFunction, "ncm": NcmFunction, "rndis": RndisFunction}


class NetworkAdapter(SingleFunctionDevice[NetFunction]):
    """A USB network adapter: one ECM, NCM or RNDIS function on a high-speed device.

    ::

        nic = NetworkAdapter("ncm")                          # endpoint backend at 169.254.77.1
        nic = NetworkAdapter("ecm", backend="callback", mac="02:00:5e:00:00:01")
        async for frame in nic: ...                          # callback backend: frames from the host
        await nic.send(frame)
        nic.set_link(False)
    """

    def __init__(
        self,
        kind: str = "ncm",
        backend: BackendSpec = "endpoint",
        *,
        vendor_id: int = 0x1209,
        product_id: int | None = None,
        manufacturer: str | None = "vusb",
        product: str | None = None,
        serial_number: str | None = "VNET0001",
        speed: Speed | str = "high",
        **options: Any,
    ) -> None:
        if kind not in FUNCTIONS:
            raise DeviceDefinitionError(f"network kind {kind!r} is not one of {', '.join(FUNCTIONS)}")
        self.nic: NetFunction = FUNCTIONS[kind](backend, **options)
        """The network function (also :attr:`function`)."""
        pid = product_id if product_id is not None else {"ncm": 0x0010, "ecm": 0x0011, "rndis": 0x0012}[kind]
        super().__init__(self.nic, vendor_id=vendor_id, product_id=pid, manufacturer=manufacturer,
                         product=product or f"Virtual {kind.upper()} Ethernet", serial_number=serial_number,
                         speed=speed)

    @property
    def mac_text(self) -> str:
        """:attr:`mac` as ``02:00:5e:...``."""
        return mac_text(self.nic.mac)

    mac = forward_property(NetFunction.mac)
    backend: Forwarded[NetBackend] = Forwarded("Where the frames go (the endpoint, callback, TAP or pair backend).")
    set_link = forward(NetFunction.set_link)
    set_speed = forward(NetFunction.set_speed)
    send = forward(NetFunction.send)
    start = forward(NetFunction.start)
    close = forward(NetFunction.close)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.nic.__aiter__()

    async def __aenter__(self) -> NetworkAdapter:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
