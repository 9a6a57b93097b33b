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

All I/O with QEMU happens on a private event loop in a background thread,
so a :class:`Guest` can be awaited from any event loop (a session-scoped
pytest-asyncio loop, a per-test loop, ``asyncio.run``...) and used from
plain synchronous code through :attr:`Guest.sync`.
"""

from __future__ import annotations

import abc
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
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Coroutine, Generator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .image import (
    DEFAULT_KERNEL,
    MODULES,
    CpioWriter,
    GuestImage,
    HarnessError,
    ensure_image,
    find_qemu,
)

__all__ = [
    "BackgroundJob",
    "CommandResult",
    "Guest",
    "GuestBootError",
    "GuestCommandError",
    "GuestDiedError",
    "GuestError",
    "GuestTimeoutError",
    "ImportedPort",
    "SyncGuest",
    "UsbTarget",
]

logger = logging.getLogger("vusb.harness")

T = TypeVar("T")

#: The host's 127.0.0.1 as seen from the guest (QEMU user networking).
HOST_FROM_GUEST = "10.0.2.2"
GUEST_ADDRESS = "10.0.2.15"
_AGENT_PORT_NAME = "org.vusb.agent"
_MARK = "@@VUSB"
_CONSOLE_TAIL_LINES = 40
# Device nodes of the kinds vusb devices get (disks, CD-ROMs, serial ports): a regular file
# under one of these names is never right (see Guest.attach).
STALE_NODE_PATTERNS = "/dev/sd* /dev/sr* /dev/ttyACM* /dev/ttyUSB*"
STALE_NODE_NOTE = "vusb: removed stale regular file"


# ---------------------------------------------------------------------------
# Results and errors


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """Outcome of a command run in the guest (or on the local host)."""

    command: str
    returncode: int
    stdout_bytes: bytes
    stderr_bytes: bytes
    duration: float = 0.0

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> CommandResult:
        """Return self, or raise :class:`GuestCommandError` on a non-zero status."""
        if self.returncode != 0:
            raise GuestCommandError(self)
        return self


def _shorten(text: str, limit: int = 2000) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[: limit // 2] + f"\n[... {len(text) - limit} characters ...]\n" + text[-limit // 2 :]


class GuestError(HarnessError):
    """Something went wrong with a running guest."""


class GuestBootError(GuestError):
    """The guest did not come up."""


class GuestDiedError(GuestError):
    """QEMU exited while the guest was in use."""


class GuestCommandError(GuestError):
    """A command exited with a non-zero status (see :meth:`CommandResult.check`)."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        super().__init__(
            f"guest command exited with status {result.returncode}: "
            f"{_shorten(result.command, 500)}\n"
            f"--- stdout ---\n{_shorten(result.stdout)}\n--- stderr ---\n{_shorten(result.stderr)}"
        )


class GuestTimeoutError(GuestError, TimeoutError):
    """A command or a wait did not finish in time.

    ``partial`` holds what the command had printed when it was killed, when
    known; the message ends with the tail of the guest's console log.
    """

    def __init__(
        self,
        what: str,
        timeout: float | None,
        *,
        partial: CommandResult | None = None,
        console_tail: str = "",
    ) -> None:
        self.what = what
        self.timeout = timeout
        self.partial = partial
        self.console_tail = console_tail
        msg = f"timed out after {timeout} s: {_shorten(what, 500)}"
        if partial is not None and (partial.stdout_bytes or partial.stderr_bytes):
            msg += (
                f"\n--- stdout so far ---\n{_shorten(partial.stdout)}"
                f"\n--- stderr so far ---\n{_shorten(partial.stderr)}"
            )
        if console_tail:
            msg += f"\n--- console log (tail) ---\n{console_tail}"
        super().__init__(msg)


@dataclasses.dataclass(frozen=True)
class ImportedPort:
    """One line group of ``usbip port``: a device imported on a vhci port."""

    port: int
    status: str
    speed: str
    local_busid: str | None
    host: str | None
    tcp_port: int | None
    remote_busid: str | None


