"""The QEMU process behind a :class:`~vusb.harness.guest.Guest`, and the channel to its shell agent.

The guest runs a small shell agent (``guest_files/agent.sh``, package data, added to
the image at boot with the init scripts as a second cpio archive) on a virtio serial
port.  :class:`_GuestCore` starts QEMU, waits for the agent, sends it commands and
reads its framed replies, all on a private event loop in a background thread
(:class:`_LoopThread`).  No QEMU outlives the Python process.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import contextlib
import dataclasses
import io
import itertools
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Coroutine, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from .image import MODULES, CpioWriter, GuestImage, find_qemu
from .results import CommandResult, GuestBootError, GuestDiedError, GuestError, GuestTimeoutError

logger = logging.getLogger("vusb.harness")

T = TypeVar("T")

#: The host's 127.0.0.1 as seen from the guest (QEMU user networking).
HOST_FROM_GUEST = "10.0.2.2"
GUEST_ADDRESS = "10.0.2.15"
_AGENT_PORT_NAME = "org.vusb.agent"
_MARK = "@@VUSB"
_CONSOLE_TAIL_LINES = 40


# ---------------------------------------------------------------------------
# Guest-side scripts (package data, appended to the image at boot as a second cpio archive)


def _guest_file(name: str) -> str:
    return resources.files("vusb.harness").joinpath("guest_files", name).read_text()


def _overlay_cpio(image: GuestImage, loglevel: int) -> bytes:
    buf = io.BytesIO()
    cpio = CpioWriter(buf)
    cpio.add_file("etc/inittab", _guest_file("inittab").encode())
    rcs = (
        _guest_file("rcS.sh").replace("__GUEST__", GUEST_ADDRESS)
        .replace("__HOST__", HOST_FROM_GUEST)
        .replace("__LOGLEVEL__", str(loglevel))
    )
    cpio.add_file("etc/init.d/rcS", rcs.encode(), 0o755)
    agent = _guest_file("agent.sh").replace("__PORTNAME__", _AGENT_PORT_NAME).replace("__MARK__", _MARK)
    cpio.add_file("sbin/vusb-agent", agent.encode(), 0o755)
    cpio.add_file("etc/vusb/modules", "".join(p + "\n" for p in image.load_paths).encode())
    cpio.add_file("etc/hostname", b"vusb-guest\n")
    cpio.add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    cpio.add_file("etc/group", b"root:x:0:\n")
    cpio.close()
    return buf.getvalue()


# ---------------------------------------------------------------------------
# Process-wide bookkeeping: no QEMU survives the Python process


_LIVE: weakref.WeakSet[_GuestCore] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def _kill_all_at_exit() -> None:
    with _LIVE_LOCK:
        cores = list(_LIVE)
    for core in cores:
        core.kill_now()


atexit.register(_kill_all_at_exit)


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                pending = asyncio.all_tasks(self.loop)
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=10)


@dataclasses.dataclass
class _Reply:
    out: list[str] = dataclasses.field(default_factory=list)
    err: list[str] = dataclasses.field(default_factory=list)
    in_err: bool = False


class _GuestCore:
    """Everything that runs on the guest's private loop."""

    def __init__(self, image: GuestImage, *, memory_mb: int, console_loglevel: int,
                 qemu_args: Sequence[str], grace: float,
                 host_forwards: Sequence[tuple[int, int]] = ()) -> None:
        self.image = image
        self.host_forwards = list(host_forwards)
        self.memory_mb = memory_mb
        self.console_loglevel = console_loglevel
        self.qemu_args = list(qemu_args)
        self.grace = grace
        _clean_stale_runtime_dirs()
        self.runtime = Path(tempfile.mkdtemp(prefix="vusb-guest-"))
        (self.runtime / "owner").write_text(f"{os.getpid()}\n")
        self.console_path = self.runtime / "console.log"
        self.qemu_log_path = self.runtime / "qemu.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[str, asyncio.Future[tuple[bytes, bytes, int, bool]]] = {}
        self.lock: asyncio.Lock | None = None
        self.ready: asyncio.Event | None = None
        self.exited: asyncio.Event | None = None
        self.reader_task: asyncio.Task[None] | None = None
        self.ids = itertools.count(1)
        self.boot_seconds = 0.0
        self.stopping = False
        self.saved_console = ""
        self.agent_starts = 0

    # -- lifecycle ----------------------------------------------------------

    def _qemu_command(self, initrd: Path, sock: Path) -> list[str]:
        qemu = find_qemu()
        cmd = [
            qemu, "-accel", "tcg", "-machine", "pc", "-m", str(self.memory_mb), "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(self.image.kernel_image), "-initrd", str(initrd),
            # preempt=full: one vCPU, and a driver that busy-waits for a URB (usbtest's
            # unlink retry loop) must not starve vhci's rx thread that would give it back.
            "-append", "console=ttyS0 quiet panic=-1 preempt=full",
            "-chardev", f"file,id=con,path={self.console_path}", "-serial", "chardev:con",
            "-chardev", f"socket,id=agent,path={sock}",
            "-device", "virtio-serial-pci,id=vser0",
            "-device", f"virtserialport,bus=vser0.0,chardev=agent,name={_AGENT_PORT_NAME}",
            "-netdev", "user,id=n0" + "".join(
                f",hostfwd=tcp:127.0.0.1:{host}-:{guest}" for host, guest in self.host_forwards),
            "-device", "e1000,netdev=n0,romfile=",
            *self.qemu_args,
        ]
        setpriv = shutil.which("setpriv")
        if setpriv and _setpriv_has_pdeathsig(setpriv):
            cmd = [setpriv, "--pdeathsig", "KILL", "--", *cmd]
        return cmd

    async def boot(self, boot_timeout: float) -> None:
        """Start QEMU and wait for the agent; on any failure, clean up and raise."""
        try:
            await self._boot(boot_timeout)
        except BaseException:
            await self.shutdown()
            raise

    async def _boot(self, boot_timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self.lock = asyncio.Lock()
        self.ready = asyncio.Event()
        self.exited = asyncio.Event()
        initrd = self.runtime / "initrd.img"
        with initrd.open("wb") as out, self.image.initrd.open("rb") as base:
            shutil.copyfileobj(base, out)
            size = out.tell()
            out.write(b"\0" * (-size % 512))
            out.write(_overlay_cpio(self.image, self.console_loglevel))
        sock = self.runtime / "agent.sock"
        connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = loop.create_future()

        def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if connected.done():
                w.close()
            else:
                connected.set_result((r, w))

        server = await asyncio.start_unix_server(on_connect, path=str(sock), limit=1 << 20)
        started = time.monotonic()
        cmd = self._qemu_command(initrd, sock)
        logger.debug("starting %s", shlex.join(cmd))
        with self.qemu_log_path.open("wb") as qlog:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=qlog, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
                preexec_fn=None if cmd[0].endswith("setpriv") else _set_pdeathsig,
            )
        with _LIVE_LOCK:
            _LIVE.add(self)
        threading.Thread(target=self._watch_process, args=(loop, self.proc), daemon=True,
                         name=f"vusb-qemu-wait-{self.proc.pid}").start()
        exited_wait: asyncio.Future[Any] = asyncio.ensure_future(self.exited.wait())
        try:
            waiting: set[asyncio.Future[Any]] = {connected, exited_wait}
            await asyncio.wait(waiting, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            if not connected.done():
                why = "QEMU exited at start" if self.exited.is_set() else "QEMU did not connect to the agent socket"
                raise GuestBootError(self._boot_failure(why))
            self.reader, self.writer = connected.result()
            self.reader_task = asyncio.ensure_future(self._read_loop())
            ready_wait: asyncio.Future[Any] = asyncio.ensure_future(self.ready.wait())
            remaining = max(1.0, boot_timeout - (time.monotonic() - started))
            waiting = {ready_wait, exited_wait}
            await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            ready_wait.cancel()
            if not self.ready.is_set():
                if self.exited.is_set():
                    raise GuestBootError(self._boot_failure("QEMU exited during boot"))
                raise GuestBootError(self._boot_failure(f"guest not ready after {boot_timeout} s"))
        finally:
            exited_wait.cancel()
            server.close()
        self.boot_seconds = time.monotonic() - started
        status = (await self.run("cat /run/vusb/init-status; cat /run/vusb/insmod.err 2>/dev/null",
                                 b"", 60)).stdout
        problems = [line for line in status.splitlines() if line and line != "init-done"]
        if problems:
            logger.warning("guest init reported problems:\n%s", status)
        if "network-failed" in status or any("insmod-failed" in p and _is_required(p) for p in problems):
            raise GuestBootError(self._boot_failure("guest init failed:\n" + status))
        logger.info("guest %s ready in %.1f s", self.image.kernel_release, self.boot_seconds)

    def _watch_process(self, loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._on_exit)

    def _on_exit(self) -> None:
        assert self.exited is not None
        self.exited.set()
        rc = self.proc.returncode if self.proc else None
        if not self.stopping and self.ready is not None and self.ready.is_set():
            logger.error("QEMU exited unexpectedly (status %s)", rc)
        err = GuestDiedError(
            f"QEMU exited (status {rc}) while a command was running\n"
            f"--- console log (tail) ---\n{self.console_tail()}\n--- qemu ---\n{self.qemu_output()}"
        )
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(err)

    def _boot_failure(self, why: str) -> str:
        return (
            f"{why} (kernel {self.image.kernel_release})\n"
            f"--- console log (tail) ---\n{self.console_tail()}\n"
            f"--- qemu output ---\n{self.qemu_output()}"
        )

    def qemu_output(self) -> str:
        try:
            return self.qemu_log_path.read_text(errors="replace")[-4000:].strip()
        except OSError:
            return ""

    def console_log(self) -> str:
        try:
            return self.console_path.read_text(errors="replace")
        except OSError:
            return self.saved_console

    def console_tail(self, lines: int = _CONSOLE_TAIL_LINES) -> str:
        return "\n".join(self.console_log().splitlines()[-lines:])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def shutdown(self, timeout: float = 15.0) -> None:
        self.stopping = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            agent_up = self.ready is not None and self.ready.is_set()
            if agent_up and self.writer is not None and not self.writer.is_closing():
                with contextlib.suppress(Exception):
                    self.writer.write(b"QUIT bye 0 0 0\n")
                    await asyncio.wait_for(self.writer.drain(), 2)
                await self._wait_exit(proc, timeout / 2)
            if proc.poll() is None:
                proc.terminate()
                await self._wait_exit(proc, timeout / 2)
            if proc.poll() is None:
                proc.kill()
                await self._wait_exit(proc, 5)
        if self.reader_task is not None:
            self.reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self.reader_task
        if self.writer is not None:
            self.writer.close()
        self.saved_console = self.console_log()
        shutil.rmtree(self.runtime, ignore_errors=True)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    @staticmethod
    async def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def kill_now(self) -> None:
        """Synchronous last-resort kill (atexit)."""
        self.stopping = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(5)
        shutil.rmtree(self.runtime, ignore_errors=True)

    # -- channel ----------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self.reader is not None and self.ready is not None
        reply: _Reply | None = None
        reply_id = ""
        while True:
            try:
                raw = await self.reader.readline()
            except (ConnectionError, asyncio.LimitOverrunError, ValueError) as e:
                logger.error("agent channel read failed: %s", e)
                return
            if not raw:
                return
            line = raw.decode("ascii", "replace").strip()
            if not line:
                continue
            if line.startswith(_MARK + " "):
                parts = line.split()
                kind = parts[1] if len(parts) > 1 else ""
                ident = parts[2] if len(parts) > 2 else ""
                if kind == "READY":
                    self.agent_starts += 1
                    if self.agent_starts > 1:
                        logger.error("guest agent restarted")
                        for fut in self.pending.values():
                            if not fut.done():
                                fut.set_exception(GuestError("the guest agent restarted mid-command\n"
                                                             + self.console_tail()))
                    self.ready.set()
                elif kind == "BEGIN":
                    reply, reply_id = _Reply(), ident
                elif kind == "STDERR" and reply is not None:
                    reply.in_err = True
                elif kind == "END" and reply is not None and ident == reply_id:
                    pending = self.pending.get(ident)
                    if pending is not None and not pending.done():
                        try:
                            out = base64.b64decode("".join(reply.out))
                            err = base64.b64decode("".join(reply.err))
                            pending.set_result((out, err, int(parts[3]), parts[4] == "1"))
                        except (ValueError, IndexError) as e:
                            pending.set_exception(GuestError(f"malformed reply from the guest agent: {e}"))
                    reply = None
                elif kind == "PONG":
                    pong = self.pending.get(ident)
                    if pong is not None and not pong.done():
                        pong.set_result((b"", b"", 0, False))
                continue
            if reply is not None:
                (reply.err if reply.in_err else reply.out).append(line)
            else:
                logger.debug("agent noise: %r", line)

    async def run(self, script: str, stdin: bytes, timeout: float | None) -> CommandResult:
        assert self.lock is not None
        async with self.lock:
            if not self.alive or self.writer is None:
                raise GuestDiedError(
                    f"the guest is not running\n--- console log (tail) ---\n{self.console_tail()}"
                )
            loop = asyncio.get_running_loop()
            ident = f"c{next(self.ids)}"
            fut: asyncio.Future[tuple[bytes, bytes, int, bool]] = loop.create_future()
            self.pending[ident] = fut
            s64 = base64.b64encode(script.encode())
            i64 = base64.b64encode(stdin)
            tmo = "0" if timeout is None else f"{max(timeout, 0.1):.3f}"
            started = time.monotonic()
            try:
                self.writer.write(f"RUN {ident} {tmo} {len(s64)} {len(i64)}\n".encode() + s64 + i64)
                host_timeout = None if timeout is None else timeout + self.grace
                try:
                    await asyncio.wait_for(self.writer.drain(), host_timeout)
                    out, err, rc, timed_out = await asyncio.wait_for(fut, host_timeout)
                except TimeoutError:
                    raise GuestTimeoutError(
                        f"{script} (no answer from the guest agent)", timeout,
                        console_tail=self.console_tail(),
                    ) from None
            finally:
                self.pending.pop(ident, None)
            result = CommandResult(script, rc, out, err, time.monotonic() - started)
            if timed_out:
                raise GuestTimeoutError(script, timeout, partial=result,
                                        console_tail=self.console_tail())
            return result


def _is_required(problem: str) -> bool:
    path = problem.split()[-1]
    name = os.path.basename(path).removesuffix(".ko").replace("-", "_")
    return any(m.name == name and m.required for m in MODULES)


def _clean_stale_runtime_dirs() -> None:
    """Remove runtime directories left by processes that were killed."""
    for d in Path(tempfile.gettempdir()).glob("vusb-guest-*"):
        try:
            pid = int((d / "owner").read_text().strip())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            continue


_SETPRIV_OK: dict[str, bool] = {}


def _setpriv_has_pdeathsig(setpriv: str) -> bool:
    if setpriv not in _SETPRIV_OK:
        try:
            r = subprocess.run([setpriv, "--help"], capture_output=True, text=True, timeout=10)
            _SETPRIV_OK[setpriv] = "--pdeathsig" in r.stdout
        except (OSError, subprocess.SubprocessError):
            _SETPRIV_OK[setpriv] = False
    return _SETPRIV_OK[setpriv]


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
