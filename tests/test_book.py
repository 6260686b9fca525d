"""The book builds with warnings as errors, and a real browser finds every page whole.

1. ``jupyter-book build . --warningiserror --keep-going`` (what ``make book`` runs; notebooks are
   cached in ``_build/.jupyter_cache``, so a second build only re-executes changed notebooks) must
   succeed without a single warning.
2. ``_build/html`` is served on 127.0.0.1 and Debian's Chromium (headless, through playwright's
   Python API; never ``playwright install``) loads every HTML page: no HTTP error, no failed request,
   no console error, every ``<img>`` decoded, MathJax finished (no raw ``$$``, ``\\(`` or ``\\[`` left
   in the visible text, an ``mjx-container`` for every equation, no TeX error, every ``\\tag{N}``
   rendered as a label), and the search page finds "Theorem 4.5". A full-page screenshot of every
   chapter is saved to ``_build/screenshots/NAME.png``.

   Every figure of a chapter is crisp: an SVG, or a PNG with at least twice as many pixels as it
   is displayed with (the kernels of .venv draw "retina" PNGs, tools/ipython_kernel_config.py).
3. Reading comfort, in dark mode at a phone's width (390 px): no page scrolls sideways and no
   paragraph, list item, heading or caption is wider than the screen (tables, code and outputs
   scroll in their own box); no figure lets the dark page show through (every pixel opaque, or a
   light background behind it), and figures keep their aspect ratio.
   The claims tables (every chapter's, and the report's) show every statement whole, without an
   index column, and every ✗ of a paper claim links to its section of the errata.
4. Every chapter is also a notebook: ``NAME.ipynb`` next to ``NAME.html``, executed (the build's
   outputs), its first cell the Colab set-up cell, its code that of ``NAME.md``; the page's
   download button points at it. While ``repository.url`` in _config.yml is the placeholder, no
   page, notebook or script of the book mentions it; once it is set, every chapter page has Binder
   and Colab buttons that open its notebook on the notebooks branch of that repository.
5. ``make pdf`` (tools/book_pdf.py, reusing the execution cache of the build above) writes one PDF:
   more pages than the book has chapters, and ``pdftotext`` finds "Theorem 4.5", a figure caption
   of a chapter, the reproduction report's summary row and no raw TeX; it holds an image for every
   figure of the chapters.

The book loads nothing from the network (MathJax ships in ``book/_static/mathjax``). Every request
to another host is blocked and recorded, and the test fails on any such request made while a page
loads. Nothing is ignored: a console error of any kind fails the test.

Without Chromium (or poppler-utils for the PDF) those parts are skipped with a message, except under
CI (``CI=true``), where they fail. ``SDLIB_BOOK_ROOT=DIR`` checks the book whose root is DIR instead
(a small book sharing this repository's _config.yml and extension, to test the checks themselves).
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("SDLIB_BOOK_ROOT") or REPO).resolve()
_spec = importlib.util.spec_from_file_location("book_pdf_tool", REPO / "tools" / "book_pdf.py")
book_pdf_tool = importlib.util.module_from_spec(_spec)  # tools/ is not a package
_spec.loader.exec_module(book_pdf_tool)
BUILD = ROOT / "_build"
HTML = BUILD / "html"
SHOTS = BUILD / "screenshots"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Pages of the book that are chapters (screenshots are taken of these).
CHAPTER_DIRS = ("book", "notebooks")

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _jupyter_book() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "jupyter_book"]


@pytest.fixture(scope="module")
def built_book() -> Path:
    """Build the book as ``make book`` does and return ``_build/html``."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    proc = subprocess.run(
        [*_jupyter_book(), "build", ".", "--warningiserror", "--keep-going", "--builder", "html"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=1800,
    )
    log = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    # The only "WARNING" tolerated is the kernel's notice about its local TCP transport (printed by
    # ipykernel on the kernel's stderr, not a Sphinx warning).
    warnings = [ln for ln in log.splitlines()
                if re.search(r"\bWARNING\b|\bERROR\b", ln) and "Kernel is running over TCP" not in ln]
    assert proc.returncode == 0, f"jupyter-book build failed (exit {proc.returncode}):\n{log[-6000:]}"
    assert not warnings, "the build printed warnings:\n" + "\n".join(warnings[:40])
    assert "build succeeded" in log, log[-3000:]
    assert (HTML / "book" / "intro.html").is_file()
    return HTML


