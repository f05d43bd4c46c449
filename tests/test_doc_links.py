"""Every relative link in the README, ARCHITECTURE.md and docs/*.md resolves: the file exists and an
`#anchor` names a heading of that file (GitHub's rule), so moving a section cannot strand a link."""
from __future__ import annotations

import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PAGES = [PROJECT / "README.md", PROJECT / "ARCHITECTURE.md", *sorted((PROJECT / "docs").glob("*.md"))]
FENCED = re.compile(r"^```.*?^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.M)


def _prose(path: Path) -> str:
    """The page without code (a `[x](y)` or `# comment` inside code is neither a link nor a heading)."""
    return FENCED.sub("", path.read_text())


def _anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, -1, -2 ... for repeats."""
    anchors: set[str] = set()
    repeats: dict[str, int] = {}
    for title in HEADING.findall(_prose(path)):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        repeats[slug] = repeats.get(slug, -1) + 1
        anchors.add(slug if repeats[slug] == 0 else f"{slug}-{repeats[slug]}")
    return anchors


def _broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(INLINE_CODE.sub("", _prose(page))):
        if re.match(r"^[a-z]+:", target):  # https:, mailto: ... are not checked offline
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (page.parent / file_part).resolve() if file_part else page
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved}")
        elif anchor and (resolved.suffix != ".md" or anchor not in _anchors(resolved)):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    return broken


def test_every_relative_link_in_the_docs_resolves():
    links = sum(len(LINK.findall(_prose(page))) for page in PAGES)
    assert len(PAGES) >= 5 and links >= 30, "the pages or their links were not found"
    broken = {page.name: found for page in PAGES if (found := _broken_links(page))}
    assert broken == {}


def test_the_anchor_rule_matches_github(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Stage B: adapter (student space → teacher space)\n## Tests\n## Tests\n"
                    "```bash\n# not a heading\n```\n[a](#tests-1) [b](#stage-b-adapter-student-space--teacher-space)\n"
                    "[c](#not-a-heading) [d](missing.md)\n")
    assert _anchors(page) == {"stage-b-adapter-student-space--teacher-space", "tests", "tests-1"}
    assert _broken_links(page) == [
        "#not-a-heading: no heading #not-a-heading in page.md",
        f"missing.md: no file {tmp_path / 'missing.md'}",
    ]
