"""The claims tables of the chapters and of the reproduction report, in full.

A chapter ends with ``claims.table()``, a pandas DataFrame whose HTML cuts every cell after 50
characters ("...") and shows its index (or pastes the glued Styler with ``{glue:any}``, whole but
without links). Here
the table is drawn again from the chapter's glued ledger (:mod:`sdlib.chapters.claims`), with every
statement and criterion whole and no index column:

* in a chapter's page, in place of the output of ``claims.table()`` or of the pasted Styler
  (recognised by its columns and rows);
* on a page, with ``{sdlib-claims-table}`` and a chapter's path as its argument;
* in the exported notebook (:func:`claims_html`).

Every ✗ of a *paper* claim links to the section of the errata (``sdlib_errata_doc``, default
``book/errata``) that pastes the claim's verdict: the sections with a label, e.g.
``(erratum-gamma)=``, and the ``{glue:text}`` of the claim's status key inside them are read from the
errata page, so no link is typed. A ✗ paper claim that no erratum discusses is a warning: the build
fails until the errata say why the paper's statement does not reproduce.
"""

from __future__ import annotations

import html
import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective

from ._shared import ERRATA, _glue_cache, _ledger, _note_deps, _simple_table, _store, logger

#: The columns of ``Claims.table()`` (sdlib.chapters.claims), as pandas writes them.
CLAIM_COLUMNS = ("claim", "kind", "where", "measured", "criterion", "verdict")
HEADERS = ["Claim", "Kind", "Where", "Measured", "Criterion", "Verdict"]
WIDTHS = [34, 10, 12, 12, 26, 6]
_TH = re.compile(r"<th(?:\s[^>]*)?>(.*?)</th>", re.S)
_ROW = re.compile(r"<tr(?:\s[^>]*)?>(.*?)</tr>", re.S)
_TD = re.compile(r"<td(?:\s[^>]*)?>(.*?)</td>", re.S)


class claims_table(nodes.General, nodes.Element):  # noqa: N801 - docutils node naming
    """Placeholder replaced by a chapter's claims table when the page is written."""


def _kind(r: dict[str, Any]) -> str:
    setting = r.get("setting") or ""
    return str(r.get("kind", "")) + (f" ({setting})" if r.get("kind") in ("standin", "external") and setting else "")


def _cells(r: dict[str, Any]) -> list[str]:
    return [str(r.get("statement", "")), _kind(r), str(r.get("where", "")), str(r.get("measured", "")),
            str(r.get("criterion", "")), str(r.get("status", ""))]


def looks_like_claims(text: str) -> bool:
    """Whether the HTML ``text`` may be pandas' table of claims (a DataFrame's or a Styler's)."""
    return "<table" in text and ">verdict</th>" in text and ">claim</th>" in text


def claims_output_prefix(text: str, glue: dict[str, Any]) -> str | None:
    """The prefix of the glued ledger that the pandas HTML ``text`` (a DataFrame's or a Styler's)
    shows, or None when ``text`` is not a claims table (its columns are :data:`CLAIM_COLUMNS`, its
    rows the ledger's, the statements cut or whole)."""
    from sdlib.chapters import claims as claims_api

    if not looks_like_claims(text):
        return None
    head = [html.unescape(h).strip() for h in _TH.findall(text.split("</thead>", 1)[0])]
    if tuple(h for h in head if h) != CLAIM_COLUMNS:
        return None
    body = text.split("</thead>", 1)[-1]
    shown = [html.unescape(cells[0]).strip() for cells in (_TD.findall(r) for r in _ROW.findall(body)) if cells]
    for prefix in claims_api.glue_prefixes(glue):
        statements = [str(r.get("statement", "")) for r in _ledger(glue, prefix)]
        if len(statements) == len(shown) and all(
                s == t or (t.endswith("...") and s.startswith(t[:-3])) for s, t in zip(statements, shown, strict=True)):
            return prefix
    return None


def claims_html(glue: dict[str, Any], prefix: str) -> str:
    """The ledger ``prefix`` of ``glue`` as an HTML table: every cell whole, no index column."""
    head = "".join(f"<th>{h}</th>" for h in HEADERS)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r)) + "</tr>\n"
                   for r in _ledger(glue, prefix))
    return (f'<table class="sdlib-claims">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}</tbody>\n'
            "</table>\n")


# ------------------------------------------------------------------------------------------------
# The errata sections that discuss a claim


def _record_errata(app: Sphinx, doctree: nodes.document) -> None:
    """On reading the errata page, note which labelled section pastes which claim's status."""
    from myst_nb.ext.glue.utils import PendingGlueReference

    if app.env.docname != app.config.sdlib_errata_doc:
        return
    labels = {labelid for doc, labelid, _ in app.env.get_domain("std").data.get("labels", {}).values()
              if doc == app.env.docname}
    found: dict[str, str] = {}
    for ref in doctree.findall(PendingGlueReference):
        section = ref.parent
        while section is not None and not (isinstance(section, nodes.section) and set(section["ids"]) & labels):
            section = section.parent
        if section is not None:
            anchor = next(i for i in section["ids"] if i in labels)
            found.setdefault(f"{ref.refdoc}::{ref.key}", anchor)
    _store(app.env, ERRATA)[app.env.docname] = found


