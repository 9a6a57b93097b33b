"""Fault injection: make a device misbehave on purpose, to see what a host driver does.

Rules are plain objects added to a device's :class:`FaultSet` (``device.faults``)::

    from vusb import faults

    stall = disk.faults.add(faults.StallRule(endpoint=0x81, count=1))
    disk.faults.add(ScsiFailure(opcode=0x28, sense_key="MEDIUM_ERROR", asc=0x11, lba=100, blocks=8))  # vusb.devices.storage
    ...
    assert stall.fired == 1
    disk.faults.clear()

(:class:`StallRule` is a rule; ``vusb.Stall`` is the exception a request handler raises.  The rule's
old name, ``vusb.faults.Stall``, still works and warns.)

Each rule says which URBs (or SCSI commands, or descriptors) it matches and when it
fires among them: ``count`` (at most that many times; None: every time), ``after``
(let that many matches pass first), ``after_bytes`` (let that many bytes pass through
matched URBs first), ``probability`` (fire at random, from a generator seeded with
``seed`` so runs repeat).  :attr:`Fault.matched` and :attr:`Fault.fired` count what
happened.  A rule acts on the URBs an endpoint starts handling after it was added; a
URB the endpoint already holds (an interrupt IN waiting for data) is not affected.

Kinds (docs/faults.md tells what a real Linux kernel does with each):

- :class:`StallRule`: answer -EPIPE; a bulk or interrupt endpoint stays halted until the
  host clears the halt, as hardware does.
- :class:`Delay`: handle the URB ``seconds`` late (it takes nothing from the device before).
- :class:`Drop`: never answer; the URB stays pending until the host unlinks it (a device
  that NAKs forever).
- :class:`Disconnect`: the device vanishes from the bus: the server drops the client's
  connection, with the URB unanswered.
- :class:`Short`: answer with at most ``length`` bytes (IN), or take at most ``length``
  bytes (OUT); the rest is lost.
- :class:`Babble`: the device sends more than the host asked: -EOVERFLOW with a full buffer.
- :class:`CorruptDescriptor`: patch bytes of a descriptor (or pass it through a function).
Device classes add kinds of their own: ``vusb.devices.storage.ScsiFailure`` (a SCSI
command ends in CHECK CONDITION with the given sense data) comes with mass storage.

With no rule on an endpoint the URB path costs one ``is None`` test.

Nothing a device queued for the host is lost to a rule that holds a URB: a URB unlinked
in the loop turn the device handed it its data is answered with that data first, as
without rules (see :class:`vusb.endpoint.Derived` and docs/faults.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from vusb.constants import DescriptorType, Request, RequestType, Status
from vusb.endpoint import Derived
from vusb.errors import UsageError
from vusb.urb import Completion, SetupPacket, Urb

if TYPE_CHECKING:
    from vusb.device import Device
    from vusb.endpoint import Endpoint, HandlerResult

log = logging.getLogger("vusb.faults")

F = TypeVar("F", bound="Fault")

#: descriptor types by name, for :class:`CorruptDescriptor` (and profiles)
DESCRIPTOR_TYPES: dict[str, int] = {
    "device": DescriptorType.DEVICE, "configuration": DescriptorType.CONFIGURATION,
    "string": DescriptorType.STRING, "device_qualifier": DescriptorType.DEVICE_QUALIFIER,
    "other_speed_configuration": DescriptorType.OTHER_SPEED_CONFIGURATION, "bos": DescriptorType.BOS,
    "hid_report": DescriptorType.HID_REPORT,
}

_BABBLE_FILL = 0xFF


def _int(name: str, value: Any, low: int, high: int | None = None, *, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise UsageError(f"{name} {value} is out of range {bound}")
    return value


class Fault:
    """A fault rule: what it matches, when it fires, and how often it did.

    Matching (all optional; a field left None matches anything):

    ``endpoint``
        endpoint address (0x81 is IN 1, 0x02 is OUT 2, 0 is the control endpoint);
    ``request_type``, ``request``, ``value``, ``index``
        fields of the setup packet (control transfers only);
    ``min_length``
        only URBs whose buffer holds at least that many bytes (a disk's data stage,
        not its 13-byte status);
    ``when``
        a function of the :class:`~vusb.urb.Urb` that says whether it matches (Python only).

    Firing: ``count`` (None: no limit), ``after`` (matches to let pass first),
    ``after_bytes`` (bytes to let pass through matched URBs first), ``probability``
    (0 < p <= 1, drawn from ``random.Random(seed)``).
    """

    kind: ClassVar[str] = "fault"
    urb_level: ClassVar[bool] = True  # acts on URBs of an endpoint (not on descriptors or SCSI commands)

    def __init__(
        self,
        *,
        endpoint: int | None = None,
        request_type: int | None = None,
        request: int | None = None,
        value: int | None = None,
        index: int | None = None,
        min_length: int = 0,
        when: Callable[[Urb], bool] | None = None,
        count: int | None = None,
        after: int = 0,
        after_bytes: int = 0,
        probability: float = 1.0,
        seed: int = 0,
    ) -> None:
        name = type(self).__name__
        self.endpoint = _int(f"{name}: endpoint", endpoint, 0, 0xFF)
        if self.endpoint is not None and self.endpoint & 0x70:
            raise UsageError(f"{name}: endpoint 0x{self.endpoint:02x} is not an endpoint address "
                             "(bit 7 is the direction, bits 0-3 the number)")
        if self.endpoint == 0x80:
            self.endpoint = 0
        setup_fields = {"request_type": request_type, "request": request, "value": value, "index": index}
        for field_name, field_value in setup_fields.items():
            _int(f"{name}: {field_name}", field_value, 0, 0xFF if field_name in ("request_type", "request") else 0xFFFF)
        if any(v is not None for v in setup_fields.values()) and self.endpoint not in (None, 0):
            raise UsageError(f"{name}: request_type, request, value and index match control transfers; "
                             f"endpoint 0x{self.endpoint:02x} is not the control endpoint")
        self.request_type = request_type
        self.request = request
        self.value = value
        self.index = index
        self.min_length = _int(f"{name}: min_length", min_length, 0, optional=False) or 0
        if when is not None and not callable(when):
            raise UsageError(f"{name}: when must be a function of the URB returning a bool, not {when!r}")
        self.when = when
        self.count = _int(f"{name}: count", count, 1)
        self.after = _int(f"{name}: after", after, 0, optional=False) or 0
        self.after_bytes = _int(f"{name}: after_bytes", after_bytes, 0, optional=False) or 0
        if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 < probability <= 1:
            raise UsageError(f"{name}: probability must be a number in (0, 1], not {probability!r}")
        self.probability = float(probability)
        self.seed = _int(f"{name}: seed", seed, 0, optional=False) or 0
        self._random = random.Random(self.seed)
        self.matched = 0
        """URBs (commands, descriptors) that matched the rule so far."""
        self.fired = 0
        """Times the rule acted."""
        self.bytes_passed = 0
        """Bytes that went through matched URBs the rule let pass (for ``after_bytes``)."""
        self.faults: FaultSet | None = None

    # ------------------------------------------------------------ state
    @property
    def exhausted(self) -> bool:
        """The rule fired ``count`` times and will not fire again."""
        return self.count is not None and self.fired >= self.count

    def _trigger(self) -> bool:
        """A match happened: decide whether the rule fires now (and count it)."""
        self.matched += 1
        if self.exhausted or self.matched <= self.after or self.bytes_passed < self.after_bytes:
            return False
        if self.probability < 1.0 and self._random.random() >= self.probability:
            return False
        self.fired += 1
        if log.isEnabledFor(logging.INFO):
            log.info("fault %r fired (%d/%s)", self, self.fired, self.count if self.count is not None else "-")
        if self.exhausted and self.faults is not None:
            self.faults._refresh()
        return True

    async def wait(self, times: int = 1, *, timeout: float | None = 30.0) -> None:
        """Wait until the rule fired at least ``times`` times (raises TimeoutError)."""

        async def poll() -> None:
            while self.fired < times:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(poll(), timeout)

    # ------------------------------------------------------------ matching
    def matches_urb(self, urb: Urb) -> bool:
        if self.endpoint is not None and urb.address != self.endpoint:
            return False
        if urb.length < self.min_length or (self.when is not None and not self.when(urb)):
            return False
        if self.request_type is None and self.request is None and self.value is None and self.index is None:
            return True
        setup = urb.setup
        return (setup is not None
                and (self.request_type is None or setup.request_type == self.request_type)
                and (self.request is None or setup.request == self.request)
                and (self.value is None or setup.value == self.value)
                and (self.index is None or setup.index == self.index))

    def act(self, faults: FaultSet, endpoint: Endpoint, urb: Urb) -> HandlerResult:
        raise NotImplementedError

    @classmethod
    def wire(cls, faults: FaultSet, rules: Sequence[Fault]) -> None:
        """Connect the live ``rules`` of this class to the device (a rule that is not about URBs or descriptors).

        Called with every change of ``faults`` once a rule of the class was added, the
        empty tuple included (to disconnect).  A device class's fault kind overrides it:
        :class:`vusb.devices.storage.ScsiFailure` hooks its rules into the SCSI units.
        """

    def check_device(self, device: Device) -> None:
        """Raise UsageError if the rule cannot apply to ``device``."""
        if self.endpoint is not None and self.endpoint not in device.endpoints:
            known = ", ".join(f"0x{a:02x}" for a in sorted(device.endpoints))
            raise UsageError(f"{self!r}: the device has no endpoint 0x{self.endpoint:02x} (it has {known})")

    # ------------------------------------------------------------ description
    def _details(self) -> Iterator[str]:
        if self.endpoint is not None:
            yield f"endpoint=0x{self.endpoint:02x}"
        for name in ("request_type", "request", "value", "index"):
            v = getattr(self, name)
            if v is not None:
                yield f"{name}=0x{v:02x}"
        if self.min_length:
            yield f"min_length={self.min_length}"
        if self.when is not None:
            yield f"when={getattr(self.when, '__name__', 'function')}"
        if self.count is not None:
            yield f"count={self.count}"
        if self.after:
            yield f"after={self.after}"
        if self.after_bytes:
            yield f"after_bytes={self.after_bytes}"
        if self.probability < 1:
            yield f"probability={self.probability:g}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self._details())})"


class StallRule(Fault):
    """Answer the URB with a stall (-EPIPE).

    On a bulk or interrupt endpoint the endpoint then stays halted, so the URBs after it
    stall too, until the host sends CLEAR_FEATURE(ENDPOINT_HALT) (``halt=False``: only
    the matched URB stalls).  On the control endpoint only the request stalls.
    """

    kind = "stall"

    def __init__(self, *, halt: bool = True, **match: Any) -> None:
        super().__init__(**match)
        self.halt = bool(halt)

    def act(self, faults: FaultSet, endpoint: Endpoint, urb: Urb) -> HandlerResult:
        if self.halt and endpoint.address != 0:
            endpoint.halted = True  # the queued URBs stall after this one, in order
        return Completion(Status.EPIPE)


class Delay(Fault):
    """Handle the URB ``seconds`` late (a slow device); unlinking it cancels the wait."""

    kind = "delay"

    def __init__(self, *, seconds: float, **match: Any) -> None:
        super().__init__(**match)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or seconds < 0:
            raise UsageError(f"Delay: seconds must be a finite number >= 0, not {seconds!r}")
        self.seconds = float(seconds)

    def act(self, faults: FaultSet, endpoint: Endpoint, urb: Urb) -> HandlerResult:
        # Not a task: the answer must stay deliverable in the loop turn the endpoint hands
        # its data over (see Derived), and nothing is taken from the device before the
        # wait is over, so unlinking the URB while it waits leaves the data queued.
        answer = Derived(_unchanged)
        timer = asyncio.get_running_loop().call_later(self.seconds, _dispatch_into, answer, endpoint, urb)
        answer.add_done_callback(lambda _: timer.cancel())
        return answer

    def _details(self) -> Iterator[str]:
        yield f"seconds={self.seconds:g}"
        yield from super()._details()


class Drop(Fault):
    """Never answer the URB: it stays pending until the host unlinks it (the device NAKs forever).

    The endpoint's later URBs wait behind it, as they would behind a NAKing transfer.
    Nothing is taken from the device: what it queued goes to the URB after the unlink.
    """

    kind = "drop"

    def act(self, faults: FaultSet, endpoint: Endpoint, urb: Urb) -> HandlerResult:
        return asyncio.get_running_loop().create_future()


class Disconnect(Fault):
    """The device vanishes from the bus on the matched URB, which is never answered.

    Served by a :class:`~vusb.server.Server`, the client's connection is dropped (the host
    sees the device unplugged) and the device can be imported again at once; without a
    server (:class:`~vusb.testing.LocalHost`) the device is detached.
    Use ``after`` or ``after_bytes`` to cut a transfer in the middle.  The URB takes
    nothing; like an unplugged device, the device then forgets what it had queued (the
    futures of ``endpoint.send()`` are cancelled, so the sender knows).
    """

    kind = "disconnect"

    def act(self, faults: FaultSet, endpoint: Endpoint, urb: Urb) -> HandlerResult:
        loop = asyncio.get_running_loop()
        loop.call_soon(faults.device.disconnect)
        return loop.create_future()


class Short(Fault):
    """Answer with at most ``length`` bytes of the data the device produced (IN), or
    take at most ``length`` bytes (OUT): the device gets only the first ``length`` bytes
    and the host is told that many were taken.  The rest is lost; the device does not know."""

    kind = "short"

    def __init__(self, *, length: int = 0, **match: Any) -> None:
        super().__init__(**match)
        self.length = _int("Short: length", length, 0, optional=False) or 0

    def act(self, faults: FaultSet, endpoint: Endpoint, urb: Urb) -> HandlerResult:
        if not urb.is_in and urb.iso_packets is None:
            # The device gets only what the host is told was taken: the rest never reaches it.
            urb.data = urb.data[: self.length]
        return _then(endpoint._dispatch(urb), lambda c: self._cut(urb, c))

    def _cut(self, urb: Urb, c: Completion) -> Completion:
        if c.iso_packets is not None:
            return c
        if urb.is_in:
            return Completion(c.status, c.data[: self.length])
        # A handler answering OUT without actual_length means "all of it", which the server
        # takes as the host's whole buffer: say how much the device was given.
        consumed = len(urb.data) if c.actual_length is None else c.actual_length
        return Completion(c.status, b"", min(consumed, self.length))

    def _details(self) -> Iterator[str]:
        yield f"length={self.length}"
        yield from super()._details()


class Babble(Fault):
    """The device sends more than the host asked (IN): the URB ends with -EOVERFLOW and a
    full buffer, the device's data followed by 0xFF filler, as a host controller reports it."""

    kind = "babble"

    def __init__(self, **match: Any) -> None:
        super().__init__(**match)
        if self.endpoint is not None and self.endpoint != 0 and not self.endpoint & 0x80:
            raise UsageError(f"Babble: endpoint 0x{self.endpoint:02x} is OUT; only IN transfers babble")

    def matches_urb(self, urb: Urb) -> bool:
        return urb.is_in and super().matches_urb(urb)

    def act(self, faults: FaultSet, endpoint: Endpoint, urb: Urb) -> HandlerResult:
        return _then(endpoint._dispatch(urb), lambda c: self._overflow(urb, c))

    @staticmethod
    def _overflow(urb: Urb, c: Completion) -> Completion:
        if c.iso_packets is not None:
            return c
        data = bytes(c.data)[: urb.length]
        return Completion(Status.EOVERFLOW, data + bytes((_BABBLE_FILL,)) * (urb.length - len(data)))


