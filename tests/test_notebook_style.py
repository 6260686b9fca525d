"""The chapters read like a book: prose and math lead, code cells are short, bookkeeping is hidden.

For every chapter (notebooks/*.md):

* the code shown by default (cells neither removed nor collapsed) has fewer lines than the prose and
  math around it;
* every code cell but the parameters cell has at most ``MAX_CELL_LINES`` non-blank lines;
* cells that glue values or record claims are removed from the page (tags ``remove-cell`` or
  ``remove-input``); no ``NBVAL`` comment marker is left (nbval reads the ``nbval-check-output``
  tag), and every cell that records a claim is compared by nbval;
* the code is ruff-clean (checked on the .ipynb references, which hold the same code);
* nothing in the repository's text points to documents outside it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.md"))
IDS = [p.stem for p in SOURCES]

MAX_CELL_LINES = 15
HIDDEN = {"remove-cell", "remove-input", "hide-input", "hide-cell"}
REMOVED = {"remove-cell", "remove-input"}
BOOKKEEPING = re.compile(r"\bglue\(|claims\.(check|sensitivity|observe|glue)\(|NBVAL")
RECORDS_CLAIM = re.compile(r"claims\.(check|sensitivity|observe)\(")


def _lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def _tags(cell) -> set[str]:  # type: ignore[no-untyped-def]
    return set(cell.get("metadata", {}).get("tags", []))


def line_counts(md: Path) -> tuple[int, int]:
    """(prose and math lines, code lines shown by default) of a chapter."""
    nb = jupytext.read(md)
    prose = sum(_lines(c.source) for c in nb.cells if c.cell_type == "markdown")
    shown = sum(_lines(c.source) for c in nb.cells if c.cell_type == "code" and not (_tags(c) & HIDDEN))
    return prose, shown


@pytest.mark.parametrize("md", SOURCES, ids=IDS)
def test_shown_code_is_shorter_than_prose(md: Path) -> None:
    prose, shown = line_counts(md)
    assert shown < prose, f"{md.name}: {shown} lines of code shown by default against {prose} of prose and math"


@pytest.mark.parametrize("md", SOURCES, ids=IDS)
def test_code_cells_are_short(md: Path) -> None:
    nb = jupytext.read(md)
    long = [(i, _lines(c.source)) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and "parameters" not in _tags(c) and _lines(c.source) > MAX_CELL_LINES]
    assert not long, f"{md.name}: cells (index, lines) longer than {MAX_CELL_LINES} lines: {long}"


@pytest.mark.parametrize("md", SOURCES, ids=IDS)
def test_bookkeeping_is_removed_from_the_page(md: Path) -> None:
    nb = jupytext.read(md)
    shown = [c.source.splitlines()[0] for c in nb.cells
             if c.cell_type == "code" and BOOKKEEPING.search(c.source) and not (_tags(c) & REMOVED)]
    assert not shown, f"{md.name}: glue/claim/NBVAL cells left on the page (tag them remove-cell): {shown}"
    markers = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "code" and "NBVAL_" in c.source]
    assert not markers, f"{md.name}: NBVAL comment markers (use the nbval-check-output tag): {markers}"
    unchecked = [c.source.splitlines()[0] for c in nb.cells
                 if c.cell_type == "code" and RECORDS_CLAIM.search(c.source) and "nbval-check-output" not in _tags(c)]
    assert not unchecked, f"{md.name}: claim cells without the nbval-check-output tag: {unchecked}"


@pytest.mark.parametrize("md", SOURCES, ids=IDS)
def test_claims_mode_is_a_parameter(md: Path) -> None:
    from sdlib.chapters.runner import notebook_parameters

    params = notebook_parameters(md)
    assert "claims_mode" in params and params["claims_mode"].default == "assert", md.name


def test_notebook_code_is_ruff_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (dev extra)")
    refs = sorted(str(p) for p in NOTEBOOKS.glob("*.ipynb"))
    proc = subprocess.run([ruff, "check", "--no-cache", "--line-length", "100", *refs],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_nothing_points_outside_the_repository() -> None:
    proc = subprocess.run(["git", "ls-files", "README.md", "sdlib", "notebooks", "book", "benchmarks", "configs"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    bad = []
    for rel in proc.stdout.split():
        path = ROOT / rel
        if path.suffix not in {".md", ".py", ".yml", ".yaml", ".sh", ".toml", ".bib"} or not path.is_file():
            continue
        for n, line in enumerate(path.read_text(encoding="utf8", errors="replace").splitlines(), 1):
            if "NOTES.md" in line or "../shared" in line or "shared/DESIGN" in line:
                bad.append(f"{rel}:{n}: {line.strip()[:100]}")
    assert not bad, "pointers to documents outside the repository:\n" + "\n".join(bad)


@pytest.mark.parametrize("md", SOURCES, ids=IDS)
def test_a_figure_cell_shows_only_its_figure(md: Path) -> None:
    """A cell whose output is a captioned figure (``mystnb.figure``) ends in a statement without a
    value: myst-nb makes a figure of each of the cell's outputs, so a trailing ``ax.set(...)`` would
    show its return value and name the figure twice (a duplicate target, which fails the build)."""
    import ast

    nb = jupytext.read(md)
    bad = []
    for c in nb.cells:
        if c.cell_type != "code" or not (c.metadata.get("mystnb") or {}).get("figure"):
            continue
        last = ast.parse(c.source).body[-1]
        quiet = c.source.rstrip().endswith(";")
        if isinstance(last, ast.Expr) and not quiet and not (
                isinstance(last.value, ast.Call) and getattr(last.value.func, "attr", "") in {"show", "tight_layout"}):
            bad.append(ast.unparse(last)[:60])
    assert not bad, f"{md.name}: figure cells that also show a value (assign it to _ or end with ';'): {bad}"
