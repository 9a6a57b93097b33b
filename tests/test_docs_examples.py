"""Every Python example in docs/*.md and docs/devices/*.md imports the public API only and passes mypy --strict.

The examples of one page are read in order as one program, inside an ``async def``
(pages use ``await`` at the top level, as in an asyncio REPL).  Names a page's prose
introduces without defining them in code (the ``port`` of a serial port page) are
declared in :data:`CONTEXT`, typed.  mypy runs on the tree as a wheel installs it
(tests/installed_layout.py), so what is checked is what users import.

Public means: imported from ``vusb``, ``vusb.devices``, a device class's package
(``vusb.devices.cdc_acm``, ``vusb.devices.storage``) or the harness (``vusb.harness``),
and listed in that module's ``__all__`` (or a module of ``vusb``: ``from vusb import faults``);
or one of the profile loader's names in ``vusb.profile`` (:data:`PROFILE_API`).  What a device
class registers itself with (``Registry``, ``Command``, ``Field``, ``ControlServer``...) is
imported from ``vusb``, never from ``vusb.registry``, ``vusb.profile_fields`` or ``vusb.control_server``.

A block whose first line is ``# name.py`` is a file of its own (docs/writing-a-device.md
shows a module and its tests): it is checked as that file, beside the others.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from installed_layout import ROOT, stage_installed_tree

DOCS = ROOT / "docs"
PAGES = sorted([*DOCS.glob("*.md"), *(DOCS / "devices").glob("*.md")])
PUBLIC_MODULES = {"vusb", "vusb.devices", "vusb.devices.cdc_acm", "vusb.devices.net", "vusb.devices.storage", "vusb.harness",
                  "vusb.devices.printer", "vusb.devices.dfu", "vusb.winusb", "vusb.devices.usb_serial",
                  "vusb.devices.video", "vusb.devices.audio", "vusb.devices.midi"}
PROFILE_API = {"kinds", "load_profile", "parse_profile"}
FILE_BLOCK = re.compile(r"# (\w+\.py)\n")

CONTEXT: dict[str, str] = {
    # What the prose around the examples says they act on.
    "devices/hid.md": "report_descriptor: bytes = bytes(8)",
    "devices/serial.md": "from vusb.devices.cdc_acm import PtyBackend, SerialPort, TcpBackend\nport = SerialPort()",
}


def examples(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


def file_blocks(page: Path) -> dict[str, str]:
    return {m.group(1): code for code in examples(page) if (m := FILE_BLOCK.match(code))}


def page_name(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


def as_module(page: Path) -> str:
    """The page's examples as one module: imports hoisted, the rest inside ``async def``."""
    imports: list[str] = ["from __future__ import annotations"]
    body: list[str] = []
    context = CONTEXT.get(page_name(page), "")
    for code in [context, *(c for c in examples(page) if not FILE_BLOCK.match(c))]:
        tree = ast.parse(code)
        lines = code.splitlines()
        done = 0  # statements sharing a line (a; b) are one segment
        for node in tree.body:
            start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            if start <= done:
                continue
            done = node.end_lineno or node.lineno
            segment = "\n".join(lines[start - 1:done])
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                imports.append(segment)
            else:
                body.append(segment)
    program = "\n".join(body) or "pass"
    return "\n".join(imports) + "\n\n\nasync def _page() -> None:\n" + textwrap.indent(program, "    ") + "\n"


def imported(page: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from vusb... import name`` and ``import vusb...`` in the page's examples."""
    out = []
    for code in examples(page):
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vusb":
                out += [(node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                out += [(alias.name, "") for alias in node.names if alias.name.split(".")[0] == "vusb"]
    return out


PAGES_WITH_CODE = [p for p in PAGES if examples(p)]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=page_name)
def test_examples_import_only_public_names(page: Path) -> None:
    private = []
    for module, name in imported(page):
        if module == "vusb.profile" and name in PROFILE_API:
            continue
        if module not in PUBLIC_MODULES:
            private.append(f"{module} (import {name or module})")
            continue
        if not name:
            continue
        mod = importlib.import_module(module)
        # from vusb import faults: a submodule (only a package has them)
        is_submodule = hasattr(mod, "__path__") and importlib.util.find_spec(f"{module}.{name}") is not None
        if name.startswith("_") or (name not in getattr(mod, "__all__", ()) and not is_submodule):
            private.append(f"{module}.{name}")
    assert private == [], f"{page_name(page)} imports what is not public API"


def test_mypy_strict_on_every_page(tmp_path: Path) -> None:
    stage = stage_installed_tree(tmp_path / "stage")
    files = []
    for page in PAGES_WITH_CODE:
        target = stage / ("docs_" + re.sub(r"\W", "_", page_name(page)[:-3]) + ".py")
        target.write_text(as_module(page))
        files.append(target.name)
        for name, code in file_blocks(page).items():
            (stage / name).write_text(code)
            files.append(name)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir",
         str(ROOT / ".mypy_cache"), *files],  # strict, from the configuration
        cwd=stage, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_public_api_is_importable_as_listed() -> None:
    for module in PUBLIC_MODULES:
        mod = importlib.import_module(module)
        missing = [name for name in getattr(mod, "__all__", ()) if not hasattr(mod, name)]
        assert missing == [], f"{module}.__all__ lists names it does not have"
    assert hasattr(importlib.import_module("vusb.devices"), "__all__")
