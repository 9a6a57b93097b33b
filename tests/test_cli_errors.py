"""What a new user meets first: bad ports, nothing listening, a port in use, --version and --help.

Every error names the value that was wrong and says what to do; none ends in a traceback.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from serve_subprocess import ServeProcesses

from vusb import Server
from vusb.client import RemoteDevice, list_devices
from vusb.errors import AddressInUse, NothingListening, UsageError
from vusb.net import check_port

ROOT = Path(__file__).resolve().parent.parent


def vusb(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vusb", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def closed_port() -> int:
    """A loopback port nothing listens on (bound for a moment, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --------------------------------------------------------------------------- ports on the command line
BAD_PORTS = [("above 65535", "70000", "port 70000 is outside 0..65535"),
             ("negative", "-1", "port -1 is outside 0..65535"),
             ("65536 (0 modulo 65536)", "65536", "port 65536 is outside 0..65535"),
             ("not a number", "usbip", "port 'usbip' is not a whole number")]

PORT_COMMANDS = [("serve", ["serve", "profiles/keyboard.yaml", "--no-control"]),
                 ("list", ["list", "127.0.0.1"]),
                 ("probe", ["probe", "127.0.0.1", "1-1"]),
                 ("host", ["host", "127.0.0.1", "1-1"]),
                 ("ctl", ["ctl", "list"])]


@pytest.mark.parametrize(("command", "argv"), PORT_COMMANDS, ids=[c[0] for c in PORT_COMMANDS])
@pytest.mark.parametrize(("case", "value", "message"), BAD_PORTS, ids=[c[0] for c in BAD_PORTS])
def test_every_command_refuses_a_bad_port_by_value(command: str, argv: list[str], case: str, value: str,
                                                   message: str) -> None:
    # ctl takes its own options before the command; the others after their arguments
    args = ["ctl", f"--port={value}", *argv[1:]] if command == "ctl" else [*argv, f"--port={value}"]
    result = vusb(*args)
    assert result.returncode == 2, result
    assert f"argument --port: {message}" in result.stderr
    assert "Traceback" not in result.stderr and "serving" not in result.stdout


# --------------------------------------------------------------------------- ports in the Python API
@pytest.mark.parametrize(("value", "message"), [(70000, "port 70000 is outside 0..65535"),
                                                (-1, "port -1 is outside 0..65535"),
                                                ("3240", "port '3240' is not a whole number"),
                                                (True, "port True is not a whole number")])
def test_the_api_refuses_a_bad_port_by_value(value: object, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        check_port(value)
    with pytest.raises(UsageError, match=re.escape(message)):
        Server([], port=value)  # type: ignore[arg-type]


async def test_client_functions_refuse_a_bad_port_before_connecting() -> None:
    with pytest.raises(UsageError, match=re.escape("port 70000 is outside 0..65535")):
        await list_devices("127.0.0.1", 70000)
    with pytest.raises(UsageError, match=re.escape("port -1 is outside 0..65535")):
        await RemoteDevice.open("127.0.0.1", "1-1", -1)


# --------------------------------------------------------------------------- nothing listening, port in use
async def test_a_refused_connection_says_what_to_do() -> None:
    port = closed_port()
    expected = f"nothing answers on 127.0.0.1:{port} — is `vusb serve` running there?"
    with pytest.raises(NothingListening, match=re.escape(expected)) as caught:
        await list_devices("127.0.0.1", port)
    assert isinstance(caught.value, ConnectionRefusedError)  # code that catches the OS error keeps working
    with pytest.raises(NothingListening, match=re.escape(expected)):
        await RemoteDevice.open("127.0.0.1", "1-1", port)


@pytest.mark.parametrize("command", [["list", "127.0.0.1"], ["probe", "127.0.0.1", "1-1"]], ids=["list", "probe"])
def test_the_commands_say_nothing_answers(command: list[str]) -> None:
    port = closed_port()
    result = vusb(*command, "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"vusb: error: nothing answers on 127.0.0.1:{port} — "
                                      "is `vusb serve` running there?")


async def test_a_port_in_use_is_named_in_the_api() -> None:
    async with Server([], port=0) as first:
        with pytest.raises(AddressInUse, match=re.escape(f"port {first.port} on 127.0.0.1 is already in use")):
            async with Server([], port=first.port):
                pass


def test_serve_on_a_port_in_use_names_it_and_suggests_another(serve_processes: ServeProcesses) -> None:
    first = serve_processes.start("profiles/keyboard.yaml", "--port", "0", "--no-control")
    result = vusb("serve", "profiles/mouse.yaml", "--port", str(first.port), "--no-control")
    assert result.returncode == 2
    assert f"port {first.port} on 127.0.0.1 is already in use" in result.stderr
    assert "choose another with --port" in result.stderr and "Traceback" not in result.stderr
    assert first.stop(signal.SIGINT) == 0


def test_serve_says_serving_once(serve_processes: ServeProcesses) -> None:
    server = serve_processes.start("profiles/keyboard.yaml", "--port", "0", "--no-control")
    assert server.stop(signal.SIGINT) == 0
    everything = server.stdout + server.stderr
    assert everything.count("serving 1 device(s)") == 1, everything


# --------------------------------------------------------------------------- --version and --help
def test_version() -> None:
    from vusb import __version__

    result = vusb("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"vusb {__version__}"


def test_help_lists_each_command_once() -> None:
    result = vusb("--help")
    assert result.returncode == 0
    # one line per command, indented by 4; longer help texts continue on lines indented further
    commands = [line.split()[0] for line in result.stdout.splitlines()
                if line.startswith("    ") and not line.startswith("     ")]
    assert commands == ["serve", "proxy", "ctl", "list", "probe", "host", "schema", "bench", "check", "profiles", "clone",
                        "record"], result.stdout
    assert "check (validate)" in result.stdout  # the alias is shown beside its command, not as one more
    assert "validate" not in result.stdout.replace("check (validate)", "")


def test_validate_is_an_alias_of_check() -> None:
    assert vusb("validate", "profiles/keyboard.yaml").stdout == vusb("check", "profiles/keyboard.yaml").stdout


HELP_COMMANDS = ["serve", "list", "probe", "host", "schema", "bench", "check", "clone", "record"]


@pytest.mark.parametrize("command", [[], *[[c] for c in HELP_COMMANDS]], ids=["vusb", *HELP_COMMANDS])
def test_help_texts_never_point_at_source_files(command: list[str]) -> None:
    # `vusb ctl --help` belongs to the ctl work (issue 18); it is checked there.
    result = vusb(*command, "--help")
    assert result.returncode == 0, result.stderr
    for word in result.stdout.split():
        assert not word.rstrip(").,;").endswith(".py"), f"{word!r} in `vusb {' '.join(command)} --help`"
        assert not word.startswith(("vusb/", "benchmarks/", "devices/")), word
