r"""Features 4 to 7: fixes of the HTML that Sphinx, sphinx-proof and sphinx-thebe write.

4. sphinx-thebe 0.3 under Jupyter Book 1.0 adds its inline script ``const THEBE_JS_URL = ...`` to
   every page twice, and the second copy raises "Identifier 'THEBE_JS_URL' has already been
   declared" in the browser's console. Identical script entries are dropped from each page.
5. The paper's numbers on the statement boxes, and no Sphinx numbers anywhere. sphinx-proof
   switches ``numfig`` on (so figures would read "Fig. 2 Figure 3 (paper)" and the box of
   Theorem 4.1 "Theorem 2 (Theorem 4.1 ...)"). ``numfig`` is switched off again, every
   sphinx-proof box becomes an unnumbered one, and a box titled with the paper's number
   (``{prf:theorem} Theorem 4.1 (Borup & Andersen, 2021)``) reads "Theorem 4.1 (Borup & Andersen,
   2021)"; ``{prf:ref}`` to it reads "Theorem 4.1".
6. MathJax is loaded on every page (``set_html_assets_policy("always")``, in :func:`setup`):
   chapter titles with math appear in the navigation of every page, also of pages without math.
7. ``\tag{N}`` in a multi-line display. Sphinx wraps a display that contains ``\\`` (e.g. in a
   ``cases`` environment) in ``\begin{split}...\end{split}``, where MathJax refuses ``\tag``
   ("\tag not allowed in split environment") and shows an error instead of eq. (14). Such a
   display with one ``\tag`` is written as ``\[\begin{split}...\end{split}\tag{N}\]``.

Also: the book's own equation numbers. A labelled display of a chapter (``{math}`` with
``:label:``) gets Sphinx's number, 1, 2, ... on its page, beside the paper's displays, which show the
paper's numbers (``\tag{12}``). So that "(2)" cannot be read as the paper's eq. (2), the book's
numbers read "(E1)", "(E2)", ... on the display (:func:`_book_equation_numbers`) and in every ``{eq}``
reference (``math_eqref_format`` in _config.yml).

Also: math in link texts. A ``{doc}`` link takes the page's title as plain text, so a title with
math ("... with $\lambda/\alpha$") shows its TeX: such a link gets the title's nodes, math included,
and ``$...$`` in other link texts become math (:class:`MathInLinkTexts`).
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.nodes import clean_astext


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




_INLINE_MATH = re.compile(r"\$([^$]+)\$")


class MathInLinkTexts(SphinxPostTransform):
    """Math in the text of a resolved reference (after the references are resolved): the title of a
    ``{doc}`` link's page with its math, and ``$...$`` in other link texts."""

    default_priority = 900

    def apply(self, **kwargs: Any) -> None:
        # a {doc} link's text is its page's title as plain text: the title's own nodes instead
        with_math = {clean_astext(t): t for t in self.env.titles.values() if next(t.findall(nodes.math), None)}
        for inline in list(self.document.findall(nodes.inline)):
            title = with_math.get(inline.astext()) if "doc" in inline.get("classes", []) else None
            if title is not None:
                inline.children = []
                inline.extend(child.deepcopy() for child in title.children)
        for ref in list(self.document.findall(nodes.reference)):
            for text in list(ref.findall(nodes.Text)):
                value = str(text)
                if isinstance(text.parent, (nodes.literal, nodes.math)) or not _INLINE_MATH.search(value):
                    continue
                parts: list[nodes.Node] = []
                pos = 0
                for m in _INLINE_MATH.finditer(value):
                    if m.start() > pos:
                        parts.append(nodes.Text(value[pos:m.start()]))
                    parts.append(nodes.math(m.group(1), m.group(1)))
                    pos = m.end()
                if pos < len(value):
                    parts.append(nodes.Text(value[pos:]))
                text.parent.replace(text, parts)


#: The prefix of the book's own equation numbers (``math_eqref_format`` in _config.yml: "(E{number})").
EQUATION_PREFIX = "E"


def _book_equation_numbers(app: Sphinx, doctree: nodes.document) -> None:
    """A labelled display's number as the book's: "E1" rather than "1" (see the module docstring)."""
    for node in doctree.findall(nodes.math_block):
        number = node.get("number")
        if number and not str(number).startswith(EQUATION_PREFIX):
            node["number"] = f"{EQUATION_PREFIX}{number}"
