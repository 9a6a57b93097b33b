"""The CDC ACM class's registration: the ``cdc-acm`` profile kind and the ``serial-write``/``serial-read`` commands."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from vusb.devices.cdc_acm.backends import SerialBackend
from vusb.devices.cdc_acm.fifo import ByteFifo
from vusb.devices.cdc_acm.function import CdcAcmFunction
from vusb.devices.cdc_acm.profile import ANSWER_FIELDS, FIELDS, build

from vusb.control_server import ControlError, ControlServer, Request
from vusb.registry import Command, Registry


class ControlledPort(Protocol):
    """What ``serial-write`` and ``serial-read`` use of a serial port."""

    from_host: ByteFifo
    backend: SerialBackend

    async def write(self, data: bytes | bytearray | memoryview, timeout: float | None = None) -> None: ...


@runtime_checkable
class SerialPorts(Protocol):
    """A serial function with several ports (a dual-port USB-serial chip): request field ``port`` picks one."""

    def serial_ports(self) -> Sequence[ControlledPort]: ...


def _serial(ctl: ControlServer, req: Request) -> tuple[str, ControlledPort]:
    busid, _, f = ctl.function(req, "serial")
    index = req.get("port", int, 0)
    ports: Sequence[ControlledPort]
    if isinstance(f, SerialPorts):
        ports = f.serial_ports()
    else:
        assert isinstance(f, CdcAcmFunction)
        ports = [f]
    if not 0 <= index < len(ports):
        raise ControlError(f"the serial function of {busid} has {len(ports)} port(s); no port {index} "
                           f"(ports count from 0)")
    return busid, ports[index]


async def _serial_write(ctl: ControlServer, req: Request) -> dict[str, Any]:
    text = req.get("data", str)
    b64 = req.get("base64", str)
    if (text is None) == (b64 is None):
        raise ControlError("give the bytes as 'data' (text, sent as UTF-8) or 'base64', exactly one of them")
    if b64 is not None:
        try:
            payload = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ControlError(f"field 'base64' is not valid base64: {exc}") from None
    else:
        payload = text.encode("utf-8")
    busid, f = _serial(ctl, req)
    timeout = req.timeout()
    try:
        await asyncio.wait_for(f.write(payload), timeout)
    except TimeoutError:
        raise ControlError(f"timed out after {timeout:g} s: the buffer towards the host of {busid} stays full "
                           "(the host is not reading)") from None
    return {"written": len(payload)}

async def _serial_read(ctl: ControlServer, req: Request) -> dict[str, Any]:
    n = req.get("n", int)
    line = bool(req.get("line", bool, False))
    separator = req.get("separator", str, "\n").encode("utf-8")
    if n is not None and n <= 0:
        raise ControlError(f"field 'n' must be a positive number of bytes, not {n}")
    if not separator:
        raise ControlError("field 'separator' must not be empty")
    busid, f = _serial(ctl, req)
    if f.backend.reads_host_data:
        raise ControlError(f"the serial port {busid} has the {f.backend.describe()} backend, which consumes "
                           "what the host sends; serial-read needs a port with backend none")
    timeout = req.timeout()
    fifo = f.from_host
    acc = bytearray()
    try:
        async with asyncio.timeout(timeout):
            if not line:
                await fifo.wait_data()
                acc += fifo.get(n if n is not None else -1)
            else:
                limit = n if n is not None else fifo.limit
                while True:
                    idx = acc.find(separator)
                    if idx >= 0:
                        end = idx + len(separator)
                        fifo.unget(bytes(acc[end:]))
                        del acc[end:]
                        break
                    if len(acc) >= limit:
                        fifo.unget(bytes(acc[limit:]))
                        del acc[limit:]
                        break
                    await fifo.wait_data()
                    acc += fifo.get()
    except TimeoutError:
        fifo.unget(bytes(acc))  # nothing taken is lost: the next read sees it
        what = "complete line" if line else "data"
        raise ControlError(f"no {what} from the host of {busid} within {timeout:g} s"
                           + (f" ({len(acc)} byte(s) without a separator are kept)" if acc else "")) from None
    data = bytes(acc)
    return {"data": data.decode("utf-8", "backslashreplace"), "base64": base64.b64encode(data).decode("ascii"),
            "length": len(data)}


def _write_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data")
    p.add_argument("--base64", action="store_true", help="DATA is base64")
    _port_argument(p)


def _port_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, metavar="N", help="which port of a multi-port chip (FT2232H, CP2105): 0 or 1")


def _write_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    from vusb.control_cli import unescape

    if args.port is not None:
        body["port"] = args.port
    if args.base64:
        body["base64"] = args.data
    else:
        body["data"] = unescape(args.data)


def _read_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", type=int, help="at most N bytes")
    p.add_argument("--line", action="store_true", help="up to and including a newline")
    _port_argument(p)


def _read_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    if args.port is not None:
        body["port"] = args.port
    if args.n is not None:
        body["n"] = args.n
    if args.line:
        body["line"] = True


def _read_format(reply: dict[str, Any]) -> str:
    return str(reply.get("data", ""))


def register(registry: Registry) -> None:
    registry.add_kind("cdc-acm", FIELDS, build, "USB serial port (CDC ACM): loopback, pty or TCP bridge",
                      tables={"answers": ANSWER_FIELDS}, docs="devices/serial.md")
    registry.name_function(CdcAcmFunction, "serial")
    registry.add_command(Command("serial-write", "send bytes to the host (escapes such as \\r are interpreted)",
                                 _serial_write, _write_arguments, _write_request))
    registry.add_command(Command("serial-read", "read bytes the host sent (ports with backend: none)", _serial_read,
                                 _read_arguments, _read_request, _read_format, raw_output=True))
