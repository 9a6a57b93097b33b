"""The harness's wait helpers, run by the local shell on a fake sysfs tree (no kernel, no root)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vusb.harness import GuestTimeoutError, LocalVhci


def a_block_device() -> str:
    """The name of a block device node this machine has in /dev."""
    for name in sorted(os.listdir("/sys/class/block")) if os.path.isdir("/sys/class/block") else []:
        try:
            if stat.S_ISBLK(os.stat(f"/dev/{name}").st_mode):
                return name
        except OSError:
            continue
    pytest.skip("no block device node in /dev")


def make_disk(devdir: Path, name: str, size: str | None, interface: str = "1.0") -> None:
    block = devdir.parent / f"{devdir.name}:{interface}" / "host3" / "target3:0:0" / "3:0:0:0" / "block" / name
    block.mkdir(parents=True)
    if size is not None:
        (block / "size").write_text(size + "\n")


# (disks under the device: (name, size file), or "BLK" for a real block device; what wait_for_disk returns)
CASES = [
    ("ready", [("BLK", "8")], "BLK"),
    ("no disk yet", [], None),
    ("no block node", [("vusb-no-such-node", "8")], None),
    ("size still zero", [("BLK", "0")], None),
    ("no size file", [("BLK", None)], None),
]


@pytest.mark.parametrize(("disks", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_wait_for_disk_needs_a_block_node_with_a_size(
    tmp_path: Path, disks: list[tuple[str, str | None]], expected: str | None
) -> None:
    blk = a_block_device()
    devdir = tmp_path / "usb devices" / "3-1"  # a space: the folder is quoted for the shell
    devdir.mkdir(parents=True)
    for name, size in disks:
        make_disk(devdir, blk if name == "BLK" else name, size)
    target = LocalVhci()
    if expected is None:
        with pytest.raises(GuestTimeoutError, match=f"under {devdir}"):
            await target.wait_for_disk(str(devdir), timeout=0.5)
    else:
        assert await target.wait_for_disk(str(devdir), timeout=5) == blk


async def test_wait_for_disk_ignores_other_devices_and_waits_for_the_size(tmp_path: Path) -> None:
    blk = a_block_device()
    devdir = tmp_path / "3-1"
    devdir.mkdir()
    make_disk(tmp_path / "3-10", blk, "8")  # 3-10's disk is not 3-1's
    make_disk(devdir, blk, "0")
    target = LocalVhci()
    with pytest.raises(GuestTimeoutError):
        await target.wait_for_disk(str(devdir), timeout=0.5)
    (next(devdir.parent.glob("3-1:1.0/host*/target*/*/block/*")) / "size").write_text("8\n")
    assert await target.wait_for_disk(str(devdir), timeout=5) == blk
