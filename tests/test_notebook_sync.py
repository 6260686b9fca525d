"""The nbval reference notebooks (notebooks/*.ipynb) must hold the same code as their Jupytext
sources (notebooks/*.md): nbval executes the .ipynb, the book renders the .md."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.md"))


def _code(nb: nbformat.NotebookNode) -> list[str]:
    return [c.source.strip() for c in nb.cells if c.cell_type == "code"]


def test_every_notebook_has_a_reference() -> None:
    assert SOURCES, "no notebooks found"
    missing = [p.name for p in SOURCES if not p.with_suffix(".ipynb").exists()]
    assert not missing, f"run tools/refresh_refs.py for {missing}"


@pytest.mark.parametrize("md", SOURCES, ids=[p.stem for p in SOURCES])
def test_reference_matches_source(md: Path) -> None:
    ref = md.with_suffix(".ipynb")
    if not ref.exists():
        pytest.fail(f"{ref.name} is missing: run tools/refresh_refs.py {md}")
    assert _code(jupytext.read(md)) == _code(nbformat.read(ref, as_version=4)), (
        f"{ref.name} is out of date with {md.name}: run tools/refresh_refs.py {md}"
    )
