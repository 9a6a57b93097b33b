"""The published JSON Schema matches the loader and accepts what the loader accepts."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from vusb.schema import profile_schema, schema_json

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "profiles").glob("*.yaml"))
VALIDATOR = jsonschema.Draft202012Validator(profile_schema())


def test_published_schema_is_current() -> None:
    published = (ROOT / "docs" / "profile.schema.json").read_text()
    assert published == schema_json(), "regenerate with: vusb schema > docs/profile.schema.json"
    jsonschema.Draft202012Validator.check_schema(json.loads(published))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_profiles_satisfy_the_schema(path: Path) -> None:
    VALIDATOR.validate(yaml.safe_load(path.read_text()))


REJECTED = [
    ("unknown top-level key", {"identity": {"vendor_id": 1, "product_id": 1}, "functions": [{"kind": "mouse"}], "x": 1}),
    ("vendor id too large", {"identity": {"vendor_id": 0x10000, "product_id": 1}, "functions": [{"kind": "mouse"}]}),
    ("unknown kind", {"identity": {"vendor_id": 1, "product_id": 1}, "functions": [{"kind": "plotter"}]}),
    ("hid without report descriptor", {"identity": {"vendor_id": 1, "product_id": 1}, "functions": [{"kind": "hid"}]}),
    ("bad speed", {"identity": {"vendor_id": 1, "product_id": 1, "speed": "warp"}, "functions": [{"kind": "mouse"}]}),
    ("no functions", {"identity": {"vendor_id": 1, "product_id": 1}, "functions": []}),
    ("nothing at all", {}),
]


@pytest.mark.parametrize(("case", "profile"), REJECTED, ids=[c[0] for c in REJECTED])
def test_schema_rejects_what_the_loader_rejects(case: str, profile: dict[str, object]) -> None:
    assert not VALIDATOR.is_valid(profile)
