"""Feature 3: ``{sdlib-notebook-parameters}``.

For each notebook listed in its content (one path a line, from the book's root), a table of the
parameters of its ``parameters`` cell (name, type, default), read with :mod:`sdlib.chapters.runner`
when the page is read; the page is re-read whenever one of the notebooks changes.
"""

from __future__ import annotations

from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

from ._shared import _simple_table


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
