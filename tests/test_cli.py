"""The `vusb` command line, run as a user would run it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from serve_subprocess import ServeProcess, ServeProcesses

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def vusb(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vusb", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


@pytest.fixture
def serving(serve_processes: ServeProcesses) -> tuple[int, ServeProcess]:
    port = free_port()
    return port, serve_processes.start("profiles/keyboard.yaml", "profiles/mouse.yaml", "--port", str(port))


def test_serve_prints_busids_and_attach_commands_then_stops_cleanly_on_ctrl_c(serving: tuple[int, ServeProcess]) -> None:
    port, server = serving
    text = server.banner.text
    assert f"serving 2 device(s) on 127.0.0.1:{port}" in text
    assert "1-1  1209:0001 Virtual Keyboard" in text and "1-2  1209:0002 Virtual Mouse" in text
    assert f"usbip --tcp-port {port} attach -r 127.0.0.1 -b 1-1" in text
    assert f"usbip --tcp-port {port} attach -r 127.0.0.1 -b 1-2" in text
    assert server.stop(signal.SIGINT, timeout=10) == 0, server.stderr
    assert "shutting down" in server.after_banner
    assert "Traceback" not in server.stderr


def test_list_and_probe_against_a_running_server(serving: tuple[int, ServeProcess]) -> None:
    port, _ = serving
    listing = vusb("list", "127.0.0.1", "--port", str(port))
    assert listing.returncode == 0, listing.stderr
    assert "1-1: 1209:0001" in listing.stdout and "1-2: 1209:0002" in listing.stdout
    probe = vusb("probe", "127.0.0.1", "1-1", "--port", str(port))
    assert probe.returncode == 0, probe.stderr
    for expected in ["idVendor           0x1209", "iProduct                2 Virtual Keyboard",
                     "bInterfaceClass         3 Human Interface Device", "bInterfaceProtocol      1 Keyboard",
                     "bEndpointAddress     0x81 EP 1 IN", "wDescriptorLength      63", "wTotalLength       0x0022"]:
        assert " ".join(expected.split()) in " ".join(probe.stdout.split()), probe.stdout


def test_serve_with_a_broken_profile_names_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("identity:\n  vendor_id: 0x1209\nfunctions:\n  - kind: keyboard\n")
    result = vusb("serve", str(bad), "--port", str(free_port()))
    assert result.returncode == 2
    assert f"{bad}:2:3: field 'identity.product_id': required field 'product_id' is missing" in result.stderr


def test_check_command(tmp_path: Path) -> None:
    ok = vusb("check", "profiles/keyboard.yaml", "profiles/mouse.yaml")
    assert ok.returncode == 0 and ok.stdout.count("ok:") == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("identity: {vendor_id: 1, product_id: 1}\nfunctions: [{kind: nope}]\n")
    result = vusb("check", str(bad))
    assert result.returncode == 1 and "unknown kind 'nope'" in result.stderr


def test_probe_unknown_busid_is_a_clear_error(serving: tuple[int, ServeProcess]) -> None:
    port, _ = serving
    result = vusb("probe", "127.0.0.1", "7-7", "--port", str(port))
    assert result.returncode == 2 and "exports no device 7-7" in result.stderr


def test_remote_host_requires_allow_remote() -> None:
    result = vusb("serve", "profiles/keyboard.yaml", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2 and "no authentication" in result.stderr




BAD_BUSY_POLLS = [("not a number", "fast", "'fast' is not a whole number of microseconds"),
                  ("negative", "-5", "-5 µs is outside 0..10000"),
                  ("too long", "10001", "10001 µs is outside 0..10000")]


@pytest.mark.parametrize(("case", "value", "message"), BAD_BUSY_POLLS, ids=[c[0] for c in BAD_BUSY_POLLS])
def test_busy_poll_refuses_bad_values_by_name(case: str, value: str, message: str) -> None:
    result = vusb("serve", "profiles/keyboard.yaml", "--busy-poll", value)
    assert result.returncode == 2 and f"argument --busy-poll: {message}" in result.stderr


def test_busy_polling_server_serves(serve_processes: ServeProcesses) -> None:
    server = serve_processes.start("profiles/keyboard.yaml", "--port", "0", "--no-control", "--busy-poll", "50")
    listing = vusb("list", "127.0.0.1", "--port", str(server.port))
    assert listing.returncode == 0 and "1-1: 1209:0001" in listing.stdout
    probe = vusb("probe", "127.0.0.1", "1-1", "--port", str(server.port))
    assert probe.returncode == 0 and "idVendor" in probe.stdout
    assert server.stop(signal.SIGINT) == 0, server.stderr
