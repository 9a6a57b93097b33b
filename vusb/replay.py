"""Replay a recorded device to a host: the ``replay`` function of profiles ``vusb record`` writes.

The device's standard requests are answered by :class:`~vusb.device.Device` from the
recorded descriptors, so configuration and alternate settings are real state.  The
replay function owns every interface and answers the rest as the recording says:

* control requests (class, vendor, interface-level GET_DESCRIPTOR): by the request
  (bmRequestType, bRequest, wValue, wIndex) and the device state it came in
  (configuration, alternate setting of the addressed interface); a request asked
  again gets the next recorded answer for it, the last one once they are used up;
* the other endpoints: the recorded conversation, in order.  An IN transfer is
  served once the OUT transfers recorded before it have come (what triggered it),
  after the time the device held it in the recording (``timing: recorded``), at once
  (``asap``), or when released (``on-demand``, ``vusb ctl replay-next``).  An OUT
  that matches the next recorded one moves the conversation on; one that matches
  another recorded OUT on that endpoint (the host sent the same command in another
  order) resynchronises there; anything else is unrecorded.
* class-aware replay (``class: storage``) lives in :mod:`vusb.replay_storage`.

What the recording does not hold goes to the ``unrecorded`` policy: ``stall``
(default), ``nearest`` (the closest recorded answer) or ``handler`` (a Python
function ``module:function`` called with the request and what was recorded at that
point).  Every divergence is logged (logger ``vusb.replay``) with the request and what
was recorded there, and kept in :attr:`ReplayFunction.divergences`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vusb.constants import Speed, Status, TransferType
from vusb.errors import Stall, UsageError
from vusb.function import NOT_HANDLED, AttachedFunction, ControlResult
from vusb.protocol import IsoPacket
from vusb.urb import Completion, SetupPacket, Urb

if TYPE_CHECKING:
    from vusb.device import Device

log = logging.getLogger("vusb.replay")

POLICIES = ("stall", "nearest", "handler")
TRIGGER_GRACE = 1.0
"""Seconds an IN transfer waits, beyond its recorded wait, for the control request recorded before it."""
TIMINGS = ("recorded", "asap", "on-demand")
CLASSES = ("none", "storage", "hid", "cdc")
STATUS_NAMES = {"stall": Status.EPIPE, "error": -71, "overflow": -75, "shutdown": Status.ESHUTDOWN,
                "reset": -104, "unlinked": -2}


@dataclass(frozen=True)
class RecordedControl:
    """One recorded control request and the device's answer."""

    setup: SetupPacket
    config: int
    alt: int | None
    reply: bytes | None
    out: bytes
    status: int
    index: int  # position in the recording's control list

    @property
    def key(self) -> tuple[int, int, int, int]:
        s = self.setup
        return s.request_type, s.request, s.value, s.index

    def describe(self) -> str:
        state = f"config {self.config}" + (f" alt {self.alt}" if self.alt else "")
        answer = "stall" if self.status else (f"{len(self.reply)} bytes" if self.reply is not None else "ok")
        return f"control[{self.index}] {self.setup.describe()} in {state} -> {answer}"


@dataclass(frozen=True)
class RecordedTransfer:
    """One recorded transfer on a non-control endpoint."""

    endpoint: int
    data: bytes  # IN: returned; OUT: sent by the host
    status: int
    actual: int
    wait: float
    index: int  # position in the recording's transfer list
    outs_before: int  # OUT transfers recorded before it (what triggers an IN)
    iso: tuple[tuple[int, int], ...] | None = None  # isochronous: (offset, length) of each packet in data
    after_control: int | None = None  # IN: the control request recorded just before it (what triggered it)

    @property
    def is_in(self) -> bool:
        return bool(self.endpoint & 0x80)

    def describe(self) -> str:
        what = f"IN {len(self.data)} bytes" if self.is_in else f"OUT {_preview(self.data)}"
        return f"transfers[{self.index}] ep 0x{self.endpoint:02x} {what}"


def _preview(data: bytes, limit: int = 16) -> str:
    text = data[:limit].hex(" ")
    return f"[{text}{' ...' if len(data) > limit else ''}] ({len(data)} bytes)"


