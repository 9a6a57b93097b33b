"""The wheel is what a pip user gets: only ``vusb``, with its device classes, profiles and harness sources.

Three checks, cheapest first: every package folder of the repository is in pyproject's
``packages`` list; the built wheel holds the ``vusb`` tree only; and that wheel, installed
into a fresh environment, serves a built-in profile from an empty folder that has a
``devices`` package of its own (which must not shadow ``vusb.devices``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from installed_layout import ROOT, package_sources
from serve_subprocess import ServeProcess

SOURCE_ROOTS = ("vusb", "devices", "profiles")
_COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".mypy_cache", ".ruff_cache",
                                      ".pytest_cache", ".hypothesis", "*.img", ".git", ".venv", "fuzz-artifacts")


def test_every_package_folder_is_in_the_build_configuration() -> None:
    listed = {path.resolve() for path in package_sources().values()}
    folders = {path.parent.resolve() for root in SOURCE_ROOTS for path in (ROOT / root).rglob("*.py")
               if "__pycache__" not in path.parts}
    missing = sorted(str(f.relative_to(ROOT)) for f in folders - listed)
    assert not missing, f"add these folders to [tool.setuptools] packages in pyproject.toml: {missing}"
    for package, folder in package_sources().items():
        assert (folder / "__init__.py").is_file(), f"{package} ({folder}) has no __init__.py"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vusb's wheel, built by pip from a copy of the repository (the checkout itself is left alone)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=_COPY_IGNORE)
    out = base / "dist"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("vusb-*.whl")
    return built


def test_the_wheel_holds_only_vusb(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"vusb"}, sorted(tops)
    shipped_profiles = sorted(p.name for p in (ROOT / "profiles").glob("*.yaml"))
    assert sorted(n.split("/")[-1] for n in names if n.startswith("vusb/profiles/") and n.endswith(".yaml")) == \
        shipped_profiles
    c_sources = sorted(str(p.relative_to(ROOT / "vusb")) for p in (ROOT / "vusb" / "harness").rglob("*.c"))
    assert c_sources and all(f"vusb/{c}" in names for c in c_sources)
    assert "vusb/devices/__init__.py" in names and "vusb/py.typed" in names
    assert not [n for n in names if n.startswith(("devices/", "benchmarks/", "profiles/", "tests/"))]
    assert not [n for n in names if n.endswith(".img")]
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["vusb"]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (seeing the system's packages for vusb's dependencies) with the wheel installed; its bin folder."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    bin_dir = env_dir / "bin"
    result = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return bin_dir


@pytest.fixture
def user_project(tmp_path: Path) -> Iterator[Path]:
    """An empty folder but for the user's own ``devices`` package, as in many projects."""
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "__init__.py").write_text("raise ImportError('the user devices package was imported')\n")
    yield tmp_path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return env


def run(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=120)


def test_the_installed_vusb_is_the_wheel(installed: Path, user_project: Path) -> None:
    result = run(installed, "python", "-c", "import vusb, sys; print(vusb.__file__)", cwd=user_project)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(installed.parent)


def test_profiles_and_check_by_name_from_a_user_folder(installed: Path, user_project: Path) -> None:
    listed = run(installed, "vusb", "profiles", cwd=user_project)
    assert listed.returncode == 0, listed.stderr
    assert any(line.startswith("keyboard ") for line in listed.stdout.splitlines())
    checked = run(installed, "vusb", "check", "keyboard", "flash-drive", cwd=user_project)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == ["ok: keyboard (Virtual Keyboard)", "ok: flash-drive (Virtual Flash Drive)"]
    assert sorted(p.name for p in user_project.iterdir()) == ["devices"]


def test_serve_by_name_from_a_user_folder(installed: Path, user_project: Path) -> None:
    server = ServeProcess("keyboard", "--port", "0", "--no-control", cwd=user_project, python=installed / "python",
                          env={"PYTHONPATH": ""})
    with server:
        assert server.port > 0 and server.busids == ["1-1"]
        assert "Virtual Keyboard" in server.banner.lines[1] and "(keyboard)" in server.banner.lines[1]
        assert server.stop(signal.SIGTERM) == 0
    assert "shutting down" in server.after_banner


FRAMEWORK_MODULES = ("vusb.protocol", "vusb.server", "vusb.device", "vusb.faults", "vusb.profile", "vusb.client")


def test_the_framework_imports_no_device_class(installed: Path, user_project: Path) -> None:
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in FRAMEWORK_MODULES)
            + "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('vusb.devices', 'devices')))))\n")
    result = run(installed, "python", "-c", code, cwd=user_project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


# ---------------------------------------------------------------- a third-party device class

def _doc_blocks(language: str) -> list[str]:
    """The fenced code blocks of docs/device-classes.md in ``language``, in order."""
    text = (ROOT / "docs" / "device-classes.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


# The plugin of docs/device-classes.md, as written there.
(PLUGIN_PYPROJECT,) = _doc_blocks("toml")
(PLUGIN_MODULE,) = _doc_blocks("python")
(PLUGIN_PROFILE,) = _doc_blocks("yaml")


def test_a_third_party_class_plugs_in_through_its_entry_point(installed: Path, user_project: Path,
                                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    plugin = tmp_path_factory.mktemp("plugin")
    (plugin / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (plugin / "blinker_usb").mkdir()
    (plugin / "blinker_usb" / "__init__.py").write_text(PLUGIN_MODULE)
    result = subprocess.run([str(installed / "python"), "-m", "pip", "install", "-q", "--no-deps", str(plugin)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    (user_project / "blink.yaml").write_text(PLUGIN_PROFILE)

    checked = run(installed, "vusb", "check", "blink.yaml", cwd=user_project)
    assert (checked.returncode, checked.stdout) == (0, "ok: blink.yaml (Blinker)\n"), checked.stderr
    (user_project / "bad.yaml").write_text(PLUGIN_PROFILE.replace("color: red", "colour: red"))
    bad = run(installed, "vusb", "check", "bad.yaml", cwd=user_project)
    assert bad.returncode == 1 and "unknown field 'colour'" in bad.stderr and "did you mean 'color'?" in bad.stderr
    schema = json.loads(run(installed, "vusb", "schema", cwd=user_project).stdout)
    assert {"const": "blinker", "description": "a light that blinks"} in [
        f["properties"]["kind"] for f in schema["properties"]["functions"]["items"]["oneOf"]]

    server = ServeProcess("blink.yaml", "--port", "0", cwd=user_project, python=installed / "python",
                          env={"PYTHONPATH": ""})
    with server:
        assert server.busids == ["1-1"]
        socket = str(server.control)
        listed = run(installed, "vusb", "ctl", "--socket", socket, "list", cwd=user_project)
        assert listed.returncode == 0 and "functions 0:blinker" in listed.stdout, listed.stderr
        for expected in (1, 2):
            blinked = run(installed, "vusb", "ctl", "--socket", socket, "blink", "1-1", cwd=user_project)
            assert blinked.stdout.strip() == f"ok blinks={expected} color=red", blinked.stderr
        assert "blink" in run(installed, "vusb", "ctl", cwd=user_project).stdout
        assert server.stop(signal.SIGTERM) == 0
