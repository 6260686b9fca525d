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

The book loads nothing from the network (MathJax ships in ``book/_static/mathjax``). Every request
to another host is blocked and recorded, and the test fails on any such request made while a page
loads. Nothing is ignored: a console error of any kind fails the test.

Without Chromium the browser part is skipped with a message, except under CI (``CI=true``), where
it fails.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
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


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # The browser closing a connection early (BrokenPipe) is not a defect of the book.
        pass


@pytest.fixture(scope="module")
def server(built_book: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(built_book))
    httpd = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


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
        .map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0}));
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