def parse_usbip_port(text: str) -> list[ImportedPort]:
    """Parse the output of ``usbip port``."""
    ports: list[ImportedPort] = []
    current: dict[str, Any] | None = None

    def flush() -> None:
        if current is not None:
            ports.append(ImportedPort(**current))

    for line in text.splitlines():
        m = re.match(r"^Port (\d+): <([^>]*)> at (.*?)\s*$", line)
        if m:
            flush()
            current = {
                "port": int(m.group(1)), "status": m.group(2), "speed": m.group(3),
                "local_busid": None, "host": None, "tcp_port": None, "remote_busid": None,
            }
            continue
        m = re.match(r"^\s*(\S*)\s*-> usbip://(\[[^\]]*\]|[^:/]*):(\d+)/(\S+)\s*$", line)
        if m and current is not None:
            current["local_busid"] = m.group(1) or None
            current["host"] = m.group(2).strip("[]")
            current["tcp_port"] = int(m.group(3))
            current["remote_busid"] = m.group(4)
    flush()
    return ports


def _glob_to_shell(pattern: str) -> str:
    """Quote a path glob for sh, leaving only * ? and [...] active."""
    out: list[str] = []
    literal = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in "*?":
            if literal:
                out.append(shlex.quote(literal))
                literal = ""
            out.append(c)
        elif c == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            cls = pattern[i + 1 : end]
            if re.fullmatch(r"!?[A-Za-z0-9_.:-]+", cls):
                if literal:
                    out.append(shlex.quote(literal))
                    literal = ""
                out.append(f"[{cls}]")
                i = end
            else:
                literal += c
        else:
            literal += c
        i += 1
    if literal:
        out.append(shlex.quote(literal))
    return "".join(out)


# ---------------------------------------------------------------------------
# The API shared by the QEMU guest and the local host


