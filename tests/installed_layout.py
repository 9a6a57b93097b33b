"""The installed package layout, derived from pyproject.toml's build configuration.

The repository keeps ``devices/`` and ``profiles/`` at the top level; installed they are
``vusb.devices`` and ``vusb.profiles``.  mypy cannot follow that mapping in the source
tree, so the static checks run on a staged tree of symbolic links laid out as a wheel
installs it: what users import is what is checked.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_config() -> dict[str, object]:
    config: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return config


def package_sources() -> dict[str, Path]:
    """Each installed package name -> the repository folder it is built from."""
    config = build_config()
    package_dir: dict[str, str] = config["package-dir"]  # type: ignore[assignment]
    out: dict[str, Path] = {}
    for package in config["packages"]:  # type: ignore[attr-defined]
        base = max((p for p in package_dir if package == p or package.startswith(p + ".")), key=len)
        rest = package[len(base) + 1:].split(".") if package != base else []
        out[package] = ROOT / package_dir[base] / Path(*rest) if rest else ROOT / package_dir[base]
    return out


def stage_installed_tree(dest: Path) -> Path:
    """Lay out the Python files of every installed package under ``dest`` as links; returns ``dest``."""
    for package, source in package_sources().items():
        target = dest.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for f in source.iterdir():
            if f.is_file() and (f.suffix in (".py", ".pyi") or f.name == "py.typed"):
                (target / f.name).symlink_to(f)
    return dest