def test_book_builds_without_warnings(built_book: Path) -> None:
    chapters = sorted(p.relative_to(built_book).as_posix() for p in (built_book / "notebooks").glob("*.html"))
    assert chapters, "no chapter was built from notebooks/*.md"
    # The nbval reference notebooks must not become pages of their own.
    assert not list((built_book / "notebooks").glob("*.ipynb.html"))


def _pages(html: Path) -> list[str]:
    pages = []
    for p in sorted(html.rglob("*.html")):
        rel = p.relative_to(html).as_posix()
        if rel.startswith(("_static/", "_sources/", "_images/")):
            continue
        pages.append(rel)
    return pages


@pytest.fixture(scope="module")
def server(built_book: Path) -> Iterator[str]:
    with book_pdf_tool.serve(built_book) as url:  # the server `make pdf` prints from
        yield url


def _chromium() -> str | None:
    for c in CHROMIUM_CANDIDATES:
        if os.access(c, os.X_OK):
            return c
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    exe = _chromium()
    if exe is None:
        msg = ("Debian's Chromium (/usr/bin/chromium) is not installed: the browser checks of the book "
               "are skipped (apt-get install chromium to run them)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but " + msg)
        pytest.skip(msg)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but python playwright is not installed (dev extra)")
        pytest.skip("python playwright is not installed: the browser checks of the book are skipped")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


# Runs in the page once it has loaded: waits for MathJax and the images, then reports.
_INSPECT = r"""
async () => {
  for (const img of document.images) { if (img.loading === "lazy") img.loading = "eager"; }
  await Promise.all(Array.from(document.images).filter(i => !i.complete)
        .map(i => new Promise(r => { i.addEventListener("load", r); i.addEventListener("error", r); })));
  const hasMathJax = typeof window.MathJax !== "undefined" && !!window.MathJax.startup;
  if (hasMathJax) {
    await window.MathJax.startup.promise;
    if (window.MathJax.typesetPromise) { await window.MathJax.typesetPromise(); }
  }
  await document.fonts.ready;
  const images = Array.from(document.images)
        .map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0,
                    figure: !!i.closest(".cell_output, figure, .output"),
                    natural: i.naturalWidth, shown: i.getBoundingClientRect().width}));
  const article = document.querySelector("article") || document.querySelector("main") || document.body;
  const clone = article.cloneNode(true);
  clone.querySelectorAll("pre, code, script, style, textarea, mjx-container, mjx-assistive-mml, .highlight")
       .forEach(e => e.remove());
  const text = clone.textContent;
  const mathSources = document.querySelectorAll(".math, div.math, span.math").length;
  const containers = document.querySelectorAll("mjx-container").length;
  const merrors = document.querySelectorAll("mjx-merror").length;
  let tagged = 0, taggedRendered = 0;
  if (hasMathJax && window.MathJax.startup.document) {
    for (const item of window.MathJax.startup.document.math) {
      if (/\\tag\{/.test(item.math)) {
        tagged += 1;
        const root = item.typesetRoot;
        if (root && root.querySelector("mjx-labels, mjx-mlabeledtr")) taggedRendered += 1;
      }
    }
  }
  return {hasMathJax, images, text, mathSources, containers, merrors, tagged, taggedRendered,
          title: document.title};
}
"""


def _check_page(page, url: str) -> dict:  # type: ignore[no-untyped-def]
    response = page.goto(url, wait_until="load", timeout=60_000)
    assert response is not None and response.ok, f"{url}: HTTP {response.status if response else 'no response'}"
    info = page.evaluate(_INSPECT)
    # Let late requests (the favicon, fonts) finish before the next page aborts them.
    page.wait_for_load_state("networkidle", timeout=30_000)
    return info