class UsbTarget(abc.ABC):
    """A Linux system with a vhci-hcd that can import devices with usbip.

    Subclasses implement :meth:`run`; everything else is built on it.
    """

    #: Address of the host's loopback interface as seen from this system.
    host_address: str = "127.0.0.1"

    @abc.abstractmethod
    async def run(
        self,
        command: str,
        *,
        timeout: float | None = 60.0,
        input: bytes | str | None = None,
        check: bool = False,
    ) -> CommandResult:
        """Run a shell script; see :meth:`Guest.run`."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Release the system (power the guest off / detach local devices)."""

    def diagnostics(self) -> str:
        """Recent kernel messages, appended to timeout errors."""
        return ""

    # -- usbip ------------------------------------------------------------

    async def attach(self, host: str | None, port: int, busid: str, *, timeout: float = 60.0) -> int:
        """``usbip --tcp-port PORT attach -r HOST -b BUSID``; return the vhci port.

        `host` None means :attr:`host_address` (the host's loopback).
        """
        host = host or self.host_address
        h, p, b = shlex.quote(host), int(port), shlex.quote(busid)
        # usbip attach records "HOST PORT BUSID" in /var/run/vhci_hcd/port<N>
        # (N is the vhci port); 'usbip port' can miss a device that is still
        # enumerating, the record cannot.  Records left by devices that went
        # away without a detach are removed first.
        # A writer that opened /dev/sdX just after its disk went away (busybox dd,
        # a shell redirection) created a regular file there; devtmpfs then cannot
        # give the next disk that node. Such files are removed first too.
        script = f"""
match() {{ rh=; rp=; rb=; read rh rp rb < "$1"; [ "$rh" = {h} ] && [ "$rp" = {p} ] && [ "$rb" = {b} ]; }}
for f in /var/run/vhci_hcd/port*; do [ -f "$f" ] && match "$f" && rm -f "$f"; done
for f in {STALE_NODE_PATTERNS}; do
  [ -f "$f" ] && [ ! -L "$f" ] && rm -f "$f" && echo "{STALE_NODE_NOTE} $f" >&2
done
usbip --tcp-port {p} attach -r {h} -b {b} || exit $?
for f in /var/run/vhci_hcd/port*; do
  if [ -f "$f" ] && match "$f"; then echo "${{f##*/port}}"; exit 0; fi
done
echo "usbip attach succeeded but left no record in /var/run/vhci_hcd" >&2
exit 1
"""
        r = await self.run(script, timeout=timeout)
        for line in r.stderr.splitlines():
            if line.startswith(STALE_NODE_NOTE):
                logger.warning("guest: removed %s, a regular file a writer created after its device went away "
                            "(it would hide the next device's node)", line[len(STALE_NODE_NOTE):].strip())
        if r.returncode != 0:
            raise GuestCommandError(
                dataclasses.replace(r, command=f"usbip --tcp-port {p} attach -r {host} -b {busid}")
            )
        return int(r.stdout.strip())

    async def detach(self, port: int, *, timeout: float = 60.0) -> None:
        """``usbip detach -p PORT``."""
        await self.run(f"usbip detach -p {int(port)}", timeout=timeout, check=True)

    async def ports(self, *, timeout: float = 60.0) -> list[ImportedPort]:
        """The imported devices, from ``usbip port``.

        A device that is still enumerating can be missing from the list.
        """
        r = await self.run("i=0; until usbip port; do i=$((i+1)); [ $i -ge 20 ] && exit 1; sleep 0.1; done",
                           timeout=timeout, check=True)
        return parse_usbip_port(r.stdout)

    async def list_remote(self, host: str | None = None, port: int = 3240, *,
                          timeout: float = 60.0, check: bool = True) -> CommandResult:
        """``usbip --tcp-port PORT list -r HOST`` (exported devices of a server)."""
        host = host or self.host_address
        return await self.run(
            f"usbip --tcp-port {int(port)} list -r {shlex.quote(host)}", timeout=timeout, check=check
        )

    # -- waiting ----------------------------------------------------------

    async def _poll(self, loop_body: str, what: str, timeout: float, interval: float,
                    preamble: str = "") -> str:
        """Run `loop_body` (which exits 0 with a result on stdout) until it does."""
        script = f"{preamble}while :; do\n{loop_body}\nsleep {interval:g}\ndone\n"
        try:
            r = await self.run(script, timeout=timeout)
        except GuestTimeoutError as e:
            raise GuestTimeoutError(
                f"waiting for {what}", timeout, partial=e.partial, console_tail=self.diagnostics()
            ) from None
        r.check()
        return r.stdout.strip()

    async def wait_for(self, condition: str, *, timeout: float = 30.0, interval: float = 0.1,
                       description: str | None = None) -> None:
        """Wait until the shell test `condition` succeeds, e.g. ``"[ -e /dev/sda ]"``."""
        await self._poll(f"if {condition}\nthen exit 0; fi", description or condition, timeout, interval)

    async def wait_for_path(self, pattern: str, *, timeout: float = 30.0,
                            interval: float = 0.1) -> list[str]:
        """Wait until the glob `pattern` (``*``, ``?``, ``[..]``) matches; return the matches."""
        body = (
            f"found=\nfor f in {_glob_to_shell(pattern)}; do\n"
            '  if [ -e "$f" ]; then echo "$f"; found=1; fi\ndone\n'
            'if [ -n "$found" ]; then exit 0; fi'
        )
        out = await self._poll(body, f"a path matching {pattern}", timeout, interval)
        return out.splitlines()

    async def wait_for_usb_device(self, vendor_id: int, product_id: int, *, timeout: float = 30.0,
                                  configured: bool = True, serial: str | None = None,
                                  interval: float = 0.1) -> str:
        """Wait for a USB device with this idVendor:idProduct; return its sysfs directory.

        With `configured` the device must also have an active configuration
        (so its interfaces exist and drivers have been probed).  With `serial`
        only a device with that serial number counts: the way to tell apart
        several attached devices with the same IDs.
        """
        vid, pid = f"{vendor_id:04x}", f"{product_id:04x}"
        body = (
            "for d in /sys/bus/usb/devices/*; do\n"
            '  [ -f "$d/idVendor" ] || continue\n'
            '  read v < "$d/idVendor"; read p < "$d/idProduct"\n'
            f'  [ "$v" = {vid} ] && [ "$p" = {pid} ] || continue\n'
            + ('  [ "$(cat "$d/serial" 2>/dev/null)" = "$VUSB_SERIAL" ] || continue\n' if serial is not None else "")
            + ('  c=; read c < "$d/bConfigurationValue"; [ -n "$c" ] || continue\n' if configured else "")
            + '  echo "/sys/bus/usb/devices/${d##*/}"; exit 0\ndone'
        )
        what = f"USB device {vid}:{pid}" + (f" with serial number {serial!r}" if serial is not None else "")
        preamble = f"export VUSB_SERIAL={shlex.quote(serial)}\n" if serial is not None else ""
        return await self._poll(body, what, timeout, interval, preamble=preamble)

    async def wait_for_disk(self, devdir: str, *, timeout: float = 60.0, interval: float = 0.1) -> str:
        """Wait for the disk of the USB mass-storage device at sysfs folder `devdir`
        (from :meth:`wait_for_usb_device`); return its kernel name, e.g. ``sda``.

        The disk is ready when its ``/dev/NAME`` block node exists and its size
        is not zero: the sysfs folder alone comes before both (a reader that
        opens ``/dev/NAME`` too early finds nothing, or creates a regular file).
        """
        blocks = _glob_to_shell(f"{devdir}:*/host*/target*/*/block/*")
        body = (
            f"for b in {blocks}; do\n"
            '  [ -e "$b" ] || continue\n'
            '  n=${b##*/}; [ -b "/dev/$n" ] || continue\n'
            '  s=$(cat "$b/size" 2>/dev/null); [ "${s:-0}" -gt 0 ] || continue\n'
            '  echo "$n"; exit 0\ndone'
        )
        return await self._poll(body, f"a disk with a block node and a nonzero size under {devdir}",
                                timeout, interval)

    async def wait_for_input_device(self, name: str, *, exact: bool = False, timeout: float = 30.0,
                                    interval: float = 0.1) -> str:
        """Wait for an input device whose name contains (or, with `exact`, equals)
        `name` in /proc/bus/input/devices; return its ``/dev/input/eventN``."""
        match = "n == want" if exact else "index(n, want) > 0"
        body = (
            "ev=$(awk 'BEGIN { want = ENVIRON[\"VUSB_WANT\"] }\n"
            "/^N: Name=/ { n = substr($0, 10); sub(/^\"/, \"\", n); sub(/\"$/, \"\", n) }\n"
            f"/^H: Handlers=/ {{ if ({match}) {{ for (i = 2; i <= NF; i++) "
            "if ($i ~ /^event[0-9]+$/) { print $i; exit } } }\n"
            "/^$/ { n = \"\" }' /proc/bus/input/devices)\n"
            'if [ -n "$ev" ] && [ -e "/dev/input/$ev" ]; then echo "/dev/input/$ev"; exit 0; fi'
        )
        return await self._poll(
            body, f"an input device named {name!r}", timeout, interval, preamble=f"export VUSB_WANT={shlex.quote(name)}\n"
        )

    async def wait_for_tty(self, pattern: str = "/dev/ttyACM*", *, timeout: float = 30.0) -> str:
        """Wait for a serial device node (default ``/dev/ttyACM*``); return the first."""
        return (await self.wait_for_path(pattern, timeout=timeout))[0]

    # -- files ------------------------------------------------------------

    async def read_file(self, path: str, *, timeout: float = 120.0) -> bytes:
        """Contents of a file."""
        r = await self.run(f"cat {shlex.quote(path)}", timeout=timeout, check=True)
        return r.stdout_bytes

    async def write_file(self, path: str, data: bytes | str, *, mode: int | None = None,
                         timeout: float = 120.0) -> None:
        """Create or replace a file (data goes through the command's stdin)."""
        cmd = f"cat > {shlex.quote(path)}"
        if mode is not None:
            cmd += f" && chmod {mode:o} {shlex.quote(path)}"
        await self.run(cmd, input=data, timeout=timeout, check=True)

    # -- background commands -----------------------------------------------

    _bg_counter = itertools.count(1)

    async def start_background(self, command: str, *, timeout: float = 30.0) -> BackgroundJob:
        """Start `command` in the background; its output goes to files.

        Use for things that must run while other commands run, e.g. reading
        ``/dev/input/eventN`` while the test types on a virtual keyboard::

            job = await guest.start_background(f"head -c 48 {event_path}")
            ...  # make the device send key events
            result = await job.wait(timeout=10)   # or: await job.stop()
        """
        d = f"/tmp/vusb-bg/{os.getpid()}-{next(self._bg_counter)}"
        inner = (
            'd=$1; setsid sh "$d/cmd.sh" </dev/null >"$d/out" 2>"$d/err" & '
            'echo $! >"$d/pid.tmp"; mv "$d/pid.tmp" "$d/pid"; wait $!; '
            'echo $? >"$d/rc.tmp"; mv "$d/rc.tmp" "$d/rc"'
        )
        script = (
            f"d={shlex.quote(d)}\nrm -rf \"$d\"; mkdir -p \"$d\"\ncat > \"$d/cmd.sh\"\n"
            f"setsid sh -c {shlex.quote(inner)} vusb-bg \"$d\" </dev/null >/dev/null 2>&1 &\n"
            'while [ ! -e "$d/pid" ]; do sleep 0.01; done\ncat "$d/pid"\n'
        )
        r = await self.run(script, input=command, timeout=timeout, check=True)
        return BackgroundJob(self, command, d, int(r.stdout.strip()))


