"""Endpoints: one queue of URBs each, processed in order, never blocking another.

A handler turns a URB into a :class:`~vusb.urb.Completion`, either at once (the
fast path: no task, no future) or by returning an awaitable.  While an awaitable
is outstanding the endpoint holds its later URBs, exactly as a real endpoint
works through its transfers one at a time; other endpoints are unaffected.

Endpoints that only stream data use the built-in queues: :meth:`Endpoint.send`
queues IN data (an IN URB with nothing queued waits, as a real device NAKs) and
:meth:`Endpoint.receive` returns OUT data.

An answer the device has given is never thrown away: a URB whose answer is known when
the host unlinks it, or when the endpoint halts or shuts down, gets that answer first
(its data goes to the host; the unlink is answered 0), even if the callback that would
deliver it has not run yet.  :class:`Derived` extends this to answers that a function
makes from another one (fault rules, :mod:`vusb.faults`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Callable, Union

from vusb.constants import Status, TransferType
from vusb.descriptors import EndpointDescriptor
from vusb.errors import Stall, UsageError
from vusb.urb import Completion, Urb, UrbState

if TYPE_CHECKING:
    from vusb.faults import FaultSet

log = logging.getLogger("vusb.endpoint")

_QUEUED = UrbState.QUEUED
_ACTIVE = UrbState.ACTIVE

HandlerResult = Union[Completion, Awaitable[Completion]]
Handler = Callable[[Urb], HandlerResult]


class Derived(asyncio.Future[Completion]):
    """A handler result made from another one by a plain function, once that one is known.

    Fault rules (:mod:`vusb.faults`) answer through one: a rule changes the endpoint's own
    answer (cuts it, counts its bytes) or produces it later.  A task could do the same,
    but a task resumes only in a later loop turn, and an endpoint hands its data over
    (an IN waiter gets the next report) in the turn the data comes.  A URB unlinked in
    between would be cancelled with its task and the data it was given lost.  The
    endpoint calls :meth:`settle` first when it unlinks or fails the URB: if the followed
    result is known, the change is applied at once and the URB answered with it, as it
    would be without the rule.
    """

    def __init__(self, change: Callable[[Completion], Completion]) -> None:
        super().__init__(loop=asyncio.get_running_loop())
        self._change = change
        self._source: asyncio.Future[Completion] | None = None

    def follow(self, result: HandlerResult) -> None:
        """Finish with ``change(result)`` once ``result`` is known (at once for a Completion)."""
        if self.done():  # cancelled meanwhile: nobody waits for the result
            if isinstance(result, asyncio.Future):
                result.cancel()
            elif asyncio.iscoroutine(result):
                result.close()
            return
        if isinstance(result, Completion):
            self._finish(result)
            return
        source = asyncio.ensure_future(result)
        self._source = source
        source.add_done_callback(self._source_done)

    def settle(self) -> None:
        """Finish now if the followed result is known but its done callback has not run yet."""
        source = self._source
        if source is not None and source.done() and not self.done():
            source.remove_done_callback(self._source_done)
            self._source_done(source)

    def cancel(self, msg: Any | None = None) -> bool:
        """Cancel, and the followed result with it at once (a waiter must take no more data)."""
        source, self._source = self._source, None
        if source is not None:
            source.cancel()
        return super().cancel(msg)

    def _source_done(self, source: asyncio.Future[Completion]) -> None:
        if source is not self._source or self.done():
            return
        self._source = None
        if source.cancelled():
            super().cancel()
            return
        exc = source.exception()
        if exc is not None:
            self.set_exception(exc)
        else:
            self._finish(source.result())

    def _finish(self, completion: Completion) -> None:
        try:
            answer = self._change(completion)
        except Exception as exc:  # noqa: BLE001 - passed on: the endpoint logs it and answers a stall
            self.set_exception(exc)
        else:
            self.set_result(answer)


class Endpoint:
    """One endpoint of a device and its queue of pending URBs."""

    def __init__(self, address: int, descriptor: EndpointDescriptor | None = None, *, max_packet_size: int = 64) -> None:
        self.address = address
        self.descriptor = descriptor
        self.max_packet_size = descriptor.max_packet_size & 0x7FF if descriptor is not None else max_packet_size
        self.halted = False
        self.handler: Handler | None = None
        self._queue: deque[Urb] = deque()
        self._active: Urb | None = None
        self._active_future: asyncio.Future[Completion] | None = None
        self._in_data: deque[tuple[bytes | memoryview, asyncio.Future[None] | None]] = deque()
        self._in_waiter: asyncio.Future[Completion] | None = None
        self._out_data: asyncio.Queue[bytes] | None = None
        self.on_out: Callable[[bytes | memoryview], None] | None = None
        self.faults: FaultSet | None = None
        """The device's fault rules while some can act on this endpoint (see :mod:`vusb.faults`), else None."""
        self.halts_cleared = 0
        """Times the host cleared a halt of this endpoint (CLEAR_FEATURE(ENDPOINT_HALT)), for tests."""

    # ------------------------------------------------------------ properties
    @property
    def number(self) -> int:
        return self.address & 0x0F

    @property
    def is_in(self) -> bool:
        return bool(self.address & 0x80)

    @property
    def transfer_type(self) -> TransferType:
        return self.descriptor.transfer_type if self.descriptor is not None else TransferType.CONTROL

    @property
    def pending(self) -> int:
        """URBs queued or in progress on this endpoint."""
        return len(self._queue) + (1 if self._active is not None else 0)

    def __repr__(self) -> str:
        return f"<Endpoint 0x{self.address:02x} {self.transfer_type.name.lower()} pending={self.pending}>"

    # ------------------------------------------------------------ URB path
    def submit(self, urb: Urb) -> None:
        urb.endpoint = self
        if self.halted and self.address != 0:
            urb.complete(Completion(Status.EPIPE))
            return
        self._queue.append(urb)
        if self._active is None:
            self._run()

    def _run(self) -> None:
        queue = self._queue
        while queue and self._active is None:
            urb = queue.popleft()
            if urb.state is not _QUEUED:
                continue
            if self.halted and self.address != 0:
                urb.complete(Completion(Status.EPIPE))
                continue
            urb.state = _ACTIVE
            try:
                if self.faults is not None:
                    result = self.faults.dispatch(self, urb)
                elif self.handler is not None:
                    result = self.handler(urb)
                else:
                    result = self._dispatch(urb)
            except Stall:
                urb.complete(Completion(Status.EPIPE))
                continue
            except Exception:
                log.exception("endpoint 0x%02x: handler failed on %r; answering with a stall", self.address, urb)
                urb.complete(Completion(Status.EPIPE))
                continue
            if type(result) is Completion or isinstance(result, Completion):
                urb.complete(result)
                continue
            fut = asyncio.ensure_future(result)
            self._active = urb
            self._active_future = fut
            fut.add_done_callback(self._finished)

    def _finished(self, fut: asyncio.Future[Completion]) -> None:
        if fut is not self._active_future:
            # A callback asyncio had already scheduled for a future that unlink, halt or
            # shutdown has since detached: it must not finish whatever URB is active now.
            return
        self._answer_active(fut)
        self._run()

    def _answer_active(self, fut: asyncio.Future[Completion]) -> None:
        """Complete the URB in progress with what its handler's future ended with."""
        urb = self._active
        self._active = None
        self._active_future = None
        if urb is not None and not fut.cancelled():
            exc = fut.exception()
            if isinstance(exc, Stall):
                urb.complete(Completion(Status.EPIPE))
            elif exc is not None:
                log.error("endpoint 0x%02x: handler failed on %r: %r; answering with a stall", self.address, urb, exc,
                          exc_info=exc)
                urb.complete(Completion(Status.EPIPE))
            else:
                urb.complete(fut.result())

    def _known_answer(self) -> asyncio.Future[Completion] | None:
        """The future of the URB in progress if its answer is known but not delivered yet.

        It is known when the handler's future is done (it ended in this loop turn, its
        done callback is still queued) or is a :class:`Derived` whose followed result is.
        The future is detached from its callback: the caller delivers it.
        """
        fut = self._active_future
        if fut is None:
            return None
        if isinstance(fut, Derived):
            fut.settle()
        if not fut.done() or fut.cancelled():
            return None
        fut.remove_done_callback(self._finished)
        return fut

    def _dispatch(self, urb: Urb) -> HandlerResult:
        if self.handler is not None:
            return self.handler(urb)
        if self.is_in:
            return self._take_in(urb)
        return self._take_out(urb)

    def unlink(self, urb: Urb) -> bool:
        """Cancel ``urb`` if it has not completed; True if it was cancelled."""
        if urb.state is UrbState.QUEUED:
            urb.cancel()
            try:
                self._queue.remove(urb)
            except ValueError:
                pass
            return True
        if urb.state is UrbState.ACTIVE and urb is self._active:
            known = self._known_answer()
            if known is not None:
                # Answered in this loop turn but not yet delivered (a fault rule's change of
                # the answer included): deliver it now, so its RET_SUBMIT precedes the
                # RET_UNLINK (status 0) and the data it took is not lost.
                self._answer_active(known)
                self._run()
                return False
            fut = self._active_future
            urb.cancel()
            if fut is self._in_waiter:
                self._in_waiter = None
            if fut is not None:
                fut.cancel()  # _finished runs the next URB
            return True
        return False

    def _drop_active(self) -> Urb | None:
        """Detach the URB in progress from its handler (cancelled, never finished by it)."""
        urb, fut = self._active, self._active_future
        self._active = None
        self._active_future = None
        self._in_waiter = None
        if fut is not None:
            fut.remove_done_callback(self._finished)
            fut.cancel()
        return urb

    def _fail_pending(self, status: int) -> None:
        """Answer the URB in progress and every queued one with ``status``, in order.

        A URB in progress whose answer is already known (see :meth:`unlink`) gets that
        answer instead: the device gave it before it halted or left the configuration.
        """
        known = self._known_answer()
        if known is not None:
            self._answer_active(known)
        active = self._drop_active()
        pending = ([active] if active is not None else []) + list(self._queue)
        self._queue.clear()
        for urb in pending:
            urb.complete(Completion(status))

    def cancel_all(self) -> None:
        """Drop every pending URB without answering (connection gone, interface reset)."""
        for urb in self._queue:
            urb.cancel()
        self._queue.clear()
        active = self._drop_active()
        if active is not None:
            active.cancel()

    def shutdown(self) -> None:
        """Answer every pending URB with -ESHUTDOWN (the endpoint left the configuration)."""
        self._fail_pending(Status.ESHUTDOWN)

    def reset(self, *, answer_pending: bool = False) -> None:
        """Forget pending URBs, queued data and the halt.

        A vanished client's URBs are dropped silently; with ``answer_pending`` (the
        host reconfigured the device) each pending URB is answered -ESHUTDOWN so the
        host gets exactly one answer per URB.
        """
        if answer_pending:
            self.shutdown()
        self.cancel_all()
        self.halted = False
        for _, done in self._in_data:
            if done is not None and not done.done():
                done.cancel()
        self._in_data.clear()
        if self._out_data is not None:
            while not self._out_data.empty():
                self._out_data.get_nowait()

    # ------------------------------------------------------------ halt
    def halt(self) -> None:
        """Stall the endpoint: the current and following URBs fail with -EPIPE until cleared."""
        if self.address == 0:
            raise UsageError("endpoint 0 cannot be halted; raise Stall from the request handler instead")
        self.halted = True
        self._fail_pending(Status.EPIPE)

    def clear_halt(self) -> None:
        self.halted = False
        self.halts_cleared += 1
        self._run()

    # ------------------------------------------------------------ IN data queue
    def send(self, data: bytes | bytearray | memoryview) -> asyncio.Future[None]:
        """Queue one IN transfer's worth of data; the returned future is done when a URB took it.

        Data longer than a waiting URB is delivered across several URBs.
        """
        if not self.is_in:
            raise UsageError(f"endpoint 0x{self.address:02x} is OUT; send() is for IN endpoints")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_data.append((bytes(data), done))
        self._feed_waiter()
        return done

    def send_nowait(self, data: bytes | bytearray | memoryview) -> None:
        """Queue IN data without tracking delivery."""
        if not self.is_in:
            raise UsageError(f"endpoint 0x{self.address:02x} is OUT; send_nowait() is for IN endpoints")
        self._in_data.append((bytes(data), None))
        self._feed_waiter()

    @property
    def queued_in(self) -> int:
        return len(self._in_data)

    def _pop_in(self, length: int) -> Completion:
        data, done = self._in_data[0]
        if len(data) <= length:
            self._in_data.popleft()
            if done is not None and not done.done():
                done.set_result(None)
            return Completion(0, data)
        # Longer than the URB: deliver whole packets now, keep the rest.
        cut = max(length - length % self.max_packet_size, 0) or length
        self._in_data[0] = (data[cut:], done)
        return Completion(0, data[:cut])

    def _take_in(self, urb: Urb) -> HandlerResult:
        if self._in_data:
            return self._pop_in(urb.length)
        waiter: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._in_waiter = waiter
        return waiter

    def _feed_waiter(self) -> None:
        waiter = self._in_waiter
        if waiter is not None and not waiter.done() and self._active is not None:
            self._in_waiter = None
            waiter.set_result(self._pop_in(self._active.length))

    # ------------------------------------------------------------ OUT data queue
    def _take_out(self, urb: Urb) -> HandlerResult:
        data = urb.data
        if self.on_out is not None:
            self.on_out(data)
        else:
            if self._out_data is None:
                self._out_data = asyncio.Queue()
            self._out_data.put_nowait(bytes(data))
        return Completion(0, b"", len(data))

    async def receive(self) -> bytes:
        """Wait for the next OUT transfer's data (when no handler or on_out is set)."""
        if self.is_in:
            raise UsageError(f"endpoint 0x{self.address:02x} is IN; receive() is for OUT endpoints")
        if self._out_data is None:
            self._out_data = asyncio.Queue()
        return await self._out_data.get()
