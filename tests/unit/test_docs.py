"""The docs ship with the repository (issue #16 item 7): nothing cites a file outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Spelled in pieces so this file does not match itself.
OUTSIDE = ("FACTS" + ".md", "DESIGN" + ".md", "../" + "shared")


def tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def test_no_file_cites_documents_outside_the_repository():
    hits = []
    for path in tracked():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        hits += [f"{path.relative_to(ROOT)}: {name}" for name in OUTSIDE if name in text]
    assert hits == []


def test_links_between_the_docs_resolve():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+\.md)\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.relative_to(ROOT)} links to missing {target}"


def test_architecture_names_modules_that_exist():
    text = (ROOT / "docs" / "architecture.md").read_text()
    for module in set(re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`", text)):
        candidates = [ROOT / "tcpstress" / module, ROOT / module]
        assert any(p.is_file() for p in candidates), module