class BackgroundJob:
    """A command started by :meth:`UsbTarget.start_background`."""

    def __init__(self, target: UsbTarget, command: str, directory: str, pid: int) -> None:
        self.target = target
        self.command = command
        self.directory = directory
        self.pid = pid
        self._started = time.monotonic()

    async def is_running(self) -> bool:
        r = await self.target.run(f"[ ! -e {shlex.quote(self.directory)}/rc ]", timeout=30)
        return r.returncode == 0

    async def read_stdout(self) -> bytes:
        """What the command has written to stdout so far."""
        return await self.target.read_file(f"{self.directory}/out")

    async def _result(self) -> CommandResult:
        d = shlex.quote(self.directory)
        rc_text = (await self.target.run(f"cat {d}/rc 2>/dev/null", timeout=30)).stdout.strip()
        out = await self.target.read_file(f"{self.directory}/out")
        err = await self.target.read_file(f"{self.directory}/err")
        await self.target.run(f"rm -rf {d}", timeout=30)
        return CommandResult(
            self.command, int(rc_text) if rc_text else -1, out, err,
            time.monotonic() - self._started,
        )

    async def wait(self, *, timeout: float = 60.0) -> CommandResult:
        """Wait for the command to end by itself; return its result."""
        try:
            await self.target.wait_for(
                f"[ -e {shlex.quote(self.directory)}/rc ]", timeout=timeout,
                description=f"background command to finish: {self.command}",
            )
        except GuestTimeoutError:
            await self.stop()
            raise
        return await self._result()

    async def stop(self, *, grace: float = 5.0) -> CommandResult:
        """Send SIGTERM (then SIGKILL after `grace` s) to the command's process group."""
        d = shlex.quote(self.directory)
        ticks = max(1, int(grace / 0.05))
        await self.target.run(
            f"[ -e {d}/rc ] || {{ kill -TERM -{self.pid} 2>/dev/null || kill -TERM {self.pid}; i=0\n"
            f"while [ ! -e {d}/rc ] && [ $i -lt {ticks} ]; do sleep 0.05; i=$((i+1)); done\n"
            f"[ -e {d}/rc ] || kill -KILL -{self.pid} 2>/dev/null || kill -KILL {self.pid} 2>/dev/null\n"
            f"i=0; while [ ! -e {d}/rc ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; }}\n",
            timeout=grace + 30,
        )
        return await self._result()


