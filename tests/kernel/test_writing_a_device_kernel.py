"""docs/writing-a-device.md's kernel test, run as written: Linux's generic USB serial driver talks to the megaphone,
and the page's ``vusb ctl shout`` command turns its capitals off in the middle of the conversation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from doc_files import import_doc_files, registry_restored

from vusb.harness import Guest

pytestmark = pytest.mark.kernel


async def test_the_pages_kernel_test_passes_as_written(guest: Guest, tmp_path: Path) -> None:
    with registry_restored():  # the page's class registers for this test only
        tests: Any = import_doc_files("writing-a-device.md", tmp_path)["test_megaphone_kernel"]
        await tests.test_linux_talks_to_the_megaphone(guest)
