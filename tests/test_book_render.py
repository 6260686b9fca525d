"""The claims tables as the book renders them, on a small book built with the companion's extension.

One chapter records three claims with :mod:`sdlib.chapters.claims` (one of them a paper claim that
fails, with a statement longer than pandas shows) and ends with ``claims.table()``, as every chapter
does; an errata page discusses the failing claim in a labelled section (it pastes its verdict); a
report page has the summary and ``{sdlib-claims-table}``. After ``jupyter-book build
--warningiserror``:

* the chapter's pandas table is gone, replaced by the full table: every statement and criterion
  whole (no "..." or "…"), no index column;
* each ✗ of the paper claim links to its erratum's section, on the chapter and on the report;
* the summary heads its count columns with the kinds over their verdicts' symbols (two header rows)
  and gives the chapter column the most room;
* the same in the single-page build that the PDF is printed from;
* a paper claim that fails with no erratum that discusses it fails the build, naming the claim.

Three builds of a one-chapter book: about 15 s, so not marked ``slow``.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CONFIG = """\
title: small book
only_build_toc_files: true
exclude_patterns: [_build]
execute:
  execute_notebooks: cache
  timeout: 120
  run_in_temp: false
parse:
  myst_enable_extensions: [dollarmath, colon_fence]
sphinx:
  local_extensions:
    sdlib_book: {ext}
  config:
    sdlib_errata_doc: errata
    math_eqref_format: "(E{{number}})"
"""
TOC = """\
format: jb-book
root: report
chapters:
  - file: chapter
  - file: errata
"""
LONG = ("the closed form equals the refits on every one of the eleven training points of the "
        "illustrative example, at every step")
CHAPTER = f"""\
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

# A chapter on $\\lambda$

The chapter's own display, cited as {{eq}}`ch-own`:

```{{math}}
:label: ch-own
x = \\lambda y
```

```{{code-cell}} ipython3
from sdlib.chapters.claims import Claims, at_most

claims = Claims("ch", chapter="A chapter", mode="report")
_ = claims.check("long", "{LONG}", where="eq. (6)", measured=1e-16,
                 criterion=at_most(1e-9, why="float64 round-off over many steps of the path"))
_ = claims.check("bad", "the constant as printed", where="footnote 7", measured=1.0,
                 criterion=at_most(1e-9, why="round-off"), expect="fails")
_ = claims.observe("time", "seconds of the closed form", where="ours", measured=0.5)
claims.glue()
```

```{{code-cell}} ipython3
claims.table()
```
"""
ERRATA = """\
# Errata

(erratum-constant)=
## The constant

It lacks a factor: {glue:text}`chapter.md::ch_bad_status:s`. See {doc}`chapter`.
"""
REPORT = """\
# Report

```{sdlib-claims-summary}
chapter.md
```

