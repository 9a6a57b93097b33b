"""Boot a Debian kernel under QEMU and drive it from Python.

The guest runs a small shell agent on a virtio serial port.  The host sends
a command as ``RUN <id> <timeout> <script length> <stdin length>`` followed
by the base64-encoded script and stdin; the agent runs the script with
``sh`` in its own session, captures stdout, stderr and the exit status into
files and answers with a framed reply::

    @@VUSB BEGIN <id>
    <stdout, base64, several lines>
    @@VUSB STDERR <id>
    <stderr, base64, several lines>
    @@VUSB END <id> <status> <timed out: 0|1>

Timeouts are enforced in the guest (the command's process group is killed)
and, with some grace, on the host.  The kernel console (ttyS0) goes to a
file, see :meth:`Guest.console_log`.

The module is the facade: :class:`Guest`, :class:`SyncGuest` and
:class:`GuestOptions`.  Its parts live beside it: :mod:`vusb.harness.results`
(command results and errors), :mod:`vusb.harness.target` (the API shared with the
local vhci-hcd), :mod:`vusb.harness.qemu` (the QEMU process and the agent channel;
the agent itself is ``guest_files/agent.sh``).  Every name this module had is still
importable from it.

All I/O with QEMU happens on a private event loop in a background thread,
so a :class:`Guest` can be awaited from any event loop (a session-scoped
pytest-asyncio loop, a per-test loop, ``asyncio.run``...) and used from
plain synchronous code through :attr:`Guest.sync`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Coroutine, Generator, Sequence
from types import TracebackType
from typing import Any, TypeVar

from vusb.errors import ArgumentError

from .image import DEFAULT_KERNEL, ensure_image, find_qemu
from .image import GuestImage as GuestImage
from .qemu import GUEST_ADDRESS as GUEST_ADDRESS
from .qemu import HOST_FROM_GUEST as HOST_FROM_GUEST
from .qemu import _clean_stale_runtime_dirs as _clean_stale_runtime_dirs
from .qemu import _GuestCore, _LoopThread
from .results import CommandResult as CommandResult
from .results import GuestBootError as GuestBootError
from .results import GuestCommandError as GuestCommandError
from .results import GuestDiedError as GuestDiedError
from .results import GuestError as GuestError
from .results import GuestTimeoutError as GuestTimeoutError
from .results import ImportedPort as ImportedPort
from .results import parse_usbip_port as parse_usbip_port
from .target import STALE_NODE_NOTE as STALE_NODE_NOTE
from .target import STALE_NODE_PATTERNS as STALE_NODE_PATTERNS
from .target import BackgroundJob as BackgroundJob
from .target import UsbTarget as UsbTarget
from .target import _glob_to_shell as _glob_to_shell

__all__ = [
    "BackgroundJob",
    "CommandResult",
    "Guest",
    "GuestBootError",
    "GuestCommandError",
    "GuestDiedError",
    "GuestError",
    "GuestOptions",
    "GuestTimeoutError",
    "ImportedPort",
    "SyncGuest",
    "UsbTarget",
]

logger = logging.getLogger("vusb.harness")

T = TypeVar("T")


# ---------------------------------------------------------------------------
# Public facade


@dataclasses.dataclass(frozen=True)
class GuestOptions:
    """How a guest is started: one value instead of the same eight parameters everywhere.

    ``Guest.start(options=GuestOptions(kernel="6.12", memory_mb=1024))`` is
    ``Guest.start("6.12", memory_mb=1024)``; :meth:`replace` derives variants.
    """

    kernel: str = DEFAULT_KERNEL
    """"5.10", "6.1" (default) or "6.12", or an exact Debian ABI such as "6.1.0-50"."""
    cache_dir: str | os.PathLike[str] | None = None
    """The image cache; default ``$VUSB_GUEST_CACHE`` or ``~/.cache/vusb/guest``."""
    memory_mb: int = 768
    """Guest memory."""
    boot_timeout: float = 180.0
    """Seconds from starting QEMU to the agent being ready."""
    console_loglevel: int = 7
    """Kernel messages below this level go to the console log after boot (7: all but debug)."""
    qemu_args: tuple[str, ...] = ()
    """Extra QEMU arguments."""
    command_grace: float = 15.0
    """Extra seconds the host waits for a command beyond its own timeout before declaring the guest unresponsive."""
    host_forwards: tuple[tuple[int, int], ...] = ()
    """(host port, guest port) pairs: the host's 127.0.0.1:host port reaches the guest's TCP guest port."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "qemu_args", tuple(self.qemu_args))
        object.__setattr__(self, "host_forwards", tuple((int(h), int(g)) for h, g in self.host_forwards))

    def replace(self, **changes: Any) -> GuestOptions:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _options(options: GuestOptions | None, kernel: str, **given: Any) -> GuestOptions:
    """The options: ``options`` if given (then the other arguments must be left alone), else the arguments."""
    defaults = GuestOptions()
    if options is None:
        return GuestOptions(kernel=kernel, **given)
    changed = [name for name, value in given.items() if value != getattr(defaults, name)]
    if kernel != DEFAULT_KERNEL or changed:
        raise ArgumentError(f"give either options= or {', '.join(changed) or 'kernel'}, not both")
    return options