@dataclass(frozen=True)
class Divergence:
    """The host did something the recording does not hold, and what the replay did about it."""

    what: str  # the host's request
    recorded: str  # what the recording holds at that point
    action: str  # what the replay answered
    time: float = field(default_factory=time.monotonic)

    def __str__(self) -> str:
        return f"{self.what}; recorded here: {self.recorded}; {self.action}"


Handler = Callable[..., Any]
"""``handler(request, recorded)``: ``request`` is a :class:`SetupPacket` (control) or ``(endpoint, data)``
(an OUT transfer); ``recorded`` is what the recording holds at that point (a description).  It returns the
IN data (bytes), ``None`` (accept), or raises :class:`~vusb.errors.Stall`."""


def load_handler(spec: str) -> Handler:
    """The function ``module:function`` names."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise UsageError(f"handler {spec!r}: expected module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"handler {spec!r}: cannot import {module_name!r}: {exc}") from exc
    func = getattr(module, name, None)
    if not callable(func):
        raise UsageError(f"handler {spec!r}: {module_name} has no function {name!r}")
    return func  # type: ignore[no-any-return]


class ReplayFunction(AttachedFunction):
    """Answers the host as a recorded device did (see the module's docstring)."""

    def __init__(self, control: Sequence[RecordedControl], transfers: Sequence[RecordedTransfer], *,
                 policy: str = "stall", handler: Handler | None = None, timing: str = "recorded",
                 device_class: str = "none") -> None:
        super().__init__()
        if policy not in POLICIES:
            raise UsageError(f"unrecorded policy {policy!r}: choose one of {', '.join(POLICIES)}")
        if timing not in TIMINGS:
            raise UsageError(f"timing {timing!r}: choose one of {', '.join(TIMINGS)}")
        if policy == "handler" and handler is None:
            raise UsageError("the handler policy needs a handler (module:function)")
        self.control_entries = list(control)
        self.transfer_entries = list(transfers)
        self.policy = policy
        self.handler = handler
        self.timing = timing
        self.device_class = device_class
        """The class-aware replay in use (``class:`` of the profile): none, storage, hid or cdc."""
        self.divergences: list[Divergence] = []
        """Every divergence from the recording, in order (also logged on ``vusb.replay``)."""
        self.served = 0
        """Answers taken from the recording (control and transfers)."""
        self._by_key: dict[tuple[int, int, int, int], list[RecordedControl]] = {}
        for entry in self.control_entries:
            self._by_key.setdefault(entry.key, []).append(entry)
        self._outs = [t for t in self.transfer_entries if not t.is_in and t.iso is None]
        self._ins: dict[int, list[RecordedTransfer]] = {}
        self._iso_packets: dict[int, list[bytes]] = {}  # IN endpoint -> recorded packet payloads, in order
        for t in self.transfer_entries:
            if t.iso is not None:
                if t.is_in:
                    self._iso_packets.setdefault(t.endpoint, []).extend(t.data[o:o + n] for o, n in t.iso)
            elif t.is_in:
                self._ins.setdefault(t.endpoint, []).append(t)
        self._progress: asyncio.Event | None = None
        self.reset_conversation()

    # ------------------------------------------------------------ state
    def reset_conversation(self) -> None:
        """Start the recording over (a reset or a new configuration)."""
        self._asked: dict[tuple[tuple[int, int, int, int], int, int | None], int] = {}
        self._control_cursor = -1
        self._control_answered = -1  # the highest recorded control entry answered so far
        self._out_cursor = 0  # OUT transfers matched so far (ordinal among OUTs)
        self._in_cursor: dict[int, int] = {ep: 0 for ep in self._ins}
        self._released: dict[int, int] = {ep: 0 for ep in self._ins}
        self._remainder: dict[int, bytes] = {}
        self._last_progress = time.monotonic()
        self._exhausted: set[int] = set()
        self._iso_next: dict[int, int] = {}
        self._notify()

    def on_reset(self) -> None:
        self.reset_conversation()

    def on_configured(self, configured: bool) -> None:
        if configured:
            self.reset_conversation()

    def bind(self, device: Device) -> None:
        for address in sorted({t.endpoint for t in self.transfer_entries}):
            if address in device.endpoints:
                device.endpoint(address).handler = self._handle
        for config in device.configurations:  # endpoints of the interfaces the recording never used
            for itf in config.interfaces:
                if itf.number in self.interface_numbers:
                    for ep in itf.endpoints:
                        endpoint = device.endpoint(ep.address)
                        if endpoint.handler is None:
                            endpoint.handler = self._handle

    def release(self, count: int = 1, endpoint: int | None = None) -> int:
        """Let ``count`` more recorded IN transfers through (``timing: on-demand``); returns how many are left."""
        eps = [endpoint] if endpoint is not None else list(self._ins)
        left = 0
        for ep in eps:
            if ep not in self._ins:
                raise UsageError(f"the recording has no IN transfers on endpoint 0x{ep:02x} "
                                 f"(it has {', '.join(f'0x{e:02x}' for e in self._ins) or 'none'})")
            self._released[ep] = min(len(self._ins[ep]), self._released[ep] + count)
            left += len(self._ins[ep]) - self._released[ep]
        self._notify()
        return left

    def pending_in(self) -> dict[int, int]:
        """Recorded IN transfers not served yet, by endpoint."""
        return {ep: len(entries) - self._in_cursor[ep] for ep, entries in self._ins.items()}

    def _notify(self) -> None:
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    async def _changed(self) -> None:
        if self._progress is None:
            self._progress = asyncio.Event()
        await self._progress.wait()

    def diverged(self, what: str, recorded: str, action: str) -> None:
        d = Divergence(what, recorded, action)
        self.divergences.append(d)
        log.warning("replay divergence %d: %s", len(self.divergences), d)

    # ------------------------------------------------------------ control
    def _state(self, setup: SetupPacket) -> tuple[int, int | None]:
        device = self.device
        config = device.configuration_value if device is not None else 0
        alt = None
        if setup.recipient == 1 and device is not None:
            alt = device.alternates.get(setup.index & 0xFF, 0) or None
        return config, alt

    def _recorded_here(self) -> str:
        nxt = self._control_cursor + 1
        if nxt < len(self.control_entries):
            return self.control_entries[nxt].describe()
        return "nothing (the recorded control requests are used up)"

    def get_descriptor(self, setup: SetupPacket) -> bytes | None:
        result = self.control(setup, b"")
        if result is NOT_HANDLED or result is None or isinstance(result, Awaitable):
            return None
        return bytes(result)  # type: ignore[arg-type]

    def control(self, setup: SetupPacket, data: bytes) -> ControlResult | Awaitable[ControlResult]:
        config, alt = self._state(setup)
        key = (setup.request_type, setup.request, setup.value, setup.index)
        same = [e for e in self._by_key.get(key, []) if e.config == config and (e.alt or None) == alt]
        if same:
            state_key = (key, config, alt)
            n = self._asked.get(state_key, 0)
            self._asked[state_key] = n + 1
            entry = same[min(n, len(same) - 1)]
            self._control_cursor = entry.index
            if entry.index > self._control_answered:
                self._control_answered = entry.index
                self._notify()
            if not setup.is_in and entry.out and data != entry.out:
                self.diverged(f"{setup.describe()} with data {_preview(data)}",
                              f"{entry.describe()} with data {_preview(entry.out)}", "answered as recorded")
            self.served += 1
            return self._answer(entry)
        what = f"{setup.describe()} in config {config}" + (f" alt {alt}" if alt else "")
        recorded = self._recorded_here()
        if self.policy == "nearest":
            near = self._nearest_control(setup, config, alt)
            if near is not None:
                self.diverged(what, recorded, f"answered with the nearest: {near.describe()}")
                return self._answer(near)
        if self.policy == "handler" and self.handler is not None:
            self.diverged(what, recorded, f"passed to the handler {getattr(self.handler, '__name__', '?')}")
            result = self.handler(setup, recorded)
            return b"" if result is None and setup.is_in else result  # type: ignore[no-any-return]
        self.diverged(what, recorded, "stalled")
        raise Stall()

    @staticmethod
    def _answer(entry: RecordedControl) -> ControlResult:
        if entry.status:
            raise Stall()
        return entry.reply if entry.setup.is_in else None

    def _nearest_control(self, setup: SetupPacket, config: int, alt: int | None) -> RecordedControl | None:
        best: tuple[int, int, RecordedControl] | None = None
        for e in self.control_entries:
            if e.setup.request_type != setup.request_type or e.setup.request != setup.request:
                continue
            score = ((e.setup.value == setup.value) * 8 + (e.setup.index == setup.index) * 4
                     + (e.config == config) * 2 + ((e.alt or None) == alt))
            distance = abs(e.index - self._control_cursor)
            if best is None or (score, -distance) > (best[0], -best[1]):
                best = (score, distance, e)
        return best[2] if best is not None else None

    # ------------------------------------------------------------ other endpoints
    def _handle(self, urb: Urb) -> Completion | Awaitable[Completion]:
        address = urb.address
        if urb.iso_packets is not None:
            return self._iso(urb, address)
        if urb.is_in:
            return self._take_in(urb, address)
        return self._take_out(urb, address)

    def _take_out(self, urb: Urb, address: int) -> Completion:
        data = bytes(urb.data)
        self._last_progress = time.monotonic()
        expected = self._outs[self._out_cursor] if self._out_cursor < len(self._outs) else None
        if expected is not None and expected.endpoint == address and expected.data == data:
            return self._consume_out(self._out_cursor, data)
        what = f"OUT ep 0x{address:02x} {_preview(data)}"
        recorded = expected.describe() if expected is not None else "nothing (the recorded OUT transfers are used up)"
        match = self._find_out(address, lambda t: t.data == data)
        if match is not None:
            self.diverged(what, recorded, f"resynchronised at the same write, {self._outs[match].describe()}")
            return self._consume_out(match, data)
        if self.device_class == "hid" and self._is_interrupt(address):
            self.diverged(what, recorded, "accepted (a HID output report)")
            return Completion(0, b"", len(data))
        if self.policy == "nearest":
            near = self._find_out(address, lambda t: True, score=lambda t: _common_prefix(t.data, data))
            if near is not None:
                self.diverged(what, recorded, f"resynchronised at the nearest write, {self._outs[near].describe()}")
                return self._consume_out(near, data)
        if self.policy == "handler" and self.handler is not None:
            self.diverged(what, recorded, f"passed to the handler {getattr(self.handler, '__name__', '?')}")
            try:
                self.handler((address, data), recorded)
            except Stall:
                return Completion(Status.EPIPE)
            return Completion(0, b"", len(data))
        self.diverged(what, recorded, "stalled")
        return Completion(Status.EPIPE)

    def _is_interrupt(self, address: int) -> bool:
        device = self.device
        endpoint = device.endpoints.get(address) if device is not None else None
        return endpoint is not None and endpoint.transfer_type == TransferType.INTERRUPT

    def _find_out(self, address: int, accept: Callable[[RecordedTransfer], bool],
                  score: Callable[[RecordedTransfer], int] | None = None) -> int | None:
        """The ordinal of a recorded OUT on ``address`` that ``accept``s, searching from the cursor on, then from
        the start; with ``score``, the best-scoring one (ties: the first in that order)."""
        order = list(range(self._out_cursor, len(self._outs))) + list(range(0, self._out_cursor))
        best: tuple[int, int] | None = None
        for k in order:
            t = self._outs[k]
            if t.endpoint != address or not accept(t):
                continue
            if score is None:
                return k
            s = score(t)
            if best is None or s > best[0]:
                best = (s, k)
        return best[1] if best is not None else None

    def _consume_out(self, ordinal: int, data: bytes) -> Completion:
        entry = self._outs[ordinal]
        if ordinal != self._out_cursor:  # resynchronised: the IN endpoints continue after this write
            for ep, entries in self._ins.items():
                k = next((i for i, t in enumerate(entries) if t.index > entry.index), len(entries))
                self._in_cursor[ep] = k
                self._released[ep] = max(self._released[ep], k)
                self._remainder.pop(ep, None)
        self._out_cursor = ordinal + 1
        self.served += 1
        self._notify()
        if entry.status:
            return Completion(entry.status)
        return Completion(0, b"", min(entry.actual, len(data)) if entry.actual != len(entry.data) else len(data))

    def _ready(self, address: int) -> RecordedTransfer | None:
        entries = self._ins.get(address, [])
        k = self._in_cursor.get(address, 0)
        if k >= len(entries):
            return None
        return entries[k]

    def _take_in(self, urb: Urb, address: int) -> Completion | Awaitable[Completion]:
        rest = self._remainder.pop(address, None)
        if rest is not None:
            return self._deliver(address, rest, urb.length)
        entry = self._ready(address)
        if entry is not None and entry.outs_before <= self._out_cursor and self._may_go(address) and (
                self.timing != "recorded" or entry.wait <= 0.0) and self._triggered(entry):
            return self._serve(address, entry, urb.length)
        return self._wait_in(urb, address)

    def _triggered(self, entry: RecordedTransfer) -> bool:
        """Whether the control request recorded just before ``entry`` (if any) has been answered."""
        return entry.after_control is None or self._control_answered >= entry.after_control

    def _may_go(self, address: int) -> bool:
        return self.timing != "on-demand" or self._in_cursor[address] < self._released[address]

    async def _wait_in(self, urb: Urb, address: int) -> Completion:
        arrived = time.monotonic()
        while True:
            entry = self._ready(address)
            if entry is None:
                if address not in self._exhausted:
                    self._exhausted.add(address)
                    log.info("replay: the recorded IN transfers of endpoint 0x%02x are used up; the endpoint "
                             "answers nothing more (NAK)", address)
                await self._changed()
                continue
            if entry.outs_before > self._out_cursor or not self._may_go(address):
                await self._changed()
                continue
            if not self._triggered(entry):
                # The request that came before it in the recording (a vendor "start", say) has not come. A host
                # that never sends it must not starve: after the recorded wait and a second more, it goes anyway.
                limit = arrived + entry.wait + TRIGGER_GRACE
                now = time.monotonic()
                if now < limit:
                    waiter = asyncio.ensure_future(self._changed())
                    try:
                        await asyncio.wait_for(asyncio.shield(waiter), limit - now)
                    except TimeoutError:
                        pass
                    finally:
                        waiter.cancel()
                    continue
                assert entry.after_control is not None
                self.diverged(f"IN ep 0x{address:02x}", f"{entry.describe()} after "
                              f"{self.control_entries[entry.after_control].describe()}, which the host has not sent",
                              "served anyway")
                self._control_answered = max(self._control_answered, entry.after_control)
            if self.timing == "recorded" and entry.wait > 0:
                due = max(arrived, self._last_progress) + entry.wait
                now = time.monotonic()
                if now < due:
                    waiter = asyncio.ensure_future(self._changed())
                    try:
                        await asyncio.wait_for(asyncio.shield(waiter), due - now)
                    except TimeoutError:
                        pass
                    finally:
                        waiter.cancel()
                    if self._ready(address) is not entry:
                        continue
                    if time.monotonic() < due - 0.001:
                        continue
            return self._serve(address, entry, urb.length)

    def _serve(self, address: int, entry: RecordedTransfer, length: int) -> Completion:
        self._in_cursor[address] += 1
        self._released[address] = max(self._released[address], self._in_cursor[address])
        self._last_progress = time.monotonic()
        self.served += 1
        if entry.status:
            return Completion(entry.status)
        return self._deliver(address, entry.data, length)

    def _deliver(self, address: int, data: bytes, length: int) -> Completion:
        if len(data) > length:
            self._remainder[address] = data[length:]
            data = data[:length]
        return Completion(0, data)


    async def _iso(self, urb: Urb, address: int) -> Completion:
        """An isochronous URB, answered after the frames it spans: OUT data is taken; IN packets come from the
        recorded packets of that endpoint in order, starting over when they are used up (a stream repeats)."""
        packets = urb.iso_packets or ()
        device = self.device
        frame = 0.001 if device is None or device.speed <= Speed.FULL else 0.000125
        if self.timing != "asap":
            await asyncio.sleep(len(packets) * frame)
        if not urb.is_in:
            total = sum(p.length for p in packets)
            return Completion(0, b"", total, iso_packets=tuple(IsoPacket(p.offset, p.length, p.length, 0)
                                                                 for p in packets))
        recorded = self._iso_packets.get(address, [])
        out: list[IsoPacket] = []
        pieces: list[bytes] = []
        for p in packets:
            chunk = b""
            if recorded:
                k = self._iso_next.get(address, 0)
                chunk = recorded[k % len(recorded)][:p.length]
                self._iso_next[address] = k + 1
            pieces.append(chunk)
            out.append(IsoPacket(p.offset, p.length, len(chunk), 0))
        return Completion(0, b"".join(pieces), iso_packets=tuple(out))


def _common_prefix(a: bytes, b: bytes) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