class CorruptDescriptor(Fault):
    """Serve a descriptor with some bytes changed.

    ``type`` is the descriptor type (a number or one of :data:`DESCRIPTOR_TYPES`),
    ``index`` its index (None: any).  Either ``offset`` with ``data`` (the bytes written
    there), or ``transform``, a function from the whole descriptor to what is served
    (Python only).  The result is cut to the request's wLength as usual; a request whose
    reply does not reach the patched bytes is not a match (Linux reads the first 9 bytes
    of a configuration before all of it).
    """

    kind = "corrupt-descriptor"
    urb_level = False

    def __init__(
        self,
        *,
        type: int | str,
        index: int | None = None,
        offset: int | None = None,
        data: bytes | None = None,
        transform: Callable[[bytes], bytes] | None = None,
        **firing: Any,
    ) -> None:
        for forbidden in ("endpoint", "request_type", "request", "value", "min_length", "when"):
            if forbidden in firing:
                raise UsageError(f"CorruptDescriptor matches descriptors by type and index; {forbidden} is not used")
        super().__init__(**firing)
        if isinstance(type, str):
            if type not in DESCRIPTOR_TYPES:
                raise UsageError(f"CorruptDescriptor: unknown descriptor type {type!r}; "
                                 f"one of: {', '.join(DESCRIPTOR_TYPES)} or a number")
            type = DESCRIPTOR_TYPES[type]
        self.type = _int("CorruptDescriptor: type", type, 1, 0xFF, optional=False) or 0
        self.descriptor_index = _int("CorruptDescriptor: index", index, 0, 0xFF)
        if transform is not None:
            if offset is not None or data is not None:
                raise UsageError("CorruptDescriptor: give either offset and data, or transform, not both")
            if not callable(transform):
                raise UsageError(f"CorruptDescriptor: transform must be callable, not {transform!r}")
        else:
            if offset is None or data is None:
                raise UsageError("CorruptDescriptor needs offset and data (the bytes written there), or transform")
            if not isinstance(data, (bytes, bytearray)) or not data:
                raise UsageError(f"CorruptDescriptor: data must be non-empty bytes, not {data!r}")
        self.offset = _int("CorruptDescriptor: offset", offset, 0, 0xFFFF)
        self.data = bytes(data) if data is not None else None
        self.transform = transform

    def matches_setup(self, setup: SetupPacket, reply_length: int) -> bool:
        if setup.descriptor_type != self.type:
            return False
        if self.descriptor_index is not None and setup.descriptor_index != self.descriptor_index:
            return False
        if self.offset is not None and self.data is not None:
            return self.offset + len(self.data) <= reply_length
        return True

    def patch(self, descriptor: bytes) -> bytes:
        if self.transform is not None:
            out = self.transform(descriptor)
            if not isinstance(out, (bytes, bytearray, memoryview)):
                raise UsageError(f"CorruptDescriptor transform returned {type(out).__name__}, not bytes")
            return bytes(out)
        assert self.offset is not None and self.data is not None
        patched = bytearray(descriptor)
        patched[self.offset:self.offset + len(self.data)] = self.data
        return bytes(patched)

    def check_device(self, device: Device) -> None:
        pass

    def _details(self) -> Iterator[str]:
        yield f"type=0x{self.type:02x}"
        if self.descriptor_index is not None:
            yield f"index={self.descriptor_index}"
        if self.transform is not None:
            yield f"transform={getattr(self.transform, '__name__', 'function')}"
        else:
            yield f"offset={self.offset}"
            yield f"data={self.data!r}"
        yield from super()._details()


