r"""Sphinx helpers for the companion book (loaded through ``sphinx.local_extensions`` in _config.yml).

1. Cross-document glue dependencies. myst-nb's ``{glue:any}`` with ``:doc:`` and
   ``{glue:text}`path::key``` paste values from another notebook's glue cache when the page is
   written, but Sphinx does not know that the page depends on that notebook: after a notebook
   changes, the reproduction report and the errata would keep their old numbers under
   ``execute_notebooks: cache``. This extension records, for every page, the notebooks it pastes
   from, and marks the page outdated whenever one of them is re-read.
2. ``{sdlib-claims-summary}``: a directive whose content lists notebooks (one path a line, relative
   to the book's root); it becomes a table with, per chapter, the number of claims checked, how
   many of each kind (paper, stand-in, sensitivity, observation) have each verdict, read from the
   chapters' glued ledgers (the glue keys are defined in :mod:`sdlib.claims`). Nothing in it is
   typed by hand; only the ``paper`` columns can say that the paper does not reproduce.
3. ``{sdlib-notebook-parameters}``: for each notebook listed in its content, a table of the
   parameters of its ``parameters`` cell (name, type, default), read with :mod:`sdlib.runner` when
   the page is read; the page is re-read whenever one of the notebooks changes.
4. A fix for sphinx-thebe 0.3 under Jupyter Book 1.0: its inline script ``const THEBE_JS_URL = ...``
   is added to every page twice, and the second copy raises "Identifier 'THEBE_JS_URL' has already
   been declared" in the browser's console. Identical script entries are dropped from each page.
5. The paper's numbers on the statement boxes, and no Sphinx numbers anywhere. sphinx-proof
   switches ``numfig`` on (so figures would read "Fig. 2 Figure 3 (paper)" and the box of
   Theorem 4.1 "Theorem 2 (Theorem 4.1 ...)"). ``numfig`` is switched off again, every
   sphinx-proof box becomes an unnumbered one, and a box titled with the paper's number
   (``{prf:theorem} Theorem 4.1 (Borup & Andersen, 2021)``) reads "Theorem 4.1 (Borup & Andersen,
   2021)"; ``{prf:ref}`` to it reads "Theorem 4.1".
6. MathJax is loaded on every page (``set_html_assets_policy("always")``): chapter titles with
   math appear in the navigation of every page, also of pages without math of their own.
7. ``\tag{N}`` in a multi-line display. Sphinx wraps a display that contains ``\\`` (e.g. in a
   ``cases`` environment) in ``\begin{split}...\end{split}``, where MathJax refuses ``\tag``
   ("\tag not allowed in split environment") and shows an error instead of eq. (14). Such a
   display with one ``\tag`` is written as ``\[\begin{split}...\end{split}\tag{N}\]``.
8. ``{sdlib-benchmarks}``: the files ``benchmarks/results/*.json`` (argument: the folder), each as a
   table of its ``summary`` (measured ratio, goal, met) and its full content in a collapsed block;
   the page is re-read when a file changes, appears or disappears.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

_DEPS = "sdlib_glue_deps"


class claims_summary(nodes.General, nodes.Element):  # noqa: N801 - docutils node naming
    """Placeholder replaced by the summary table when the page is written."""


class ClaimsSummaryDirective(SphinxDirective):
    """``{sdlib-claims-summary}``: one notebook path (from the book root) per content line."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        docs = []
        for line in self.content:
            line = line.strip()
            if not line:
                continue
            _, filepath = self.env.relfn2path("/" + line.lstrip("/"), self.env.docname)
            doc = self.env.path2doc(filepath)
            if doc is None:
                return [self.state_machine.reporter.warning(
                    f"sdlib-claims-summary: no document {line!r}", line=self.lineno)]
            docs.append(doc)
        _note_deps(self.env, self.env.docname, docs)
        node = claims_summary(docs=docs)
        self.set_source_info(node)
        return [node]


def _note_deps(env: BuildEnvironment, docname: str, refdocs: list[str]) -> None:
    deps: dict[str, set[str]] = getattr(env, _DEPS, None) or {}
    deps.setdefault(docname, set()).update(refdocs)
    setattr(env, _DEPS, deps)


