"""GuestOptions, and the guest's scripts shipped as package data (no guest is booted here)."""

from __future__ import annotations

import tomllib

import pytest
from installed_layout import ROOT

from vusb.errors import ArgumentError
from vusb.harness.guest import GuestOptions, _options
from vusb.harness.image import DEFAULT_KERNEL
from vusb.harness.qemu import _guest_file


def test_options_are_the_start_arguments_as_one_value() -> None:
    assert _options(None, "6.12", memory_mb=1024) == GuestOptions(kernel="6.12", memory_mb=1024)
    mine = GuestOptions(kernel="5.10", host_forwards=[(3240, 3240)])  # type: ignore[arg-type]
    assert _options(mine, DEFAULT_KERNEL) is mine
    assert mine.host_forwards == ((3240, 3240),) and mine.replace(memory_mb=512).memory_mb == 512


@pytest.mark.parametrize(("kernel", "given", "named"), [("6.12", {}, "kernel"), (DEFAULT_KERNEL, {"memory_mb": 1}, "memory_mb")])
def test_options_and_arguments_together_are_refused(kernel: str, given: dict[str, int], named: str) -> None:
    with pytest.raises(ArgumentError, match=f"give either options= or {named}, not both"):
        _options(GuestOptions(), kernel, **given)


@pytest.mark.parametrize(("name", "placeholders"), [
    ("agent.sh", ["__PORTNAME__", "__MARK__"]), ("rcS.sh", ["__GUEST__", "__HOST__", "__LOGLEVEL__"]),
    ("inittab", []),
])
def test_the_guest_scripts_are_package_data(name: str, placeholders: list[str]) -> None:
    text = _guest_file(name)
    assert text.startswith(("#!/bin/sh", "::sysinit")) and all(p in text for p in placeholders)
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "guest_files/*" in data["vusb.harness"]
