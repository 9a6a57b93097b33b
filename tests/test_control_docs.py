"""Every `vusb ctl` example of docs/control.md runs as written against the devices of its `vusb serve` line.

The devices are the built-in profiles the page serves; a USB/IP client in this test plays
the host (it imports and configures them, reads the keyboard's and mouse's reports and the
serial port's data, and sends the serial port a line), and each example line runs in a
shell with ``vusb`` on the PATH and the default control socket of port 3240.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vusb.client import RemoteDevice
from vusb.constants import TransferType
from vusb.control import ControlServer
from vusb.device import Device
from vusb.errors import VusbError
from vusb.profile import load_profile
from vusb.server import Server

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "control.md").read_text()
SERVE = re.search(r"^\$ vusb serve (.+)$", PAGE, re.M)
EXAMPLES = re.search(r"<!-- ctl-examples -->\n```sh\n(.*?)```", PAGE, re.S)
HOST_LINE = b"OK\r\n" + b"sixteen bytes..!" + b"\n"  # what the host sends the serial port


def endpoints(device: Device, transfer_type: TransferType) -> list[tuple[int, int]]:
    """(address, max packet size) of the device's endpoints of one transfer type."""
    return [(e.address, e.max_packet_size & 0x7FF) for i in device.configurations[0].interfaces for e in i.endpoints
            if e.transfer_type == transfer_type]


async def keep_reading(host: RemoteDevice, address: int, size: int, into: list[bytes]) -> None:
    """Read an IN endpoint as a host driver does, until the device goes away."""
    with contextlib.suppress(VusbError, ConnectionError, asyncio.CancelledError):
        while True:
            into.append(await host.transfer_in(address, size, timeout=None))


@contextlib.asynccontextmanager
async def hosted(devices: list[Device], port: int) -> AsyncIterator[dict[str, list[bytes]]]:
    """Import and configure every device that needs a host for the examples; yields what each IN endpoint got."""
    received: dict[str, list[bytes]] = {}
    async with contextlib.AsyncExitStack() as stack:
        tasks: list[asyncio.Task[None]] = []
        for n, device in enumerate(devices, 1):
            busid = f"1-{n}"
            ins = [(a, s) for t in (TransferType.INTERRUPT, TransferType.BULK) for a, s in endpoints(device, t) if a & 0x80]
            host = await stack.enter_async_context(await RemoteDevice.open("127.0.0.1", busid, port))
            await host.enumerate()
            received[busid] = []
            for address, size in ins:
                tasks.append(asyncio.create_task(keep_reading(host, address, max(size, 64), received[busid])))
            outs = [a for a, _ in endpoints(device, TransferType.BULK) if not a & 0x80]
            if busid == "1-4":
                await host.transfer_out(outs[0], HOST_LINE)
        try:
            yield received
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[dict[str, str], dict[str, list[bytes]]]]:
    assert SERVE is not None and EXAMPLES is not None, "docs/control.md lost its serve line or its examples"
    data = tmp_path / "data"
    data.mkdir()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    devices = [load_profile(name, data_dir=data).build() for name in SERVE.group(1).split()]
    async with Server(devices, port=0) as server:
        control = ControlServer(server, runtime / "vusb" / "3240.sock")  # what `vusb ctl` finds by default
        await control.start()
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("PYTHONPATH", None)
        try:
            async with hosted(devices, server.port) as received:
                yield env, received
        finally:
            await control.close()
    for device in devices:
        await device.aclose()


async def run_line(line: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_shell(line, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_every_ctl_example_runs_as_written(served: tuple[dict[str, str], dict[str, list[bytes]]],
                                                 tmp_path: Path) -> None:
    env, received = served
    assert EXAMPLES is not None
    outputs: dict[str, str] = {}
    for line in EXAMPLES.group(1).splitlines():
        if not line.strip():
            continue
        code, out, err = await run_line(line, env, tmp_path)
        assert code == 0, f"{line!r} failed ({code}):\n{out}{err}"
        outputs[line] = out
    by_command = {line.split("#")[0].split()[2]: out for line, out in outputs.items()}
    assert "1-1  1209:0001 Virtual Keyboard" in by_command["list"]
    assert by_command["serial-read"] in (HOST_LINE[:4].decode(), HOST_LINE[4:20].decode())
    read_line = next(out for line, out in outputs.items() if "--line" in line)
    read_n = next(out for line, out in outputs.items() if "-n 16" in line)
    assert (read_line, read_n) == ("OK\r\n", "sixteen bytes..!")
    assert (tmp_path / "other.img").stat().st_size == 64 << 20
    busids = json.loads("[" + ",".join(outputs["vusb ctl --json list | jq '.devices[].busid'"].split()) + "]")
    assert sorted(busids) == [f"1-{n}" for n in range(1, 6)]  # 1-1 too, plugged back
    assert received["1-1"] and received["1-2"]  # the host read the typed keys and the mouse reports
    assert b"AT\r" in b"".join(received["1-4"])  # and what serial-write sent


def test_ctl_alone_lists_every_command(tmp_path: Path) -> None:
    from vusb.control_cli import commands

    proc = subprocess.run([sys.executable, "-m", "vusb", "ctl"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert listed == [name for name, _ in commands()]
    assert {"list", "type", "eject", "insert", "serial-read", "fault-add"} <= set(listed)


def test_help_texts_never_point_at_source_files() -> None:
    import argparse

    from vusb.cli import build_parser
    from vusb.control_cli import _ctl_parser

    def texts(parser: argparse.ArgumentParser) -> list[str]:
        out = [parser.format_help()]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    out += texts(sub)
        return out

    for text in texts(build_parser()) + texts(_ctl_parser()):
        assert not re.search(r"\b[\w/]+\.py\b", text), text


async def test_insert_makes_a_new_image_with_size(tmp_path: Path) -> None:
    from vusb.devices.storage import MassStorage

    disk = MassStorage(str(tmp_path / "a.img"), size="1MiB")
    async with Server([disk], port=0) as server:
        control = ControlServer(server, tmp_path / "run" / "c.sock")
        new = str(tmp_path / "new.img")
        assert (await control.handle({"cmd": "eject", "busid": "1-1"}))["ok"]
        missing = await control.handle({"cmd": "insert", "busid": "1-1", "image": new})
        assert not missing["ok"] and "does not exist; give a size to create it" in missing["error"]
        made = await control.handle({"cmd": "insert", "busid": "1-1", "image": new, "size": "2MiB"})
        assert made["ok"], made
        assert Path(new).stat().st_size == 2 << 20
        memory = await control.handle({"cmd": "insert", "busid": "1-1", "image": "memory:1MiB", "size": "2MiB"})
        assert not memory["ok"] and "field 'size'" in memory["error"]
        await control.close()
    await disk.aclose()