# ---------------------------------------------------------------------------
# Guest-side scripts (appended to the image at boot as a second cpio archive)

_INITTAB = """\
::sysinit:/etc/init.d/rcS
::respawn:/sbin/vusb-agent
::shutdown:/bin/sync
"""

_RCS = """\
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /run/vusb /dev/input
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
status=/run/vusb/init-status
: > $status
while read -r m; do
  [ -n "$m" ] || continue
  insmod "$m" 2>>/run/vusb/insmod.err || echo "insmod-failed $m" >> $status
done < /etc/vusb/modules
ip link set lo up
if ip link set eth0 up && ip addr add __GUEST__/24 dev eth0 && ip route add default via __HOST__
then :; else echo "network-failed" >> $status; fi
hostname vusb-guest
echo "127.0.0.1 localhost" > /etc/hosts
dmesg -n __LOGLEVEL__
echo "init-done" >> $status
"""

_AGENT = r"""#!/bin/sh
# vusb guest agent: runs the commands the host sends over a virtio serial port.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
PORT=
i=0
while [ -z "$PORT" ] && [ $i -lt 200 ]; do
  for d in /sys/class/virtio-ports/*; do
    n=; read n < "$d/name" 2>/dev/null
    if [ "$n" = "__PORTNAME__" ] && [ -e "/dev/${d##*/}" ]; then PORT=/dev/${d##*/}; fi
  done
  [ -n "$PORT" ] || sleep 0.05
  i=$((i+1))
done
if [ -z "$PORT" ]; then echo "vusb-agent: no virtio port __PORTNAME__" > /dev/console; sleep 5; exit 1; fi
W=/run/vusb/agent
mkdir -p "$W"
exec 2>>/run/vusb/agent.log
AGENT=$$
TIMED_OUT=0
trap 'TIMED_OUT=1' USR1
exec 3<>"$PORT"
cd /
echo "__MARK__ READY $$" >&3
while read -r kind id tmo slen ilen <&3; do
  case "$kind" in
  RUN)
    dd bs=65536 count="$slen" iflag=fullblock,count_bytes <&3 2>/dev/null | base64 -d > "$W/$id.sh"
    dd bs=65536 count="$ilen" iflag=fullblock,count_bytes <&3 2>/dev/null | base64 -d > "$W/$id.in"
    TIMED_OUT=0
    setsid sh "$W/$id.sh" < "$W/$id.in" > "$W/$id.out" 2> "$W/$id.err" &
    pid=$!
    watcher=
    if [ "$tmo" != 0 ]; then
      setsid sh -c 'sleep "$1"; : > "$4"; kill -9 -"$2" 2>/dev/null || kill -9 "$2" 2>/dev/null; kill -USR1 "$3"' vusb-watch "$tmo" "$pid" "$AGENT" "$W/$id.timeout" < /dev/null > /dev/null 2>&1 &
      watcher=$!
    fi
    wait "$pid"
    rc=$?
    # The watcher may not have made its own process group yet: then kill it by pid.
    if [ -n "$watcher" ]; then
      kill -9 -"$watcher" 2>/dev/null || kill -9 "$watcher" 2>/dev/null
      wait "$watcher" 2>/dev/null
    fi
    if [ -e "$W/$id.timeout" ]; then TIMED_OUT=1; fi
    {
      echo "__MARK__ BEGIN $id"
      base64 < "$W/$id.out"
      echo "__MARK__ STDERR $id"
      base64 < "$W/$id.err"
      echo "__MARK__ END $id $rc $TIMED_OUT"
    } >&3
    rm -f "$W/$id.sh" "$W/$id.in" "$W/$id.out" "$W/$id.err" "$W/$id.timeout"
    ;;
  PING)
    echo "__MARK__ PONG $id" >&3
    ;;
  QUIT)
    echo "__MARK__ BYE $id" >&3
    sync
    poweroff -f
    ;;
  esac
done
echo "vusb-agent: channel closed" > /dev/console
sleep 1
"""