KINDS: dict[str, type[Fault]] = {
    cls.kind: cls for cls in (StallRule, Delay, Drop, Disconnect, Short, Babble, CorruptDescriptor)
}
"""The generic fault classes by their profile name (device classes register more: vusb.registry)."""


# ------------------------------------------------------------ completions of pass-through URBs


# A rule that changes the endpoint's answer, or gives it late, answers through a
# vusb.endpoint.Derived rather than a task: when the host unlinks the URB (or the endpoint
# halts) in the loop turn the endpoint handed its data over, the endpoint settles the
# Derived and the URB is answered with that data, instead of the data dying with a
# cancelled task.  Answering (rather than putting the data back at the front of the
# queue) is what the endpoint does without rules: RET_SUBMIT, then RET_UNLINK 0, the same
# as if the unlink had come a moment later.  It also works for devices that keep their
# own queue (HID reports, a serial port's FIFO), which the endpoint could not refill, and
# keeps the rule's counters (fired, bytes_passed) true to what the host saw.


def _unchanged(completion: Completion) -> Completion:
    return completion


def _then(result: HandlerResult, change: Callable[[Completion], Completion]) -> HandlerResult:
    """``change`` applied to the endpoint's answer: at once if it is known, else when it is."""
    if isinstance(result, Completion):
        return change(result)
    answer = Derived(change)
    answer.follow(result)
    return answer


