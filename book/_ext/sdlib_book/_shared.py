"""Helpers that several features of the book's extension use: the glue caches of the executed
chapters, the environment's per-page stores, tables built as docutils nodes, and small text
formatters for the generated pages."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger("sdlib_book")

#: Per-page stores kept on the build environment (purged and merged per page, see deps.py).
DEPS = "sdlib_glue_deps"           # docname -> the pages it pastes from
BENCH = "sdlib_benchmark_files"    # docname -> (folder, listing) of a {sdlib-benchmarks} page
WATCH = "sdlib_watched_files"      # docname -> [(folder, pattern, listing)] it is generated from
FIGURES = "sdlib_figure_captions"  # docname -> its figure captions
ERRATA = "sdlib_errata_sections"   # docname -> {"refdoc::status_key": section id}
PER_PAGE_STORES = (BENCH, WATCH, FIGURES, ERRATA)


def _note_deps(env: BuildEnvironment, docname: str, refdocs: list[str]) -> None:
    """Record that ``docname`` is generated from the pages ``refdocs`` (re-read when one is)."""
    deps: dict[str, set[str]] = getattr(env, DEPS, None) or {}
    deps.setdefault(docname, set()).update(refdocs)
    setattr(env, DEPS, deps)


def _store(env: BuildEnvironment, name: str) -> dict[str, Any]:
    """The per-page store ``name`` of ``env`` (created empty)."""
    store: dict[str, Any] = getattr(env, name, None) or {}
    setattr(env, name, store)
    return store


def _glue_cache(app: Sphinx, docname: str) -> dict[str, Any]:
    """The values a chapter glued (myst-nb's ``NAME.glue.json`` beside its executed notebook)."""
    folder = Path(app.env.mystnb_config.output_folder)  # type: ignore[attr-defined]
    path = folder.joinpath(*docname.split("/")[:-1], docname.split("/")[-1] + ".glue.json")
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf8"))


def _executed_notebook(app: Sphinx, docname: str) -> Path | None:
    """The executed notebook myst-nb wrote for ``docname`` (None for a page that is no notebook)."""
    folder = Path(app.env.mystnb_config.output_folder)  # type: ignore[attr-defined]
    path = folder.joinpath(*docname.split("/")[:-1], docname.split("/")[-1] + ".ipynb")
    return path if path.is_file() and "kernelspec" in app.env.metadata.get(docname, {}) else None


def _ledger(glue: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """The claims a chapter glued under ``prefix`` (its ledger, see :mod:`sdlib.chapters.claims`)."""
    from sdlib.chapters import claims as claims_api

    entry = glue.get(claims_api.ledger_key(prefix)) or {}
    return claims_api.read_ledger(entry.get("data", {}).get("text/plain", ""))


def _title_nodes(env: BuildEnvironment, doc: str) -> list[nodes.Node]:
    """A copy of a page's title as nodes (chapter titles hold math, typeset by MathJax)."""
    title = env.titles.get(doc)
    return [c.deepcopy() for c in title.children] if title is not None else [nodes.Text(doc)]


def _page_link(app: Sphinx, fromdoc: str, doc: str, anchor: str = "") -> nodes.reference:
    """A reference from ``fromdoc`` to ``doc`` (its title as the text), ``#anchor`` optional."""
    uri = app.builder.get_relative_uri(fromdoc, doc) + (f"#{anchor}" if anchor else "")
    return nodes.reference("", "", *_title_nodes(app.env, doc), internal=True, refuri=uri)


def _simple_table(headers: list[str], rows: list[list[nodes.Node | str]], classes: list[str],
                  widths: list[int] | None = None) -> nodes.table:
    """A docutils table; ``widths`` (relative, one per column) are written as column widths."""
    table = nodes.table(classes=[*classes, "colwidths-given"] if widths else classes)
    tgroup = nodes.tgroup(cols=len(headers))
    table += tgroup
    for w in widths or [1] * len(headers):
        tgroup += nodes.colspec(colwidth=w)
    thead = nodes.thead()
    tgroup += thead
    hrow = nodes.row()
    for h in headers:
        hrow += nodes.entry("", nodes.paragraph(text=h))
    thead += hrow
    tbody = nodes.tbody()
    tgroup += tbody
    for cells in rows:
        row = nodes.row()
        for c in cells:
            row += nodes.entry("", c if isinstance(c, nodes.Node) else nodes.paragraph(text=str(c)))
        tbody += row
    return table


def _code(text: str) -> nodes.Node:
    return nodes.paragraph("", "", nodes.literal(text=text))


def _seconds(s: Any) -> str:
    if not isinstance(s, (int, float)):
        return "not recorded"
    if s < 90:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    return f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"


def _rel(path: str | Path, src: Path) -> str:
    return Path(os.path.relpath(Path(path), src)).as_posix()


def _dirty(prov: Any) -> bool:
    return isinstance(prov, dict) and str(prov.get("git_commit") or "").endswith("+dirty")


def _commit(prov: Any) -> str:
    if not isinstance(prov, dict) or not prov.get("git_commit"):
        return "not recorded"
    c = str(prov["git_commit"])
    return c[:10] + (" ⚠ +dirty: made from a modified tree" if c.endswith("+dirty") else "")


def _json_files(files: list[str], what: str, location: Any) -> Iterator[tuple[Path, Any]]:
    """Each of ``files`` with its parsed JSON; one that cannot be read is a warning, then skipped."""
    for f in files:
        try:
            yield Path(f), json.loads(Path(f).read_text(encoding="utf8"))
        except (OSError, ValueError) as exc:
            logger.warning(f"{what}: cannot read {f}: {exc}", location=location)


def _directive_json(directive: SphinxDirective) -> tuple[str, Any]:
    """The JSON file named by a directive's argument (a path from the book's root), noted as a
    dependency of the page. Raises OSError or ValueError when it cannot be read."""
    rel = directive.arguments[0].strip("/")
    path = Path(directive.env.srcdir) / rel
    directive.env.note_dependency(str(path))
    return rel, json.loads(path.read_text(encoding="utf8"))


def _parameters(path: str | Path) -> dict[str, Any]:
    """The parameters of a chapter's ``parameters`` cell (empty when it has none or cannot be read)."""
    from sdlib.chapters.runner import NotebookError, notebook_parameters

    try:
        return dict(notebook_parameters(path))
    except (NotebookError, ValueError, SyntaxError):
        return {}


def _parameter_names(path: str | Path) -> set[str]:
    return set(_parameters(path))


def _wants_gpu(app: Sphinx, docname: str) -> bool:
    """A chapter whose parameters cell has a ``device`` defaulting to CUDA (Section 5)."""
    dev = _parameters(app.env.doc2path(docname)).get("device")
    return dev is not None and str(dev.default).startswith("cuda")


def _toc_order(env: BuildEnvironment, root: str) -> list[str]:
    """Every page reachable from ``root``, in the order of the table of contents."""
    out: list[str] = []

    def visit(doc: str) -> None:
        if doc in out:
            return
        out.append(doc)
        for child in env.toctree_includes.get(doc, []):
            visit(child)

    visit(root)
    return out


def format_glued(glue: dict[str, Any], spec: str) -> str | None:
    """The value ``spec`` (``key`` or ``key:format``) of ``glue`` as myst-nb pastes it, or None."""
    from myst_nb.core.variables import format_plain_text

    key, _, fmt = spec.partition(":")
    data = (glue.get(key) or {}).get("data") or {}
    if "text/plain" not in data:
        return None
    try:
        return format_plain_text(data["text/plain"], fmt or "s")
    except (ValueError, TypeError):
        return None