def _record_glue_refs(app: Sphinx, doctree: nodes.document) -> None:
    """On reading a page, note the notebooks its cross-document glue references point to."""
    from myst_nb.ext.glue.utils import PendingGlueReference

    refdocs = [n.refdoc for n in doctree.findall(PendingGlueReference)]
    if refdocs:
        _note_deps(app.env, app.env.docname, refdocs)


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    for attr in (_DEPS, _BENCH):
        store = getattr(env, attr, None)
        if store:
            store.pop(docname, None)


def _merge(app: Sphinx, env: BuildEnvironment, docnames: set[str], other: BuildEnvironment) -> None:
    for doc, refs in (getattr(other, _DEPS, None) or {}).items():
        _note_deps(env, doc, list(refs))


def _outdated(app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str],
              removed: set[str]) -> list[str]:
    touched = added | changed | removed
    deps = getattr(env, _DEPS, None) or {}
    out = {doc for doc, refs in deps.items() if refs & touched}
    out.update(_bench_outdated(env))
    return sorted(out - touched)


def _glue_cache(app: Sphinx, docname: str) -> dict[str, Any]:
    folder = Path(app.env.mystnb_config.output_folder)  # type: ignore[attr-defined]
    path = folder.joinpath(*docname.split("/")[:-1], docname.split("/")[-1] + ".glue.json")
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf8"))


class FillClaimsSummary(SphinxPostTransform):
    """Replace each ``claims_summary`` node by its table (after the notebooks were executed)."""

    default_priority = 6

    def apply(self, **kwargs: Any) -> None:
        from sdlib import claims as claims_api

        app = self.app
        for node in list(self.document.findall(claims_summary)):
            rows = []
            for doc in node["docs"]:
                glue = _glue_cache(app, doc)
                prefixes = claims_api.glue_prefixes(glue)
                if not prefixes:
                    logger.warning(f"sdlib-claims-summary: no glued claims ledger in {doc!r}", location=node)
                    continue
                records = []
                for prefix in prefixes:
                    entry = glue[claims_api.ledger_key(prefix)]
                    records.extend(claims_api.read_ledger(entry.get("data", {}).get("text/plain", "")))
                # The title node, not its text: chapter titles hold math, typeset by MathJax.
                title = self.env.titles.get(doc)
                title_nodes = [c.deepcopy() for c in title.children] if title is not None else [nodes.Text(doc)]
                rows.append((doc, title_nodes, _count(records)))
            node.replace_self(_table(rows, self.env.docname, app))


#: Columns of the summary: (header, kind, verdicts counted).
SUMMARY_COLUMNS = (
    ("Paper ✓", "paper", ("holds",)),
    ("Paper ✗", "paper", ("fails",)),
    ("Stand-in ✓", "standin", ("holds",)),
    ("Stand-in ✗", "standin", ("fails",)),
    ("Stand-in ?", "standin", ("inconclusive",)),
    ("Sensitivity", "sensitivity", ("holds", "fails", "depends")),
    ("Observations", "observation", ("none",)),
)


def _count(records: list[dict[str, Any]]) -> list[int]:
    return [sum(1 for r in records if r.get("kind") == kind and r.get("verdict") in verdicts)
            for _, kind, verdicts in SUMMARY_COLUMNS]


def _table(rows: list[tuple[str, list[nodes.Node], list[int]]], fromdoc: str, app: Sphinx) -> nodes.table:
    headers = ["Chapter", *(h for h, _, _ in SUMMARY_COLUMNS)]
    cells: list[list[nodes.Node | str]] = []
    totals = [0] * len(SUMMARY_COLUMNS)
    for doc, title, counts in rows:
        ref = nodes.reference("", "", *title, internal=True,
                              refuri=app.builder.get_relative_uri(fromdoc, doc))
        cells.append([nodes.paragraph("", "", ref), *counts])
        totals = [t + c for t, c in zip(totals, counts, strict=True)]
    cells.append([nodes.paragraph("", "", nodes.strong(text=t))
                  for t in ["All chapters", *map(str, totals)]])
    return _simple_table(headers, cells, ["sdlib-claims-summary"])


