"""Feature 1: which pages a page is generated from, so that Sphinx re-reads it when they change.

myst-nb's ``{glue:any}`` with ``:doc:`` and ``{glue:text}`path::key``` paste values from another
notebook's glue cache when the page is written, but Sphinx does not know that the page depends on
that notebook: after a notebook changes, the reproduction report and the errata would keep their
old numbers under ``execute_notebooks: cache``. Every page's sources are recorded here (the
notebooks it pastes from, and the files and folders a generated page is made of), and the page is
marked outdated whenever one of them is re-read, changes, appears or disappears.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

from ._shared import DEPS, PER_PAGE_STORES, WATCH, _note_deps, _store, logger
from .benchmarks import _bench_outdated
from .integrity import execution_failed


def _record_glue_refs(app: Sphinx, doctree: nodes.document) -> None:
    """On reading a page, note the notebooks its cross-document glue references point to."""
    from myst_nb.ext.glue.utils import PendingGlueReference

    refdocs = [n.refdoc for n in doctree.findall(PendingGlueReference)]
    if refdocs:
        _note_deps(app.env, app.env.docname, refdocs)


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    for attr in (DEPS, *PER_PAGE_STORES):
        store = getattr(env, attr, None)
        if store:
            store.pop(docname, None)


def _merge(app: Sphinx, env: BuildEnvironment, docnames: set[str], other: BuildEnvironment) -> None:
    for doc, refs in (getattr(other, DEPS, None) or {}).items():
        _note_deps(env, doc, list(refs))
    for attr in PER_PAGE_STORES:
        theirs = getattr(other, attr, None) or {}
        if theirs:
            _store(env, attr).update({doc: theirs[doc] for doc in docnames if doc in theirs})


def _listing(folder: Path, pattern: str) -> list[tuple[str, float]]:
    return [(str(p), p.stat().st_mtime) for p in sorted(folder.glob(pattern)) if p.is_file()]


def _watch(env: BuildEnvironment, docname: str, folder: Path, pattern: str) -> list[Path]:
    """Note that ``docname`` is generated from ``folder/pattern``; return the files found."""
    listing = _listing(folder, pattern)
    _store(env, WATCH).setdefault(docname, []).append((str(folder), pattern, listing))
    for name, _ in listing:
        env.note_dependency(name)
    return [Path(name) for name, _ in listing]


def _watched_outdated(env: BuildEnvironment) -> list[str]:
    store = getattr(env, WATCH, None) or {}
    return [doc for doc, entries in store.items()
            if any(_listing(Path(folder), pattern) != listing for folder, pattern, listing in entries)]


def _outdated(app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str],
              removed: set[str]) -> list[str]:
    """``env-get-outdated``: pages whose sources changed, and every page after an unclean build
    (feature 13: a chapter that failed to execute is read again until it executes)."""
    failed = {doc for doc in env.all_docs if execution_failed(env, doc)}
    if getattr(app, "sdlib_previous_incomplete", False):
        logger.info("sdlib: the last build did not finish cleanly: every page is read again")
        failed |= set(env.found_docs)
    touched = added | changed | removed | failed
    deps: dict[str, Any] = getattr(env, DEPS, None) or {}
    out = {doc for doc, refs in deps.items() if refs & touched}
    out.update(_bench_outdated(env))
    out.update(_watched_outdated(env))
    return sorted((out | failed) - (added | changed | removed))
