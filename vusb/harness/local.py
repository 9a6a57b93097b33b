"""Attach devices through the host's own vhci-hcd, when it has one.

:class:`LocalVhci` offers the same API as :class:`vusb.harness.Guest`
(it is a :class:`~vusb.harness.guest.UsbTarget`), but commands run on the
host itself and devices are attached to the host's kernel.  That needs
root and the ``vhci-hcd`` module (``/sys/devices/platform/vhci_hcd.0``
exists, or ``modprobe vhci-hcd`` creates it) and the ``usbip`` program.

Devices attached through a LocalVhci are detached again by :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from .guest import CommandResult, GuestTimeoutError, UsbTarget
from .image import INSTALL_SCRIPT_HINT, HarnessPrerequisiteError

__all__ = ["LocalVhci"]

_VHCI = Path("/sys/devices/platform/vhci_hcd.0")


class LocalVhci(UsbTarget):
    """The machine this Python process runs on, used as the USB/IP client."""

    host_address = "127.0.0.1"

    def __init__(self) -> None:
        self._attached: set[int] = set()

    @staticmethod
    def unavailable_reason() -> str | None:
        """Why the local vhci-hcd cannot be used (None when it can).

        May load the ``vhci-hcd`` module as a side effect.
        """
        if os.geteuid() != 0:
            return "attaching through the local vhci-hcd needs root"
        if shutil.which("usbip") is None and not os.access("/usr/sbin/usbip", os.X_OK):
            return f"usbip is missing: apt-get install usbip. {INSTALL_SCRIPT_HINT}"
        if not _VHCI.exists():
            modprobe = shutil.which("modprobe") or "/sbin/modprobe"
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([modprobe, "vhci-hcd"], capture_output=True, timeout=30, check=False)
            if not _VHCI.exists():
                return "the host kernel has no vhci-hcd (modprobe vhci-hcd did not create " \
                       f"{_VHCI}); use vusb.harness.Guest instead"
        return None

    @classmethod
    def available(cls) -> bool:
        return cls.unavailable_reason() is None

    @classmethod
    async def start(cls) -> LocalVhci:
        """Check the prerequisites; raise :class:`HarnessPrerequisiteError` if unmet."""
        reason = await asyncio.to_thread(cls.unavailable_reason)
        if reason is not None:
            raise HarnessPrerequisiteError(reason)
        return cls()

    async def run(
        self,
        command: str,
        *,
        timeout: float | None = 60.0,
        input: bytes | str | None = None,
        check: bool = False,
    ) -> CommandResult:
        """Run `command` with ``sh`` on the host (see :meth:`Guest.run`)."""
        data = input.encode() if isinstance(input, str) else (input or b"")
        env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", "")}
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", command,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, env=env,
        )
        out, err = bytearray(), bytearray()

        async def pump(stream: asyncio.StreamReader | None, buf: bytearray) -> None:
            while stream is not None and (chunk := await stream.read(65536)):
                buf += chunk

        async def feed() -> None:
            assert proc.stdin is not None
            with contextlib.suppress(ConnectionError):
                proc.stdin.write(data)
                await proc.stdin.drain()
            proc.stdin.close()

        pumps = asyncio.gather(pump(proc.stdout, out), pump(proc.stderr, err))
        try:
            await asyncio.wait_for(asyncio.gather(feed(), proc.wait(), asyncio.shield(pumps)), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(pumps), 2)
            pumps.cancel()
            partial = CommandResult(command, -9, bytes(out), bytes(err), time.monotonic() - started)
            raise GuestTimeoutError(command, timeout, partial=partial,
                                    console_tail=self.diagnostics()) from None
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            pumps.cancel()
            raise
        assert proc.returncode is not None
        result = CommandResult(command, proc.returncode, bytes(out), bytes(err), time.monotonic() - started)
        return result.check() if check else result

    def diagnostics(self) -> str:
        try:
            r = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return ""
        return "\n".join(r.stdout.splitlines()[-40:])

    async def attach(self, host: str | None, port: int, busid: str, *, timeout: float = 60.0) -> int:
        vhci_port = await super().attach(host, port, busid, timeout=timeout)
        self._attached.add(vhci_port)
        return vhci_port

    async def detach(self, port: int, *, timeout: float = 60.0) -> None:
        await super().detach(port, timeout=timeout)
        self._attached.discard(port)

    async def stop(self) -> None:
        """Detach every device this object attached."""
        for port in sorted(self._attached):
            with contextlib.suppress(Exception):
                await self.detach(port, timeout=30)
        self._attached.clear()

    async def __aenter__(self) -> LocalVhci:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