def _dispatch_into(answer: Derived, endpoint: Endpoint, urb: Urb) -> None:
    """The delayed URB's turn has come: let the endpoint handle it, unless it was unlinked meanwhile."""
    if answer.done():
        return
    try:
        result = endpoint._dispatch(urb)
    except Exception as exc:  # noqa: BLE001 - passed on: the endpoint answers -EPIPE (and logs a failure)
        answer.set_exception(exc)
        return
    answer.follow(result)


class FaultSet:
    """The fault rules of one device (``device.faults``)."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.rules: list[Fault] = []
        """Every rule added and not removed, exhausted ones included (their counters stay readable)."""
        self.descriptor_rules: tuple[CorruptDescriptor, ...] = ()
        """Active descriptor rules (the device checks this on GET_DESCRIPTOR)."""
        self._by_endpoint: dict[int, tuple[Fault, ...]] = {}
        self._wired: dict[type[Fault], None] = {}  # rule classes with their own wiring (Fault.wire), in order

    def __len__(self) -> int:
        return len(self.rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __iter__(self) -> Iterator[Fault]:
        return iter(list(self.rules))

    def __repr__(self) -> str:
        return f"<FaultSet {self.rules!r}>"

    def add(self, rule: F) -> F:
        """Add a rule (it acts from the next URB, command or descriptor request on); returns it."""
        if not isinstance(rule, Fault):
            raise UsageError(f"faults.add() takes a fault rule (StallRule, Delay, ...), not {type(rule).__name__}")
        if rule.faults is not None:
            raise UsageError(f"{rule!r} is already in a device's fault set; make a new rule")
        rule.check_device(self.device)
        if type(rule).wire.__func__ is not Fault.wire.__func__:  # type: ignore[attr-defined]
            self._wired.setdefault(type(rule))
        rule.faults = self
        self.rules.append(rule)
        self._refresh()
        return rule

    def remove(self, rule: Fault) -> None:
        """Take a rule out; its counters stay as they were."""
        if rule not in self.rules:
            raise UsageError(f"{rule!r} is not in this device's fault set")
        self.rules.remove(rule)
        rule.faults = None
        self._refresh()

    def clear(self) -> None:
        """Remove every rule."""
        for rule in self.rules:
            rule.faults = None
        self.rules.clear()
        self._refresh()

    # ------------------------------------------------------------ wiring
    def _refresh(self) -> None:
        """Give each endpoint the rules that can act on it (None when there are none)."""
        live = [r for r in self.rules if not r.exhausted]
        urb_rules = [r for r in live if r.urb_level]
        self._by_endpoint = {}
        for address, endpoint in self.device.endpoints.items():
            mine = tuple(r for r in urb_rules if r.endpoint is None or r.endpoint == address)
            self._by_endpoint[address] = mine
            endpoint.faults = self if mine else None
        self.descriptor_rules = tuple(r for r in live if isinstance(r, CorruptDescriptor))
        for cls in self._wired:
            cls.wire(self, tuple(r for r in live if isinstance(r, cls)))

    # ------------------------------------------------------------ URBs
    def dispatch(self, endpoint: Endpoint, urb: Urb) -> HandlerResult:
        """Handle a URB on an endpoint that has rules (called by the endpoint)."""
        rules = self._by_endpoint.get(endpoint.address, ())
        counting: list[Fault] | None = None
        for rule in rules:
            if not rule.matches_urb(urb):
                continue
            if rule._trigger():
                return rule.act(self, endpoint, urb)
            if rule.after_bytes and rule.bytes_passed < rule.after_bytes:
                if counting is None:
                    counting = []
                counting.append(rule)
        result = endpoint._dispatch(urb)
        if counting is None:
            return result
        watchers = counting
        return _then(result, lambda c: self._count(urb, c, watchers))

    @staticmethod
    def _count(urb: Urb, c: Completion, watchers: list[Fault]) -> Completion:
        moved = len(c.data) if urb.is_in else (len(urb.data) if c.actual_length is None else c.actual_length)
        for rule in watchers:
            rule.bytes_passed += moved
        return c

    # ------------------------------------------------------------ descriptors
    def patch_descriptor(self, setup: SetupPacket, descriptor: bytes) -> bytes:
        """A GET_DESCRIPTOR reply after the descriptor rules (called by the device)."""
        reply_length = min(len(descriptor), setup.length)
        for rule in self.descriptor_rules:
            if rule.matches_setup(setup, reply_length) and rule._trigger():
                descriptor = rule.patch(descriptor)
        return descriptor


def is_get_descriptor(setup: SetupPacket) -> bool:
    """A standard GET_DESCRIPTOR request (device or interface recipient)."""
    return setup.is_in and setup.request == Request.GET_DESCRIPTOR and setup.type == RequestType.STANDARD


check_int = _int
"""Check an integer option of a rule (for device classes' fault kinds): None when optional and missing."""

_MOVED = {"ScsiFailure": "vusb.devices.storage.faults", "SENSE_KEYS": "vusb.devices.storage.faults",
          "scsi_units": "vusb.devices.storage.faults"}


def __getattr__(name: str) -> Any:
    """Old names that still work, with a DeprecationWarning: SCSI failures moved to the mass storage class
    (vusb.devices.storage), and the stall rule was renamed (vusb.Stall is the exception a handler raises)."""
    if name == "Stall":
        warnings.warn("vusb.faults.Stall is now vusb.faults.StallRule (vusb.Stall is the exception)",
                      DeprecationWarning, stacklevel=2)
        return StallRule
    if name in _MOVED:
        import importlib

        warnings.warn(f"vusb.faults.{name} moved to vusb.devices.storage.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DESCRIPTOR_TYPES", "KINDS", "Babble", "CorruptDescriptor", "Delay", "Disconnect", "Drop", "Fault",
    "FaultSet", "Short", "StallRule", "check_int",
]
