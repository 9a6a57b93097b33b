"""The files a docs page shows: fenced Python blocks whose first line is ``# name.py``.

docs/writing-a-device.md shows a device module and its tests as files; the suite writes
them out as they are and runs them, so the page is exactly what works.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from vusb.registry import registry

ROOT = Path(__file__).resolve().parent.parent


def doc_files(page: str) -> dict[str, str]:
    """``{file name: source}`` of the page's ``# name.py`` blocks, in order."""
    text = (ROOT / "docs" / page).read_text()
    out: dict[str, str] = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        match = re.match(r"# (\w+\.py)\n", block)
        if match:
            out[match.group(1)] = block
    return out


def import_doc_files(page: str, dest: Path) -> dict[str, ModuleType]:
    """Write the page's files into ``dest`` and import each; returns them by module name."""
    files = doc_files(page)
    for name, source in files.items():
        (dest / name).write_text(source)
    sys.path.insert(0, str(dest))
    try:
        modules = {}
        for name in files:
            module = name[:-3]
            sys.modules.pop(module, None)
            modules[module] = importlib.import_module(module)
        return modules
    finally:
        sys.path.remove(str(dest))


@contextlib.contextmanager
def registry_restored() -> Iterator[None]:
    """The registry as it was before: a page's class registers for one test, not for the rest of the session."""
    reg = registry()
    saved = {f.name: copy.copy(getattr(reg, f.name)) for f in dataclasses.fields(reg)}
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(reg, name, value)