def _simple_table(headers: list[str], rows: list[list[nodes.Node | str]], classes: list[str]) -> nodes.table:
    table = nodes.table(classes=classes)
    tgroup = nodes.tgroup(cols=len(headers))
    table += tgroup
    for _ in headers:
        tgroup += nodes.colspec(colwidth=1)
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


class NotebookParametersDirective(SphinxDirective):
    """``{sdlib-notebook-parameters}``: a parameters table per notebook (one path a content line)."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        from sdlib.runner import NotebookError, notebook_parameters

        out: list[nodes.Node] = []
        srcdir = Path(self.env.srcdir)
        for line in self.content:
            rel = line.strip().lstrip("/")
            if not rel:
                continue
            path = srcdir / rel
            self.env.note_dependency(str(path))
            out.append(nodes.rubric("", "", nodes.literal(text=rel)))
            try:
                params = notebook_parameters(path)
            except NotebookError as exc:
                out.append(self.state_machine.reporter.warning(
                    f"sdlib-notebook-parameters: {exc}", line=self.lineno))
                continue
            rows: list[list[nodes.Node | str]] = [
                [nodes.paragraph("", "", nodes.literal(text=p.name)), p.type_name,
                 nodes.paragraph("", "", nodes.literal(text=repr(p.default)))]
                for p in params.values()
            ]
            out.append(_simple_table(["parameter", "type", "default"], rows, ["sdlib-parameters"]))
        return out


_BENCH = "sdlib_benchmark_files"


def _bench_listing(folder: Path) -> list[tuple[str, float]]:
    return [(str(p), p.stat().st_mtime) for p in sorted(folder.glob("*.json"))]


class BenchmarksDirective(SphinxDirective):
    """``{sdlib-benchmarks} benchmarks/results``: every result file's summary and content."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        folder = Path(self.env.srcdir) / self.arguments[0].strip("/")
        listing = _bench_listing(folder)
        files: dict[str, Any] = getattr(self.env, _BENCH, None) or {}
        files[self.env.docname] = (str(folder), listing)
        setattr(self.env, _BENCH, files)
        out: list[nodes.Node] = []
        if not listing:
            out.append(nodes.paragraph(text=(
                f"No benchmark results yet ({self.arguments[0]}/*.json is empty): run `make bench`, "
                "then rebuild the book.")))
            return out
        for name, _ in listing:
            path = Path(name)
            self.env.note_dependency(str(path))
            try:
                data = json.loads(path.read_text(encoding="utf8"))
            except (OSError, ValueError) as exc:
                out.append(self.state_machine.reporter.warning(
                    f"sdlib-benchmarks: cannot read {path.name}: {exc}", line=self.lineno))
                continue
            out.append(nodes.rubric("", "", nodes.literal(text=f"{self.arguments[0]}/{path.name}")))
            summary = data.get("summary") if isinstance(data, dict) else None
            if isinstance(summary, dict) and summary:
                rows: list[list[nodes.Node | str]] = []
                for key, val in summary.items():
                    if isinstance(val, dict):
                        ratio = val.get("ratio")
                        met = val.get("met")
                        rows.append([key, f"{ratio:.3g}" if isinstance(ratio, (int, float)) else str(ratio),
                                     str(val.get("goal", "")),
                                     "✓" if met is True else ("✗" if met is False else str(met))])
                    else:
                        rows.append([key, str(val), "", ""])
                out.append(_simple_table(["measure", "measured", "goal", "met"], rows, ["sdlib-benchmarks"]))
            meta = []
            for key in ("benchmark", "quick"):
                if isinstance(data, dict) and key in data:
                    meta.append(f"{key}: {data[key]}")
            prov = data.get("provenance") if isinstance(data, dict) else None
            if isinstance(prov, dict):
                for key in ("device", "started", "git_commit", "python"):
                    if prov.get(key) is not None:
                        meta.append(f"{key}: {prov[key]}")
            if meta:
                out.append(nodes.paragraph(text="; ".join(meta)))
            text = json.dumps(data, indent=2)
            box = nodes.container(classes=["toggle"])
            box += nodes.paragraph(text=f"The whole file {path.name}:")
            block = nodes.literal_block(text, text)
            block["language"] = "json"
            box += block
            out.append(box)
        return out


