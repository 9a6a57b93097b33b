"""Tests of the real-kernel harness itself (no vusb server needed).

The ``guest`` fixture (tests/harness/conftest.py) boots one guest per kernel
per session; tests that need a fresh guest say so.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vusb.harness import (
    Guest,
    GuestCommandError,
    GuestDiedError,
    GuestTimeoutError,
    HarnessPrerequisiteError,
    ImageBuildError,
    LocalVhci,
    ensure_image,
    parse_usbip_port,
)
from vusb.harness import image as image_mod
from vusb.harness.guest import _clean_stale_runtime_dirs, _glob_to_shell
from vusb.harness.image import CpioWriter, _debian_version_key, default_cache_dir

kernel = pytest.mark.kernel


# ---------------------------------------------------------------------------
# Host-side pieces (no guest)


def test_parse_usbip_port() -> None:
    text = (
        "Imported USB devices\n====================\n"
        "Port 00: <Port in Use> at Full Speed(12Mbps)\n"
        "       Generic : pid.codes Test PID (1209:0001)\n"
        "       1-1 -> usbip://10.0.2.2:41103/1-1\n"
        "           -> remote bus/dev 001/001\n"
        "Port 16: <Port in Use> at Super Speed(5000Mbps)\n"
        "       unknown vendor : unknown product (1234:5678)\n"
        "       2-1 -> usbip://10.0.2.2:3240/1-2\n"
        "           -> remote bus/dev 001/002\n"
    )
    ports = parse_usbip_port(text)
    assert [(p.port, p.local_busid, p.host, p.tcp_port, p.remote_busid) for p in ports] == [
        (0, "1-1", "10.0.2.2", 41103, "1-1"),
        (16, "2-1", "10.0.2.2", 3240, "1-2"),
    ]
    assert ports[1].speed == "Super Speed(5000Mbps)"
    assert parse_usbip_port("Imported USB devices\n====================\n") == []


def test_glob_quoting_keeps_only_glob_characters_active() -> None:
    assert _glob_to_shell("/dev/sd?") == "/dev/sd?"
    assert _glob_to_shell("/dev/ttyACM*") == "/dev/ttyACM*"
    assert _glob_to_shell("/dev/tty[S]0") == "/dev/tty[S]0"
    assert _glob_to_shell("/tmp/a b;rm x*") == "'/tmp/a b;rm x'*"


def test_debian_version_ordering() -> None:
    ordered = ["6.1.0~rc1-1", "6.1.0-1", "6.1.0-1+b1", "6.1.90-1", "6.1.192-2", "1:5.0-1"]
    assert sorted(reversed(ordered), key=_debian_version_key) == ordered


def _read_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    entries: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        pos = (name_start + namesize + 3) & ~3
        body = data[pos : pos + size]
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, body)


def test_cpio_writer_adds_parents_and_pads() -> None:
    buf = io.BytesIO()
    cpio = CpioWriter(buf)
    cpio.add_file("usr/share/x/data.bin", b"abc", 0o600)
    cpio.add_symlink("bin/sh", "/bin/busybox")
    cpio.add_chardev("dev/console", 5, 1)
    cpio.close()
    entries = _read_newc(buf.getvalue())
    assert list(entries) == ["usr", "usr/share", "usr/share/x", "usr/share/x/data.bin", "bin", "bin/sh",
                             "dev", "dev/console"]
    assert entries["usr/share/x/data.bin"] == (0o100600, b"abc")
    assert entries["bin/sh"] == (0o120777, b"/bin/busybox")
    assert len(buf.getvalue()) % 4 == 0


def test_cache_dir_selection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VUSB_GUEST_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "vusb" / "guest"
    monkeypatch.setenv("VUSB_GUEST_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


def test_unknown_kernel_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"5\.10"):
        ensure_image("4.19")


def test_missing_qemu_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VUSB_QEMU", raising=False)
    monkeypatch.setattr(image_mod, "_which", lambda name, *a: None)
    with pytest.raises(HarnessPrerequisiteError, match=r"qemu-system-x86.*install-harness-deps"):
        Guest.start_sync("6.1")


@pytest.mark.parametrize(("tool", "package"), [("usbip", "usbip"), ("depmod", "kmod"), ("apt-get", "apt")])
def test_missing_build_tool_names_the_package(monkeypatch: pytest.MonkeyPatch, tool: str, package: str) -> None:
    real = image_mod._which
    monkeypatch.delenv("VUSB_USBIP", raising=False)
    monkeypatch.setattr(image_mod, "_which", lambda name, *a: None if name == tool else real(name, *a))
    try:
        image_mod._find_busybox()
    except HarnessPrerequisiteError:
        pytest.skip("no static busybox on this host")
    with pytest.raises(HarnessPrerequisiteError, match=f"'{package}'"):
        image_mod.check_build_prerequisites()


def test_dynamic_busybox_is_not_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_mod, "_find_busybox", image_mod._find_busybox)
    monkeypatch.setenv("VUSB_BUSYBOX", sys.executable)
    real_isfile = os.path.isfile
    monkeypatch.setattr(os.path, "isfile", lambda p: p == sys.executable or (real_isfile(p) and "busybox" not in p))
    with pytest.raises(HarnessPrerequisiteError, match="busybox-static"):
        image_mod._find_busybox()


async def test_local_target_shares_the_command_api(tmp_path: Path) -> None:
    # LocalVhci's attach needs root and a vhci-hcd, but its command layer (which
    # the wait helpers and background jobs build on) works anywhere.
    local = LocalVhci()
    r = await local.run("echo out; echo err >&2; cat; exit 3", input="in\n")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\nin\n", "err\n")
    with pytest.raises(GuestTimeoutError) as info:
        await local.run("echo before; sleep 30", timeout=0.5)
    assert info.value.partial is not None and info.value.partial.stdout == "before\n"
    target = tmp_path / "x y"
    await local.write_file(str(target), b"\x00data")
    assert await local.read_file(str(target)) == b"\x00data"
    assert await local.wait_for_path(str(tmp_path / "x*"), timeout=5) == [str(target)]
    job = await local.start_background("echo bg; sleep 30")
    await local.wait_for(f"grep -q bg {job.directory}/out", timeout=5)
    result = await job.stop()
    assert (result.returncode, result.stdout) == (143, "bg\n")
    await local.stop()


# ---------------------------------------------------------------------------
# A booted guest


@kernel
def test_boots_the_selected_kernel(guest: Guest) -> None:
    release = guest.sync.run("uname -r", check=True).stdout.strip()
    assert release == guest.kernel_release
    assert release.startswith(guest.image.kernel + ".")
    assert guest.boot_seconds > 0


@kernel
async def test_exit_status_stdout_and_stderr(guest: Guest) -> None:
    r = await guest.run("echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    assert not r.ok
    r = await guest.run("printf '\\000\\377x'")
    assert r.stdout_bytes == b"\x00\xffx" and r.returncode == 0


@kernel
async def test_check_raises_with_the_output(guest: Guest) -> None:
    with pytest.raises(GuestCommandError, match="status 3") as info:
        await guest.run("echo why >&2; exit 3", check=True)
    assert info.value.result.stderr == "why\n"
    assert (await guest.run("true")).check().returncode == 0


@kernel
async def test_stdin_and_files_round_trip(guest: Guest) -> None:
    r = await guest.run("wc -c; echo done", input=b"\x00" * 1000)
    assert r.stdout.split() == ["1000", "done"]
    data = os.urandom(1 << 20)
    await guest.write_file("/tmp/blob", data, mode=0o600)
    assert await guest.read_file("/tmp/blob") == data
    assert (await guest.run("stat -c %a /tmp/blob")).stdout.strip() == "600"
    await guest.run("rm /tmp/blob", check=True)


@kernel
async def test_timeout_kills_the_command_and_the_guest_stays_usable(guest: Guest) -> None:
    started = time.monotonic()
    with pytest.raises(GuestTimeoutError) as info:
        await guest.run("echo before; sleep 60; echo after", timeout=1.5)
    assert time.monotonic() - started < 10
    assert info.value.partial is not None and info.value.partial.stdout == "before\n"
    assert "sleep 60" in str(info.value)
    assert (await guest.run("pgrep -f 'sleep 60' || echo none")).stdout.strip() == "none"
    assert (await guest.run("echo next")).stdout == "next\n"


@kernel
async def test_usbip_modules_are_loaded(guest: Guest) -> None:
    wanted = ["usbip_core", "vhci_hcd", "usbhid", "hid_generic", "evdev", "usb_storage", "sd_mod",
              "cdc_acm", "vfat", "nls_cp437", "nls_iso8859_1", "e1000"]
    script = "; ".join(f"[ -d /sys/module/{m} ] || echo missing {m}" for m in wanted)
    assert (await guest.run(script, check=True)).stdout == ""
    status = (await guest.run("cat /run/vusb/init-status", check=True)).stdout
    assert status.strip().endswith("init-done")
    assert (await guest.run("ls -d /sys/devices/platform/vhci_hcd.0", check=True)).ok


@kernel
async def test_usbip_port_runs(guest: Guest) -> None:
    assert isinstance(await guest.ports(), list)
    r = await guest.run("usbip version", check=True)
    assert "usbip" in r.stdout + r.stderr


TcpServer = Callable[[Callable[[bytes], bytes]], tuple[int, list[bytes]]]


@pytest.fixture
def tcp_server() -> Iterator[TcpServer]:
    """Start one-shot-per-connection TCP servers on the host's 127.0.0.1."""
    servers: list[socket.socket] = []

    def start(handler: Callable[[bytes], bytes]) -> tuple[int, list[bytes]]:
        srv = socket.create_server(("127.0.0.1", 0))
        servers.append(srv)
        seen: list[bytes] = []

        def loop() -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with conn:
                    conn.settimeout(10)
                    data = conn.recv(4096)
                    seen.append(data)
                    reply = handler(data)
                    if reply:
                        conn.sendall(reply)

        threading.Thread(target=loop, daemon=True).start()
        return srv.getsockname()[1], seen

    yield start
    for srv in servers:
        srv.close()


