"""Every relative link in the README and docs/ resolves to a file inside the repository: a link
that leaves it (../shared/...) is dead on GitHub and in an installed package."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# [text](target) and ![alt](target); the target ends at whitespace or ')' (an optional
# "title" after a space is not part of the path).
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link outside fenced code that is not a URL or anchor."""
    out, in_fence = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        line = re.sub(r"`[^`]*`", "", line)  # inline code is not a link
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
                continue  # https:, mailto:, an anchor in the same page
            out.append((number, target.split("#", 1)[0]))
    return out


def test_the_link_finder_sees_links_and_skips_urls_anchors_and_code():
    text = (
        "a [x](docs/a.md#s) ![i](b.png) [u](https://e.org) [h](#top) `[c](no.md)`\n"
        "```\n[d](e.md)\n```\n"
    )
    assert relative_links(text) == [(1, "docs/a.md"), (1, "b.png")]


def test_every_relative_link_in_the_readme_and_docs_resolves_inside_the_repository():
    broken = []
    for doc in documents():
        for number, target in relative_links(doc.read_text(encoding="utf-8")):
            path = (doc.parent / target).resolve()
            where = f"{doc.relative_to(ROOT)}:{number}: {target}"
            if not path.is_relative_to(ROOT):
                broken.append(f"{where} leaves the repository")
            elif not path.is_file():
                broken.append(f"{where} is not a file in the repository")
    assert not broken, "\n".join(broken)
    assert len(documents()) > 5  # README and the docs were found