def test_every_page_renders_in_chromium(server: str, browser, built_book: Path) -> None:  # type: ignore[no-untyped-def]
    base = server
    pages = _pages(built_book)
    assert len(pages) >= 10, pages
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    events: list[str] = []
    external: list[str] = []

    def route(r) -> None:  # type: ignore[no-untyped-def]
        if r.request.url.startswith(base) or r.request.url.startswith(("data:", "blob:", "about:")):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: events.append(f"console {m.type}: {m.text} ({m.location.get('url', '')})")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: events.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: events.append(f"request failed: {r.url} ({r.failure})")
            if r.url.startswith(base) else None)
    page.on("response", lambda r: events.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)

    screenshots = 0
    for rel in pages:
        events.clear()
        external.clear()
        url = base + rel
        if rel == "index.html":  # Jupyter Book's redirect to the root page
            try:
                page.goto(url, wait_until="load")
                page.wait_for_url("**/book/intro.html", timeout=30_000)
                page.wait_for_load_state("networkidle", timeout=30_000)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"index.html does not redirect to book/intro.html: {exc}")
            problems.extend(f"{rel}: {e}" for e in events)
            continue
        try:
            info = _check_page(page, url)
        except Exception as exc:  # noqa: BLE001 - report every page, not only the first failure
            problems.append(f"{rel}: could not load/inspect: {exc}")
            continue
        bad = [i["src"] for i in info["images"] if not i["ok"]]
        if bad:
            problems.append(f"{rel}: images not decoded: {bad}")
        blurry = [f"{i['src'].rsplit('/', 1)[-1]} ({i['natural']} px shown at {i['shown']:.0f} px)"
                  for i in info["images"] if i["ok"] and i["figure"] and i["shown"] > 0
                  and not i["src"].split("?")[0].endswith(".svg") and i["natural"] < 2 * i["shown"] - 1]
        if blurry:
            problems.append(f"{rel}: figures not crisp (neither SVG nor 2x PNG): {blurry}")
        for raw in ("$$", "\\(", "\\["):
            if raw in info["text"]:
                i = info["text"].index(raw)
                problems.append(f"{rel}: raw {raw!r} left in the text: ...{info['text'][max(0, i - 60):i + 60]!r}...")
        if info["mathSources"] and not info["containers"]:
            problems.append(f"{rel}: {info['mathSources']} math elements but MathJax typeset none")
        if info["mathSources"] and not info["hasMathJax"]:
            problems.append(f"{rel}: math on the page but MathJax is not loaded")
        if info["merrors"]:
            problems.append(f"{rel}: {info['merrors']} TeX error(s) (mjx-merror)")
        if info["taggedRendered"] != info["tagged"]:
            problems.append(f"{rel}: {info['tagged'] - info['taggedRendered']} of {info['tagged']} \\tag{{N}} "
                            "equations without their number")
        if external:
            problems.append(f"{rel}: requests to other hosts (the book must load offline): {sorted(set(external))}")
        problems.extend(f"{rel}: {e}" for e in events)
        if rel.split("/")[0] in CHAPTER_DIRS and rel.count("/") == 1:
            page.screenshot(path=str(SHOTS / (Path(rel).stem + ".png")), full_page=True)
            screenshots += 1
    context.close()
    assert not problems, f"{len(problems)} problem(s) in {len(pages)} pages:\n" + "\n".join(problems[:60])
    assert screenshots >= 3


