"""The documentation builds as a site (mkdocs, strict) with every link and anchor checked.

mkdocs.yml turns a broken link, a missing anchor or a page outside the site into a
warning, and ``strict: true`` makes any warning fail the build. README.md is not part of
the site (it is the repository's front page), so its relative links are checked here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_the_docs_build_as_a_site_with_strict_link_checks(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["strict"] is True
    assert all(config["validation"][k] == "warn" for k in ("omitted_files", "absolute_links", "unrecognized_links",
                                                            "anchors", "not_found"))
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "No module named mkdocs" not in result.stderr, "mkdocs is in the test extra: pip install -e '.[test]'"
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    for page in (ROOT / "docs").rglob("*.md"):  # every page is in the site
        name = page.relative_to(ROOT / "docs").with_suffix("")
        html = tmp_path / "site" / (name.parent if name.name == "index" else name) / "index.html"
        assert html.is_file(), f"{page} was not built"


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\n[gone](nowhere.md) and [no anchor](index.md#nope)\n")
    (tmp_path / "mkdocs.yml").write_text((ROOT / "mkdocs.yml").read_text())
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--site-dir", str(tmp_path / "site")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "'nowhere.md'" in result.stderr and "'index.md#nope'" in result.stderr


def test_readme_links_point_at_files_that_exist() -> None:
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert links
    missing = [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
