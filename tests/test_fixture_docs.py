"""Every pytest fixture has its page in docs/fixtures/, and each page's example runs as written.

A page's example is made of the fenced blocks whose first line names a file
(``# test_something.py``, ``# disk.yaml``); they are written to a fresh folder and run
by pytest, as a user would run them after copying them.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import vusb.pytest_plugin

pytest_plugins = ["pytester"]

DOCS = Path(__file__).resolve().parent.parent / "docs" / "fixtures"
BLOCK = re.compile(r"```(?:python|yaml)\n# (?P<name>[\w.-]+\.(?:py|yaml))\n(?P<body>.*?)```", re.S)
INI = "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"


def plugin_fixtures() -> list[str]:
    return sorted(name for name, obj in inspect.getmembers(vusb.pytest_plugin)
                  if hasattr(obj, "_fixture_function_marker"))


def example(page: str) -> dict[str, str]:
    files = {m["name"]: m["body"] for m in BLOCK.finditer((DOCS / f"{page}.md").read_text())}
    assert any(name.startswith("test_") for name in files), f"docs/fixtures/{page}.md has no example test file"
    return files


def run_example(pytester: pytest.Pytester, page: str, *, in_process: bool = False) -> pytest.RunResult:
    pytester.makeini(INI)
    for name, body in example(page).items():
        pytester.path.joinpath(name).write_text(body)
    args = ("-q", "-p", "no:cacheprovider")
    # In-process runs share this session's guest instead of booting a second one.
    return pytester.runpytest_inprocess(*args) if in_process else pytester.runpytest_subprocess(*args)


def test_every_fixture_has_a_page() -> None:
    fixtures = plugin_fixtures()
    assert fixtures == ["vusb_attach", "vusb_guest", "vusb_host", "vusb_server"]
    index = (DOCS.parent / "pytest-plugin.md").read_text()
    for name in fixtures:
        assert (DOCS / f"{name}.md").is_file(), f"no docs/fixtures/{name}.md"
        assert f"fixtures/{name}.md" in index, f"docs/pytest-plugin.md does not link {name}"


@pytest.mark.parametrize(("page", "tests"), [("vusb_host", 6), ("vusb_server", 2)])
def test_example_without_kernel(pytester: pytest.Pytester, page: str, tests: int) -> None:
    run_example(pytester, page).assert_outcomes(passed=tests)


@pytest.mark.kernel
@pytest.mark.parametrize(("page", "tests"), [("vusb_guest", 1), ("vusb_attach", 2)])
def test_example_with_kernel(pytester: pytest.Pytester, page: str, tests: int) -> None:
    run_example(pytester, page, in_process=True).assert_outcomes(passed=tests)
