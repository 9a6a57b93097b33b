"""docs/writing-a-device.md runs as written: its device module and its test without a kernel.

(The kernel test of the page runs in tests/kernel/test_writing_a_device_kernel.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from doc_files import doc_files, import_doc_files

PAGE = "writing-a-device.md"


def test_the_page_shows_three_files() -> None:
    assert list(doc_files(PAGE)) == ["megaphone.py", "test_megaphone.py", "test_megaphone_kernel.py"]


async def test_the_pages_tests_pass_as_written(tmp_path: Path) -> None:
    modules = import_doc_files(PAGE, tmp_path)
    tests: Any = modules["test_megaphone"]
    await tests.test_megaphone()
    tests.test_megaphone_profile()


def test_the_kind_is_registered_for_profiles(tmp_path: Path) -> None:
    from vusb.profile import kinds

    import_doc_files(PAGE, tmp_path)
    assert kinds()["megaphone"].description == "a vendor-specific device that sends lines back in capitals"
