"""docs/writing-a-device.md's kernel test, run as written: Linux's generic USB serial driver talks to the megaphone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from doc_files import import_doc_files

from vusb.harness import Guest

pytestmark = pytest.mark.kernel


async def test_the_pages_kernel_test_passes_as_written(guest: Guest, tmp_path: Path) -> None:
    tests: Any = import_doc_files("writing-a-device.md", tmp_path)["test_megaphone_kernel"]
    await tests.test_linux_talks_to_the_megaphone(guest)