def test_search_finds_theorem_45(server: str, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(server + "search.html?q=Theorem+4.5", wait_until="load")
    page.wait_for_selector("#search-results ul.search li", timeout=60_000)
    hits = page.locator("#search-results ul.search li").all_inner_texts()
    context.close()
    assert hits, "the search for 'Theorem 4.5' listed nothing"
    assert any("4.5" in h for h in hits), hits[:5]
    assert not errors, errors


# ------------------------------------------------------------------------------------------------
# Every chapter as a notebook; no button towards the placeholder repository


def _repository() -> tuple[str, dict]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    return str((config.get("repository") or {}).get("url") or ""), config


def _is_placeholder(url: str) -> bool:
    sys.path.insert(0, str(REPO / "book" / "_ext"))
    try:
        from sdlib_book.launch import repository_is_placeholder
    finally:
        sys.path.pop(0)
    return repository_is_placeholder(url) and not os.environ.get("BOOK_REPOSITORY_URL")


def _chapters(html: Path) -> list[Path]:
    """The chapters' sources (notebooks/*.md) that became pages."""
    return [md for md in sorted((ROOT / "notebooks").glob("*.md"))
            if (html / "notebooks" / (md.stem + ".html")).is_file()]


def test_no_page_points_at_the_placeholder(built_book: Path) -> None:
    url, config = _repository()
    files = [p for p in built_book.rglob("*") if p.suffix in (".html", ".ipynb", ".js")
             and not p.relative_to(built_book).as_posix().startswith("_static/mathjax/")]
    assert len(files) > 10
    if _is_placeholder(url):
        needles = [url, url.split("github.com/", 1)[-1]] if url else []
        needles += ["colab.research.google.com/github/", "mybinder.org/v2/"]
        hits = [f"{p.relative_to(built_book)}: {n}" for p in files for n in needles if n and n in
                p.read_text(encoding="utf8", errors="replace")]
        assert not hits, "pages point at the placeholder repository:\n" + "\n".join(hits[:20])
        return
    launch = config.get("launch_buttons") or {}
    branch = config["sphinx"]["config"]["sdlib_notebooks_branch"]
    repo = os.environ.get("BOOK_REPOSITORY_URL") or url
    org_repo = repo.rstrip("/").split("github.com/", 1)[1]
    for md in _chapters(built_book):
        rel = f"notebooks/{md.stem}.ipynb"
        page = (built_book / "notebooks" / f"{md.stem}.html").read_text(encoding="utf8")
        binder = f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{org_repo}/{branch}?urlpath=lab/tree/{rel}"
        colab = f"{launch['colab_url'].rstrip('/')}/github/{org_repo}/blob/{branch}/{rel}"
        assert f'href="{binder}"' in page, f"{md.stem}: no Binder button to {binder}"
        assert f'href="{colab}"' in page, f"{md.stem}: no Colab button to {colab}"


def test_every_chapter_is_an_executed_notebook(built_book: Path) -> None:
    import jupytext
    import nbformat

    sys.path.insert(0, str(REPO / "book" / "_ext"))
    try:
        from sdlib_book import myst_markdown
    finally:
        sys.path.pop(0)

    chapters = _chapters(built_book)
    assert chapters
    for md in chapters:
        target = built_book / "notebooks" / f"{md.stem}.ipynb"
        assert target.is_file(), f"the build did not write {target.relative_to(built_book)}"
        nb = nbformat.read(target, as_version=4)
        nbformat.validate(nb)
        first, *rest = [c for c in nb.cells if c.cell_type == "code"]
        assert "colab-setup" in first.metadata.get("tags", []) and "google.colab" in first.source
        source = [c.source.strip() for c in jupytext.read(md).cells if c.cell_type == "code"]
        assert [c.source.strip() for c in rest] == source, f"{target.name} is not the code of {md.name}"
        assert all(c.execution_count for c in rest), f"{target.name}: cells without an execution count"
        assert any(c.outputs for c in rest), f"{target.name} holds no outputs"
        # its prose reads cleanly in Jupyter and Colab: no MyST role, label or directive fence left
        raw = [r for c in nb.cells if c.cell_type == "markdown" for r in myst_markdown.raw_myst(c.source)]
        assert not raw, f"{target.name}: MyST left in its Markdown: {raw[:5]}"
        assert "(not computed)" not in " ".join(c.source for c in nb.cells if c.cell_type == "markdown")
        page = (built_book / "notebooks" / f"{md.stem}.html").read_text(encoding="utf8")
        assert f'href="{md.stem}.ipynb"' in page, f"{md.stem}.html has no download button for its notebook"


def _page_text(path: Path) -> str:
    """The visible text of a built page, markup removed and white space collapsed."""
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", path.read_text(encoding="utf8"), flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", raw)).split())


def test_reproduce_page_lists_every_chapter_and_claim(built_book: Path) -> None:
    from sdlib.chapters import claims as api

    text = _page_text(built_book / "book" / "reproduce.html")
    chapters = _chapters(built_book)
    assert chapters
    n_claims = 0
    for md in chapters:
        assert f"python -m sdlib run notebooks/{md.stem}.md -o runs/{md.stem}" in text, md.stem
        # every claim the chapter recorded (its glued ledger, as the build wrote it) has its row
        glue_file = BUILD / "jupyter_execute" / "notebooks" / f"{md.stem}.glue.json"
        glue = json.loads(glue_file.read_text(encoding="utf8")) if glue_file.is_file() else {}
        for prefix in api.glue_prefixes(glue):
            for r in api.read_ledger(glue[api.ledger_key(prefix)]["data"]["text/plain"]):
                n_claims += 1
                assert f"claims: {api.value_key(prefix, r['key'])}" in text, (md.stem, r["key"])
    assert n_claims, "no chapter recorded a claim"
    # every committed benchmark has its command, without where it was written or a dirty-tree flag
    for f in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        assert f"benchmarks/results/{f.name}" in text
    assert "--allow-dirty" not in text and "--out " not in text
    assert str(ROOT) not in text, "the page names a folder of the machine that built it"


