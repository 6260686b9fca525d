r"""Sphinx helpers for the companion book (loaded through ``sphinx.local_extensions`` in _config.yml).

1. Cross-document glue dependencies. myst-nb's ``{glue:any}`` with ``:doc:`` and
   ``{glue:text}`path::key``` paste values from another notebook's glue cache when the page is
   written, but Sphinx does not know that the page depends on that notebook: after a notebook
   changes, the reproduction report and the errata would keep their old numbers under
   ``execute_notebooks: cache``. This extension records, for every page, the notebooks it pastes
   from, and marks the page outdated whenever one of them is re-read.
2. ``{sdlib-claims-summary}``: a directive whose content lists notebooks (one path a line, relative
   to the book's root); it becomes a table with, per chapter, the number of claims checked, how
   many of each kind (paper, external, stand-in, sensitivity, observation) have each verdict, read from the
   chapters' glued ledgers (the glue keys are defined in :mod:`sdlib.chapters.claims`). Nothing in it is
   typed by hand; only the ``paper`` columns can say that the paper does not reproduce.
3. ``{sdlib-notebook-parameters}``: for each notebook listed in its content, a table of the
   parameters of its ``parameters`` cell (name, type, default), read with :mod:`sdlib.chapters.runner` when
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
   table of its ``summary`` (measured ratio with its label, goal, met) and its full content in a
   collapsed block, flagged when made from a tree with uncommitted changes; the page is re-read
   when a file changes, appears or disappears.
9. The repository and the notebooks. While ``repository.url`` is the placeholder of _config.yml
   (or not a GitHub URL), no button points at it: the theme's repository, issues and edit buttons
   and Thebe are switched off (``BOOK_REPOSITORY_URL`` overrides the URL: the Pages workflow sets
   it). Every chapter's executed notebook (outputs from the execution cache: nothing runs twice) is
   written next to its page, ``notebooks/NAME.ipynb``, with a first cell that installs the
   companion when it runs in Google Colab and the glued numbers written into its prose; the page's
   download button offers it, and, once the repository is known, Binder and Colab buttons open it
   on the branch ``sdlib_notebooks_branch`` that the Pages workflow pushes the notebooks to.
10. ``{sdlib-reproduce}``: every result the book shows (each claim of each chapter's ledger, each
    figure caption, the other numbers each chapter glues, each committed run under ``results/``
    matched to its configuration under ``configs/``, each benchmark result) with the command that
    recomputes it, its parameters, its time when last run and its output path. Generated from the
    glue caches, the configuration and result files; re-read when any of them changes.
11. ``{sdlib-citation}``: the paper's BibTeX entry, verbatim from book/references.bib, and the
    companion's, generated from CITATION.cff.
12. ``{sdlib-json}`FILE#a.b.c:FORMAT``: a value of a committed JSON result pasted into the prose
    (as ``{glue:text}`` does for a notebook's values), and ``{sdlib-benchmark-figure} FILE``: the
    benchmark's scaling figure (time against n and against tau, log-log, fitted slopes) drawn from
    the file when the book is built.
13. No false green. Sphinx re-reads only changed sources, so after a build that failed (a chapter
    whose execution raised, a glued number missing, a build killed half-way) the next build would
    exit 0 with the broken pages still in place. A marker file in the doctree folder is written when
    a build starts and removed only when it ends without an exception or a warning; a build that
    finds it re-reads every page (executed notebooks still come from the cache, failed ones are
    executed again). A chapter whose execution failed is re-read by every build until it executes,
    and its page shows an error box in place of its partial outputs (no traceback, no empty number).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
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
    for attr in (_DEPS, _BENCH, _WATCH, _FIGURES):
        store = getattr(env, attr, None)
        if store:
            store.pop(docname, None)


def _merge(app: Sphinx, env: BuildEnvironment, docnames: set[str], other: BuildEnvironment) -> None:
    for doc, refs in (getattr(other, _DEPS, None) or {}).items():
        _note_deps(env, doc, list(refs))
    for attr in (_BENCH, _WATCH, _FIGURES):
        theirs = getattr(other, attr, None) or {}
        if theirs:
            mine = getattr(env, attr, None) or {}
            mine.update({doc: theirs[doc] for doc in docnames if doc in theirs})
            setattr(env, attr, mine)


#: Written when a build starts, removed when it ends clean (feature 13).
INCOMPLETE_MARKER = "sdlib-build-incomplete"


def _marker(app: Sphinx) -> Path:
    return Path(app.doctreedir) / INCOMPLETE_MARKER


def _start_build(app: Sphinx) -> None:
    marker = _marker(app)
    app.sdlib_previous_incomplete = marker.exists()  # type: ignore[attr-defined]
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("a build of this book started and has not finished without warnings\n", encoding="utf8")


def _finish_build(app: Sphinx, exc: Exception | None) -> None:
    if exc is None and app._warncount == 0 and app.statuscode == 0:
        _marker(app).unlink(missing_ok=True)


def execution_failed(env: BuildEnvironment, docname: str) -> bool:
    """Whether myst-nb's last execution of ``docname`` raised (False for pages that are no notebook)."""
    data = (getattr(env, "nb_metadata", None) or {}).get(docname, {}).get("exec_data")
    return bool(data) and not data.get("succeeded", True)


