"""No false green: a book whose chapter failed to execute fails every later build until it executes.

A small book (one chapter, the companion's extension, the execution cache as in _config.yml) is
built four times, the way ``make book`` builds the real one:

1. as it is: the build succeeds and the page shows the glued number;
2. with the chapter broken (a cell raises): the build fails, and the page shows an error box, not
   a traceback or an empty number;
3. again, nothing touched: Sphinx would not re-read the unchanged source, yet the build still fails;
4. with the chapter fixed: the build succeeds and the page shows the number again.

A build that is killed half-way (no ``build-finished``) leaves the same marker as a failed one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

CONFIG = """\
title: small book
only_build_toc_files: true
exclude_patterns: [_build]
execute:
  execute_notebooks: cache
  timeout: 120
  run_in_temp: false
  allow_errors: false
sphinx:
  local_extensions:
    sdlib_book: {ext}
"""
TOC = """\
format: jb-book
root: intro
chapters:
  - file: chapter
"""
INTRO = "# Small book\n\nThe chapter glues {glue:text}`chapter.md::answer:d`.\n"
CHAPTER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A chapter

```{{code-cell}} ipython3
from myst_nb import glue
{body}
glue("answer", 6 * 7, display=False)
```

The answer is {{glue:text}}`answer:d`.
"""
GOOD, BAD = "x = 1", 'raise RuntimeError("broken on purpose")'


def _jupyter_book() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "jupyter_book"]


def _build(root: Path) -> tuple[int, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    proc = subprocess.run([*_jupyter_book(), "build", ".", "--warningiserror", "--keep-going", "--builder", "html"],
                          cwd=root, capture_output=True, text=True, env=env, timeout=600)
    return proc.returncode, re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)


def _page(root: Path) -> str:
    return (root / "_build" / "html" / "chapter.html").read_text(encoding="utf8")


def _write_chapter(root: Path, body: str) -> None:
    (root / "chapter.md").write_text(CHAPTER.format(body=body), encoding="utf8")


def test_a_failed_chapter_fails_every_build_until_it_executes(tmp_path: Path) -> None:
    root = tmp_path / "book"
    root.mkdir()
    (root / "_config.yml").write_text(CONFIG.format(ext=REPO / "book" / "_ext"), encoding="utf8")
    (root / "_toc.yml").write_text(TOC, encoding="utf8")
    (root / "intro.md").write_text(INTRO, encoding="utf8")
    marker = root / "_build" / ".doctrees" / "sdlib-build-incomplete"

    _write_chapter(root, GOOD)
    code, log = _build(root)
    assert code == 0, log[-4000:]
    assert "The answer is 42" in re.sub(r"<[^>]+>", "", _page(root)), "the glued number is missing"
    assert not marker.exists()

    _write_chapter(root, BAD)
    code, log = _build(root)
    assert code != 0, "a chapter that raises must fail the build:\n" + log[-4000:]
    page = _page(root)
    assert "Traceback" not in page and "RuntimeError" not in page.split("failed to execute")[0]
    assert "This chapter failed to execute" in page
    assert marker.exists()

    code, log = _build(root)  # nothing touched: still a failure, never a stale success
    assert code != 0, "the second build after a failure exited 0 (false green):\n" + log[-4000:]
    assert "failed to execute" in log

    _write_chapter(root, GOOD)
    code, log = _build(root)
    assert code == 0, log[-4000:]
    assert "The answer is 42" in re.sub(r"<[^>]+>", "", _page(root))
    assert "failed to execute" not in _page(root)
    assert not marker.exists()

    # A build that never finishes (killed) leaves the marker: the next build reads every page again.
    marker.write_text("killed\n", encoding="utf8")
    code, log = _build(root)
    assert code == 0 and "every page is read again" in log, log[-4000:]
    assert not marker.exists()
