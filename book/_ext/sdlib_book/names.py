"""What the book calls things, for the exported notebooks (:class:`sdlib_book.myst_markdown.Names`):
author–year citations from the bibliography, equation numbers (the ``\\tag`` of a labelled
display), the titles of boxes, sections and pages, the addresses of pages, glued numbers and
outputs (figures, tables) of the chapters and values of committed result files."""

from __future__ import annotations

import base64
import json
import posixpath
import re
from functools import cache
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

from ._shared import _executed_notebook, _glue_cache, format_glued
from .claims_tables import claims_html
from .myst_markdown import Names
from .results_json import json_value

_TAG = re.compile(r"\\tag\*?\{([^{}]*)\}")


@cache
def _bibliography(files: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Key -> (authors as cited, year) of every entry of the .bib ``files``."""
    from pybtex.database import parse_file

    out: dict[str, tuple[str, str]] = {}
    for f in files:
        for key, entry in parse_file(f).entries.items():
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            last = [" ".join(p.last_names).replace("{", "").replace("}", "") for p in people]
            who = (last[0] if len(last) == 1 else f"{last[0]} & {last[1]}" if len(last) == 2
                   else f"{last[0]} et al." if last else key)
            out[key] = (who, entry.fields.get("year", "n.d."))
    return out


def _cite(app: Sphinx) -> Any:
    return bibliography_cite([str(Path(app.srcdir, f)) for f in getattr(app.config, "bibtex_bibfiles", None) or []])


def bibliography_cite(files: list[str]) -> Any:
    """``cite(key, textual)``: "Borup & Andersen, 2021" (or "Borup & Andersen (2021)"), from ``files``."""
    bib = _bibliography(tuple(files)) if files else {}

    def cite(key: str, textual: bool) -> str | None:
        if key not in bib:
            return None
        who, year = bib[key]
        return f"{who} ({year})" if textual else f"{who}, {year}"

    return cite


def _equation_number(app: Sphinx, label: str) -> str | None:
    """``(N)`` for the display labelled ``label``: its ``\\tag{N}``, else Sphinx's number."""
    objects = app.env.get_domain("math").data.get("objects", {})
    if label not in objects:
        return None
    docname, number = objects[label]
    try:
        doctree = app.env.get_doctree(docname)
    except (OSError, KeyError):
        doctree = None
    for node in doctree.findall(nodes.math_block) if doctree is not None else []:
        if node.get("label") == label and (m := _TAG.search(node.astext())):
            return f"({m[1]})"
    return (app.config.math_eqref_format or "({number})").format(number=number) if number else None


def _ref_title(app: Sphinx, label: str) -> str | None:
    """The title of a box (``{prf:ref}``) or of a labelled section (``{ref}``)."""
    proof = (getattr(app.env, "proof_list", None) or {}).get(label)
    if proof:
        kind = str(proof.get("realtype") or "")
        return kind[:1].upper() + kind[1:] if kind else None
    labels = app.env.get_domain("std").data.get("labels", {})
    return labels[label][2] if label in labels and labels[label][2] else None


def pages_url(repository: str) -> str | None:
    """Where the Pages workflow publishes the book of ``https://github.com/OWNER/NAME``."""
    m = re.match(r"^https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$", repository or "")
    return f"https://{m[1].lower()}.github.io/{m[2]}/" if m else None


def _doc(app: Sphinx, docname: str) -> Any:
    base = pages_url((getattr(app.config, "sdlib_launch", None) or {}).get("repository", ""))

    def doc(target: str) -> tuple[str, str | None] | None:
        other = posixpath.normpath(posixpath.join(posixpath.dirname(docname), target.removesuffix(".md")))
        if other.startswith("/"):
            other = other.lstrip("/")
        title = app.env.titles.get(other)
        if title is None:
            return None
        if base:
            return title.astext(), f"{base}{other}.html"
        same_folder = posixpath.dirname(other) == posixpath.dirname(docname)
        if same_folder and _executed_notebook(app, other) is not None:
            return title.astext(), f"{posixpath.basename(other)}.ipynb"
        return title.astext(), None

    return doc


def _glued(app: Sphinx, docname: str, render: Any) -> Any:
    """``lookup(spec)``: ``render(glue, key)`` for ``key`` or ``path::key`` (another chapter's)."""
    def lookup(spec: str) -> str | None:
        path, sep, key = spec.partition("::")
        if not sep:
            return render(_glue_cache(app, docname), spec)
        other = posixpath.normpath(posixpath.join(posixpath.dirname(docname), path.removesuffix(".md")))
        return render(_glue_cache(app, other), key)

    return lookup


def _json(app: Sphinx) -> Any:
    def value(spec: str) -> str | None:
        target, _, rest = spec.partition("#")
        path, _, fmt = rest.partition(":")
        try:
            data = json.loads((Path(app.srcdir) / target.strip().lstrip("/")).read_text(encoding="utf8"))
            v = json_value(data, path.strip())
            return format(v, fmt) if fmt else str(v)
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return None

    return value


def glue_markdown(glue: dict[str, Any], key: str) -> str | None:
    """The glued output ``key`` of ``glue`` as Markdown for a notebook's cell: a chapter's claims
    table in full, an image (inline, as data), HTML, Markdown or text; None when it is not there."""
    from sdlib.chapters import claims as claims_api

    entry = glue.get(key) or {}
    data, meta = entry.get("data") or {}, entry.get("metadata") or {}
    prefix = next((p for p in claims_api.glue_prefixes(glue) if claims_api.table_key(p) == key), None)
    if prefix is not None:
        return claims_html(glue, prefix)
    for mime in ("image/png", "image/jpeg", "image/svg+xml"):
        if mime in data:
            payload = data[mime] if mime != "image/svg+xml" else base64.b64encode(
                "".join(data[mime]).encode("utf8")).decode("ascii")
            width = (meta.get(mime) or {}).get("width")
            size = f' width="{width}"' if width else ""
            return f'<img src="data:{mime};base64,{"".join(payload).strip()}" alt="{key}"{size}/>'
    if "text/html" in data or "text/markdown" in data:
        return "".join(data.get("text/html") or data["text/markdown"])
    return format_glued(glue, key)


def book_names(app: Any, docname: str) -> Names:
    """The :class:`Names` of the book ``app`` builds, seen from the page ``docname``. An ``app``
    that is no Sphinx application (a test's stand-in) gives the page's own glued numbers only."""
    if not isinstance(app, Sphinx):
        return Names(glue=lambda spec: None)
    return Names(cite=_cite(app), eq=lambda label: _equation_number(app, label),
                 ref=lambda label: _ref_title(app, label), doc=_doc(app, docname),
                 glue=_glued(app, docname, format_glued), json=_json(app),
                 block=_glued(app, docname, glue_markdown))