def _failed_chapter_page(app: Sphinx, doctree: nodes.document) -> None:
    """A chapter whose execution failed shows an error box instead of its partial outputs."""
    docname = app.env.docname
    if not execution_failed(app.env, docname):
        return
    data = app.env.nb_metadata[docname]["exec_data"]  # type: ignore[attr-defined]
    title = next(iter(doctree.findall(nodes.title)), None)
    box = nodes.error()
    text = (f"This chapter failed to execute ({data.get('error') or 'error'}), so its numbers, figures and "
            "claims are not shown. The build log and reports/ in the build folder hold the traceback; "
            "fix the cause and build again.")
    box += nodes.paragraph(text, text)
    section = nodes.section(ids=[nodes.make_id(docname)])
    if title is not None:
        section += title.deepcopy()
    section += box
    doctree.children = [section]
    section.parent = doctree
    logger.warning(f"chapter {docname!r} failed to execute: {data.get('error')}", location=docname)


def _outdated(app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str],
              removed: set[str]) -> list[str]:
    failed = {doc for doc in env.all_docs if execution_failed(env, doc)}
    if getattr(app, "sdlib_previous_incomplete", False):
        logger.info("sdlib: the last build did not finish cleanly: every page is read again")
        failed |= set(env.found_docs)
    touched = added | changed | removed | failed
    deps = getattr(env, _DEPS, None) or {}
    out = {doc for doc, refs in deps.items() if refs & touched}
    out.update(_bench_outdated(env))
    out.update(_watched_outdated(env))
    return sorted((out | failed) - (added | changed | removed))


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
        from sdlib.chapters import claims as claims_api

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
    ("External ✓", "external", ("holds",)),
    ("External ✗", "external", ("fails",)),
    ("Stand-in ✓", "standin", ("holds",)),
    ("Stand-in ✗", "standin", ("fails",)),
    ("Stand-in ≠", "standin", ("differs",)),
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
        from sdlib.chapters.runner import NotebookError, notebook_parameters

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
                        # the measured number: a ratio, or a time in seconds (then said so)
                        unit, ratio = next(((u, val[k]) for k, u in (("ratio", ""), ("value", ""), ("seconds", " s"))
                                            if isinstance(val.get(k), (int, float))), ("", None))
                        met = val.get("met")
                        rows.append([str(val.get("label") or key),
                                     f"{ratio:.3g}{unit}" if ratio is not None else "not recorded",
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
            if isinstance(data, dict) and (data.get("dirty") or _dirty(prov)):
                out.append(nodes.paragraph(text=(
                    f"⚠ {path.name} was made from a tree with uncommitted changes (its commit ends in "
                    "+dirty): rerun the benchmark from a clean tree before relying on it.")))
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


# ------------------------------------------------------------------------------------------------
# The repository, the launch buttons and every chapter as a notebook

#: A repository URL containing this (any case) is the placeholder of _config.yml, not a repository.
PLACEHOLDER_MARK = "your-"
#: Launch providers whose buttons this extension draws itself (pointing at the exported notebooks).
_OWN_LAUNCHERS = ("binderhub_url", "colab_url", "jupyterhub_url", "deepnote_url", "jupyterlite_url")
_REPO_BUTTONS = ("use_repository_button", "use_issues_button", "use_edit_page_button", "use_source_button")
#: Environment variable that overrides ``repository.url`` (the Pages workflow sets it to the
#: repository it runs in, so that a fork publishes working buttons without editing _config.yml).
REPOSITORY_ENV = "BOOK_REPOSITORY_URL"


def repository_is_placeholder(url: str | None) -> bool:
    """True for an empty URL or the placeholder of _config.yml (no launch button may point at it)."""
    return not url or PLACEHOLDER_MARK in url.lower()


def _github_parts(url: str) -> tuple[str, str] | None:
    m = re.match(r"^https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$", url)
    return (m[1], m[2]) if m else None


def _configure_repository(app: Sphinx, config: Any) -> None:
    """Settle the repository once: its URL, or nothing at all while the URL is the placeholder.

    The theme's own Binder/Colab buttons point at the Jupytext sources (or at the nbval reference
    notebooks), which cannot run in Colab; they are switched off and :func:`_notebook_buttons` draws
    buttons that open the exported notebooks instead. While ``repository.url`` is the placeholder,
    every button that would point at it (repository, issues, edit, Binder, Colab, Thebe's live code)
    is switched off.
    """
    opts = dict(config.html_theme_options or {})
    url = (os.environ.get(REPOSITORY_ENV, "").strip() or str(opts.get("repository_url") or "")).rstrip("/")
    launch = dict(opts.get("launch_buttons") or {})
    providers = {k: str(launch.pop(k, "") or "").rstrip("/") for k in _OWN_LAUNCHERS}
    if repository_is_placeholder(url) or _github_parts(url) is None:
        if url and not repository_is_placeholder(url):
            logger.warning(f"repository.url {url!r} is not https://github.com/OWNER/NAME: no launch buttons")
        url = ""
        opts.pop("repository_url", None)
        for key in _REPO_BUTTONS:
            opts[key] = False
        launch["thebe"] = False
    else:
        opts["repository_url"] = url
    opts["launch_buttons"] = launch
    config.html_theme_options = opts
    config.sdlib_launch = {"repository": url, "binderhub_url": providers["binderhub_url"],
                           "colab_url": providers["colab_url"]}


def colab_setup_cell(repository: str, branch: str) -> str:
    """Source of the first cell of every exported notebook: in Colab only, fetch and install.

    It clones ``branch`` of ``repository`` (the branch the Pages workflow publishes: the commit the
    book was built from, with the executed notebooks), installs the package ``sdlib`` from it with
    ``myst-nb`` (the chapters glue their numbers with it), and changes into its ``notebooks/``
    folder, where the book runs every chapter. Outside Colab (``google.colab`` not imported) it does
    nothing.
    """
    head = (
        "# Google Colab only (elsewhere this cell does nothing): fetch the companion, install its\n"
        "# package sdlib, and run in its notebooks/ folder as the book does.\n"
        "import sys\n\n"
        'if "google.colab" in sys.modules:\n'
    )
    if not repository:
        return head + (
            '    raise RuntimeError("this notebook was built without a repository URL (repository.url in "\n'
            '                       "_config.yml): clone the companion, pip install it, and run the "\n'
            '                       "notebook from its notebooks/ folder")\n'
        )
    return head + (
        "    import importlib\n"
        "    import os\n"
        "    import subprocess\n\n"
        '    subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", '
        f'{json.dumps(branch)},\n'
        f'                    {json.dumps(repository)}, "/content/companion"], check=True)\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "/content/companion", '
        '"myst-nb"],\n'
        "                   check=True)\n"
        "    importlib.invalidate_caches()\n"
        '    os.chdir("/content/companion/notebooks")\n'
    )


#: Tag of the injected first cell (tests and readers can find it).
COLAB_TAG = "colab-setup"


_GLUE_ROLE = re.compile(r"\{glue(?::text)?:?\}`([^`]+)`")


def paste_glue(markdown: str, glue: dict[str, Any]) -> str:
    """Replace the ``{glue:text}`` (and ``{glue}``) roles of a markdown cell by their values.

    The values are formatted as myst-nb formats them in the book; roles whose key is not in
    ``glue`` (or that paste from another notebook, ``path::key``) are left as they are.
    """
    from myst_nb.core.variables import format_plain_text

    def sub(m: re.Match[str]) -> str:
        key, _, fmt = m[1].partition(":") if "::" not in m[1] else (m[1], "", "")
        data = (glue.get(key) or {}).get("data") or {}
        if "text/plain" not in data:
            return m[0]
        try:
            return format_plain_text(data["text/plain"], fmt or "s")
        except (ValueError, TypeError):
            return m[0]

    return _GLUE_ROLE.sub(sub, markdown)


def merge_cached_outputs(nb: Any, cache: Path | None) -> Any:
    """``nb`` with the outputs of its record in the execution cache ``cache`` (jupyter-cache).

    With ``execute_notebooks: cache``, myst-nb writes the notebook of a page to its output folder
    (``_build/jupyter_execute``) *without* outputs: they live in the cache, matched by the code of
    the cells. Without a cache, or without a matching record, ``nb`` is returned unchanged.
    """
    if cache is None or not (cache / "global.db").is_file():
        return nb
    from jupyter_cache import get_cache

    try:
        _, merged = get_cache(str(cache)).merge_match_into_notebook(nb)
    except KeyError:
        return nb
    return merged


def export_notebook(executed: Path, target: Path, *, repository: str, branch: str, gpu: bool,
                    glue: dict[str, Any] | None = None, cache: Path | None = None) -> bool:
    """Write the executed notebook ``executed`` to ``target`` with the Colab cell first.

    The outputs are those of the build: in ``executed``, or in the execution cache ``cache``
    (:func:`merge_cached_outputs`); nothing is executed here. The numbers the prose pastes with
    ``{glue:text}`` are written in (Jupyter and Colab do not know the role). ``gpu`` asks Colab for
    a GPU runtime. Returns False (and writes nothing) when the notebook is unchanged.
    """
    import nbformat

    nb = merge_cached_outputs(nbformat.read(executed, as_version=4), cache)
    nb.metadata.pop("jupytext", None)
    for c in nb.cells:
        if c.cell_type == "markdown" and glue:
            c.source = paste_glue(c.source, glue)
    cell = nbformat.v4.new_code_cell(colab_setup_cell(repository, branch))
    cell.id = COLAB_TAG  # a fixed id: the same build writes the same file
    cell.metadata["tags"] = [COLAB_TAG]
    nb.cells.insert(0, cell)
    if gpu:
        nb.metadata["accelerator"] = "GPU"
        nb.metadata.setdefault("colab", {})["gpuType"] = "T4"
    data = (nbformat.writes(nb) + "\n").encode("utf8")
    if target.exists() and target.read_bytes() == data:
        return False
    from sdlib.provenance import write_bytes_atomic

    write_bytes_atomic(target, data)
    return True


def _execution_cache(app: Sphinx) -> Path | None:
    """myst-nb's execution cache, when the notebooks are executed in ``cache`` mode."""
    config = app.env.mystnb_config  # type: ignore[attr-defined]
    if getattr(config, "execution_mode", None) != "cache" or not getattr(config, "execution_cache_path", None):
        return None
    return Path(app.srcdir, config.execution_cache_path)


def _executed_notebook(app: Sphinx, docname: str) -> Path | None:
    folder = Path(app.env.mystnb_config.output_folder)  # type: ignore[attr-defined]
    path = folder.joinpath(*docname.split("/")[:-1], docname.split("/")[-1] + ".ipynb")
    return path if path.is_file() and "kernelspec" in app.env.metadata.get(docname, {}) else None


def _parameter_names(path: str | Path) -> set[str]:
    from sdlib.chapters.runner import NotebookError, notebook_parameters

    try:
        return set(notebook_parameters(path))
    except (NotebookError, ValueError, SyntaxError):
        return set()


def _wants_gpu(app: Sphinx, docname: str) -> bool:
    """A chapter whose parameters cell has a ``device`` defaulting to CUDA (Section 5)."""
    from sdlib.chapters.runner import NotebookError, notebook_parameters

    try:
        params = notebook_parameters(app.env.doc2path(docname))
    except (NotebookError, ValueError, SyntaxError):
        return False
    dev = params.get("device")
    return dev is not None and str(dev.default).startswith("cuda")


def _notebook_buttons(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                      doctree: Any) -> None:
    """Export a chapter's executed notebook next to its page; download, Binder and Colab buttons."""
    executed = _executed_notebook(app, pagename)
    buttons = context.get("header_buttons")
    if executed is None or buttons is None or app.builder.format != "html" or app.builder.name != "html":
        return
    launch = app.config.sdlib_launch
    branch = app.config.sdlib_notebooks_branch
    rel = pagename + ".ipynb"
    export_notebook(executed, Path(app.outdir, *rel.split("/")), repository=launch["repository"],
                    branch=branch, gpu=_wants_gpu(app, pagename), glue=_glue_cache(app, pagename),
                    cache=_execution_cache(app))
    url = context["pathto"](rel, 1)
    download = next((b for b in buttons if b.get("label") == "download-buttons"), None)
    if download is not None:
        download["buttons"] = [b for b in download["buttons"] if b.get("label") != "download-notebook-button"]
        download["buttons"].insert(0, {
            "type": "link", "url": url, "text": ".ipynb", "icon": "fas fa-code",
            "tooltip": "Download this chapter as an executed notebook (it runs in Jupyter and in Colab)",
            "label": "download-notebook-button",
        })
    parts = _github_parts(launch["repository"]) if launch["repository"] else None
    if parts is None:
        return
    org, repo = parts
    links = []
    if launch["binderhub_url"]:
        links.append({"type": "link", "text": "Binder", "tooltip": "Launch this notebook on Binder",
                      "icon": "_static/images/logo_binder.svg", "label": "launch-binder-button",
                      "url": f"{launch['binderhub_url']}/v2/gh/{org}/{repo}/{branch}?urlpath=lab/tree/{rel}"})
    if launch["colab_url"]:
        links.append({"type": "link", "text": "Colab", "tooltip": "Open this notebook in Google Colab",
                      "icon": "_static/images/logo_colab.png", "label": "launch-colab-button",
                      "url": f"{launch['colab_url']}/github/{org}/{repo}/blob/{branch}/{rel}"})
    group = next((b for b in buttons if b.get("label") == "launch-buttons"), None)
    if group is None:
        group = {"type": "group", "tooltip": "Launch interactive content", "icon": "fas fa-rocket",
                 "buttons": [], "label": "launch-buttons"}
        buttons.append(group)
    group["buttons"][:0] = links


# ------------------------------------------------------------------------------------------------
# Files a page is generated from: re-read the page when one changes, appears or disappears

_WATCH = "sdlib_watched_files"


def _listing(folder: Path, pattern: str) -> list[tuple[str, float]]:
    return [(str(p), p.stat().st_mtime) for p in sorted(folder.glob(pattern)) if p.is_file()]


def _watch(env: BuildEnvironment, docname: str, folder: Path, pattern: str) -> list[Path]:
    """Note that ``docname`` is generated from ``folder/pattern``; return the files found."""
    listing = _listing(folder, pattern)
    store: dict[str, Any] = getattr(env, _WATCH, None) or {}
    store.setdefault(docname, []).append((str(folder), pattern, listing))
    setattr(env, _WATCH, store)
    for name, _ in listing:
        env.note_dependency(name)
    return [Path(name) for name, _ in listing]


def _watched_outdated(env: BuildEnvironment) -> list[str]:
    store = getattr(env, _WATCH, None) or {}
    return [doc for doc, entries in store.items()
            if any(_listing(Path(folder), pattern) != listing for folder, pattern, listing in entries)]


# ------------------------------------------------------------------------------------------------
# Figure captions of every page (for the reproduction page)

_FIGURES = "sdlib_figure_captions"


def _record_figures(app: Sphinx, doctree: nodes.document) -> None:
    captions = [" ".join(c.astext().split()) for f in doctree.findall(nodes.figure)
                for c in f.findall(nodes.caption)]
    store: dict[str, list[str]] = getattr(app.env, _FIGURES, None) or {}
    store[app.env.docname] = captions
    setattr(app.env, _FIGURES, store)


# ------------------------------------------------------------------------------------------------
# {sdlib-reproduce}: every result the book shows, with the command that recomputes it


class reproduce_table(nodes.General, nodes.Element):  # noqa: N801 - docutils node naming
    """Placeholder replaced by the reproduction tables when the page is written."""


class ReproduceDirective(SphinxDirective):
    """``{sdlib-reproduce}`` with options ``:results:``, ``:configs:``, ``:benchmarks:`` (folders)."""

    option_spec = {"results": directives.unchanged, "configs": directives.unchanged,
                   "benchmarks": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        src = Path(self.env.srcdir)
        folders = {k: self.options.get(k, d) for k, d in
                   (("results", "results"), ("configs", "configs"), ("benchmarks", "benchmarks/results"))}
        files = {
            "results": _watch(self.env, self.env.docname, src / folders["results"], "**/results.json"),
            "configs": _watch(self.env, self.env.docname, src / folders["configs"], "*.yaml"),
            "benchmarks": _watch(self.env, self.env.docname, src / folders["benchmarks"], "*.json"),
        }
        # Every other page may hold results: re-read this one whenever any is re-read.
        _note_deps(self.env, self.env.docname, sorted(set(self.env.found_docs) - {self.env.docname}))
        node = reproduce_table(files={k: [str(p) for p in v] for k, v in files.items()})
        self.set_source_info(node)
        return [node]


def _toc_order(env: BuildEnvironment, root: str) -> list[str]:
    out: list[str] = []

    def visit(doc: str) -> None:
        if doc in out:
            return
        out.append(doc)
        for child in env.toctree_includes.get(doc, []):
            visit(child)

    visit(root)
    return out


def _count_of(k: int, what: str) -> str:
    return f"{k} {what}" + ("" if k == 1 else "s")


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


def _first_sentence(comment: str, limit: int = 160) -> str:
    """The first clause of a comment: up to the first '. ' or ': ' outside parentheses."""
    text = " ".join(comment.split())
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and ch in ".:" and (i + 1 == len(text) or text[i + 1] == " "):
            text = text[: i + (ch == ".")]
            break
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + " …"


def _config_matches(cfg: dict[str, Any], params: dict[str, Any]) -> bool:
    """A run's parameters agree with every key of ``cfg`` they have (the chapter's own keys, such
    as ``train``, are not the run's), and they have most of them."""
    shared = [k for k in cfg if k in params]
    return len(shared) * 2 > len(cfg) and all(params[k] == cfg[k] for k in shared)


def _config_output(cfg: dict[str, Any], stem: str) -> str:
    """Where a configuration's run goes: its ``results_dir`` (relative to notebooks/), else runs/."""
    target = cfg.get("results_dir")
    if isinstance(target, str) and target:
        return Path(os.path.normpath(Path("notebooks", target))).as_posix()
    return f"runs/{stem}"


_COMMAND = re.compile(r"python3? -m sdlib[\w.]*(?: +[\w./=:-]+)+")


def _subcommands() -> set[str]:
    """The subcommands of ``python -m sdlib`` (read from the package, not typed here)."""
    try:
        from sdlib import __main__ as cli
    except ImportError:
        return set()
    return set(getattr(cli, "COMMANDS", {}) or {})


def config_command(rel: str, cfg: dict[str, Any], comment: str, out: str,
                   notebooks: dict[str, set[str]], subcommands: set[str], *, force_out: bool = False) -> str:
    """The command that runs the configuration ``rel`` (a path such as configs/NAME.yaml).

    1. The command the file's own comment gives for it (``python -m sdlib ... configs/NAME.yaml ...``),
       its output folder replaced by ``out`` when ``force_out`` (a committed run's folder).
    2. A grid (``grid:`` or ``points:``) of the chapter whose parameters it sweeps: ``sdlib sweep``.
    3. A Section 5 experiment (``dataset`` and ``arch``): ``sdlib train``, where the package has it.
    4. Parameters of the chapter whose parameters cell has every key: ``sdlib run``.
    """
    # one logical line at a time (a command may continue over lines ending in a backslash)
    logical = re.sub(r"\\\n\s*", " ", comment).splitlines()
    for m in (m for line in logical for m in _COMMAND.finditer(line)):
        if rel in m[0].split():
            tokens = m[0].split()
            if force_out and "-o" in tokens and tokens.index("-o") + 1 < len(tokens):
                tokens[tokens.index("-o") + 1] = out
            return " ".join(tokens)
    keys = set(cfg)
    if keys & {"grid", "points"}:
        swept = set(cfg.get("grid") or {}) | {k for p in (cfg.get("points") or []) if isinstance(p, dict) for k in p}
        nb = next((n for n, names in notebooks.items() if swept and swept <= names), None)
        if nb and "sweep" in subcommands:
            return f"python -m sdlib sweep {nb} -g {rel} -o {out}"
    elif {"dataset", "arch"} <= keys and "train" in subcommands:
        return f"python -m sdlib train -f {rel} -o {out}"
    nb = next((n for n, names in notebooks.items() if keys and keys <= names), None)
    if nb:
        return f"python -m sdlib run {nb} -f {rel} -o {out}"
    return "not known: see the file's comment"


def _config_comment(path: Path) -> str:
    """The comment heading a configuration file, one line per comment line."""
    lines = []
    for line in path.read_text(encoding="utf8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return "\n".join(lines)


def _dirty(prov: Any) -> bool:
    return isinstance(prov, dict) and str(prov.get("git_commit") or "").endswith("+dirty")


def _commit(prov: Any) -> str:
    if not isinstance(prov, dict) or not prov.get("git_commit"):
        return "not recorded"
    c = str(prov["git_commit"])
    return c[:10] + (" ⚠ +dirty: made from a modified tree" if c.endswith("+dirty") else "")


def bench_command(command: str) -> str:
    """The command that recomputes a committed benchmark file: its recorded command without the
    options that only say where to write (``--out``) or that the tree may be dirty."""
    tokens, out, skip = command.split(), [], False
    for t in tokens:
        if skip:
            skip = False
        elif t == "--out":
            skip = True
        elif not t.startswith(("--out=", "--allow-dirty")):
            out.append(t)
    return " ".join(out)


class FillReproduce(SphinxPostTransform):
    """Replace each ``reproduce_table`` node by the tables (after every notebook was executed)."""

    default_priority = 6

    def apply(self, **kwargs: Any) -> None:
        for node in list(self.document.findall(reproduce_table)):
            node.replace_self(self._build(node["files"]))

    def _build(self, files: dict[str, list[str]]) -> list[nodes.Node]:
        import yaml
        from myst_nb.sphinx_ import NbMetadataCollector

        from sdlib.chapters import claims as claims_api

        app, env = self.app, self.env
        src = Path(env.srcdir)
        cores = os.cpu_count()
        out: list[nodes.Node] = []
        captions = getattr(env, _FIGURES, None) or {}
        summary: list[list[nodes.Node | str]] = []
        sections: list[nodes.Node] = []
        for doc in _toc_order(env, app.config.root_doc):
            if doc == env.docname or _executed_notebook(app, doc) is None:
                continue
            glue = _glue_cache(app, doc)
            path = _rel(env.doc2path(doc), src)
            name = Path(path).stem
            outdir = f"runs/{name}"
            records = []
            for prefix in claims_api.glue_prefixes(glue):
                entry = glue[claims_api.ledger_key(prefix)]
                records.extend((prefix, r) for r in
                               claims_api.read_ledger(entry.get("data", {}).get("text/plain", "")))
            claim_keys = set()
            for prefix, r in records:
                claim_keys.update({claims_api.value_key(prefix, r["key"]), claims_api.status_key(prefix, r["key"])})
            other = sorted(k for k in glue if k not in claim_keys and not k.endswith(claims_api.ledger_key(""))
                           and not any(k == claims_api.table_key(p) for p in claims_api.glue_prefixes(glue))
                           and "image/png" not in (glue[k].get("data") or {})
                           and "image/svg+xml" not in (glue[k].get("data") or {}))
            exec_data = NbMetadataCollector.get_exec_data(env, doc) or {}
            runtime = _seconds(exec_data.get("runtime")) if exec_data else "not executed in this build"
            gpu = _wants_gpu(app, doc)
            command = f"python -m sdlib run {path} -o {outdir}"
            title = env.titles.get(doc)
            ref = nodes.reference("", "", *([c.deepcopy() for c in title.children] if title else [nodes.Text(doc)]),
                                  internal=True, refuri=app.builder.get_relative_uri(env.docname, doc))
            n_fig = len(captions.get(doc, []))
            summary.append([nodes.paragraph("", "", ref),
                            ", ".join(_count_of(k, w) for k, w in ((len(records), "claim"), (n_fig, "figure"),
                                                                     (len(other), "other number"))),
                            _code(command), "the defaults of its parameters cell",
                            runtime, "optional (parameter device; see the runs below)" if gpu else "not needed",
                            _code(f"{outdir}/results.json")])
            rows: list[list[nodes.Node | str]] = []
            for prefix, r in records:
                rows.append([r.get("statement", ""), r.get("kind", ""), r.get("where", ""),
                             _code(f"claims: {claims_api.value_key(prefix, r['key'])}")])
            for cap in captions.get(doc, []):
                rows.append([cap, "figure", "", _code(f"{outdir}/figures/")])
            if other:
                rows.append([f"{len(other)} further numbers quoted in the prose", "numbers", "",
                             _code("results: " + ", ".join(other))])
            sec = nodes.section(ids=[f"reproduce-{name}"])
            sec += nodes.title("", "", *([c.deepcopy() for c in title.children] if title else [nodes.Text(doc)]))
            sec += nodes.paragraph("", "", nodes.Text("Recomputed by "), nodes.literal(text=command),
                                   nodes.Text(f" (about {runtime} when last executed for this book; this "
                                              f"build ran on {cores} logical CPU cores); each row is an entry of "),
                                   nodes.literal(text=f"{outdir}/results.json"), nodes.Text("."))
            if rows:
                sec += _simple_table(["Result", "Kind", "In the paper", "Output"], rows, ["sdlib-reproduce"])
            sections.append(sec)
        out.append(_simple_table(
            ["Chapter", "Results", "Command", "Parameters", f"Time (last execution; {cores} CPU cores)", "GPU",
             "Output"], summary, ["sdlib-reproduce", "sdlib-reproduce-summary"]))

        # Committed runs and the configurations that make them.
        configs = {}
        for c in files["configs"]:
            try:
                configs[Path(c)] = yaml.safe_load(Path(c).read_text(encoding="utf8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                logger.warning(f"sdlib-reproduce: cannot read {c}: {exc}", location=self.document)
        matched: set[Path] = set()
        run_rows: list[list[nodes.Node | str]] = []
        subcommands = _subcommands()
        notebooks: dict[str, set[str]] = {}
        for doc in _toc_order(env, app.config.root_doc):
            if doc != env.docname and _executed_notebook(app, doc) is not None:
                notebooks[_rel(env.doc2path(doc), src)] = _parameter_names(env.doc2path(doc))

        def command_for(cfg: Path | None, out_dir: str, committed: bool) -> str:
            if cfg is None:
                return "not known: no configuration file matches its parameters"
            return config_command(_rel(cfg, src), configs[cfg], _config_comment(cfg), out_dir, notebooks,
                                  subcommands, force_out=committed)

        for f in files["results"]:
            try:
                doc = json.loads(Path(f).read_text(encoding="utf8"))
            except (OSError, ValueError) as exc:
                logger.warning(f"sdlib-reproduce: cannot read {f}: {exc}", location=self.document)
                continue
            params = doc.get("parameters") or {}
            prov = doc.get("provenance") or {}
            cfg = next((p for p, c in configs.items() if isinstance(c, dict) and _config_matches(c, params)), None)
            folder = _rel(Path(f).parent, src)
            cfg_text = _rel(cfg, src) if cfg else "none matches; its parameters are in results.json"
            if cfg is not None:
                matched.add(cfg)
            command = command_for(cfg, folder, True)
            device = str(prov.get("device", ""))
            when = f"{_seconds(prov.get('seconds'))} ({device})"
            what = _first_sentence(_config_comment(cfg)) if cfg else str(doc.get("kind", ""))
            run_rows.append([_code(f"{folder}/results.json"), what, _code(command), cfg_text,
                             "" if device.startswith("cuda") else when, when if device.startswith("cuda") else "",
                             _commit(prov)])
        for cfg in sorted(set(configs) - matched):
            rel = _rel(cfg, src)
            run_rows.append([f"not run (no committed result for {rel})",
                             _first_sentence(_config_comment(cfg)),
                             _code(command_for(cfg, _config_output(configs[cfg], cfg.stem), False)),
                             rel,
                             "", "", ""])
        if run_rows:
            out.append(nodes.rubric(text="Committed runs and their configurations"))
            out.append(_simple_table(["Output", "What it is", "Command", "Parameters file", "Time on a CPU",
                                      "Time on a GPU", "Made from commit"], run_rows, ["sdlib-reproduce"]))

        bench_rows: list[list[nodes.Node | str]] = []
        for f in files["benchmarks"]:
            try:
                data = json.loads(Path(f).read_text(encoding="utf8"))
            except (OSError, ValueError) as exc:
                logger.warning(f"sdlib-reproduce: cannot read {f}: {exc}", location=self.document)
                continue
            prov = data.get("provenance") or {}
            name = data.get("benchmark") or str(data.get("kind", "")).rsplit("/", 1)[-1]
            command = (bench_command(data["command"]) if data.get("command") else
                       f"python benchmarks/bench_{name}.py" if (src / f"benchmarks/bench_{name}.py").exists()
                       else "not recorded")
            params = prov.get("parameters") or {}
            bench_rows.append([_code(_rel(f, src)), data.get("title") or f"speed benchmark {name!r}",
                               _code(command), ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults",
                               f"{_seconds(prov.get('seconds'))} ({prov.get('device', '')})", _commit(prov)])
        if bench_rows:
            out.append(nodes.rubric(text="Benchmarks"))
            out.append(_simple_table(["Output", "What it is", "Command", "Parameters", "Time", "Made from commit"],
                                     bench_rows, ["sdlib-reproduce"]))
        out.extend(sections)
        return out


# ------------------------------------------------------------------------------------------------
# {sdlib-citation}: the paper's BibTeX entry and the companion's, from their files


def bib_entry(text: str, key: str) -> str:
    """The raw text of the BibTeX entry ``key`` (balanced braces), as written in the .bib file."""
    m = re.search(r"@\w+\s*\{\s*" + re.escape(key) + r"\s*,", text)
    if m is None:
        raise KeyError(key)
    depth = 0
    for i in range(m.start(), len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[m.start(): i + 1]
    raise ValueError(f"unbalanced braces in the BibTeX entry {key!r}")


def cff_to_bibtex(cff: dict[str, Any], key: str = "companion") -> str:
    """A ``@software`` BibTeX entry for the software described by a CITATION.cff mapping."""
    def person(a: dict[str, Any]) -> str:
        if "family-names" in a:
            return f"{a['family-names']}, {a.get('given-names', '')}".strip(", ")
        return "{" + str(a.get("name", "")) + "}"

    fields = {
        "author": " and ".join(person(a) for a in cff.get("authors", [])),
        "title": str(cff.get("title", "")),
        "version": cff.get("version"),
        "year": str(cff.get("date-released", ""))[:4] or None,
        "url": cff.get("repository-code") or cff.get("url"),
        "license": cff.get("license"),
    }
    body = ",\n".join(f"  {k:<8}= {{{v}}}" for k, v in fields.items() if v)
    return f"@software{{{key},\n{body}\n}}"


class CitationDirective(SphinxDirective):
    """``{sdlib-citation}``: options ``:cff:`` (CITATION.cff), ``:bib:`` and ``:key:`` (the paper)."""

    option_spec = {"cff": directives.unchanged, "bib": directives.unchanged, "key": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        import yaml

        src = Path(self.env.srcdir)
        cff_path = src / self.options.get("cff", "CITATION.cff")
        bib_path = src / self.options.get("bib", "book/references.bib")
        key = self.options.get("key", "borup2021teacher")
        out: list[nodes.Node] = []
        try:
            self.env.note_dependency(str(cff_path))
            self.env.note_dependency(str(bib_path))
            cff = yaml.safe_load(cff_path.read_text(encoding="utf8"))
            paper = bib_entry(bib_path.read_text(encoding="utf8"), key)
        except (OSError, KeyError, ValueError, yaml.YAMLError) as exc:
            return [self.state_machine.reporter.warning(f"sdlib-citation: {exc!r}", line=self.lineno)]
        for title, text in (("The paper", paper), ("This companion (from CITATION.cff)", cff_to_bibtex(cff))):
            out.append(nodes.rubric(text=title))
            block = nodes.literal_block(text, text)
            block["language"] = "bibtex"
            out.append(block)
        return out


# ------------------------------------------------------------------------------------------------
# {sdlib-json}`FILE#a.b.c:FORMAT`: a number of a committed result file, in the prose


def json_value(data: Any, path: str) -> Any:
    """``data`` followed along ``a.b.-1.c`` (keys, and list indices such as ``-1``)."""
    for part in [p for p in path.split(".") if p]:
        if isinstance(data, list):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise KeyError(f"no {part!r} in {path!r}")
    return data


def _json_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any, options: Any = None,
               content: Any = None) -> tuple[list[nodes.Node], list[nodes.system_message]]:
    """``{sdlib-json}`benchmarks/results/krr.json#summary.authors_vs_path.ratio:.0f``` (format optional)."""
    env = inliner.document.settings.env
    target, _, rest = text.partition("#")
    path, _, fmt = rest.partition(":")
    file = Path(env.srcdir) / target.strip().lstrip("/")
    env.note_dependency(str(file))
    try:
        value = json_value(json.loads(file.read_text(encoding="utf8")), path.strip())
        out = format(value, fmt) if fmt else str(value)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        msg = inliner.reporter.warning(f"sdlib-json: cannot paste {text!r}: {exc}", line=lineno)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    return [nodes.inline(out, out, classes=["pasted-text", "sdlib-json"])], []


# ------------------------------------------------------------------------------------------------
# {sdlib-benchmark-figure} FILE: how the cost grows, drawn from the benchmark's result file


def benchmark_figure_svg(data: dict[str, Any]) -> str:
    """Two log-log panels (time against n, time against steps) with the fitted slopes, as SVG.

    The panels are stacked (they stay legible in a narrow column), each legend under its panel
    (it hides no point), and the ticks are the measured sizes.
    """
    import io

    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    sizes, steps = data["sizes"], data["steps"]
    k = sizes.get("authors_timed_steps")
    scaled = f"authors' per-step inverse (timed for {k} steps, scaled)"
    with matplotlib.rc_context({"svg.hashsalt": "sdlib-bench", "svg.fonttype": "path", "font.size": 9}):
        fig = Figure(figsize=(6.4, 8.6), facecolor="white", layout="constrained")
        ax1, ax2 = fig.subplots(2, 1)
        ns = [r["n"] for r in sizes["rows"]]
        colour = {"ours": "C0", "kernelridge": "C1", "authors": "C2"}  # the same series, the same colour
        for key, label, style in (("ours", f"α* path over {sizes['steps']:,} steps (sdlib)", "o-"),
                                  ("kernelridge", "one KernelRidge fit", "s-"), ("authors", scaled, "^--")):
            ax1.loglog(ns, [r[key] for r in sizes["rows"]], style, color=colour[key],
                       label=f"{label}: slope {sizes['slopes'][key]:.2f}")
        ax1.set(xlabel="training points n", ylabel="seconds",
                title=f"Time against n ({sizes['m']:,} query points)")
        taus = [r["steps"] for r in steps["rows"]]
        for key, label, style in (("ours", "α* path (sdlib)", "o-"), ("authors", scaled, "^--")):
            ax2.loglog(taus, [r[key] for r in steps["rows"]], style, color=colour[key],
                       label=f"{label}: slope {steps['slopes'][key]:.2f}")
        ax2.axhline(steps["kernelridge"], color=colour["kernelridge"], lw=1, ls=":",
                    label="one KernelRidge fit (for scale)")
        ax2.set(xlabel="distillation steps τ", ylabel="seconds", title=f"Time against τ (n = {steps['n']:,})")
        for ax, ticks in ((ax1, ns), (ax2, taus)):
            ax.set_xticks(ticks, labels=[f"{t:,}" for t in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


class BenchmarkFigureDirective(SphinxDirective):
    """``{sdlib-benchmark-figure} benchmarks/results/krr.json``: the scaling figure, inline SVG."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        rel = self.arguments[0].strip("/")
        path = Path(self.env.srcdir) / rel
        self.env.note_dependency(str(path))
        try:
            data = json.loads(path.read_text(encoding="utf8"))
            svg = benchmark_figure_svg(data)
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            return [self.state_machine.reporter.warning(
                f"sdlib-benchmark-figure: {rel} has no scaling sweep ({exc!r}): run make bench", line=self.lineno)]
        fig = nodes.figure(classes=["sdlib-bench-figure"])
        fig += nodes.raw("", svg, format="html")
        prov = data.get("provenance") or {}
        flags = []
        if data.get("quick"):
            flags.append("a --quick run at small sizes")
        if data.get("dirty") or _dirty(prov):
            flags.append("made from a tree with uncommitted changes")
        text = ("Not a figure of the paper. Seconds against the number of training points n (top) and "
                "against the number of distillation steps τ (bottom), on log–log axes, with the slope of "
                "a least-squares line through each series"
                + (f" (top: over n ≥ {data['sizes']['slope_min_n']:,})" if data["sizes"].get("slope_min_n") else "")
                + f". The authors' way was timed for "
                f"{data['sizes'].get('authors_timed_steps')} steps after its set-up and scaled to the "
                f"number of steps. {rel}, {prov.get('device', 'device not recorded')}, "
                f"{data.get('blas_threads') or 'unrecorded'} BLAS thread(s)"
                + (f"; ⚠ {', '.join(flags)}." if flags else "."))
        fig += nodes.caption(text, text)
        return [fig]


class BenchmarkComparisonDirective(SphinxDirective):
    """``{sdlib-benchmark-comparison} benchmarks/results/krr.json``: the path / KernelRidge ratios,
    idle and loaded, with the load average beside each, one row a size (the file's ``comparison``)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        rel = self.arguments[0].strip("/")
        path = Path(self.env.srcdir) / rel
        self.env.note_dependency(str(path))
        try:
            rows = json.loads(path.read_text(encoding="utf8"))["comparison"]["rows"]
            cells: list[list[nodes.Node | str]] = [
                [f"{r['n']:,}", f"{r['idle']['ratio']:.2f}", f"{r['idle']['load']:.1f}",
                 f"{r['loaded']['ratio']:.2f}", f"{r['loaded']['load']:.1f}", f"{r['idle']['vs_limit']:.2f}"]
                for r in rows]
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            return [self.state_machine.reporter.warning(
                f"sdlib-benchmark-comparison: {rel} has no idle/loaded comparison ({exc!r}): run make bench",
                line=self.lineno)]
        return [_simple_table(["n", "path / KernelRidge, idle", "load average", "path / KernelRidge, loaded",
                               "load average", "path / limit, idle"], cells, ["sdlib-bench-comparison"])]


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
    app.connect("builder-inited", _start_build)
    app.connect("build-finished", _finish_build)
    app.connect("doctree-read", _failed_chapter_page, priority=100)
    app.connect("html-page-context", _dedupe_scripts, priority=100)
    app.connect("config-inited", _numfig_off, priority=900)
    app.connect("doctree-read", _unnumber_proofs)
    app.connect("doctree-read", _tags_outside_split)
    # The repository (or none while it is the placeholder), before the theme reads its options.
    app.add_config_value("sdlib_notebooks_branch", "notebooks", "html", types=[str])
    app.add_config_value("sdlib_launch", {}, "html")
    app.connect("config-inited", _configure_repository, priority=400)
    app.connect("html-page-context", _notebook_buttons, priority=900)
    app.connect("doctree-read", _record_figures)
    app.add_node(reproduce_table)
    app.add_directive("sdlib-reproduce", ReproduceDirective)
    app.add_post_transform(FillReproduce)
    app.add_directive("sdlib-citation", CitationDirective)
    app.add_role("sdlib-json", _json_role)
    app.add_directive("sdlib-benchmark-figure", BenchmarkFigureDirective)
    app.add_directive("sdlib-benchmark-comparison", BenchmarkComparisonDirective)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 2}
