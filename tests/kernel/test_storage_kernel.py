"""A vusb disk under Linux usb-storage: filesystems, raw patterns, read-only, eject."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from vusb.devices import MassStorage

from vusb.harness import Guest
from vusb.server import Server

pytestmark = pytest.mark.kernel
MiB = 1 << 20


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server([], port=0) as srv:
        yield srv


async def attach_disk(guest: Guest, server: Server, disk: MassStorage) -> tuple[int, str]:
    busid = server.add(disk)
    port = await guest.attach(guest.host_address, server.port, busid)
    devdir = await guest.wait_for_usb_device(0x1209, disk.descriptor.product_id, timeout=60)
    return port, await guest.wait_for_disk(devdir, timeout=60)


async def detach(guest: Guest, server: Server, port: int, disk: MassStorage) -> None:
    await guest.detach(port)
    server.remove(disk)


async def test_filesystem_survives_detach_and_lands_in_the_image(any_guest: Guest, server: Server, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    disk = MassStorage(str(image), size=64 * MiB)
    port, sd = await attach_disk(any_guest, server, disk)
    assert int((await any_guest.run(f"cat /sys/block/{sd}/size", check=True)).stdout) * 512 == 64 * MiB
    payload = random.Random(7).randbytes(300_000)
    await any_guest.write_file("/tmp/payload.bin", payload)
    await any_guest.run(
        f"mkfs.vfat /dev/{sd} >/dev/null && mkdir -p /mnt/usb && mount -t vfat /dev/{sd} /mnt/usb && "
        "cp /tmp/payload.bin /mnt/usb/PAYLOAD.BIN && echo hello > /mnt/usb/HELLO.TXT && umount /mnt/usb",
        timeout=120, check=True)
    await detach(any_guest, server, port, disk)
    # The host image holds the data the guest wrote (a FAT file's clusters are contiguous here).
    assert payload in image.read_bytes()
    # Re-attach a fresh device on the same image: the files are intact.
    disk2 = MassStorage(str(image))
    port, sd = await attach_disk(any_guest, server, disk2)
    result = await any_guest.run(
        f"mount -t vfat /dev/{sd} /mnt/usb && md5sum /mnt/usb/PAYLOAD.BIN && cat /mnt/usb/HELLO.TXT; umount /mnt/usb",
        timeout=120, check=True)
    assert hashlib.md5(payload).hexdigest() in result.stdout and "hello" in result.stdout
    await detach(any_guest, server, port, disk2)
    disk.close()
    disk2.close()


PATTERNS = [  # (offset, size) in bytes, 512-aligned as block I/O is
    (0, 512),
    (4096, 4096),
    (1 * MiB - 512, 1536),          # crosses a MiB boundary
    (5 * MiB, 1 * MiB),             # one large transfer
    (63 * MiB, 1 * MiB),            # the last MiB of the disk
]


async def test_raw_patterns_verified_on_both_sides(any_guest: Guest, server: Server, tmp_path: Path) -> None:
    image = tmp_path / "raw.img"
    disk = MassStorage(str(image), size=64 * MiB)
    port, sd = await attach_disk(any_guest, server, disk)
    rng = random.Random(11)
    for offset, size in PATTERNS:
        data = rng.randbytes(size)
        await any_guest.write_file("/tmp/pat.bin", data)
        await any_guest.run(f"dd if=/tmp/pat.bin of=/dev/{sd} bs=512 seek={offset // 512} conv=fsync 2>/dev/null",
                              timeout=120, check=True)
        with open(image, "rb") as f:  # acknowledged writes are in the file
            f.seek(offset)
            assert f.read(size) == data, f"host image differs at {offset}+{size}"
    # Host-side writes while the guest has no cached copy are read back by the guest.
    for offset, size in PATTERNS:
        data = rng.randbytes(size)
        fd = os.open(image, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)
        await any_guest.run("echo 3 > /proc/sys/vm/drop_caches", check=True)
        got = await any_guest.run(f"dd if=/dev/{sd} bs=512 skip={offset // 512} count={size // 512} 2>/dev/null",
                                    timeout=120, check=True)
        assert got.stdout_bytes == data, f"guest read differs at {offset}+{size}"
    await detach(any_guest, server, port, disk)
    disk.close()


async def test_read_only_disk_refuses_writes(any_guest: Guest, server: Server, tmp_path: Path) -> None:
    image = tmp_path / "ro.img"
    image.write_bytes(b"\xAA" * (8 * MiB))
    disk = MassStorage(str(image), read_only=True)
    port, sd = await attach_disk(any_guest, server, disk)
    assert (await any_guest.run(f"cat /sys/block/{sd}/ro", check=True)).stdout.strip() == "1"
    result = await any_guest.run(f"dd if=/dev/zero of=/dev/{sd} bs=512 count=1 conv=fsync", timeout=60)
    assert result.returncode != 0
    assert image.read_bytes() == b"\xAA" * (8 * MiB)
    await detach(any_guest, server, port, disk)
    disk.close()


async def test_eject_on_the_host_shows_no_medium_in_the_guest(any_guest: Guest, server: Server) -> None:
    disk = MassStorage(memory=True, size=16 * MiB)
    port, sd = await attach_disk(any_guest, server, disk)
    disk.eject()
    await any_guest.wait_for(
        f"! dd if=/dev/{sd} of=/dev/null bs=512 count=1 iflag=direct 2>/tmp/err; grep -qi 'medium' /tmp/err "
        f"|| [ \"$(cat /sys/block/{sd}/size)\" = 0 ]", timeout=60)
    await detach(any_guest, server, port, disk)


async def test_superspeed_disk_enumerates_at_5000_mbps(any_guest: Guest, server: Server) -> None:
    disk = MassStorage(memory=True, size=16 * MiB, speed="super")
    port, sd = await attach_disk(any_guest, server, disk)
    devdir = await any_guest.wait_for_usb_device(0x1209, disk.descriptor.product_id, timeout=60)
    assert (await any_guest.run(f"cat {devdir}/speed", check=True)).stdout.strip() == "5000"
    data = random.Random(3).randbytes(MiB)
    await any_guest.write_file("/tmp/ss.bin", data)
    await any_guest.run(f"dd if=/tmp/ss.bin of=/dev/{sd} bs=1M oflag=direct 2>/dev/null", timeout=120, check=True)
    got = await any_guest.run(f"dd if=/dev/{sd} bs=1M count=1 iflag=direct 2>/dev/null", timeout=120, check=True)
    assert got.stdout_bytes == data
    await detach(any_guest, server, port, disk)


async def test_a_regular_file_left_where_a_disk_was_does_not_hide_the_next_disk(
    guest: Guest, server: Server, caplog: pytest.LogCaptureFixture,
) -> None:
    """busybox dd writing to a disk that has just gone away creates a regular file /dev/sdX
    (it opens with O_CREAT, then O_DIRECT fails); devtmpfs could then never give a later
    disk that node. Guest.attach removes such files first, with a warning."""
    free = (await guest.run("for n in a b c d e f g h; do [ -e /dev/sd$n ] || { echo sd$n; break; }; done",
                            check=True)).stdout.strip()
    assert free, "every /dev/sda..sdh is in use in the guest"
    result = await guest.run(f"dd if=/dev/zero of=/dev/{free} bs=512 count=1 oflag=direct; [ -f /dev/{free} ]")
    assert result.returncode == 0, "busybox dd no longer leaves a regular file: this test can go"
    disk = MassStorage(memory=True, size=8 * MiB)
    with caplog.at_level("WARNING", logger="vusb.harness"):
        port, sd = await attach_disk(guest, server, disk)
    assert f"removed /dev/{free}, a regular file" in caplog.text
    assert (await guest.run(f"[ ! -f /dev/{free} ] && [ -b /dev/{sd} ]")).returncode == 0
    await detach(guest, server, port, disk)