def _claims_tables(page: str) -> list[str]:
    return re.findall(r'<table class="[^"]*sdlib-claims(?:\s[^"]*)?".*?</table>', page, re.S)


def test_claims_tables_are_whole_and_link_their_errata(built_book: Path) -> None:
    """Every chapter's claims table (and the report's) shows every statement and criterion whole,
    has no index column, and each ✗ of a paper claim links to a section of the errata page."""
    errata = (built_book / "book" / "errata.html").read_text(encoding="utf8")
    errata_ids = set(re.findall(r'\bid="([^"]+)"', errata))
    pages = [built_book / "notebooks" / f"{md.stem}.html" for md in _chapters(built_book)]
    pages.append(built_book / "book" / "reproduction.html")
    n_tables = n_links = 0
    for page_file in pages:
        page = page_file.read_text(encoding="utf8")
        assert not re.search(r'class="dataframe".*?<th>claim</th>', page, re.S), (
            f"{page_file.name}: a pandas claims table is left (cut cells, an index)")
        for table in _claims_tables(page):
            n_tables += 1
            cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                     for c in re.findall(r"<t[dh](?:\s[^>]*)?>(.*?)</t[dh]>", table, re.S)]
            assert cells[:6] == ["Claim", "Kind", "Where", "Measured", "Criterion", "Verdict"], cells[:6]
            cut = [c for c in cells if c.endswith(("...", "…"))]
            assert not cut, f"{page_file.name}: cut cells in a claims table: {cut[:3]}"
            for href in re.findall(r'<a [^>]*class="[^"]*sdlib-erratum-link[^"]*"[^>]*>', table):
                target = re.search(r'href="([^"]+)"', href)[1]  # type: ignore[index]
                path, _, anchor = target.partition("#")
                n_links += 1
                assert path.endswith("errata.html") and anchor in errata_ids, (page_file.name, target)
    assert n_tables >= len(pages), f"{n_tables} claims tables on {len(pages)} pages"
    ledger_fails = 0
    from sdlib.chapters import claims as api

    for md in _chapters(built_book):
        glue_file = BUILD / "jupyter_execute" / "notebooks" / f"{md.stem}.glue.json"
        glue = json.loads(glue_file.read_text(encoding="utf8")) if glue_file.is_file() else {}
        ledger_fails += sum(1 for p in api.glue_prefixes(glue)
                            for r in api.read_ledger(glue[api.ledger_key(p)]["data"]["text/plain"])
                            if r["kind"] == "paper" and r["verdict"] == "fails")
    # each ✗ (paper) is linked twice: in its chapter and on the report
    assert n_links == 2 * ledger_fails, f"{n_links} erratum links for {ledger_fails} paper claims that fail"


def test_cite_page_has_both_entries(built_book: Path) -> None:
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf8"))
    text = _page_text(built_book / "book" / "cite.html")
    assert "@inproceedings{borup2021teacher," in text
    assert "@software{companion," in text and f"version = {{{cff['version']}}}" in text


def test_benchmark_figure_is_drawn(built_book: Path) -> None:
    page = (built_book / "book" / "benchmarks.html").read_text(encoding="utf8")
    fig = re.search(r'<figure class="[^"]*sdlib-bench-figure[^"]*".*?</figure>', page, re.S)
    assert fig, "the Benchmarks page has no scaling figure"
    assert "<svg" in fig[0] and "viewBox" in fig[0]
    assert "Not a figure of the paper" in fig[0]


# ------------------------------------------------------------------------------------------------
# Reading comfort: dark mode at a phone's width

NARROW = {"width": 390, "height": 844}

