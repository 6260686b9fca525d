"""Feature 13: no false green.

Sphinx re-reads only changed sources, so after a build that failed (a chapter whose execution
raised, a glued number missing, a build killed half-way) the next build would exit 0 with the broken
pages still in place. A marker file in the doctree folder is written when a build starts and removed
only when it ends without an exception or a warning; a build that finds it re-reads every page
(executed notebooks still come from the cache, failed ones are executed again; see
:func:`sdlib_book.deps._outdated`). A chapter whose execution failed is re-read by every build until
it executes, and its page shows an error box in place of its partial outputs (no traceback, no
empty number).
"""

from __future__ import annotations

from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

from ._shared import logger

#: Written when a build starts, removed when it ends clean.
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
