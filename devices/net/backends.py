"""What a virtual network adapter is plugged into.

* :class:`EndpointBackend` (``"endpoint"``, the default): a small IP host inside vusb
  (:class:`~vusb.devices.net.stack.IpHost`): ARP, NDP, ping, TCP/UDP echo and discard; needs
  no privilege.
* :class:`CallbackBackend` (``"callback"``): Python code gets every frame the host sends
  (``async for frame in nic``, or an ``on_frame`` function) and sends with ``await nic.send(frame)``.
* :class:`PairBackend` (``"pair"``): two adapters wired back to back by a pair name.
* :class:`TapBackend` (``"tap"``): a TAP interface on the serving machine (root or CAP_NET_ADMIN).

Every backend may also capture frames to a pcap file (:class:`PcapWriter`, the
``pcap`` option of the adapter).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import struct
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Union

from vusb.devices.net.spec import mac_from_serial, mac_text
from vusb.devices.net.stack import IpHost

from vusb.errors import UsageError, VusbError

if TYPE_CHECKING:
    from vusb.devices.net.function import NetFunction

log = logging.getLogger("vusb.devices.net")

FrameCallback = Callable[[bytes], Union[Awaitable[None], None]]


class NetBackendError(VusbError):
    """A backend cannot work as configured (no permission for TAP, a pair without partner)."""


class NetBackend:
    """Base class: where frames from the host go, and where frames for the host come from."""

    name = "none"

    def __init__(self) -> None:
        self._nic: NetFunction | None = None

    @property
    def nic(self) -> NetFunction:
        if self._nic is None:
            raise UsageError(f"the {self.name} backend is not attached to an adapter")
        return self._nic

    def attach(self, nic: NetFunction) -> None:
        self._nic = nic

    def describe(self) -> str:
        return self.name

    def start(self) -> None:
        """Begin (the event loop runs): open devices, find partners."""

    def frame_from_host(self, frame: bytes) -> None:
        """An Ethernet frame the USB host sent."""

    def link_changed(self, up: bool) -> None:
        """The cable was connected or disconnected (:meth:`NetFunction.set_link`)."""

    def frames(self) -> AsyncIterator[bytes]:
        raise UsageError(f"the {self.name} backend consumes the host's frames; "
                         "iterate over an adapter made with backend='callback'")

    async def close(self) -> None:
        """Release what the backend holds."""


class EndpointBackend(NetBackend):
    """A small IP host at ``address`` (169.254.77.1/16 by default) with its own MAC.

    ``on_frame`` gets every frame the host does not answer itself (other protocols, other
    ports, other addresses); it may send answers with ``nic.send_frame``.
    """

    name = "endpoint"

    def __init__(self, address: str = "169.254.77.1/16", *, mac: str | bytes | None = None,
                 ipv6: str | None = None, on_frame: Callable[[bytes], object] | None = None) -> None:
        super().__init__()
        import ipaddress

        try:
            ipaddress.IPv4Interface(address)
        except ValueError as exc:
            raise UsageError(f"endpoint address {address!r} is not an IPv4 address with prefix: {exc}") from None
        self.address = address
        self.ipv6 = ipv6
        self._mac = mac
        self.on_frame = on_frame
        self._host: IpHost | None = None

    @property
    def host(self) -> IpHost:
        if self._host is None:
            from vusb.devices.net.spec import parse_mac

            nic = self.nic
            mac = self._mac
            own = parse_mac(mac) if isinstance(mac, str) else bytes(mac) if mac is not None \
                else mac_from_serial("endpoint:" + nic.mac.hex())
            self._host = IpHost(own, self.address, nic.send_frame, ipv6=self.ipv6, on_frame=self._other)
        return self._host

    @property
    def mac(self) -> bytes:
        return self.host.mac

    def describe(self) -> str:
        return f"endpoint {self.address}"

    def _other(self, frame: bytes) -> None:
        if self.on_frame is None:
            return
        try:
            self.on_frame(frame)
        except Exception as exc:
            self.nic.drop("callback raised", repr(exc))
            log.debug("endpoint callback traceback", exc_info=True)

    def frame_from_host(self, frame: bytes) -> None:
        self.host.receive(frame)

    async def close(self) -> None:
        if self._host is not None:
            self._host.close()


class CallbackBackend(NetBackend):
    """Every frame to Python: ``on_frame(frame)`` (may be a coroutine function) or ``async for``.

    Without ``on_frame`` frames wait in a queue of ``queue_frames`` for ``async for frame in
    nic``; when it is full the oldest frame is dropped and counted.  A callback that raises
    drops that frame and the error is logged.
    """

    name = "callback"

    def __init__(self, on_frame: FrameCallback | None = None, *, queue_frames: int = 4096) -> None:
        super().__init__()
        self.on_frame = on_frame
        self._queue: asyncio.Queue[bytes] | None = None
        self.queue_frames = queue_frames

    def _q(self) -> asyncio.Queue[bytes]:
        if self._queue is None:
            self._queue = asyncio.Queue(self.queue_frames)
        return self._queue

    def frame_from_host(self, frame: bytes) -> None:
        if self.on_frame is not None:
            try:
                result = self.on_frame(frame)
            except Exception as exc:
                self.nic.drop("callback raised", repr(exc))
                log.debug("callback traceback", exc_info=True)
                return
            if asyncio.iscoroutine(result):
                task = asyncio.ensure_future(result)
                task.add_done_callback(self._callback_done)
            return
        q = self._q()
        if q.full():
            q.get_nowait()
            self.nic.drop("python not reading", "the callback queue is full; the oldest frame was dropped")
        q.put_nowait(frame)

    def _callback_done(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.nic.drop("callback raised", repr(task.exception()))

    async def _frames(self) -> AsyncIterator[bytes]:
        q = self._q()
        while True:
            yield await q.get()

    def frames(self) -> AsyncIterator[bytes]:
        if self.on_frame is not None:
            raise UsageError("this callback backend hands frames to on_frame; async for needs on_frame=None")
        return self._frames()


_PAIRS: dict[str, list[weakref.ref[PairBackend]]] = {}


class PairBackend(NetBackend):
    """Two adapters wired back to back: what one host sends, the other host receives.

    Both adapters name the same ``pair``; they must be served by the same vusb process.
    """

    name = "pair"

    def __init__(self, pair: str) -> None:
        super().__init__()
        if not pair:
            raise UsageError("a pair backend needs a pair name")
        self.pair = pair
        self._reported_missing = False

    def attach(self, nic: NetFunction) -> None:
        super().attach(nic)
        members = [r for r in _PAIRS.get(self.pair, []) if r() is not None]
        if len(members) >= 2:
            raise NetBackendError(f"pair {self.pair!r} already has two adapters; give this one another pair name")
        members.append(weakref.ref(self))
        _PAIRS[self.pair] = members

    def describe(self) -> str:
        return f"pair {self.pair}"

    @property
    def partner(self) -> PairBackend:
        """The other adapter; raises NetBackendError naming what to do if it is missing."""
        for ref in _PAIRS.get(self.pair, []):
            other = ref()
            if other is not None and other is not self:
                return other
        raise NetBackendError(
            f"pair {self.pair!r} has no partner: serve a second adapter with backend: pair and "
            f"pair: {self.pair} from the same vusb process")

    def start(self) -> None:
        try:
            _ = self.partner
        except NetBackendError as exc:
            log.error("%s: %s (frames are dropped until it exists)", self.nic.where(), exc)

    def frame_from_host(self, frame: bytes) -> None:
        try:
            partner = self.partner
        except NetBackendError as exc:
            if not self._reported_missing:
                self._reported_missing = True
                log.error("%s: %s", self.nic.where(), exc)
            self.nic.drop("pair partner missing")
            return
        self._reported_missing = False
        partner.nic.send_frame(frame)

    async def close(self) -> None:
        members = [r for r in _PAIRS.get(self.pair, []) if r() is not None and r() is not self]
        if members:
            _PAIRS[self.pair] = members
        else:
            _PAIRS.pop(self.pair, None)


TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
CAP_NET_ADMIN = 12


def tap_permission_problem() -> str | None:
    """Why this process cannot make a TAP interface, or None if it can (a quick check)."""
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist (load the tun module: modprobe tun)"
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("CapEff:") and not int(line.split()[1], 16) >> CAP_NET_ADMIN & 1:
            return ("making a TAP interface needs CAP_NET_ADMIN: run vusb as root, grant it with "
                    "'setcap cap_net_admin+ep' on the Python binary, or create the interface first with "
                    "'ip tuntap add dev NAME mode tap user $USER' and name it in tap_name")
    return None


class TapBackend(NetBackend):
    """Frames to and from a TAP interface ``ifname`` on this machine (``%d`` picks a free number).

    The interface is created when the backend starts (root or CAP_NET_ADMIN needed, unless a
    persistent TAP owned by this user already exists); vusb does not configure it: add it to a
    bridge or move it into a network namespace and give it addresses with ``ip``.
    """

    name = "tap"

    def __init__(self, ifname: str = "vusb%d") -> None:
        super().__init__()
        if len(ifname.encode()) > 15:
            raise UsageError(f"TAP interface name {ifname!r} is longer than 15 bytes")
        self.requested = ifname
        self.ifname: str | None = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def describe(self) -> str:
        return f"tap {self.ifname or self.requested}"

    def open(self) -> str:
        """Create (or attach to) the TAP interface; returns its name.  Raises NetBackendError."""
        if self._fd is not None:
            return self.ifname or self.requested
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise NetBackendError(f"cannot open /dev/net/tun: {exc.strerror}; "
                                  f"{tap_permission_problem() or 'check the tun module and permissions'}") from None
        try:
            ifr = struct.pack("16sH", self.requested.encode(), IFF_TAP | IFF_NO_PI)
            res = fcntl.ioctl(fd, TUNSETIFF, ifr)
        except OSError as exc:
            os.close(fd)
            why = tap_permission_problem() if exc.errno in (errno.EPERM, errno.EACCES) else None
            raise NetBackendError(f"cannot create TAP interface {self.requested!r}: {exc.strerror}"
                                  + (f"; {why}" if why else "")) from None
        self._fd = fd
        self.ifname = res[:16].rstrip(b"\x00").decode()
        log.info("%s: TAP interface %s", self.nic.where() if self._nic else "tap", self.ifname)
        return self.ifname

    def start(self) -> None:
        self.open()
        self._loop = asyncio.get_running_loop()
        assert self._fd is not None
        self._loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        for _ in range(64):
            try:
                frame = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError as exc:
                log.error("%s: reading the TAP interface failed: %s", self.describe(), exc)
                return
            if not frame:
                return
            self.nic.send_frame(frame)

    def frame_from_host(self, frame: bytes) -> None:
        if self._fd is None:
            self.nic.drop("tap not open")
            return
        try:
            os.write(self._fd, frame)
        except BlockingIOError:
            self.nic.drop("tap busy")
        except OSError as exc:
            self.nic.drop("tap write failed", exc.strerror or str(exc))

    async def close(self) -> None:
        if self._fd is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None


BackendSpec = Union[str, NetBackend, None]


def make_backend(spec: BackendSpec) -> NetBackend:
    if spec is None or spec == "callback":
        return CallbackBackend()
    if isinstance(spec, NetBackend):
        return spec
    if spec == "endpoint":
        return EndpointBackend()
    if spec == "tap":
        return TapBackend()
    raise UsageError(f"network backend {spec!r}: use 'endpoint', 'callback', 'tap', or a NetBackend "
                     "(PairBackend('name') for a pair)")


class PcapWriter:
    """Frames to a pcap file (LINKTYPE_ETHERNET), each with its time; flushed as written."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.frames = 0

    def write(self, frame: bytes | memoryview) -> None:
        if self._file is None:
            return
        now = time.time()
        sec = int(now)
        n = len(frame)
        self._file.write(struct.pack("<IIII", sec, int((now - sec) * 1e6), n, n))
        self._file.write(frame)
        self._file.flush()
        self.frames += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_pcap(path: str | os.PathLike[str]) -> list[bytes]:
    """The frames of a pcap file written by :class:`PcapWriter` (for tests and tools)."""
    data = Path(path).read_bytes()
    if len(data) < 24 or struct.unpack_from("<I", data)[0] != 0xA1B2C3D4:
        raise UsageError(f"{path} is not a little-endian pcap file")
    frames, pos = [], 24
    while pos + 16 <= len(data):
        _s, _us, incl, _orig = struct.unpack_from("<IIII", data, pos)
        frames.append(data[pos + 16:pos + 16 + incl])
        pos += 16 + incl
    return frames


__all__ = [
    "BackendSpec",
    "CallbackBackend",
    "EndpointBackend",
    "NetBackend",
    "NetBackendError",
    "PairBackend",
    "PcapWriter",
    "TapBackend",
    "mac_text",
    "make_backend",
    "read_pcap",
    "tap_permission_problem",
]