@kernel
async def test_network_reaches_the_hosts_loopback(guest: Guest, tcp_server: TcpServer) -> None:
    port, seen = tcp_server(lambda data: b"pong:" + data)
    r = await guest.run(f"echo hello | nc {guest.host_address} {port}", timeout=30, check=True)
    assert r.stdout == "pong:hello\n"
    assert seen == [b"hello\n"]


OP_REP_DEVLIST_EMPTY = struct.pack(">HHII", 0x0111, 0x0005, 0, 0)


@kernel
async def test_usbip_list_talks_to_the_given_tcp_port(guest: Guest, tcp_server: TcpServer) -> None:
    port, seen = tcp_server(lambda data: OP_REP_DEVLIST_EMPTY)
    r = await guest.list_remote(None, port)
    assert seen and seen[0][:4] == struct.pack(">HH", 0x0111, 0x8005)
    assert "no exportable devices" in r.stderr


@kernel
async def test_failed_attach_raises_with_usbips_message(guest: Guest, tcp_server: TcpServer) -> None:
    port, seen = tcp_server(lambda data: struct.pack(">HHI", 0x0111, 0x0003, 1))
    with pytest.raises(GuestCommandError, match="attach") as info:
        await guest.attach(None, port, "1-1", timeout=30)
    assert "usbip" in info.value.result.stderr
    assert seen and seen[0][:4] == struct.pack(">HH", 0x0111, 0x8003)  # OP_REQ_IMPORT


