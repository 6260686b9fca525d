"""Feature 11: ``{sdlib-citation}``: the paper's BibTeX entry, verbatim from book/references.bib,
and the companion's, generated from CITATION.cff."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective


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

