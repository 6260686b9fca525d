"""The README's estimator example runs as printed, and its shapes are what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs() -> None:
    text = README.read_text(encoding="utf8")
    assert "make book" in text and "make test" in text
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["F"].shape == (6, 101)
    assert namespace["f_inf"].shape == (101,)
    assert namespace["a_star"].shape == (5,)
    assert namespace["B"].shape == (6, 11)


def test_ci_runs_the_readme_commands_in_order() -> None:
    """CI's entry point runs the README's two commands on the clean clone: the book, then the tests."""
    lines = [ln.strip() for ln in (README.parent / ".ci" / "run").read_text(encoding="utf8").splitlines()]
    assert "make book" in lines and "make test" in lines
    assert lines.index("make book") < lines.index("make test")


def test_the_book_installs_what_its_chapters_import() -> None:
    """`make book` installs the extras every chapter needs: the NTK chapter trains torch networks."""
    makefile = (README.parent / "Makefile").read_text(encoding="utf8")
    recipe = re.search(r"^\$\(BOOK_STAMP\):.*\n\t\$\(call install,([^)]*)\)", makefile, flags=re.M)
    assert recipe is not None
    extras = recipe.group(1).split()
    assert {"book", "nn"} <= set(extras), extras