```{sdlib-claims-table} chapter.md
```
"""


def _jupyter_book() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "jupyter_book"]


def _build(root: Path, builder: str = "html") -> tuple[int, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    proc = subprocess.run([*_jupyter_book(), "build", ".", "--warningiserror", "--keep-going", "--builder", builder],
                          cwd=root, capture_output=True, text=True, env=env, timeout=600)
    return proc.returncode, re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)


def _cells(table: str) -> list[str]:
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", "", c)).split())
            for c in re.findall(r"<t[dh](?:\s[^>]*)?>(.*?)</t[dh]>", table, re.S)]


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("render") / "book"
    root.mkdir()
    for name, text in (("_config.yml", CONFIG.format(ext=REPO / "book" / "_ext")), ("_toc.yml", TOC),
                       ("chapter.md", CHAPTER), ("errata.md", ERRATA), ("report.md", REPORT)):
        (root / name).write_text(text, encoding="utf8")
    return root


def test_claims_tables_render_whole_with_erratum_links(book: Path) -> None:
    code, log = _build(book)
    assert code == 0, log[-4000:]
    out = book / "_build" / "html"
    chapter, report = ((out / f"{p}.html").read_text(encoding="utf8") for p in ("chapter", "report"))
    errata_ids = set(re.findall(r'\bid="([^"]+)"', (out / "errata.html").read_text(encoding="utf8")))
    assert 'class="dataframe"' not in chapter, "the pandas table (cut cells, an index) is still shown"
    for page in (chapter, report):
        (table,) = re.findall(r'<table class="[^"]*sdlib-claims(?:\s[^"]*)?".*?</table>', page, re.S)
        cells = _cells(table)
        assert cells[:6] == ["Claim", "Kind", "Where", "Measured", "Criterion", "Verdict"]
        assert LONG in cells and "≤ 1.00e-09 (float64 round-off over many steps of the path)" in cells
        assert not [c for c in cells if c.endswith(("...", "…"))]
        assert len(cells) == 6 * 4, "one header row and three claims, no index column"
        links = re.findall(r'<a [^>]*sdlib-erratum-link[^>]*href="([^"]+)"|<a [^>]*href="([^"]+)"[^>]*'
                           r'sdlib-erratum-link', table)
        (target,) = [a or b for a, b in links]
        assert target.partition("#")[0] == "errata.html" and target.partition("#")[2] == "erratum-constant"
        assert "erratum-constant" in errata_ids
    summary = re.search(r'<table class="[^"]*sdlib-claims-summary.*?</table>', report, re.S)[0]  # type: ignore[index]
    head = summary.split("</thead>")[0]
    assert head.count("<tr") == 2, "the kinds over their verdicts' symbols"
    assert _cells(head)[:4] == ["Chapter", "Paper", "External", "Stand-in"]
    widths = [float(w) for w in re.findall(r'<col style="width: ([\d.]+)%"', summary)]
    assert widths[0] == max(widths) and widths[0] >= 3 * widths[1]

    # The single page the PDF is printed from: the chapter's table is drawn whole there too, and
    # its ✗ links to the erratum's section on the same page.
    code, log = _build(book, "singlehtml")
    assert code == 0, log[-4000:]
    single = (book / "_build" / "singlehtml" / "report.html").read_text(encoding="utf8")
    assert 'class="dataframe"' not in single
    tables = re.findall(r'<table class="[^"]*sdlib-claims(?:\s[^"]*)?".*?</table>', single, re.S)
    assert len(tables) == 2 and all(LONG in _cells(t) for t in tables)
    assert single.count('href="#erratum-constant"') == 2 and 'id="erratum-constant"' in single

    # A paper claim that fails with no erratum: the build fails and names the claim.
    (book / "errata.md").write_text("# Errata\n\nNothing yet.\n", encoding="utf8")
    code, log = _build(book)
    assert code != 0 and "ch.bad" in log and "add its erratum" in log, log[-3000:]


def test_the_books_equation_numbers_and_math_in_link_texts(book: Path) -> None:
    """A labelled display reads (E1) on its page and where it is cited, so that it cannot be taken
    for the paper's eq. (1); a {doc} link to a page whose title has math shows math, not TeX."""
    out = book / "_build" / "html"
    if not (out / "chapter.html").exists():
        code, log = _build(book)
        assert code == 0, log[-4000:]
    chapter = (out / "chapter.html").read_text(encoding="utf8")
    assert re.search(r'<span class="eqno">\(E1\)', chapter), "the display's number is not (E1)"
    assert re.search(r'<a class="reference internal" href="#equation-ch-own">\(E1\)</a>', chapter), \
        "the {eq} reference does not read (E1)"
    errata = (out / "errata.html").read_text(encoding="utf8")
    link = re.search(r'<a class="reference internal" href="chapter.html">(.*?)</a>', errata, re.S)
    assert link, "no link to the chapter on the errata page"
    assert "$" not in link.group(1) and "math" in link.group(1), link.group(1)
