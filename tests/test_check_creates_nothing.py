"""`vusb check` (and the check every load makes) reads and reports: it creates or changes no file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vusb.errors import ProfileError
from vusb.profile import load_profile

ROOT = Path(__file__).resolve().parent.parent


def snapshot(folder: Path) -> dict[str, tuple[int, int, bool]]:
    """Every entry under ``folder`` with its size, modification time and whether it is a link."""
    out = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns, path.is_symlink())
    return out


PROFILES = {
    "flash drive (image made on first serve)": (ROOT / "profiles" / "flash-drive.yaml").read_text(),
    "several units, overlay side file, sub-folder": """
identity: {vendor_id: 0x1209, product_id: 0x0004, speed: high}
functions:
  - kind: mass-storage
    luns:
      - {image: disks/sd.img, size: 2MiB}
      - {image: base.img, overlay: changes.cow}
      - {memory: true, size: 1MiB}
""",
    "serial port with a pty link": """
identity: {vendor_id: 0x1209, product_id: 0x0004}
functions:
  - {kind: cdc-acm, backend: pty, pty_link: ttyV0}
""",
    "DFU bootloader (image made on first serve), printer job folder probed for writing": """
identity: {vendor_id: 0x1209, product_id: 0x0011}
functions:
  - {kind: dfu, image: firmware.img, dfuse_address: 0x08000000, capacity: 4KiB}
  - {kind: printer, job_folder: jobs}
""",
}


@pytest.mark.parametrize("text", PROFILES.values(), ids=PROFILES.keys())
def test_check_leaves_the_folder_unchanged(text: str, tmp_path: Path) -> None:
    (tmp_path / "base.img").write_bytes(bytes(4096))
    (tmp_path / "jobs").mkdir()
    profile = tmp_path / "device.yaml"
    profile.write_text(text)
    before = snapshot(tmp_path)
    result = subprocess.run([sys.executable, "-m", "vusb", "check", str(profile)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")
    load_profile(profile)  # the Python API checks the same way
    assert snapshot(tmp_path) == before


def test_a_check_by_name_writes_nothing_in_the_current_folder(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "vusb", "check", "flash-drive", "composite"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("lun", "message"), [
    ("{image: missing.img}", "does not exist; give a size to create it"),
    ("{image: missing.img, size: 1MiB, read_only: true}", "cannot be created read-only"),
    ("{image: missing.img, overlay: memory}", "does not exist"),
    ("{image: missing.img, memory: true}", "No such file"),
])
def test_check_still_reports_what_serving_would_refuse(lun: str, message: str, tmp_path: Path) -> None:
    profile = tmp_path / "device.yaml"
    profile.write_text("identity: {vendor_id: 1, product_id: 2}\nfunctions:\n  - kind: mass-storage\n"
                       f"    luns:\n      - {lun}\n")
    before = snapshot(tmp_path)
    with pytest.raises(ProfileError, match=message):
        load_profile(profile)
    assert snapshot(tmp_path) == before


def test_serving_still_creates_the_image(tmp_path: Path) -> None:
    profile = tmp_path / "flash-drive.yaml"
    profile.write_text(PROFILES["flash drive (image made on first serve)"])
    device = load_profile(profile).build()
    device.close_unstarted()
    assert (tmp_path / "flash-drive.img").stat().st_size == 64 * 1024 * 1024
