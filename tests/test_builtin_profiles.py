"""Built-in profiles are served by name from any folder; files they make go to a data folder, never the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vusb.errors import ProfileError
from vusb.profile import builtin_profiles, is_profile_name, load_profile

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.stem for p in (ROOT / "profiles").glob("*.yaml"))


def vusb(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vusb", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_every_shipped_profile_is_built_in_with_a_description() -> None:
    known = builtin_profiles()
    assert sorted(known) == SHIPPED
    for name, profile in known.items():
        assert profile.description and "\n" not in profile.description, name
        assert profile.path.name == f"{name}.yaml"


@pytest.mark.parametrize(("spec", "is_name"), [
    ("keyboard", True),
    ("keyboard.yaml", False),       # a file name, even a missing one
    ("./keyboard", False),          # a path
    ("profiles/keyboard", False),
])
def test_what_counts_as_a_name(spec: str, is_name: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert is_profile_name(spec) is is_name


def test_an_existing_file_wins_over_a_built_in_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keyboard").write_text((ROOT / "profiles" / "mouse.yaml").read_text())
    assert load_profile("keyboard").name == "Virtual Mouse"


def test_a_built_in_profile_loads_by_name_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    profile = load_profile("keyboard")
    assert profile.name == "Virtual Keyboard"
    assert list(tmp_path.iterdir()) == []


def test_unknown_name_lists_the_known_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProfileError) as info:
        load_profile("keybaord")
    message = str(info.value)
    assert "no built-in profile 'keybaord'" in message and "did you mean 'keyboard'?" in message
    assert all(name in message for name in SHIPPED)


def test_files_of_a_built_in_profile_go_to_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here, data = tmp_path / "here", tmp_path / "data"
    here.mkdir()
    data.mkdir()
    monkeypatch.chdir(here)
    package = sorted(p.name for p in builtin_profiles()["flash-drive"].path.parent.iterdir())
    device = load_profile("flash-drive", data_dir=data).build()
    device.close_unstarted()
    assert [p.name for p in data.iterdir()] == ["flash-drive.img"] and list(here.iterdir()) == []
    device = load_profile("flash-drive").build()  # default: the current folder
    device.close_unstarted()
    assert [p.name for p in here.iterdir()] == ["flash-drive.img"]
    assert sorted(p.name for p in builtin_profiles()["flash-drive"].path.parent.iterdir()) == package


def test_profiles_command_lists_names_and_descriptions(tmp_path: Path) -> None:
    result = vusb("profiles", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name, profile in builtin_profiles().items():
        assert any(line.split()[0] == name and profile.description in line for line in lines if line), name
    shown = vusb("profiles", "--show", "mouse", cwd=tmp_path)
    assert shown.stdout == (ROOT / "profiles" / "mouse.yaml").read_text()


def test_check_and_serve_take_names(tmp_path: Path) -> None:
    result = vusb("check", "keyboard", "mouse", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ok: keyboard (Virtual Keyboard)", "ok: mouse (Virtual Mouse)"]
    bad = vusb("serve", "nosuch", "--port", "0", cwd=tmp_path)
    assert bad.returncode != 0 and "no built-in profile 'nosuch'" in bad.stderr and "keyboard" in bad.stderr


def test_every_built_in_profile_has_its_own_vendor_and_product_id() -> None:
    # Two profiles with one vid:pid would be one device to a host: udev rules, lsusb -d and
    # dfu-util -d could not tell them apart.
    import yaml

    owners: dict[tuple[int, int], list[str]] = {}
    for name in SHIPPED:
        identity = yaml.safe_load((ROOT / "profiles" / f"{name}.yaml").read_text())["identity"]
        owners.setdefault((identity["vendor_id"], identity["product_id"]), []).append(name)
    shared = {f"{vid:04x}:{pid:04x}": names for (vid, pid), names in owners.items() if len(names) > 1}
    assert not shared, f"built-in profiles share an id: {shared}"
