"""Feature 2: ``{sdlib-claims-summary}``.

A directive whose content lists notebooks (one path a line, relative to the book's root); it
becomes a table with, per chapter, the number of claims checked, how many of each kind (paper,
external, stand-in, sensitivity, observation) have each verdict, read from the chapters' glued
ledgers (the glue keys are defined in :mod:`sdlib.chapters.claims`). Nothing in it is typed by hand;
only the ``paper`` columns can say that the paper does not reproduce. The chapter column is the
wide one (its title, a link, reads on one or two lines).
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective

from ._shared import _glue_cache, _ledger, _note_deps, _page_link, _simple_table, logger

#: Columns of the summary: (header, kind, verdicts counted).
SUMMARY_COLUMNS = (
    ("Paper ✓", "paper", ("holds",)),
    ("Paper ✗", "paper", ("fails",)),
    ("Paper ⟳", "paper", ("unconverged",)),
    ("External ✓", "external", ("holds",)),
    ("External ✗", "external", ("fails",)),
    ("Stand-in ✓", "standin", ("holds",)),
    ("Stand-in ✗", "standin", ("fails",)),
    ("Stand-in ≠", "standin", ("differs",)),
    ("Stand-in ?", "standin", ("inconclusive",)),
    ("Sensitivity", "sensitivity", ("holds", "fails", "depends")),
    ("Observations", "observation", ("none",)),
)
#: Relative widths: the chapter's title gets as much room as six count columns.
CHAPTER_WIDTH = 6


class claims_summary(nodes.General, nodes.Element):  # noqa: N801 - docutils node naming
    """Placeholder replaced by the summary table when the page is written."""


class ClaimsSummaryDirective(SphinxDirective):
    """``{sdlib-claims-summary}``: one notebook path (from the book root) per content line."""

    has_content = True
    #: ``:headline:``: one sentence with the paper claims' totals instead of the table.
    option_spec = {"headline": directives.flag}

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
        node = claims_summary(docs=docs, headline="headline" in self.options)
        self.set_source_info(node)
        return [node]


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
                records = [r for prefix in prefixes for r in _ledger(glue, prefix)]
                rows.append((doc, _count(records)))
            node.replace_self(_headline(rows) if node.get("headline") else _table(rows, self.env.docname, app))


def _headline(rows: list[tuple[str, list[int]]]) -> nodes.paragraph:
    """"N of the paper's M claims reproduce at its setting; K do not (...)": the ``paper`` columns
    summed over the chapters, in words."""
    totals = [sum(c[i] for _, c in rows) for i in range(len(SUMMARY_COLUMNS))]
    paper = {verdicts[0]: totals[i] for i, (_, kind, verdicts) in enumerate(SUMMARY_COLUMNS) if kind == "paper"}
    checked = sum(paper.values())
    text = f"{paper.get('holds', 0)} of the paper's {checked} claims checked at its setting reproduce (✓); "
    text += f"{paper.get('fails', 0)} do not (✗)"
    if paper.get("unconverged"):
        text += f", and {paper['unconverged']} did not converge within the steps taken (⟳)"
    return nodes.paragraph("", "", nodes.strong(text=text + "."))


def _count(records: list[dict[str, Any]]) -> list[int]:
    return [sum(1 for r in records if r.get("kind") == kind and r.get("verdict") in verdicts)
            for _, kind, verdicts in SUMMARY_COLUMNS]


#: How the columns are headed: a kind over the symbols of its verdicts (one header, two rows).
KIND_HEADERS = {"paper": "Paper", "external": "External", "standin": "Stand-in"}


def _header() -> nodes.thead:
    """Two header rows: the kinds over their verdicts' symbols (the count columns stay narrow, so
    that the chapter's title reads on a line or two); one-column kinds span both rows."""
    top, below = nodes.row(), nodes.row()
    top += nodes.entry("", nodes.paragraph(text="Chapter"), morerows=1)
    kinds = [k for _, k, _ in SUMMARY_COLUMNS]
    for kind in dict.fromkeys(kinds):
        span = kinds.count(kind)
        heads = [h for h, k, _ in SUMMARY_COLUMNS if k == kind]
        if kind in KIND_HEADERS:
            top += nodes.entry("", nodes.paragraph(text=KIND_HEADERS[kind]), morecols=span - 1)
            for h in heads:
                below += nodes.entry("", nodes.paragraph(text=h.rsplit(" ", 1)[-1]))
        else:
            top += nodes.entry("", nodes.paragraph(text=heads[0]), morerows=1)
    thead = nodes.thead()
    thead += top
    thead += below
    return thead


def _table(rows: list[tuple[str, list[int]]], fromdoc: str, app: Sphinx) -> nodes.table:
    headers = ["Chapter", *(h for h, _, _ in SUMMARY_COLUMNS)]
    cells: list[list[nodes.Node | str]] = []
    totals = [0] * len(SUMMARY_COLUMNS)
    for doc, counts in rows:
        cells.append([nodes.paragraph("", "", _page_link(app, fromdoc, doc)), *counts])
        totals = [t + c for t, c in zip(totals, counts, strict=True)]
    cells.append([nodes.paragraph("", "", nodes.strong(text=t))
                  for t in ["All chapters", *map(str, totals)]])
    table = _simple_table(headers, cells, ["sdlib-claims-summary"],
                          widths=[CHAPTER_WIDTH] + [1] * len(SUMMARY_COLUMNS))
    tgroup = table[0]
    tgroup.replace(next(iter(tgroup.findall(nodes.thead))), _header())
    return table