class _GuestStarter:
    """What :meth:`Guest.start` returns: await it, or use ``async with``."""

    def __init__(self, coro_factory: Any) -> None:
        self._factory = coro_factory
        self._guest: Guest | None = None

    def __await__(self) -> Generator[Any, None, Guest]:
        guest: Guest = yield from self._factory().__await__()
        return guest

    async def __aenter__(self) -> Guest:
        self._guest = await self._factory()
        return self._guest

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._guest is not None:
            await self._guest.stop()


_SHARED: dict[tuple[str, str], Guest] = {}
_SHARED_LOCK = threading.Lock()


class Guest(UsbTarget):
    """A Debian kernel booted under QEMU with vhci-hcd and usbip.

    Start one with ``guest = await Guest.start("6.1")`` (or ``async with
    Guest.start() as guest``), or synchronously with :meth:`start_sync`, or
    get the process-wide shared one with :meth:`shared`.  From the guest,
    the host's 127.0.0.1 is :attr:`host_address` (10.0.2.2).
    """

    host_address = HOST_FROM_GUEST

    def __init__(self, core: _GuestCore, thread: _LoopThread) -> None:
        self._core = core
        self._thread = thread
        self._stopped = False

    # -- starting ---------------------------------------------------------

    @classmethod
    def start(
        cls,
        kernel: str = DEFAULT_KERNEL,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        memory_mb: int = 768,
        boot_timeout: float = 180.0,
        console_loglevel: int = 7,
        qemu_args: Sequence[str] = (),
        command_grace: float = 15.0,
        host_forwards: Sequence[tuple[int, int]] = (),
        options: GuestOptions | None = None,
    ) -> _GuestStarter:
        """Build the image if needed (first use: about a minute), boot, wait for the agent.

        The arguments are the fields of :class:`GuestOptions`; ``options=`` gives them as one value.

        * `kernel`: "5.10", "6.1" (default) or "6.12" (or an exact Debian ABI).
        * `cache_dir`: image cache; default ``$VUSB_GUEST_CACHE`` or
          ``~/.cache/vusb/guest``.
        * `console_loglevel`: kernel messages below this level go to the
          console log after boot (7: everything except debug).
        * `command_grace`: extra seconds the host waits for a command beyond
          its own timeout before declaring the guest unresponsive.
        * `host_forwards`: (host port, guest port) pairs: the host's
          127.0.0.1:host port reaches the guest's TCP guest port (e.g. a
          usbipd running in the guest).
        """

        chosen = _options(options, kernel, cache_dir=cache_dir, memory_mb=memory_mb, boot_timeout=boot_timeout,
                          console_loglevel=console_loglevel, qemu_args=tuple(qemu_args),
                          command_grace=command_grace, host_forwards=tuple(host_forwards))

        async def go() -> Guest:
            return await asyncio.wrap_future(cls._start_future(chosen))

        return _GuestStarter(go)

    @classmethod
    def start_sync(
        cls,
        kernel: str = DEFAULT_KERNEL,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        memory_mb: int = 768,
        boot_timeout: float = 180.0,
        console_loglevel: int = 7,
        qemu_args: Sequence[str] = (),
        command_grace: float = 15.0,
        host_forwards: Sequence[tuple[int, int]] = (),
        options: GuestOptions | None = None,
    ) -> Guest:
        """Blocking :meth:`start`; the returned guest works from any event loop."""
        chosen = _options(options, kernel, cache_dir=cache_dir, memory_mb=memory_mb, boot_timeout=boot_timeout,
                          console_loglevel=console_loglevel, qemu_args=tuple(qemu_args),
                          command_grace=command_grace, host_forwards=tuple(host_forwards))
        return cls._start_future(chosen).result()

    @classmethod
    def _start_future(cls, options: GuestOptions) -> concurrent.futures.Future[Guest]:
        find_qemu()  # fail fast, before any build
        kernel, cache_dir = options.kernel, options.cache_dir
        thread = _LoopThread(f"vusb-guest-{kernel}")

        async def boot() -> Guest:
            loop = asyncio.get_running_loop()
            try:
                image = await loop.run_in_executor(
                    None, lambda: ensure_image(kernel, cache_dir, log=logger.info)
                )
                core = _GuestCore(image, memory_mb=options.memory_mb, console_loglevel=options.console_loglevel,
                                  qemu_args=options.qemu_args, grace=options.command_grace,
                                  host_forwards=options.host_forwards)
                await core.boot(options.boot_timeout)  # shuts QEMU down itself on failure
            except BaseException:
                loop.call_soon(loop.stop)  # ends the thread once this task is done
                raise
            return cls(core, thread)

        return thread.submit(boot())

    @classmethod
    def shared(cls, kernel: str = DEFAULT_KERNEL, *,
               cache_dir: str | os.PathLike[str] | None = None) -> Guest:
        """The process-wide guest for `kernel`, started on first use (blocking).

        Meant for session-scoped test fixtures: every caller gets the same
        running guest; it is stopped when the process exits (or by
        :meth:`stop`, after which the next call starts a new one).  From a
        coroutine, use ``await asyncio.to_thread(Guest.shared, "6.1")``.
        """
        key = (kernel, str(cache_dir) if cache_dir is not None else "")
        with _SHARED_LOCK:
            guest = _SHARED.get(key)
            if guest is None or not guest.is_running:
                guest = cls.start_sync(kernel, cache_dir=cache_dir)
                _SHARED[key] = guest
            return guest

    # -- information ------------------------------------------------------

    @property
    def image(self) -> GuestImage:
        return self._core.image

    @property
    def kernel_release(self) -> str:
        """``uname -r`` of the guest, e.g. ``6.1.0-50-amd64``."""
        return self._core.image.kernel_release

    @property
    def boot_seconds(self) -> float:
        """Wall time from starting QEMU to the agent being ready."""
        return self._core.boot_seconds

    @property
    def is_running(self) -> bool:
        return not self._stopped and self._core.alive

    @property
    def sync(self) -> SyncGuest:
        """Blocking versions of the methods, for synchronous code."""
        return SyncGuest(self)

    def console_log(self) -> str:
        """Everything the guest printed on its console (ttyS0) so far."""
        return self._core.console_log()

    def diagnostics(self) -> str:
        return self._core.console_tail()

    # -- commands ---------------------------------------------------------

    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._thread.loop.is_closed():
            coro.close()
            raise GuestDiedError("the guest has been stopped")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._thread.loop:
            return await coro
        return await asyncio.wrap_future(self._thread.submit(coro))

    async def run(
        self,
        command: str,
        *,
        timeout: float | None = 60.0,
        input: bytes | str | None = None,
        check: bool = False,
    ) -> CommandResult:
        """Run `command` (a shell script, run by ``sh`` in the guest as root).

        Returns stdout, stderr and the exit status.  After `timeout` seconds
        the command's process group is killed and :class:`GuestTimeoutError`
        is raised (``None``: no limit).  `input` is fed to its stdin.  With
        `check`, a non-zero status raises :class:`GuestCommandError`.
        Commands run one at a time; use :meth:`start_background` for
        long-running ones.
        """
        data = input.encode() if isinstance(input, str) else (input or b"")
        result = await self._call(self._core.run(command, data, timeout))
        return result.check() if check else result

    async def dmesg(self) -> str:
        """The guest kernel's message buffer."""
        return (await self.run("dmesg", timeout=60, check=True)).stdout

    async def dmesg_mark(self) -> float:
        """A mark for :meth:`dmesg_since`: the time stamp of the kernel's latest message."""
        stamps = [t for t in map(_kernel_stamp, (await self.dmesg()).splitlines()) if t is not None]
        return stamps[-1] if stamps else 0.0

    async def dmesg_since(self, mark: float) -> str:
        """The kernel messages logged after `mark` (from :meth:`dmesg_mark`).

        Messages are told apart by their time stamps, not counted: once the kernel's
        ring buffer is full it drops its oldest lines, and a count taken earlier would
        then skip new ones.
        """
        lines: list[str] = []
        keep = False
        for line in (await self.dmesg()).splitlines():
            stamp = _kernel_stamp(line)
            if stamp is not None:
                keep = stamp > mark
            if keep:
                lines.append(line)
        return "\n".join(lines)

    async def stop(self) -> None:
        """Power the guest off (QEMU is killed if it does not exit)."""
        if self._stopped:
            return
        self._stopped = True
        if not self._thread.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                await asyncio.wrap_future(self._thread.submit(self._core.shutdown()))
        await asyncio.to_thread(self._thread.stop)

    def stop_sync(self) -> None:
        """Blocking :meth:`stop`."""
        if self._stopped:
            return
        self._stopped = True
        if not self._thread.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._thread.submit(self._core.shutdown()).result()
        self._thread.stop()

    async def __aenter__(self) -> Guest:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_sync()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<Guest {self.kernel_release} {state}>"


