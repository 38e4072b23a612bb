"""The README is a front door: short enough to read first, and every page it leads to is there.
The deep dives live in docs/*.md; every relative link in those pages and the README resolves to a
file of the repository (and, with a #fragment, to a heading of that markdown page)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LIMIT = 16_000  # characters: what a newcomer reads before the lessons and the code map
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where a `[x](y)` is no link."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


def links(text: str) -> list[str]:
    return [t for t in LINK.findall(prose(text)) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # no http:, mailto:


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+ (.+)$", prose(page.read_text(encoding="utf-8")), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_the_readme_is_a_front_door_of_at_most_16000_characters():
    n = len(README.read_text(encoding="utf-8"))
    assert n <= LIMIT, f"README.md has {n} characters (limit {LIMIT}): move a deep dive to a page under docs/"


def test_every_docs_page_is_linked_from_the_readme_and_every_page_it_links_exists():
    readme = README.read_text(encoding="utf-8")
    linked = {t.split("#")[0] for t in links(readme) if t.startswith("docs/")}
    assert linked, "README.md links no page under docs/"
    missing = sorted(t for t in linked if not (ROOT / t).is_file())
    assert missing == [], f"README.md links docs pages that do not exist: {missing}"
    orphans = sorted(str(p.relative_to(ROOT)) for p in PAGES[1:] if str(p.relative_to(ROOT)) not in linked)
    assert orphans == [], f"docs pages no link in README.md leads to: {orphans}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file_of_the_repository(page):
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or ROOT not in (file, *file.parents):
            broken.append(target)
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(target + " (no such heading)")
    assert broken == [], f"{page.relative_to(ROOT)}: broken links {broken}"
