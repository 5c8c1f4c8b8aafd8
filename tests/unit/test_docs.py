"""The documentation as a reader meets it: every code block says its language, no README
paragraph runs past 120 words, no page sends the reader outside the repository, and the
layout page lists every module of the package."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def fences(text: str) -> list[tuple[int, str]]:
    """Each code block's opening line: (line number, what follows the backticks)."""
    opened, inside = [], False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if not inside:
                opened.append((number, stripped[3:].strip()))
            inside = not inside
    return opened


def test_every_code_block_names_its_language() -> None:
    bare = [
        f"{page.relative_to(ROOT)}:{number}"
        for page in PAGES
        for number, language in fences(page.read_text(encoding="utf-8"))
        if not language
    ]
    assert sum(len(fences(page.read_text(encoding="utf-8"))) for page in PAGES) > 30
    assert not bare, f"say the language of these code blocks: {bare}"


def test_no_readme_paragraph_runs_past_120_words() -> None:
    text = re.sub(r"```.*?```", "", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)
    paragraphs = [p for p in text.split("\n\n") if not p.lstrip().startswith(("- ", "| ", "#"))]
    assert len(paragraphs) > 5
    long = [p[:60] for p in paragraphs if len(p.split()) > 120]
    assert not long, f"split these paragraphs: {long}"


def test_no_page_links_outside_the_repository() -> None:
    """The design, blastengine's facts: whatever a page leans on is a page of its own docs."""
    outside = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        if "../shared" in text or "DESIGN.md" in text:
            outside.append(str(page.relative_to(ROOT)))
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (page.parent / target).resolve()
            if ROOT not in resolved.parents:
                outside.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not outside, outside


def test_the_layout_page_has_a_line_for_every_module_and_a_section_for_every_package() -> None:
    layout = (ROOT / "docs/reference/layout.md").read_text(encoding="utf-8")
    sections = re.split(r"^## `(dispatcher[^`]*)/`$", layout, flags=re.M)
    listed = {
        f"{package}/{name}"
        for package, body in zip(sections[1::2], sections[2::2], strict=True)
        for name in re.findall(r"^\| `([\w.]+\.py)` \|", body, flags=re.M)
    }
    modules = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "dispatcher").rglob("*.py")
        if path.name != "__init__.py" or path.parent == ROOT / "dispatcher"
    }
    assert modules - listed == set(), "not on docs/reference/layout.md"
    assert listed - modules == set(), "on docs/reference/layout.md but not in the tree"
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "dispatcher").rglob("*.py")}
    assert set(sections[1::2]) == packages
