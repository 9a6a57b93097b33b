"""What a device class registers itself with is public API, importable from ``vusb``, and ``import vusb`` stays light."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Iterator

import pytest
from doc_files import ROOT, registry_restored

import vusb
from vusb import control, control_server, profile_fields
from vusb import registry as registry_module

REGISTRATION_API = {
    "Registry": registry_module, "Command": registry_module, "load_device_class": registry_module,
    "Field": profile_fields, "Located": profile_fields, "ProfileContext": profile_fields,
    "ControlServer": control_server, "ControlRequest": control_server, "ControlError": control_server,
}


@pytest.fixture(autouse=True)
def _registry_as_before() -> Iterator[None]:
    with registry_restored():
        yield


@pytest.mark.parametrize("name", sorted(REGISTRATION_API))
def test_vusb_exports_the_registration_api(name: str) -> None:
    assert name in vusb.__all__ and name in dir(vusb)
    assert getattr(vusb, name) is getattr(REGISTRATION_API[name], name)


def test_the_old_name_of_a_control_request_still_works() -> None:
    assert control.Request is control_server.Request is vusb.ControlRequest


def test_importing_vusb_loads_neither_the_registry_nor_yaml_nor_the_control_server() -> None:
    code = ("import sys, vusb\n"
            "print(sorted(m for m in ('yaml', 'vusb.registry', 'vusb.profile_fields', 'vusb.control_server')"
            " if m in sys.modules) + sorted(m for m in sys.modules if m.startswith('vusb.devices')))\n"
            "from vusb import Registry\n"
            "print('vusb.registry' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT / "tests")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[]", "True"]


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'vusb' has no attribute 'Nope'"):
        vusb.Nope  # type: ignore[attr-defined]  # noqa: B018


def _module_with(kind: str) -> types.ModuleType:
    module = types.ModuleType(f"test_class_{kind}")

    def register(registry: vusb.Registry) -> None:
        registry.add_kind(kind, {}, lambda ctx, fields: vusb.AttachedFunction(), f"the {kind} kind")

    module.register = register  # type: ignore[attr-defined]
    return module


def test_load_device_class_takes_a_module_or_a_register_function_and_registers_each_once() -> None:
    module = _module_with("tried-once")
    reg = vusb.load_device_class(module)
    assert reg.classes[:len(registry_module.BUILTIN_CLASSES)] == list(registry_module.BUILTIN_CLASSES)
    assert reg.kinds["tried-once"].description == "the tried-once kind"
    vusb.load_device_class(module)
    assert reg.classes.count("test_class_tried-once") == 1

    def register(registry: vusb.Registry) -> None:
        registry.add_command(vusb.Command("tried-too", "a command", _nothing))

    vusb.load_device_class(register)
    assert "tried-too" in reg.commands


def test_load_device_class_says_when_a_module_has_no_register_function() -> None:
    with pytest.raises(vusb.UsageError, match="device class json has no register"):
        vusb.load_device_class("json")


async def _nothing(ctl: vusb.ControlServer, req: vusb.ControlRequest) -> dict[str, object]:
    return {}
