"""The examples of docs/devices/audio.md and docs/devices/midi.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from vusb.profile import parse_profile

DOCS = Path(__file__).resolve().parent.parent / "docs" / "devices"
PAGES = ["audio", "midi"]


def blocks(page: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (DOCS / f"{page}.md").read_text(), re.S)


@pytest.mark.parametrize("page", PAGES)
async def test_the_example_tests_pass(page: str) -> None:
    tests = [b for b in blocks(page, "python") if "async def test_" in b]
    assert tests, f"docs/devices/{page}.md has no example test"
    for code in tests:
        namespace: dict[str, object] = {}
        exec(compile(code, f"docs/devices/{page}.md", "exec"), namespace)
        for name, value in namespace.items():
            if name.startswith("test_"):
                await value()  # type: ignore[operator]


@pytest.mark.parametrize("page", PAGES)
def test_the_example_programs_compile_and_the_profiles_load(page: str) -> None:
    for code in blocks(page, "python"):
        compile(code, f"docs/devices/{page}.md", "exec")
    for text in blocks(page, "yaml"):
        profile = {"identity": {"vendor_id": 0x1209, "product_id": 1, "speed": "high"}, **yaml.safe_load(text)}
        parse_profile(yaml.safe_dump(profile), f"docs/devices/{page}.md").build()