@kernel
async def test_wait_helpers(guest: Guest) -> None:
    assert await guest.wait_for_path("/dev/tty[S]0", timeout=10) == ["/dev/ttyS0"]
    event = await guest.wait_for_input_device("AT Translated Set 2", timeout=10)
    assert event.startswith("/dev/input/event")
    await guest.wait_for("[ -d /sys/bus/usb ]", timeout=10)
    started = time.monotonic()
    with pytest.raises(GuestTimeoutError, match=r"/dev/sd\?"):
        await guest.wait_for_path("/dev/sd?", timeout=1)
    with pytest.raises(GuestTimeoutError, match="USB device 1209:0001"):
        await guest.wait_for_usb_device(0x1209, 0x0001, timeout=1)
    assert time.monotonic() - started < 15
    await guest.run("(sleep 0.5; touch /tmp/later) & true", check=True)
    await guest.wait_for("[ -e /tmp/later ]", timeout=10)
    await guest.run("rm -f /tmp/later")


@kernel
async def test_background_job(guest: Guest) -> None:
    job = await guest.start_background("echo started; while :; do sleep 0.1; done")
    assert await job.is_running()
    await guest.wait_for(f"grep -q started {job.directory}/out", timeout=10)
    result = await job.stop()
    assert result.returncode == 143 and result.stdout == "started\n"
    job = await guest.start_background("echo quick; echo oops >&2; exit 4")
    result = await job.wait(timeout=10)
    assert (result.returncode, result.stdout, result.stderr) == (4, "quick\n", "oops\n")


