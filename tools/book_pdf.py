"""The book as one PDF: a single-page HTML build printed by Chromium (``make pdf``).

Usage::

    python tools/book_pdf.py                      # build _build/singlehtml, write _build/pdf/book.pdf
    python tools/book_pdf.py --html DIR --out X   # print an existing single-page build DIR

1. ``jupyter-book build . --builder singlehtml`` (warnings are errors, as for ``make book``): the
   notebooks come from the execution cache ``_build/.jupyter_cache`` that ``make book`` fills, so
   nothing is executed again when the book was built before.
2. The page is served on 127.0.0.1 and loaded in Chromium (playwright's Python API with the
   system's Chromium, as the browser test does; never ``playwright install``). Every request to
   another host is refused: the book ships MathJax and loads nothing from the network. Once
   MathJax has typeset every equation and every image is decoded, Chromium prints the page with
   its print stylesheet (book/_static/sdlib.css: no navigation, each chapter on a new page) to an
   A4 PDF with page numbers and an outline.
3. The PDF is written under a temporary name and renamed: ``_build/pdf/book.pdf``.

Chromium: ``--chromium PATH``, else ``$CHROMIUM``, else /usr/bin/chromium, chromium-browser,
google-chrome (GitHub's runners), chrome.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome",
              "/usr/bin/google-chrome-stable")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
FOOTER = ('<div style="font-size:8px;width:100%;text-align:center;color:#555">'
          '<span class="pageNumber"></span> / <span class="totalPages"></span></div>')

# Runs in the page: waits for the images and MathJax, then reports what it found.
_READY = r"""
async () => {
  for (const img of document.images) { if (img.loading === "lazy") img.loading = "eager"; }
  await Promise.all(Array.from(document.images).filter(i => !i.complete)
        .map(i => new Promise(r => { i.addEventListener("load", r); i.addEventListener("error", r); })));
  if (window.MathJax && window.MathJax.startup) {
    await window.MathJax.startup.promise;
    if (window.MathJax.typesetPromise) { await window.MathJax.typesetPromise(); }
  }
  await document.fonts.ready;
  return {images: document.images.length,
          broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
          math: document.querySelectorAll("mjx-container").length,
          errors: document.querySelectorAll("mjx-merror").length};
}
"""


class PdfError(RuntimeError):
    """The PDF could not be made (no Chromium, a failed build, a page that did not render)."""


def find_chromium(explicit: str | None = None) -> str:
    for c in (explicit, os.environ.get("CHROMIUM"), *CANDIDATES,
              shutil.which("chromium"), shutil.which("google-chrome")):
        if c and os.access(c, os.X_OK):
            return c
    raise PdfError("no Chromium found (apt-get install chromium, or --chromium PATH / $CHROMIUM)")


def build_singlehtml(root: Path, extra: list[str]) -> Path:
    """``jupyter-book build ROOT --builder singlehtml``; returns the folder of the page."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root), "--builder", "singlehtml",
           "--warningiserror", "--keep-going", *extra]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(cmd, cwd=root, env=env, text=True, capture_output=True)
    if proc.returncode != 0:
        raise PdfError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    out = None
    for line in (proc.stdout + proc.stderr).splitlines():
        if "The HTML page is in" in line:
            out = line.split("The HTML page is in", 1)[1].strip().rstrip(".")
    folder = (root / out) if out else root / "_build" / "singlehtml"
    return folder.resolve()


def _root_page(folder: Path) -> str:
    """The page holding the whole book (index.html of a single-page build only redirects)."""
    index = folder / "index.html"
    text = index.read_text(encoding="utf8") if index.exists() else ""
    marker = "url="
    if "http-equiv" in text and marker in text:
        return text.split(marker, 1)[1].split('"', 1)[0].strip()
    return "index.html"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # The browser closing a connection early (BrokenPipe) is not a defect of the book.
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on a free port of 127.0.0.1 while the block runs; yields its URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    httpd = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def print_pdf(folder: Path, out: Path, chromium: str, timeout_s: float = 300.0) -> dict:
    """Print the single-page build in ``folder`` to ``out``; returns what the page held."""
    from playwright.sync_api import sync_playwright

    from sdlib.provenance import write_bytes_atomic

    page_name = _root_page(folder)
    if "/" in page_name:
        # Sphinx writes the single page where the root document lives (book/intro.html) but with
        # links relative to the build's root: print a copy placed at the root.
        copy = folder / "book-print.html"
        copy.write_bytes((folder / page_name).read_bytes())
        page_name = copy.name
    with serve(folder) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1600})
            external: list[str] = []

            def route(r) -> None:  # type: ignore[no-untyped-def]
                if r.request.url.startswith((base, "data:", "blob:", "about:")):
                    r.continue_()
                else:
                    external.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.set_default_timeout(timeout_s * 1000)
            page.goto(base + page_name, wait_until="load")
            info = page.evaluate(_READY)
            page.wait_for_load_state("networkidle")
            if info["broken"]:
                raise PdfError(f"images not decoded: {info['broken'][:5]}")
            if info["errors"]:
                raise PdfError(f"{info['errors']} TeX error(s) on the page")
            if external:
                raise PdfError(f"the page requested other hosts (the book must load offline): {external[:5]}")
            page.emulate_media(media="print")
            with tempfile.TemporaryDirectory() as tmp:
                raw = Path(tmp) / "book.pdf"
                page.pdf(path=str(raw), format="A4", print_background=True, outline=True, tagged=True,
                         display_header_footer=True, header_template="<span></span>", footer_template=FOOTER,
                         margin={"top": "16mm", "bottom": "16mm", "left": "14mm", "right": "14mm"})
                write_bytes_atomic(out, raw.read_bytes())
        finally:
            browser.close()
    info["page"] = page_name
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=ROOT, help="the book's root (default: the repository)")
    ap.add_argument("--html", type=Path, default=None, help="an existing single-page build to print")
    ap.add_argument("--out", type=Path, default=None, help="the PDF (default: ROOT/_build/pdf/book.pdf)")
    ap.add_argument("--chromium", default=None, help="the Chromium executable")
    ap.add_argument("jb_args", nargs="*", help="after --: extra arguments of jupyter-book build")
    args = ap.parse_args(argv)
    out = args.out or args.root / "_build" / "pdf" / "book.pdf"
    t0 = time.perf_counter()
    try:
        chromium = find_chromium(args.chromium)
        folder = args.html.resolve() if args.html else build_singlehtml(args.root.resolve(), args.jb_args)
        info = print_pdf(folder, out, chromium)
    except PdfError as exc:
        print(f"tools/book_pdf.py: error: {exc}", file=sys.stderr)
        return 1
    pages = ""
    try:
        from pypdf import PdfReader

        pages = f", {len(PdfReader(out).pages)} pages"
    except ImportError:
        pass
    print(f"wrote {out}{pages} ({info['images']} images, {info['math']} equations) "
          f"in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
