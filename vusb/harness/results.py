"""What a guest command returns (:class:`CommandResult`), the errors of a guest, and ``usbip port`` output."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from vusb.errors import HarnessError

__all__ = [
    "CommandResult",
    "GuestBootError",
    "GuestCommandError",
    "GuestDiedError",
    "GuestError",
    "GuestTimeoutError",
    "ImportedPort",
    "parse_usbip_port",
]


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
