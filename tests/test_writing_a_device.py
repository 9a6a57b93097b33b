"""docs/writing-a-device.md runs as written: its device module, its registration and its test without a kernel.

(The kernel test of the page runs in tests/kernel/test_writing_a_device_kernel.py.)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from doc_files import doc_files, import_doc_files, registry_restored

from vusb import Field, Function, Located, ProfileContext, ProfileError, control
from vusb.profile import kinds, parse_profile, register_kind
from vusb.registry import BUILTIN_CLASSES, registry

PAGE = "writing-a-device.md"


@pytest.fixture(autouse=True)
def _registry_as_before() -> Iterator[None]:
    with registry_restored():
        yield


def test_the_page_shows_three_files() -> None:
    assert list(doc_files(PAGE)) == ["megaphone.py", "test_megaphone.py", "test_megaphone_kernel.py"]


async def test_the_pages_tests_pass_as_written(tmp_path: Path) -> None:
    modules = import_doc_files(PAGE, tmp_path)
    tests: Any = modules["test_megaphone"]
    await tests.test_megaphone()
    tests.test_megaphone_profile()
    await tests.test_shout_command()


def test_importing_the_module_registers_nothing_its_register_function_does(tmp_path: Path) -> None:
    assert "megaphone" not in registry().kinds
    import_doc_files(PAGE, tmp_path)  # the test files call load_device_class("megaphone")
    reg = registry()
    assert reg.kinds["megaphone"].description == "a vendor-specific device that sends lines back in capitals"
    assert kinds()["megaphone"] is reg.kinds["megaphone"]
    assert reg.commands["shout"].help == "switch a megaphone's capitals on or off"
    assert ("shout", "switch a megaphone's capitals on or off") in control.commands()
    assert reg.classes[:len(BUILTIN_CLASSES)] == list(BUILTIN_CLASSES)  # the built-in classes came first
    assert reg.classes.count("megaphone") == 1  # two test files asked for it: it registered once


def test_the_kinds_fields_are_checked_like_a_built_in_kinds(tmp_path: Path) -> None:
    import_doc_files(PAGE, tmp_path)
    text = "identity: {vendor_id: 0x1209, product_id: 0x7e58}\nfunctions:\n  - kind: megaphone\n    shout: loud\n"
    with pytest.raises(ProfileError, match=r"functions\[0\]\.shout") as error:
        parse_profile(text, "megaphone.yaml")
    assert "megaphone.yaml:4" in str(error.value)


def test_the_old_register_kind_still_works_and_says_it_is_deprecated() -> None:
    class Quiet(Function):
        def build(self, ctx: Any) -> list[Any]:
            return []

    def build(ctx: ProfileContext, fields: dict[str, Located]) -> Function:
        return Quiet()

    with pytest.warns(DeprecationWarning, match=r"register\(registry\)"):
        register_kind("old-style", {"level": Field("int", False, 1)}, build, "registered the old way")
    assert kinds()["old-style"].description == "registered the old way"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry().kind("old-style")