# Runs in a page (dark mode, 390 px): what overflows sideways, and the figures' backdrop.
_COMFORT = r"""
async () => {
  for (const img of document.images) { if (img.loading === "lazy") img.loading = "eager"; }
  await Promise.all(Array.from(document.images).filter(i => !i.complete)
        .map(i => new Promise(r => { i.addEventListener("load", r); i.addEventListener("error", r); })));
  if (window.MathJax && window.MathJax.startup) {
    await window.MathJax.startup.promise;
    if (window.MathJax.typesetPromise) { await window.MathJax.typesetPromise(); }
  }
  const vw = document.documentElement.clientWidth;
  const wide = [];
  const scrollers = "table, pre, .highlight, .cell_output, .output, div.math, .pst-scrollable-table-container, " +
                    "mjx-container[display='true']";
  for (const el of document.querySelectorAll(
        "article p, article li, article h1, article h2, article h3, article dd, article dt, article figcaption")) {
    if (el.closest(scrollers)) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right > vw + 1 || el.scrollWidth > el.clientWidth + 1) {
      wide.push(`${el.tagName.toLowerCase()} (${Math.round(Math.max(r.right, r.left + el.scrollWidth))} px): ` +
                el.textContent.trim().slice(0, 70));
    }
  }
  const figures = [];
  for (const img of document.querySelectorAll("article .cell_output img, article figure img, article .output img")) {
    const r = img.getBoundingClientRect();
    if (!img.naturalWidth || r.width === 0) continue;
    const c = document.createElement("canvas");
    c.width = Math.min(img.naturalWidth, 400);
    c.height = Math.max(1, Math.round(c.width * img.naturalHeight / img.naturalWidth));
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0, c.width, c.height);
    const data = ctx.getImageData(0, 0, c.width, c.height).data;
    let transparent = 0;
    for (let k = 3; k < data.length; k += 4) { if (data[k] < 250) transparent += 1; }
    const bg = getComputedStyle(img).backgroundColor;
    const m = bg.match(/rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)/);
    const light = !!m && (m[4] === undefined || +m[4] > 0.99) && (0.2126 * m[1] + 0.7152 * m[2] + 0.0722 * m[3]) > 200;
    const st = getComputedStyle(img);  // the content box: the theme pads figures in dark mode
    const w = r.width - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight)
              - parseFloat(st.borderLeftWidth) - parseFloat(st.borderRightWidth);
    const h = r.height - parseFloat(st.paddingTop) - parseFloat(st.paddingBottom)
              - parseFloat(st.borderTopWidth) - parseFloat(st.borderBottomWidth);
    figures.push({src: img.src.split("/").pop(), transparent: transparent / (data.length / 4), light,
                  ratio: (w / h) / (img.naturalWidth / img.naturalHeight)});
  }
  return {vw, pageWidth: document.documentElement.scrollWidth, wide, figures,
          theme: document.documentElement.dataset.theme};
}
"""


def test_reading_comfort_dark_and_narrow(server: str, browser, built_book: Path) -> None:  # type: ignore[no-untyped-def]
    pages = [rel for rel in _pages(built_book) if rel.split("/")[0] in CHAPTER_DIRS and rel.count("/") == 1]
    assert pages
    context = browser.new_context(viewport=NARROW, color_scheme="dark", device_scale_factor=1)
    # pydata-sphinx-theme reads the reader's choice from localStorage before the page is drawn.
    context.add_init_script("localStorage.setItem('mode', 'dark'); localStorage.setItem('theme', 'dark');")
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(server) else r.abort())
    page = context.new_page()
    problems: list[str] = []
    n_figures = 0
    for rel in pages:
        page.goto(server + rel, wait_until="load", timeout=60_000)
        info = page.evaluate(_COMFORT)
        if info["theme"] != "dark":
            problems.append(f"{rel}: the page is not in dark mode (data-theme={info['theme']!r})")
        if info["pageWidth"] > info["vw"] + 1:
            problems.append(f"{rel}: the page scrolls sideways ({info['pageWidth']} px in a {info['vw']} px screen)")
        problems.extend(f"{rel}: wider than the screen: {w}" for w in info["wide"][:5])
        for f in info["figures"]:
            n_figures += 1
            if f["transparent"] > 0 and not f["light"]:
                problems.append(f"{rel}: figure {f['src']} is {f['transparent']:.0%} transparent on the dark page")
            if abs(f["ratio"] - 1) > 0.03:
                problems.append(f"{rel}: figure {f['src']} is distorted (aspect ratio x{f['ratio']:.2f})")
        if rel.startswith("notebooks/"):
            page.screenshot(path=str(SHOTS / f"{Path(rel).stem}-dark-390.png"), full_page=False)
    context.close()
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:60])
    assert n_figures, "no figure was found on the chapters' pages"


