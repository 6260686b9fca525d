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
