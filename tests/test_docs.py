"""The README stays short, and every link in it and in docs/ resolves inside the repository (files and headings)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [m.group(1) for m in LINK.finditer(text)]


def test_the_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves_inside_the_repository(page: Path) -> None:
    for target in links(page):
        if re.match(r"^[a-z]+:", target):  # a web address
            continue
        path, _, anchor = target.partition("#")
        found = (page.parent / path).resolve() if path else page
        assert found.is_relative_to(ROOT), f"{page.name}: {target} leaves the repository"
        assert found.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(found), f"{page.name}: {target}: no such heading in {found.name}"


def test_the_slug_is_githubs() -> None:
    assert slug("The local stack (no Docker needed)") == "the-local-stack-no-docker-needed"
    assert slug("`pulse verify` at scale") == "pulse-verify-at-scale"