def _bench_outdated(env: BuildEnvironment) -> list[str]:
    files = getattr(env, _BENCH, None) or {}
    return [doc for doc, (folder, listing) in files.items() if _bench_listing(Path(folder)) != listing]


def _dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                    doctree: Any) -> None:
    """Drop repeated identical ``<script>`` entries (same file and attributes, or same inline body)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    unique = []
    for js in scripts:
        # the two copies differ only in their (empty) file name: None and ''
        name = str(getattr(js, "filename", js) or "")
        key = (name, tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        unique.append(js)
    scripts[:] = unique


_PAPER_TITLE = re.compile(r"^\s*\(?\s*(?P<kind>[A-Za-z]+)\s+(?P<num>\d+(?:\.\d+)*)(?P<rest>.*?)\)?\s*$", re.S)


def _numfig_off(app: Sphinx, config: Any) -> None:
    config.numfig = False


def _unnumber_proofs(app: Sphinx, doctree: nodes.document) -> None:
    """Turn sphinx-proof's numbered boxes into unnumbered ones titled with the paper's number."""
    try:
        from sphinx_proof.nodes import NODE_TYPES, unenumerable_node
    except ImportError:
        return
    kinds = tuple(set(NODE_TYPES.values()))
    proof_list = getattr(app.env, "proof_list", {})
    for node in list(doctree.findall(lambda n: isinstance(n, kinds) and not isinstance(n, unenumerable_node))):
        realtype = node.get("realtype", "")
        new = unenumerable_node()
        new.attributes.update(node.attributes)
        new.document = node.document
        new.source, new.line = node.source, node.line
        children = list(node.children)
        node.clear()
        new.extend(children)
        title = children[0] if children and isinstance(children[0], nodes.title) else None
        label = node.get("label", "")
        if title is not None:
            title["ids"] = list(node["ids"])
            m = _PAPER_TITLE.match(title.astext())
            if m and m["kind"].lower() == realtype.lower() and all(isinstance(c, nodes.Text) for c in title.children):
                text = f"{m['num']}{m['rest']}"
                title.clear()
                title += nodes.Text(text)
                if label in proof_list:
                    proof_list[label]["realtype"] = f"{realtype} {m['num']}"
        if label in proof_list:
            proof_list[label]["nonumber"] = True
        node.replace_self(new)


_TAG = re.compile(r"\\tag\*?\{[^{}]*\}")


def _tags_outside_split(app: Sphinx, doctree: nodes.document) -> None:
    """Move a single ``\\tag{N}`` out of the ``split`` environment Sphinx would wrap the display in."""
    for node in doctree.findall(nodes.math_block):
        if node.get("nowrap"):
            continue
        text = node.astext()
        tags = _TAG.findall(text)
        parts = [p for p in text.split("\n\n") if p.strip()]
        if len(tags) != 1 or len(parts) != 1 or "\\\\" not in text:
            continue
        body = _TAG.sub("", text).strip()
        new = f"\\[\\begin{{split}}{body}\\end{{split}}{tags[0]}\\]"
        node.children = []
        node += nodes.Text(new)
        node["nowrap"] = True


def setup(app: Sphinx) -> dict[str, Any]:
    # MathJax on every page: chapter titles with math appear in every page's navigation.
    app.set_html_assets_policy("always")
    app.add_node(claims_summary)
    app.add_directive("sdlib-claims-summary", ClaimsSummaryDirective)
    app.add_directive("sdlib-notebook-parameters", NotebookParametersDirective)
    app.add_directive("sdlib-benchmarks", BenchmarksDirective)
    app.add_post_transform(FillClaimsSummary)
    app.connect("doctree-read", _record_glue_refs)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-get-outdated", _outdated)
    app.connect("html-page-context", _dedupe_scripts, priority=100)
    app.connect("config-inited", _numfig_off, priority=900)
    app.connect("doctree-read", _unnumber_proofs)
    app.connect("doctree-read", _tags_outside_split)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