def _erratum_uri(app: Sphinx, fromdoc: str, doc: str, status_key: str) -> str | None:
    errata_doc = app.config.sdlib_errata_doc
    anchor = (getattr(app.env, ERRATA, None) or {}).get(errata_doc, {}).get(f"{doc}::{status_key}")
    if anchor is None:
        return None
    if app.builder.name == "singlehtml":
        return f"#{anchor}"
    return app.builder.get_relative_uri(fromdoc, errata_doc) + f"#{anchor}"


def _verdict(app: Sphinx, fromdoc: str, doc: str, prefix: str, r: dict[str, Any]) -> nodes.Node:
    """The verdict cell: a ✗ of a paper claim links to its erratum (a warning where none is)."""
    from sdlib.chapters import claims as claims_api

    status = str(r.get("status", ""))
    if r.get("kind") != "paper" or r.get("verdict") != "fails":
        return nodes.paragraph(text=status)
    uri = _erratum_uri(app, fromdoc, doc, claims_api.status_key(prefix, r["key"]))
    if uri is None:
        logger.warning(f"claim {prefix}.{r['key']} of {doc!r} does not reproduce (✗, paper), and no "
                       f"section of {app.config.sdlib_errata_doc} pastes its verdict "
                       f"({claims_api.status_key(prefix, r['key'])}): add its erratum", location=fromdoc)
        return nodes.paragraph(text=status)
    ref = nodes.reference("", status, internal=True, refuri=uri, classes=["sdlib-erratum-link"],
                          reftitle="Why: the erratum")
    return nodes.paragraph("", "", ref)


def claims_doctree_table(app: Sphinx, fromdoc: str, doc: str, prefix: str, glue: dict[str, Any]) -> nodes.table:
    """The ledger ``prefix`` of the chapter ``doc`` as a table of the page ``fromdoc``."""
    rows: list[list[nodes.Node | str]] = [[*_cells(r)[:-1], _verdict(app, fromdoc, doc, prefix, r)]
                                          for r in _ledger(glue, prefix)]
    return _simple_table(HEADERS, rows, ["sdlib-claims"], widths=WIDTHS)


# ------------------------------------------------------------------------------------------------
# In the chapters and on the report


class ClaimsTableDirective(SphinxDirective):
    """``{sdlib-claims-table} notebooks/NAME.md``: the chapter's claims (every ledger it glued)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        rel = self.arguments[0].strip()
        _, filepath = self.env.relfn2path("/" + rel.lstrip("/"), self.env.docname)
        doc = self.env.path2doc(filepath)
        if doc is None:
            return [self.state_machine.reporter.warning(f"sdlib-claims-table: no document {rel!r}",
                                                        line=self.lineno)]
        _note_deps(self.env, self.env.docname, [doc, self.config.sdlib_errata_doc])
        node = claims_table(doc=doc)
        self.set_source_info(node)
        return [node]


def _note_claims_outputs(app: Sphinx, doctree: nodes.document) -> None:
    """A chapter that shows its claims table is re-read when the errata page is (its links)."""
    if any(looks_like_claims(n.astext()) for n in doctree.findall(nodes.raw)):
        _note_deps(app.env, app.env.docname, [app.config.sdlib_errata_doc])


class FillClaimsTables(SphinxPostTransform):
    """Draw the claims tables: the directive's placeholders and the chapters' pandas outputs."""

    default_priority = 6

    def apply(self, **kwargs: Any) -> None:
        from sdlib.chapters import claims as claims_api

        app, here = self.app, self.env.docname
        for node in list(self.document.findall(claims_table)):
            glue = _glue_cache(app, node["doc"])
            prefixes = claims_api.glue_prefixes(glue)
            if not prefixes:
                logger.warning(f"sdlib-claims-table: no glued claims ledger in {node['doc']!r}", location=node)
            node.replace_self([claims_doctree_table(app, here, node["doc"], p, glue) for p in prefixes] or
                              [nodes.paragraph()])
        for raw in [n for n in self.document.findall(nodes.raw) if looks_like_claims(n.astext())]:
            doc = _source_doc(raw, here)
            glue = _glue_cache(app, doc)
            prefix = claims_output_prefix(raw.astext(), glue)
            if prefix is not None:
                raw.replace_self(claims_doctree_table(app, here, doc, prefix, glue))


def _source_doc(node: nodes.Node, default: str) -> str:
    """The page ``node`` comes from: ``default``, or in a single-page build (the PDF) the page
    that Sphinx wrote on its sections (``inline_all_toctrees`` marks them with ``docname``)."""
    from sphinx import addnodes

    parent = node.parent
    while parent is not None:
        if isinstance(parent, addnodes.start_of_file) or (isinstance(parent, nodes.section) and "docname" in parent):
            return parent["docname"]
        parent = parent.parent
    return default