class SyncGuest:
    """Blocking wrapper around a :class:`Guest` (``guest.sync``).

    Do not use it from inside a coroutine: it blocks the event loop.
    """

    def __init__(self, guest: Guest) -> None:
        self.guest = guest

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        thread = self.guest._thread
        if thread.loop.is_closed():
            coro.close()
            raise GuestDiedError("the guest has been stopped")
        return thread.submit(coro).result()

    @property
    def host_address(self) -> str:
        return self.guest.host_address

    def run(self, command: str, *, timeout: float | None = 60.0, input: bytes | str | None = None,
            check: bool = False) -> CommandResult:
        return self._wait(self.guest.run(command, timeout=timeout, input=input, check=check))

    def attach(self, host: str | None, port: int, busid: str, *, timeout: float = 60.0) -> int:
        return self._wait(self.guest.attach(host, port, busid, timeout=timeout))

    def detach(self, port: int, *, timeout: float = 60.0) -> None:
        self._wait(self.guest.detach(port, timeout=timeout))

    def ports(self) -> list[ImportedPort]:
        return self._wait(self.guest.ports())

    def list_remote(self, host: str | None = None, port: int = 3240, *, timeout: float = 60.0,
                    check: bool = True) -> CommandResult:
        return self._wait(self.guest.list_remote(host, port, timeout=timeout, check=check))

    def wait_for(self, condition: str, *, timeout: float = 30.0, interval: float = 0.1,
                 description: str | None = None) -> None:
        self._wait(self.guest.wait_for(condition, timeout=timeout, interval=interval,
                                       description=description))

    def wait_for_path(self, pattern: str, *, timeout: float = 30.0) -> list[str]:
        return self._wait(self.guest.wait_for_path(pattern, timeout=timeout))

    def wait_for_usb_device(self, vendor_id: int, product_id: int, *, timeout: float = 30.0,
                            configured: bool = True, serial: str | None = None) -> str:
        return self._wait(self.guest.wait_for_usb_device(vendor_id, product_id, timeout=timeout,
                                                         configured=configured, serial=serial))

    def wait_for_disk(self, devdir: str, *, timeout: float = 60.0) -> str:
        return self._wait(self.guest.wait_for_disk(devdir, timeout=timeout))

    def wait_for_input_device(self, name: str, *, exact: bool = False, timeout: float = 30.0) -> str:
        return self._wait(self.guest.wait_for_input_device(name, exact=exact, timeout=timeout))

    def wait_for_tty(self, pattern: str = "/dev/ttyACM*", *, timeout: float = 30.0) -> str:
        return self._wait(self.guest.wait_for_tty(pattern, timeout=timeout))

    def read_file(self, path: str, *, timeout: float = 120.0) -> bytes:
        return self._wait(self.guest.read_file(path, timeout=timeout))

    def write_file(self, path: str, data: bytes | str, *, mode: int | None = None,
                   timeout: float = 120.0) -> None:
        self._wait(self.guest.write_file(path, data, mode=mode, timeout=timeout))

    def dmesg(self) -> str:
        return self._wait(self.guest.dmesg())

    def console_log(self) -> str:
        return self.guest.console_log()

    def stop(self) -> None:
        self.guest.stop_sync()


def _kernel_stamp(line: str) -> float | None:
    """The time stamp of a ``dmesg`` line (``[  12.345678] text``), or None for a line without one."""
    if not line.startswith("["):
        return None
    end = line.find("]")
    try:
        return float(line[1:end])
    except ValueError:
        return None