# ------------------------------------------------------------------------------------------------
# The book as one PDF


def _tool(name: str, package: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        msg = f"{name} is not installed (apt-get install {package}): the PDF is not checked"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but " + msg)
        pytest.skip(msg)
    return exe


@pytest.fixture(scope="module")
def book_pdf(built_book: Path, browser) -> Path:  # type: ignore[no-untyped-def]
    """``make pdf`` (tools/book_pdf.py) after the HTML build: notebooks come from its cache."""
    out = BUILD / "pdf" / "book.pdf"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "book_pdf.py"), "--root", str(ROOT), "--out", str(out),
                           "--chromium", _chromium() or ""], capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, f"tools/book_pdf.py failed:\n{(proc.stdout + proc.stderr)[-6000:]}"
    assert out.is_file()
    return out


def _norm(text: str) -> str:
    return " ".join(re.sub(r"-\n(?=\w)", "", text).split())


def test_book_pdf(book_pdf: Path, built_book: Path) -> None:
    from pypdf import PdfReader

    info = subprocess.run([_tool("pdfinfo", "poppler-utils"), str(book_pdf)], capture_output=True, text=True,
                          check=True).stdout
    n_pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M)[1])  # type: ignore[index]
    chapters = [rel for rel in _pages(built_book) if rel.split("/")[0] in CHAPTER_DIRS and rel.count("/") == 1]
    assert n_pages > len(chapters), f"{n_pages} pages for {len(chapters)} chapters"
    text = _norm(subprocess.run([_tool("pdftotext", "poppler-utils"), "-enc", "UTF-8", str(book_pdf), "-"],
                                capture_output=True, text=True, check=True).stdout)
    # a chapter's figure caption, as the HTML book shows it
    captions = []
    for md in _chapters(built_book):
        page = (built_book / "notebooks" / f"{md.stem}.html").read_text(encoding="utf8")
        # a figure drawn for narrow screens only is hidden in print (book/_static/sdlib.css)
        shown = [f for attrs, f in re.findall(r"<figure([^>]*)>(.*?)</figure>", page, re.S)
                 if "sdlib-hero-narrow" not in attrs]
        for c in (c for f in shown for c in re.findall(r"<figcaption>(.*?)</figcaption>", f, re.S)):
            # the caption's longest stretch of words without math (MathJax draws the math as glyphs)
            plain = html.unescape(re.sub(r"<[^>]+>", " ", c))
            words = max((_norm(p).split() for p in re.split(r"\\\(.*?\\\)|\$.*?\$", plain)), key=len)
            if len(words) >= 4:
                captions.append(" ".join(words[:8]))
    assert captions, "no chapter has a figure caption"
    # compared without white space: the HTML's markup inside a caption and the PDF's line breaks
    # place spaces differently
    flat = re.sub(r"\s+", "", text)
    missing = [c for c in captions if re.sub(r"\s+", "", c) not in flat]
    assert not missing, f"captions missing from the PDF: {missing[:3]}"
    assert "Theorem 4.5" in text
    if (built_book / "book" / "reproduction.html").is_file():
        assert "All chapters" in text, "the reproduction report's summary is not in the PDF"
    for raw in ("\\tag{", "$$"):
        assert raw not in text, f"raw TeX {raw!r} in the PDF: equations were not typeset"
    images = sum(len(p.images) for p in PdfReader(book_pdf).pages)
    figures = sum(len(re.findall(r'<img [^>]*src="[^"]*_images/', (built_book / "notebooks" / f"{md.stem}.html")
                                 .read_text(encoding="utf8"))) for md in _chapters(built_book))
    assert images >= figures, f"{images} images in the PDF, {figures} figures in the chapters"
