"""A vusb disk that dies or fills up under a real kernel loses nothing it acknowledged.

The server runs as a separate ``vusb serve`` process here, so it can be killed
(SIGKILL, no clean-up of any kind) or given a file system that runs out of space.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from serve_subprocess import ServeProcess, ServeProcesses

from vusb.harness import Guest

pytestmark = pytest.mark.kernel
MiB = 1 << 20
CHUNK = 64 * 1024


def chunk(i: int) -> bytes:
    """What the guest writes as chunk ``i``: busybox ``yes "chunk-$i-" | head -c 65536``."""
    line = f"chunk-{i}-\n".encode()
    return (line * (CHUNK // len(line) + 1))[:CHUNK]


async def serve(serve_processes: ServeProcesses, profile: Path, *, prefix: list[str] | None = None) -> ServeProcess:
    """Start ``vusb serve PROFILE`` on a free port, in the profile's folder; return once it printed its banner."""
    return await serve_processes.astart("--port", "0", "--no-control", "--no-uvloop", str(profile),
                                        prefix=prefix or (), cwd=profile.parent)


def write_profile(folder: Path, image: str, size: str) -> Path:
    profile = folder / "disk.yaml"
    profile.write_text(
        "identity: {vendor_id: 0x1209, product_id: 0x0005, product: Durable Disk, serial_number: '0123456789AB'}\n"
        f"functions:\n  - kind: mass-storage\n    image: {image}\n    size: {size}\n")
    return profile


async def attach_disk(guest: Guest, server: ServeProcess) -> str:
    await guest.attach(guest.host_address, server.port, server.busids[0])
    devdir = await guest.wait_for_usb_device(0x1209, 0x0005, timeout=60)
    return await guest.wait_for_disk(devdir, timeout=60)


def write_chunks_script(sd: str, first: int, count: int, log: str) -> str:
    """Write chunks with O_DIRECT and fsync (so SYNCHRONIZE CACHE), logging each one acknowledged."""
    return (f"i={first}; : > {log}; while [ $i -lt {first + count} ]; do "
            f"yes chunk-$i- | head -c {CHUNK} > /tmp/chunk.$$ && "
            f"[ -b /dev/{sd} ] && dd if=/tmp/chunk.$$ of=/dev/{sd} bs={CHUNK} seek=$i oflag=direct conv=fsync "
            "2>/dev/null || break; "
            f"echo $i >> {log}; i=$((i+1)); done")


async def test_sigkill_during_heavy_writes_keeps_every_synced_write(guest: Guest, tmp_path: Path,
                                                                   serve_processes: ServeProcesses) -> None:
    image = tmp_path / "durable.img"
    server = await serve(serve_processes, write_profile(tmp_path, "durable.img", "64MiB"))
    sd = await attach_disk(guest, server)
    # Two writers at once: synced 64 KiB chunks that log what was acknowledged, and
    # unsynced 1 MiB writes of zeros into the second half keeping the queue busy.
    synced = await guest.start_background(write_chunks_script(sd, 0, 400, "/tmp/acked"))
    bulk = await guest.start_background(
        f"while [ -b /dev/{sd} ] && dd if=/dev/zero of=/dev/{sd} bs=1M seek=40 count=16 oflag=direct 2>/dev/null; "
        "do :; done")
    await guest.wait_for("[ $(wc -l < /tmp/acked) -ge 25 ]", timeout=120)
    server.send_signal(signal.SIGKILL)
    assert server.wait(timeout=10) == -signal.SIGKILL
    await synced.wait(timeout=120)
    await bulk.wait(timeout=120)
    acked = [int(n) for n in (await guest.read_file("/tmp/acked")).split()]
    assert len(acked) >= 25 and acked == list(range(len(acked)))

    data = image.read_bytes()
    assert len(data) == 64 * MiB
    for i in acked:
        assert data[i * CHUNK:(i + 1) * CHUNK] == chunk(i), f"acknowledged chunk {i} is not in the image"
    # The one write possibly in flight may be old, new or mixed; after it, nothing was written.
    in_flight = len(acked)
    assert data[(in_flight + 1) * CHUNK:40 * MiB].count(0) == 40 * MiB - (in_flight + 1) * CHUNK
    assert data[56 * MiB:].count(0) == 8 * MiB

    # The image is served again by a fresh process, and the guest reads the chunks back.
    for port in await guest.ports():  # the dead server's port, if vhci has not freed it yet
        await guest.detach(port.port)
    server2 = await serve(serve_processes, tmp_path / "disk.yaml")
    sd = await attach_disk(guest, server2)
    last = acked[-1]
    got = await guest.run(f"dd if=/dev/{sd} bs={CHUNK} skip={last} count=1 iflag=direct 2>/dev/null",
                          timeout=60, check=True)
    assert got.stdout_bytes == chunk(last)


def namespace_prefix(mountpoint: Path, size: str) -> list[str] | None:
    """Run a command in its own mount namespace with a ``size``-byte tmpfs on ``mountpoint``."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    userns = [] if os.geteuid() == 0 else ["-Ur"]
    return [unshare, *userns, "-m", "sh", "-c",
            f'mount -t tmpfs -o size={size} vusb-full "$0" && exec "$@"', str(mountpoint)]


def _can_mount_tmpfs(tmp: Path) -> bool:
    prefix = namespace_prefix(tmp, "1m")
    return prefix is not None and subprocess.run([*prefix, "true"], capture_output=True).returncode == 0


async def test_full_file_system_gives_the_writer_enospc_and_the_disk_lives_on(
        guest: Guest, tmp_path: Path, serve_processes: ServeProcesses, pytestconfig: pytest.Config) -> None:
    full = tmp_path / "full"
    full.mkdir()
    if not _can_mount_tmpfs(full):
        from vusb.pytest_plugin import harness_unavailable
        harness_unavailable(pytestconfig, "cannot mount a tmpfs in a mount namespace (unshare -m)")
    # A 64 MiB sparse image on a file system with room for 4 MiB: the image itself is
    # created fine, and the space runs out as the guest fills its holes.
    server = await serve(serve_processes, write_profile(tmp_path, "full/disk.img", "64MiB"),
                         prefix=namespace_prefix(full, "4m"))
    sd = await attach_disk(guest, server)
    await guest.run("dmesg -c >/dev/null", check=True)

    small = await guest.run(write_chunks_script(sd, 0, 8, "/tmp/small") + "; wc -l < /tmp/small", timeout=60,
                            check=True)
    assert small.stdout.split()[-1] == "8"

    big = await guest.run(f"dd if=/dev/urandom of=/dev/{sd} bs=1M seek=16 count=8 oflag=direct conv=fsync",
                          timeout=120)
    assert big.returncode != 0
    assert "No space left on device" in big.stderr, big.stderr
    assert "critical space allocation error" in await guest.dmesg()
    assert server.alive

    # Everything written before is intact, and writes into space the image already has succeed.
    got = await guest.run(f"dd if=/dev/{sd} bs={CHUNK} skip=3 count=1 iflag=direct 2>/dev/null", timeout=60,
                          check=True)
    assert got.stdout_bytes == chunk(3)
    again = await guest.run(write_chunks_script(sd, 2, 2, "/tmp/again") + "; wc -l < /tmp/again", timeout=60,
                            check=True)
    assert again.stdout.split()[-1] == "2"
    assert server.alive
