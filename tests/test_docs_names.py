"""The docs call each command and each profile kind by one name, and their error examples are current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from vusb.cli import build_parser
from vusb.profile import kinds as registered_kinds
from vusb.registry import registry

ROOT = Path(__file__).resolve().parent.parent
FAULT_KINDS = registry().faults  # the generic rules and those device classes add (scsi-failure)
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])


def page_text() -> list[tuple[str, str]]:
    return [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in PAGES]


def commands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)  # type: ignore[arg-type]


def test_every_vusb_command_in_the_docs_exists() -> None:
    known = commands()
    for page, text in page_text():
        for name in re.findall(r"`vusb ([a-z][a-z-]*)", text):
            assert name in known, f"{page}: `vusb {name}` is not a command"


def test_check_is_called_check_and_validate_only_named_as_its_alias() -> None:
    for page, text in page_text():
        for line in text.splitlines():
            if "vusb validate" in line:
                assert "is the same command" in line, f"{page}: {line.strip()!r} (the command is `vusb check`)"


def test_every_kind_in_the_docs_and_shipped_profiles_is_a_registered_kind() -> None:
    kinds = set(registered_kinds())
    texts = [*page_text(), *[(str(p.relative_to(ROOT)), p.read_text()) for p in (ROOT / "profiles").glob("*.yaml")]]
    # a page that writes a device class of its own (docs/device-classes.md) registers its kind right there
    kinds |= {k for _, text in page_text() for k in re.findall(r'add_kind\(\s*"([a-z0-9-]+)"', text)}
    for page, text in texts:
        for name in re.findall(r"^\s*-?\s*kind:\s*([A-Za-z0-9_-]+)\s*$", text, re.M):
            assert name in kinds or name in FAULT_KINDS, f"{page}: kind {name!r} is not registered ({sorted(kinds)})"


def test_kind_names_use_one_spelling() -> None:
    for kind in [*registered_kinds(), *FAULT_KINDS]:
        assert "_" not in kind, f"kind {kind!r}: kinds are spelled with hyphens, like mass-storage"


# The profiles behind the error examples of docs/profiles.md, in the order the page shows them.
BAD_PROFILES = [
    "identity:\n  vendor_id: 0x1209\nfunctions:\n  - kind: keyboard\n",
    "identity:\n  vendor_id: 0x1209\n  product_id: 0x0001\nfunctions:\n  - kind: keybaord\n",
    "identity:\n  vendor_id: 0x12345\n  product_id: 0x0001\nfunctions:\n  - kind: keyboard\n",
]


def documented_errors() -> list[str]:
    text = (ROOT / "docs" / "profiles.md").read_text()
    section = text.split("## Errors", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block is not None
    return block.group(1).splitlines()


@pytest.mark.parametrize("n", range(len(BAD_PROFILES)))
def test_the_error_examples_of_profiles_md_are_what_vusb_check_prints(tmp_path: Path, n: int) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "bad.yaml").write_text(BAD_PROFILES[n])
    result = subprocess.run([sys.executable, "-m", "vusb", "check", "profiles/bad.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    printed = result.stderr.strip()
    documented = documented_errors()[n]
    # "..." on the page stands for text that grows as device classes arrive (the list of kinds)
    pattern = ".*".join(re.escape(part) for part in documented.split("..."))
    assert re.fullmatch(pattern, printed), f"docs/profiles.md shows {documented!r}; vusb check printed {printed!r}"