@kernel
async def test_guest_tools_for_device_tests(guest: Guest) -> None:
    r = await guest.run(
        "set -e\n"
        "dd if=/dev/zero of=/tmp/fat.img bs=1024 count=8192 2>/dev/null\n"
        "mkfs.vfat -n VUSBTEST /tmp/fat.img >/dev/null\n"
        "mkdir -p /mnt/fat\n"
        "mount -o loop /tmp/fat.img /mnt/fat\n"
        "echo hello > /mnt/fat/hello.txt\n"
        "umount /mnt/fat\n"
        "mount -o loop,ro /tmp/fat.img /mnt/fat\n"
        "cat /mnt/fat/hello.txt\n"
        "umount /mnt/fat\n"
        "rm /tmp/fat.img\n"
        "printf 'AB' | hexdump -C | head -1\n"
        "printf 'AB' | od -A n -t x1\n"
        "stty -F /dev/ttyS0 speed\n"
        "which stty dd hexdump od mount usbip mkfs.vfat > /dev/null\n",
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "hello"
    assert "41 42" in lines[1] and lines[2].split() == ["41", "42"]
    assert lines[3].isdigit()  # stty speed
    assert r.stderr == ""


@kernel
async def test_commands_from_concurrent_tasks_are_serialized(guest: Guest) -> None:
    results = await asyncio.gather(*(guest.run(f"sleep 0.1; echo {i}") for i in range(5)))
    assert [r.stdout.strip() for r in results] == [str(i) for i in range(5)]


@kernel
async def test_kernel_messages_reach_the_console_log(guest: Guest) -> None:
    marker = f"vusb-harness-marker-{time.time_ns()}"
    await guest.run(f"echo {marker} > /dev/kmsg", check=True)
    for _ in range(50):
        if marker in guest.console_log():
            break
        await asyncio.sleep(0.1)
    assert marker in guest.console_log()
    assert marker in await guest.dmesg()


@kernel
def test_image_is_reused_from_the_cache(guest: Guest) -> None:
    started = time.monotonic()
    image = ensure_image(guest.image.kernel)
    assert time.monotonic() - started < 2
    assert image.directory == guest.image.directory
    assert (image.directory / "image.json").is_file()


# ---------------------------------------------------------------------------
# Lifecycle (fresh guests)


@kernel
async def test_stop_is_clean(guest: Guest) -> None:
    shared = guest
    starter = Guest.start(shared.image.kernel)
    guest = await starter.__aenter__()
    assert guest is not shared
    proc = guest._core.proc
    assert proc is not None
    runtime = guest._core.runtime
    assert (await guest.run("echo up")).stdout == "up\n"
    await starter.__aexit__(None, None, None)
    assert proc.poll() is not None
    assert not runtime.exists()
    assert not guest.is_running
    assert isinstance(guest.console_log(), str)  # still readable after stop
    with pytest.raises(GuestDiedError):
        await guest.run("true")
    await guest.stop()  # idempotent


@kernel
def test_qemu_does_not_outlive_a_killed_python(guest: Guest) -> None:
    script = (
        "import os, sys\n"
        "from vusb.harness import Guest\n"
        f"g = Guest.start_sync({guest.image.kernel!r})\n"
        "print(g._core.proc.pid, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300,
                       check=False)
    if not r.stdout.strip():
        pytest.fail(f"child did not start a guest: {r.stderr}")
    pid = int(r.stdout.split()[0])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        else:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split()[2] == "Z":
                        break
            except OSError:
                break
        time.sleep(0.2)
    else:
        os.kill(pid, 9)
        pytest.fail("QEMU survived its parent Python process")
    _clean_stale_runtime_dirs()  # the killed child could not remove its runtime directory


@kernel
def test_missing_kernel_package_names_package_and_suite(guest: Guest, tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match=r"linux-image-6\.1\.0-9999-amd64-unsigned.*bookworm"):
        ensure_image("6.1.0-9999", tmp_path)
    assert not any(p.name.startswith("linux-") for p in tmp_path.iterdir())
