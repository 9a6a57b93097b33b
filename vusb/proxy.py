"""Proxy a physical device: export a device plugged into this machine over USB/IP (``vusb proxy``).

A :class:`ProxyDevice` is a :class:`~vusb.device.Device` whose answers come from a
physical device through a backend (:mod:`vusb.proxy_backend`): real hardware through
libusb (:func:`open_physical`, the ``proxy`` extra), or, in tests, the test double
:class:`vusb.proxy_fake.FakeBackend`.  It is served like any vusb device::

    backend = open_physical(vid_pid="0627:0001")     # detaches the kernel drivers while exported
    with ProxyDevice(backend) as proxy:
        async with Server([proxy]) as server:
            await server.serve_forever()             # usbip attach -r HOST -b 1-1

Each URB becomes one transfer of the backend (one libusb asynchronous transfer), and an
UNLINK cancels exactly that transfer.  SET_CONFIGURATION, SET_INTERFACE and
CLEAR_FEATURE(ENDPOINT_HALT) go through the backend's calls for them (libusb's
``set_configuration``, ``set_interface_alt_setting``, ``clear_halt``), never as raw
control transfers, so the operating system's view of the device stays right.

Between host and device sit filters:

- hooks (:meth:`ProxyDevice.add_hook`): ``on_submit(urb)`` sees each URB before the
  device does and may change its OUT data, answer it itself (a
  :class:`~vusb.urb.Completion`: a stall is ``Completion(Status.EPIPE)``), :data:`DROP`
  it (never answered, as a device that NAKs forever) or delay it (an async hook);
  ``on_complete(urb, completion)`` sees each answer and may replace it;
- fault rules (``proxy.faults``, the same :mod:`vusb.faults` rules as every device:
  StallRule, Delay, Drop, Disconnect, Short, Babble, CorruptDescriptor);
- ``log_transfers``: every transfer logged on the ``vusb.proxy`` logger.

A device unplugged mid-transfer: the URBs in flight are answered -ENODEV, the client's
connection is closed (the host sees the device leave), and :attr:`ProxyDevice.on_gone`
listeners are told; nothing else served is touched.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Union, cast

from vusb import standard
from vusb.constants import URB_SHORT_NOT_OK, URB_ZERO_PACKET, Recipient, Request, RequestType, Status, TransferType
from vusb.descriptors import BosDescriptor, ConfigurationDescriptor, DeviceDescriptor
from vusb.device import Device
from vusb.endpoint import Derived, Endpoint, HandlerResult
from vusb.errors import DescriptorError, DeviceDefinitionError, Stall
from vusb.faults import is_get_descriptor
from vusb.protocol import IsoPacket
from vusb.proxy_backend import (
    DeviceGone,
    PendingTransfer,
    ProxyBackend,
    ProxyError,
    TransferRequest,
    TransferResult,
)
from vusb.urb import Completion, SetupPacket, Urb, UrbState

log = logging.getLogger("vusb.proxy")


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Final = _Drop()
"""What an ``on_submit`` hook returns to hold a URB unanswered (until the host unlinks it)."""

SubmitVerdict = Union[None, Completion, _Drop]
SubmitHook = Callable[[Urb], Union[SubmitVerdict, Awaitable[SubmitVerdict]]]
CompleteHook = Callable[[Urb, Completion], Union[Completion, None]]


@dataclass
class Hook:
    """A filter added with :meth:`ProxyDevice.add_hook`; :meth:`ProxyDevice.remove_hook` takes it out."""

    on_submit: SubmitHook | None = None
    on_complete: CompleteHook | None = None


class _Flight:
    """One backend transfer in flight for one URB."""

    __slots__ = ("arrived", "future", "transfer", "urb")

    def __init__(self, urb: Urb, future: asyncio.Future[TransferResult]) -> None:
        self.urb = urb
        self.future = future
        self.transfer: PendingTransfer | None = None
        self.arrived: TransferResult | None = None  # set by the backend's thread before the loop hears of it

    def land(self) -> None:
        """Finish the future with the result that arrived (in the loop's thread)."""
        if self.arrived is not None and not self.future.done():
            self.future.set_result(self.arrived)

    def cancel_transfer(self, _: object = None) -> None:
        if self.future.cancelled() and self.transfer is not None and self.arrived is None:
            try:
                self.transfer.cancel()
            except ProxyError:
                pass  # gone or already finished: nothing to cancel


class ProxyEndpoint(Endpoint):
    """An endpoint of a proxied device.

    Control, bulk and interrupt URBs go to the device one at a time per endpoint, in order
    (the device NAKs meanwhile; nothing is lost).  Isochronous URBs are all handed to the
    device at once, as a real host keeps several queued for a steady stream.
    """

    def __init__(self, proxy: ProxyDevice, address: int, descriptor: Any = None, *, max_packet_size: int = 64) -> None:
        super().__init__(address, descriptor, max_packet_size=max_packet_size)
        self.proxy = proxy
        self.flights: dict[int, _Flight] = {}  # urb seqnum -> its transfer
        self._iso: dict[Urb, asyncio.Future[Completion]] = {}

    def unlink(self, urb: Urb) -> bool:
        flight = self.flights.get(id(urb))
        if flight is not None:
            flight.land()  # a result already in: the URB gets it (RET_SUBMIT, then RET_UNLINK 0)
        cancelled = self._unlink_iso(urb) if urb in self._iso else super().unlink(urb)
        if self.proxy.log_transfers:
            self.proxy._log(urb, "unlinked by the host: " + (
                "its transfer was cancelled" if cancelled else "it had its answer already"))
        return cancelled

    # ------------------------------------------------------------ isochronous: pipelined
    def submit(self, urb: Urb) -> None:
        if self.transfer_type != TransferType.ISOCHRONOUS:
            super().submit(urb)
            return
        urb.endpoint = self
        urb.state = UrbState.ACTIVE
        try:
            result = self._dispatch(urb) if self.faults is None else self.faults.dispatch(self, urb)
        except Stall:
            urb.complete(Completion(Status.EPIPE))
            return
        except Exception:
            log.exception("endpoint 0x%02x: failed on %r; answering with a stall", self.address, urb)
            urb.complete(Completion(Status.EPIPE))
            return
        if isinstance(result, Completion):
            urb.complete(result)
            return
        fut = asyncio.ensure_future(result)
        self._iso[urb] = fut
        fut.add_done_callback(lambda f: self._iso_done(urb, f))

    def _iso_done(self, urb: Urb, fut: asyncio.Future[Completion]) -> None:
        if self._iso.pop(urb, None) is None or fut.cancelled():
            return
        exc = fut.exception()
        urb.complete(Completion(Status.EPIPE) if exc is not None else fut.result())

    def _unlink_iso(self, urb: Urb) -> bool:
        fut = self._iso.get(urb)
        if fut is None:
            return False
        if isinstance(fut, Derived):
            fut.settle()
        if fut.done() and not fut.cancelled():
            self._iso_done(urb, fut)
            return False
        del self._iso[urb]
        urb.cancel()
        fut.cancel()
        return True

    def _fail_pending(self, status: int) -> None:
        for urb, fut in list(self._iso.items()):
            del self._iso[urb]
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                urb.complete(fut.result())
            else:
                fut.cancel()
                urb.complete(Completion(status))
        super()._fail_pending(status)

    def cancel_all(self) -> None:
        for urb, fut in list(self._iso.items()):
            urb.cancel()
            fut.cancel()
        self._iso.clear()
        super().cancel_all()

    @property
    def pending(self) -> int:
        return super().pending + len(self._iso)


def _parse(backend: ProxyBackend) -> tuple[DeviceDescriptor, list[ConfigurationDescriptor], BosDescriptor | None]:
    where = backend.description
    try:
        descriptor = DeviceDescriptor.parse(bytes(backend.device_descriptor))
    except (DescriptorError, ValueError) as exc:
        raise ProxyError(f"{where}: its device descriptor cannot be read: {exc}") from None
    configs = []
    for i, raw in enumerate(backend.configurations):
        try:
            configs.append(ConfigurationDescriptor.parse(bytes(raw), speed=backend.speed))
        except (DescriptorError, ValueError) as exc:
            raise ProxyError(f"{where}: configuration descriptor {i} cannot be read: {exc}") from None
    bos = None
    if backend.bos is not None:
        try:
            bos = BosDescriptor.parse(bytes(backend.bos))
        except (DescriptorError, ValueError) as exc:
            log.warning("%s: its BOS descriptor cannot be read (%s); the host gets it from the device anyway",
                        where, exc)
    return descriptor, configs, bos


class ProxyDevice(Device):
    """A physical device (through ``backend``) served as a vusb device.

    ``log_transfers``: log every transfer and its answer (``vusb.proxy`` logger, INFO).
    Use it as a context manager, or call :meth:`open` and :meth:`close`: while open, the
    device is taken from the operating system (kernel drivers detached).
    """

    def __init__(self, backend: ProxyBackend, *, log_transfers: bool = False) -> None:
        self.backend = backend
        descriptor, configs, bos = _parse(backend)
        if bos is None and descriptor.usb_version >= 0x0201:
            bos = BosDescriptor(())  # the host reads the device's own BOS through the proxy
        try:
            self.init_from_descriptors(descriptor, configs, speed=backend.speed, bos=bos)
        except DeviceDefinitionError as exc:
            raise ProxyError(f"{backend.description}: its descriptors do not make a device vusb can serve: {exc}") \
                from None
        self.log_transfers = log_transfers
        self.hooks: list[Hook] = []
        self.gone = False
        """The device was unplugged: it answers nothing any more."""
        self.on_gone: list[Callable[[ProxyDevice], None]] = []
        """Called (in the event loop) once the device is unplugged, after its client was answered and dropped."""
        self.is_open = False
        self.transfers = 0
        """Transfers handed to the device so far."""
        self._loop: asyncio.AbstractEventLoop | None = None
        # Every endpoint forwards to the device: replace the ones Device made.
        self.ep0 = ProxyEndpoint(self, 0, max_packet_size=descriptor.max_packet_size0)
        self.ep0.handler = self._control
        endpoints: dict[int, Endpoint] = {0: self.ep0}
        for address, ep in self._endpoints.items():
            if address:
                proxied = ProxyEndpoint(self, address, ep.descriptor)
                proxied.handler = self._forward
                endpoints[address] = proxied
        self._endpoints = endpoints

    def describe(self) -> str:
        return self.backend.description

    def _validate(self) -> None:
        """The descriptors are the hardware's and reach the host as they are: a rule vusb enforces on the
        devices it defines (a wMaxPacketSize the speed does not allow, say) is only reported."""
        try:
            super()._validate()
        except DeviceDefinitionError as exc:
            log.warning("%s: its descriptors break a rule of the USB specification (%s); proxied as they are",
                        self.backend.description, exc)

    # ------------------------------------------------------------ the physical device
    def open(self) -> ProxyDevice:
        """Take the device from the operating system (detach its kernel drivers, claim its interfaces)."""
        if not self.is_open:
            self.backend.open()
            self.is_open = True
            log.info("%s: taken from the operating system for export", self.describe())
        return self

    def close(self) -> None:
        """Give the device back: release it and re-attach its kernel drivers."""
        if self.attached:
            self.detach()
        if self.is_open:
            self.is_open = False
            try:
                self.backend.close()
            except ProxyError as exc:
                log.warning("%s: giving it back to the operating system: %s", self.describe(), exc)
            else:
                log.info("%s: %s", self.describe(), "released (it was unplugged)" if self.gone
                         else "given back to the operating system")

    def __enter__(self) -> ProxyDevice:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def aclose(self) -> None:
        self.close()
        await super().aclose()

    def attach(self) -> None:
        if self.gone:
            raise ProxyError(f"{self.describe()} was unplugged")
        if not self.is_open:
            self.open()
        super().attach()

    # ------------------------------------------------------------ filters
    def add_hook(self, on_submit: SubmitHook | None = None, on_complete: CompleteHook | None = None) -> Hook:
        """Add a filter between host and device (see the module docstring); returns it, for :meth:`remove_hook`.

        Hooks run in the order added; the first ``on_submit`` that answers, drops or
        delays a URB decides for it.  They see the URBs that fault rules let through.
        """
        hook = Hook(on_submit, on_complete)
        self.hooks.append(hook)
        return hook

    def remove_hook(self, hook: Hook) -> None:
        self.hooks.remove(hook)

    # ------------------------------------------------------------ URB path
    def _request(self, urb: Urb) -> TransferRequest:
        setup = urb.setup
        if urb.ep == 0:
            assert setup is not None
            data = b"" if setup.is_in else bytes(urb.data[:setup.length])  # wLength is the host's, never longer
            return TransferRequest(0x80 if setup.is_in else 0, TransferType.CONTROL,
                                   setup.length if setup.is_in else len(data), data, setup)
        address = urb.address
        ttype = self._endpoints[address].transfer_type
        iso_lengths = None
        data = b""
        if urb.iso_packets is not None:
            iso_lengths = tuple(p.length for p in urb.iso_packets)
            if not urb.is_in:
                view = memoryview(urb.data)
                data = b"".join(bytes(view[p.offset:p.offset + p.length]) for p in urb.iso_packets)
        elif not urb.is_in:
            data = bytes(urb.data)
        return TransferRequest(address, ttype, urb.length if urb.is_in else len(data), data, None, iso_lengths,
                               short_not_ok=bool(urb.flags & URB_SHORT_NOT_OK),
                               zero_packet=bool(urb.flags & URB_ZERO_PACKET))

    def _forward(self, urb: Urb) -> HandlerResult:
        """Through the hooks to the device."""
        if self.hooks and any(h.on_submit is not None for h in self.hooks):
            for hook in self.hooks:
                if hook.on_submit is None:
                    continue
                verdict = hook.on_submit(urb)
                if isinstance(verdict, Awaitable):  # type: ignore[misc]
                    return self._forward_later(urb, verdict, hook)
                decided = self._decided(urb, verdict)
                if decided is not None:
                    return decided
        return self._to_device(urb)

    def _decided(self, urb: Urb, verdict: SubmitVerdict) -> HandlerResult | None:
        if verdict is None:
            return None
        if verdict is DROP:
            self._log(urb, "dropped by a hook")
            return asyncio.get_running_loop().create_future()
        if isinstance(verdict, Completion):
            self._log(urb, f"answered by a hook: status {verdict.status}")
            return verdict
        raise ProxyError(f"an on_submit hook returned {verdict!r}: return None, a Completion or DROP")

    async def _forward_later(self, urb: Urb, pending: Awaitable[SubmitVerdict], after: Hook) -> Completion:
        verdict = await pending
        decided = self._decided(urb, verdict)
        if decided is None:
            rest = self.hooks[self.hooks.index(after) + 1:] if after in self.hooks else []
            for hook in rest:
                if hook.on_submit is None:
                    continue
                v = hook.on_submit(urb)
                if isinstance(v, Awaitable):  # type: ignore[misc]
                    v = await v
                decided = self._decided(urb, v)
                if decided is not None:
                    break
        result = decided if decided is not None else self._to_device(urb)
        return result if isinstance(result, Completion) else await result

    def _to_device(self, urb: Urb) -> HandlerResult:
        """One backend transfer for the URB; its answer after the on_complete hooks."""
        if self.gone:
            return Completion(Status.ENODEV)
        loop = asyncio.get_running_loop()
        self._loop = loop
        request = self._request(urb)
        endpoint = self._endpoints.get(urb.address if urb.ep else 0)
        assert isinstance(endpoint, ProxyEndpoint)
        future: asyncio.Future[TransferResult] = loop.create_future()
        flight = _Flight(urb, future)
        loop_thread = threading.get_ident()

        def done(result: TransferResult) -> None:  # any thread
            flight.arrived = result
            try:
                if threading.get_ident() == loop_thread:
                    loop.call_soon(flight.land)
                else:
                    loop.call_soon_threadsafe(flight.land)
            except RuntimeError:
                pass  # the loop is closed: nobody waits for this URB any more

        if self.log_transfers:
            self._log(urb, f"to the device: {len(request.data)} bytes out, {request.length if request.is_in else 0} in")
        try:
            flight.transfer = self.backend.submit(request, done)
        except DeviceGone:
            self._device_gone()
            return Completion(Status.ENODEV)
        except ProxyError as exc:
            log.warning("%s: URB seqnum %d could not be started (%s); answering -EPROTO", self.describe(), urb.seqnum,
                        exc)
            return Completion(Status.EPROTO)
        self.transfers += 1
        key = id(urb)
        endpoint.flights[key] = flight
        future.add_done_callback(flight.cancel_transfer)
        future.add_done_callback(lambda _: endpoint.flights.pop(key, None))
        # Derived (not a task) so a URB unlinked in the turn its answer came still gets it (see Derived)
        answer = Derived(lambda result: self._answer(urb, cast(TransferResult, result)))
        answer.follow(cast("asyncio.Future[Completion]", future))
        return answer

    def _answer(self, urb: Urb, result: TransferResult) -> Completion:
        """A backend result as the host's Completion, after the on_complete hooks."""
        if result.status == Status.ENODEV:
            self._device_gone()
        if result.iso_packets is not None and urb.iso_packets is not None:
            packets = tuple(IsoPacket(p.offset, p.length, actual, status)
                            for p, (actual, status) in zip(urb.iso_packets, result.iso_packets, strict=False))
            errors = sum(1 for p in packets if p.status)
            completion = Completion(result.status, result.data if urb.is_in else b"",
                                    None if urb.is_in else result.actual_length, iso_packets=packets,
                                    error_count=errors, start_frame=urb.start_frame)
        elif urb.is_in or (urb.setup is not None and urb.setup.is_in):
            completion = Completion(result.status, result.data)
        else:
            completion = Completion(result.status, b"", result.actual_length)
        if urb.ep == 0 and urb.setup is not None and self.faults.descriptor_rules and completion.status == 0 \
                and is_get_descriptor(urb.setup):
            completion = Completion(0, self.faults.patch_descriptor(urb.setup, bytes(completion.data)))
        for hook in self.hooks:
            if hook.on_complete is not None:
                changed = hook.on_complete(urb, completion)
                if changed is not None:
                    if not isinstance(changed, Completion):
                        raise ProxyError(f"an on_complete hook returned {changed!r}: return None or a Completion")
                    completion = changed
        if self.log_transfers:
            self._log(urb, f"answered: status {completion.status}, {len(completion.data)} bytes in"
                           + (f", {completion.actual_length} bytes out" if completion.actual_length is not None else ""))
        return completion

    def _log(self, urb: Urb, what: str) -> None:
        if log.isEnabledFor(logging.INFO):
            where = urb.setup.describe() if urb.setup is not None else f"endpoint 0x{urb.address:02x}"
            log.info("%s: seqnum %d %s: %s", self.describe(), urb.seqnum, where, what)

    # ------------------------------------------------------------ control: state changes through the backend
    def _control(self, urb: Urb) -> HandlerResult:
        setup = urb.setup
        if setup is None:
            return Completion(Status.EPIPE)
        if setup.type == RequestType.STANDARD and not setup.is_in:
            if setup.request == Request.SET_CONFIGURATION and setup.recipient == Recipient.DEVICE:
                return self._state_change(urb, self._set_configuration(setup))
            if setup.request == Request.SET_INTERFACE and setup.recipient == Recipient.INTERFACE:
                return self._state_change(urb, self._set_interface(setup))
            if setup.request == Request.CLEAR_FEATURE and setup.recipient == Recipient.ENDPOINT and setup.value == 0 \
                    and setup.index & 0xFF not in (0, 0x80):
                return self._state_change(urb, self._clear_halt(setup))
        return self._forward(urb)

    def _state_change(self, urb: Urb, change: Awaitable[None]) -> Awaitable[Completion]:
        async def run() -> Completion:
            if self.gone:
                if asyncio.iscoroutine(change):
                    change.close()
                return Completion(Status.ENODEV)
            assert urb.setup is not None
            try:
                await change
            except Stall:
                return Completion(Status.EPIPE)
            except DeviceGone:
                self._device_gone()
                return Completion(Status.ENODEV)
            except ProxyError as exc:
                log.warning("%s: %s failed: %s; answering a stall", self.describe(), urb.setup.describe(), exc)
                return Completion(Status.EPIPE)
            if self.log_transfers:
                self._log(urb, "done through the backend")
            return Completion(0, b"", 0)

        return run()

    async def _set_configuration(self, setup: SetupPacket) -> None:
        value = setup.value & 0xFF
        if value and not any(c.value == value for c in self.configurations):
            raise Stall()
        standard.set_configuration(self, value)  # answers this side's pending URBs -ESHUTDOWN, cancelling them
        await self.backend.set_configuration(value)

    async def _set_interface(self, setup: SetupPacket) -> None:
        standard.set_interface(self, setup)  # raises Stall for an interface or alternate the device lacks
        await self.backend.set_interface(setup.index & 0xFF, setup.value)

    async def _clear_halt(self, setup: SetupPacket) -> None:
        address = setup.index & 0xFF
        if not self._endpoint_active(address):
            raise Stall()
        await self.backend.clear_halt(address)
        self._endpoints[address].clear_halt()

    # ------------------------------------------------------------ unplugged
    def _device_gone(self) -> None:
        if self.gone:
            return
        self.gone = True
        log.warning("%s was unplugged: its URBs are answered -ENODEV and its client is disconnected", self.describe())
        loop = self._loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
        loop.call_soon(self._finish_gone)

    def _finish_gone(self) -> None:
        for ep in self._endpoints.values():
            for flight in list(ep.flights.values()) if isinstance(ep, ProxyEndpoint) else ():
                flight.land()
            ep._fail_pending(Status.ENODEV)
        self.disconnect()
        if self.is_open:
            self.close()
        for listener in list(self.on_gone):
            try:
                listener(self)
            except Exception:
                log.exception("%s: an on_gone listener failed", self.describe())


def open_physical(vid_pid: str | None = None, device: str | None = None) -> ProxyBackend:
    """The libusb backend of a device plugged into this machine, by ``"VVVV:PPPP"`` or ``"BUS.ADDR"``.

    Needs the ``proxy`` extra (``pip install 'vusb[proxy]'``, which installs libusb1).
    """
    from vusb.proxy_libusb import LibusbBackend

    return LibusbBackend.find(vid_pid=vid_pid, device=device)


__all__ = [
    "DROP", "CompleteHook", "DeviceGone", "Hook", "ProxyDevice", "ProxyEndpoint", "ProxyError", "SubmitHook",
    "open_physical",
]


# ------------------------------------------------------------ fault rules from text (vusb proxy --faults / --fault)
def read_fault_rules(text: str, file: str = "<faults>") -> list[Any]:
    """Fault rules from YAML: a list of entries as in a profile's ``faults:`` (or a mapping holding one).

    Each entry is checked by the profile loader (same kinds, fields and errors, naming
    the file, line and field).  Returns fresh :class:`vusb.faults.Fault` rules.
    """
    from pathlib import Path

    import yaml

    from vusb.errors import ProfileError
    from vusb.profile_faults import read_faults
    from vusb.profile_fields import ProfileContext

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ProfileError(f"invalid YAML: {exc}", file=file) from None
    if isinstance(root, yaml.MappingNode):
        inner = [v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "faults"]
        if not inner:
            raise ProfileError("expected a list of fault entries (or a mapping with 'faults:')", file=file,
                               line=root.start_mark.line + 1)
        root = inner[0]
    if not isinstance(root, yaml.SequenceNode):
        raise ProfileError("expected a list of fault entries, each with a 'kind' (stall, delay, drop, ...)",
                           file=file, line=root.start_mark.line + 1 if root is not None else None)
    ctx = ProfileContext(file, Path.cwd())
    return [spec.rule() for spec in read_faults(ctx, root)]


def parse_fault_option(text: str) -> list[Any]:
    """One ``--fault`` option: ``KIND,FIELD=VALUE,...`` (``stall,endpoint=0x81,count=1``) as a rule."""
    import yaml

    kind, _, rest = text.partition(",")
    entry: dict[str, Any] = {"kind": kind.strip()}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise ProxyError(f"--fault {text!r}: {item!r} is not FIELD=VALUE")
        entry[name.strip()] = yaml.safe_load(value)
    return read_fault_rules(yaml.safe_dump([entry]), f"--fault {text}")


__all__ += ["parse_fault_option", "read_fault_rules"]
