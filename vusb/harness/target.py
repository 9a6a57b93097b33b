"""The API shared by the QEMU guest and this machine's vhci-hcd: :class:`UsbTarget` and its background jobs.

Everything is built on one primitive, :meth:`UsbTarget.run` (a shell command with
its result): attaching with ``usbip``, waiting for devices, disks, input devices and
ttys, reading and writing files, background jobs.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
import logging
import os
import re
import shlex
import time

from .results import CommandResult, GuestCommandError, GuestTimeoutError, ImportedPort, parse_usbip_port

__all__ = ["STALE_NODE_NOTE", "STALE_NODE_PATTERNS", "BackgroundJob", "UsbTarget"]

logger = logging.getLogger("vusb.harness")

# Device nodes of the kinds vusb devices get (disks, CD-ROMs, serial ports): a regular file
# under one of these names is never right (see UsbTarget.attach).
STALE_NODE_PATTERNS = "/dev/sd* /dev/sr* /dev/ttyACM* /dev/ttyUSB*"
STALE_NODE_NOTE = "vusb: removed stale regular file"


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
