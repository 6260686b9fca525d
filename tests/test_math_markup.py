"""No math leaks out of MathJax because Markdown read it first.

A line that continues inline math (``$...$`` opened on an earlier line of the paragraph) and starts
with ``+ ``, ``- ``, ``* `` or ``1. `` is a list item to Markdown: the paragraph, and the math in it,
is split there and the reader sees raw TeX (as on the NTK page, twice). Every chapter and prose page
is scanned; display math (``$$`` blocks), code cells and fenced blocks are skipped, since Markdown
does not read inside them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([*REPO.glob("notebooks/*.md"), *REPO.glob("book/*.md")])
LIST_MARKER = re.compile(r"^\s*([+*-]|\d+[.)])\s")
SINGLE_DOLLAR = re.compile(r"(?<![\\$])\$(?!\$)")


def leaking_lines(text: str) -> list[tuple[int, str]]:
    """Lines that start with a list marker while inline math of their paragraph is still open."""
    bad: list[tuple[int, str]] = []
    fence: str | None = None
    directives: list[str] = []
    display = False
    open_dollars = 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if fence is not None:
            if stripped == fence:
                fence = None
            continue
        if stripped.startswith(("```", "~~~", ":::")):
            open_dollars = 0
            marker = re.match(r"[`~:]+", stripped).group(0)
            info = stripped[len(marker):].strip()
            if directives and not info and marker == directives[-1]:
                directives.pop()  # the end of a directive's body
            elif info.startswith("{") and not info.startswith(("{code-cell}", "{math}", "{code}")):
                directives.append(marker)  # a directive's body ({prf:theorem}, {note}) is Markdown
            else:
                fence = marker  # code: Markdown does not read it
            continue
        if stripped == "$$" or (stripped.startswith("$$") and stripped.count("$$") == 1):
            display = not display
            continue
        if display:
            continue
        if not stripped:
            open_dollars = 0
            continue
        if open_dollars % 2 == 1 and LIST_MARKER.match(line):
            bad.append((number, line))
        open_dollars += len(SINGLE_DOLLAR.findall(line.replace("$$", "")))
    return bad


def test_the_scanner_finds_a_leak_and_accepts_display_math() -> None:
    leak = "Text $a = b\n+ c$ more.\n"
    assert leaking_lines(leak) == [(2, "+ c$ more.")]
    display = "$$\na = b\n+ c \\tag{1}\n$$\n\n- a list item with $x$ math\n"
    assert leaking_lines(display) == []
    closed = "Text $a = b$ and\n- then a list item\n"
    assert leaking_lines(closed) == []
    in_box = ":::{prf:theorem} T\nLet $a = b\n+ c$.\n:::\n\nAfter $a\n- b$\n"
    assert leaking_lines(in_box) == [(3, "+ c$."), (7, "- b$")]
    code = "```{code-cell} ipython3\nx = $a\n- 1\n```\n"
    assert leaking_lines(code) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_inline_math_continues_on_a_list_marker(page: Path) -> None:
    bad = leaking_lines(page.read_text(encoding="utf8"))
    assert not bad, "inline math continued on a line Markdown reads as a list item (move the sign to the " \
        "end of the line before):\n" + "\n".join(f"{page.name}:{n}: {line}" for n, line in bad)
