"""``vusb serve`` run as a separate process, the way a user runs it, for the tests of the command line.

The tests use it through the ``serve_processes`` fixture (tests/conftest.py)::

    def test_something(serve_processes: ServeProcesses) -> None:
        server = serve_processes.start("profiles/keyboard.yaml", "--port", "0")
        server.port, server.busids, server.control  # parsed from the banner
        server.banner.lines                          # the banner itself, line by line
        assert server.stop(signal.SIGINT) == 0       # stop it yourself, or let the fixture do it
        assert "shutting down" in server.after_banner

:meth:`ServeProcess.start` returns once the server has printed its whole banner, the
lines ``vusb serve`` prints once it listens::

    vusb: serving 2 device(s) on 127.0.0.1:3240
      1-1  1209:0001 Virtual Keyboard ...
          attach: usbip attach -r 127.0.0.1 -b 1-1
      1-2  ...
          attach: ...
      (a QEMU guest with user networking reaches this server as 10.0.2.2)
      control: /run/user/0/vusb/3240.sock  (vusb ctl --socket ... list)

The banner ends with the ``control:`` line; with ``--no-control`` among the arguments,
with the QEMU line (a server on the loopback address) or else the last ``attach:`` line.
If the banner is not complete within ``banner_timeout`` seconds, or the process ends
before it is, :class:`ServeStartError` says so with the exit code and everything the
process printed on stdout and stderr, and the process is stopped.

Stopping sends a signal (SIGTERM unless told otherwise) to the process's own process
group (it runs in a new session, so a command prefix such as ``unshare ... sh -c`` goes
with it), waits ``stop_timeout`` seconds, then sends SIGKILL. Its output is read all
along by two threads, so a chatty server never blocks on a full pipe, and stays
available after it ended (:attr:`ServeProcess.stdout`, ``stderr``, ``after_banner``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent

_HEADER = re.compile(r"vusb: serving (\d+) device\(s\) on (\S+):(\d+)")
_DEVICE = re.compile(r"  (\d+-[\d.]+)  ")
_ATTACH = re.compile(r"      attach: ")
_QEMU_HINT = re.compile(r"  \(a QEMU guest ")
_CONTROL = re.compile(r"  control: (.+?)  \(vusb ctl ")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ServeStartError(RuntimeError):
    """``vusb serve`` ended, or did not finish its banner in time; the message holds all it printed."""


@dataclass(frozen=True)
class Banner:
    """What ``vusb serve`` printed once it was listening."""

    lines: list[str]  # every stdout line up to the banner's end, without line ends
    host: str
    port: int  # the port it listens on (the real one when started with --port 0)
    busids: list[str]  # in the order printed
    control: Path | None  # the control socket, None without one

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def parse_banner(lines: Sequence[str], *, control: bool) -> Banner | None:
    """The banner at the start of ``lines`` (stdout, line by line), or None while it is incomplete.

    ``control``: whether the server opens a control socket (its line then ends the banner).
    """
    header: re.Match[str] | None = None
    busids: list[str] = []
    attach_lines = 0
    hint = False
    control_path: Path | None = None
    for i, raw in enumerate(lines):
        line = raw.rstrip("\r\n")
        if header is None:
            header = _HEADER.fullmatch(line)
        elif m := _DEVICE.match(line):
            busids.append(m.group(1))
        elif _ATTACH.match(line):
            attach_lines += 1
        elif _QEMU_HINT.match(line):
            hint = True
        elif m := _CONTROL.match(line):
            control_path = Path(m.group(1))
        if header is None:
            continue
        count, host = int(header.group(1)), header.group(2)
        if len(busids) < count or attach_lines < count:
            continue
        if control_path is not None if control else (hint or host not in _LOOPBACK):
            return Banner([x.rstrip("\r\n") for x in lines[:i + 1]], host, int(header.group(3)), busids,
                          control_path)
    return None


class ServeProcess:
    """One ``vusb serve ARGS...`` process: started by :meth:`start`, ended by :meth:`stop`.

    ``args`` follow ``vusb serve`` as they are (profiles, ``--port``...). ``prefix`` comes
    before the Python interpreter (``["unshare", ...]``), ``env`` is added to this process's
    environment, ``cwd`` is where it runs (the repository by default, so
    ``profiles/keyboard.yaml`` works), ``python`` the interpreter (another venv's, say). Usable as a context manager, plain or async.
    """

    def __init__(self, *args: str, prefix: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 cwd: Path | str = ROOT, banner_timeout: float = 30.0, stop_timeout: float = 10.0,
                 python: Path | str = sys.executable) -> None:
        self.command = [*prefix, str(python), "-m", "vusb", "serve", *args]
        self.env = {**os.environ, **env} if env else None
        self.cwd = Path(cwd)
        self.banner_timeout = banner_timeout
        self.stop_timeout = stop_timeout
        self._control = "--no-control" not in args
        self._proc: subprocess.Popen[str] | None = None
        self._banner: Banner | None = None
        self._changed = threading.Condition()
        self._out: list[str] = []
        self._err: list[str] = []
        self._stdout_open = True
        self._readers: list[threading.Thread] = []

    # ------------------------------------------------------------ starting
    def start(self) -> ServeProcess:
        """Start the process and return once its banner is complete (see the module's docstring)."""
        if self._proc is not None:
            raise RuntimeError("this vusb serve was started already")
        self._proc = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, encoding="utf-8", errors="replace",
                                      start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        for pipe, into in ((self._proc.stdout, self._out), (self._proc.stderr, self._err)):
            reader = threading.Thread(target=self._read, args=(pipe, into), daemon=True)
            reader.start()
            self._readers.append(reader)
        deadline = time.monotonic() + self.banner_timeout
        with self._changed:
            while True:
                self._banner = parse_banner(self._out, control=self._control)
                if self._banner is not None:
                    return self
                left = deadline - time.monotonic()
                if not self._stdout_open or left <= 0:
                    break
                self._changed.wait(left)
        if self._stdout_open:
            problem = f"printed no complete banner within {self.banner_timeout:g} s"
        else:
            try:
                problem = f"exited with code {self.wait(self.stop_timeout)} before its banner was complete"
            except subprocess.TimeoutExpired:
                problem = "closed its stdout before its banner was complete"
        if self.alive:
            problem += f" (stopped it: exit code {self.stop()})"
        elif self._stdout_open:
            problem += f" (it exited with code {self.wait()})"
        raise ServeStartError(f"vusb serve {problem}\n{self.describe()}")

    async def astart(self) -> ServeProcess:
        """:meth:`start` in a worker thread, so the event loop goes on while the server starts."""
        return await asyncio.to_thread(self.start)

    def _read(self, pipe: IO[str], into: list[str]) -> None:
        with pipe:
            for line in pipe:
                with self._changed:
                    into.append(line)
                    self._changed.notify_all()
        with self._changed:
            if into is self._out:
                self._stdout_open = False
            self._changed.notify_all()

    # ------------------------------------------------------------ what it printed
    @property
    def proc(self) -> subprocess.Popen[str]:
        if self._proc is None:
            raise RuntimeError("vusb serve is not started yet")
        return self._proc

    @property
    def banner(self) -> Banner:
        if self._banner is None:
            raise RuntimeError("vusb serve has printed no complete banner")
        return self._banner

    @property
    def port(self) -> int:
        return self.banner.port

    @property
    def busids(self) -> list[str]:
        return self.banner.busids

    @property
    def control(self) -> Path | None:
        return self.banner.control

    @property
    def stdout(self) -> str:
        """All it printed on stdout so far, the banner included."""
        with self._changed:
            return "".join(self._out)

    @property
    def after_banner(self) -> str:
        """What it printed on stdout after its banner (so far)."""
        with self._changed:
            return "".join(self._out[len(self.banner.lines):])

    @property
    def stderr(self) -> str:
        """All it printed on stderr so far (logging goes there)."""
        with self._changed:
            return "".join(self._err)

    def describe(self) -> str:
        """The command, and everything it printed so far: for failure messages."""
        return (f"command: {shlex.join(self.command)} (in {self.cwd})\n"
                f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}--- end ---")

    # ------------------------------------------------------------ ending
    @property
    def started(self) -> bool:
        return self._proc is not None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to its process group (nothing if it has ended)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code once it has ended and all its output is read (``subprocess.TimeoutExpired`` if not)."""
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int:
        """Send ``sig``, wait up to ``timeout`` (``stop_timeout``) seconds, then SIGKILL; the exit code.

        A process that has ended already (a test killed it) is only waited for.
        """
        if self._proc is None:
            raise RuntimeError("vusb serve is not started yet")
        self.send_signal(sig)
        try:
            return self.wait(self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            return self.wait()

    # ------------------------------------------------------------ as a context manager
    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> ServeProcess:
        return await self.astart()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.stop)


class ServeProcesses:
    """What the ``serve_processes`` fixture gives: starts ``vusb serve`` processes, stops them all at the end."""

    def __init__(self) -> None:
        self.processes: list[ServeProcess] = []

    def start(self, *args: str, **options: Any) -> ServeProcess:
        """``ServeProcess(*args, **options).start()``: returns once its banner is complete."""
        server = ServeProcess(*args, **options)
        self.processes.append(server)
        return server.start()

    async def astart(self, *args: str, **options: Any) -> ServeProcess:
        """The same for async tests: waits for the banner in a worker thread."""
        server = ServeProcess(*args, **options)
        self.processes.append(server)
        return await server.astart()

    def stop_all(self) -> None:
        """Stop every process still running (SIGTERM, then SIGKILL after its ``stop_timeout``)."""
        for server in self.processes:
            if server.started:
                server.stop()
