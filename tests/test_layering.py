"""The framework reaches device classes only through the registry; every class registers the same way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from vusb.profile import parse_profile
from vusb.registry import BUILTIN_CLASSES, registry

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORK = sorted(p for p in (ROOT / "vusb").rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module an ``import`` statement of the file names, wherever the statement is."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("path", FRAMEWORK, ids=[str(p.relative_to(ROOT)) for p in FRAMEWORK])
def test_the_framework_imports_no_device_class(path: Path) -> None:
    found = [f"{path.relative_to(ROOT)}:{line}: {name}" for line, name in imported_modules(path)
             if name == "vusb.devices" or name.startswith(("vusb.devices.", "devices"))]
    assert not found, "reach device classes through vusb.registry instead:\n" + "\n".join(found)


def test_importing_every_framework_module_loads_no_device_class() -> None:
    modules = sorted({".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                      for p in FRAMEWORK if p.name != "__main__.py"})
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(sorted(m for m in sys.modules if m.startswith('vusb.devices')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT / "tests")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_built_in_class_registers_through_the_table() -> None:
    reg = registry()
    assert reg.classes[:len(BUILTIN_CLASSES)] == list(BUILTIN_CLASSES) and not reg.problems
    assert set(reg.kinds) == {"hid", "keyboard", "mouse", "mass-storage", "cdc-acm", "gadget-zero",
                               "printer", "dfu", "ftdi", "cp210x", "ch340", "pl2303", "uvc", "audio", "midi", "ncm", "ecm", "rndis", "replay"}
    assert {"scsi-failure", "stall", "corrupt-descriptor"} <= set(reg.faults)
    assert {"type", "move", "eject", "insert", "serial-write", "serial-read", "webcam-show"} <= set(reg.commands)
    assert {"audio-play", "audio-save", "midi-send", "midi-read"} <= set(reg.commands)


@pytest.mark.parametrize("name", sorted(registry().kinds))
def test_kind_names_follow_one_rule_and_have_a_docs_page(name: str) -> None:
    kind = registry().kinds[name]
    assert name == name.lower() and "_" not in name and " " not in name
    assert kind.docs is not None and (ROOT / "docs" / kind.docs).is_file(), kind.docs
    assert kind.description


def test_nested_field_tables_are_declared_by_the_kind_not_special_cased() -> None:
    assert "mass-storage" not in (ROOT / "vusb" / "schema.py").read_text()
    assert set(registry().kinds["mass-storage"].tables) == {"luns"}


OLD_SPELLING = """
identity: {vendor_id: 0x0525, product_id: 0xa4a0}
functions:
  - kind: gadget_zero
"""


def test_the_old_spelling_of_a_kind_still_works_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="kind 'gadget_zero' is spelt 'gadget-zero' now"):
        profile = parse_profile(OLD_SPELLING, "old.yaml")
    assert [kind.name for kind, _ in profile.functions] == ["gadget-zero"]
    assert profile.notes == ["old.yaml: field 'functions[0].kind': kind 'gadget_zero' is spelt 'gadget-zero' now; "
                             "the old spelling will go away"]


def test_check_prints_a_note_for_the_old_spelling(tmp_path: Path) -> None:
    (tmp_path / "old.yaml").write_text(OLD_SPELLING)
    result = subprocess.run([sys.executable, "-m", "vusb", "check", "old.yaml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ok: old.yaml (old)",
        "note: old.yaml: field 'functions[0].kind': kind 'gadget_zero' is spelt 'gadget-zero' now; "
        "the old spelling will go away",
    ]