def _overlay_cpio(image: GuestImage, loglevel: int) -> bytes:
    buf = io.BytesIO()
    cpio = CpioWriter(buf)
    cpio.add_file("etc/inittab", _INITTAB.encode())
    rcs = (
        _RCS.replace("__GUEST__", GUEST_ADDRESS)
        .replace("__HOST__", HOST_FROM_GUEST)
        .replace("__LOGLEVEL__", str(loglevel))
    )
    cpio.add_file("etc/init.d/rcS", rcs.encode(), 0o755)
    agent = _AGENT.replace("__PORTNAME__", _AGENT_PORT_NAME).replace("__MARK__", _MARK)
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


# ---------------------------------------------------------------------------
# Public facade


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
    ) -> _GuestStarter:
        """Build the image if needed (first use: about a minute), boot, wait for the agent.

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

        async def go() -> Guest:
            future = cls._start_future(kernel, cache_dir, memory_mb, boot_timeout,
                                       console_loglevel, qemu_args, command_grace, host_forwards)
            return await asyncio.wrap_future(future)

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
    ) -> Guest:
        """Blocking :meth:`start`; the returned guest works from any event loop."""
        return cls._start_future(kernel, cache_dir, memory_mb, boot_timeout, console_loglevel,
                                 qemu_args, command_grace, host_forwards).result()

    @classmethod
    def _start_future(cls, kernel: str, cache_dir: str | os.PathLike[str] | None, memory_mb: int,
                      boot_timeout: float, console_loglevel: int, qemu_args: Sequence[str],
                      command_grace: float,
                      host_forwards: Sequence[tuple[int, int]] = ()) -> concurrent.futures.Future[Guest]:
        find_qemu()  # fail fast, before any build
        thread = _LoopThread(f"vusb-guest-{kernel}")

        async def boot() -> Guest:
            loop = asyncio.get_running_loop()
            try:
                image = await loop.run_in_executor(
                    None, lambda: ensure_image(kernel, cache_dir, log=logger.info)
                )
                core = _GuestCore(image, memory_mb=memory_mb, console_loglevel=console_loglevel,
                                  qemu_args=qemu_args, grace=command_grace, host_forwards=host_forwards)
                await core.boot(boot_timeout)  # shuts QEMU down itself on failure
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
