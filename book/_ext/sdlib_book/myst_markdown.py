r"""MyST Markdown as plain Markdown, for the exported notebooks (feature 9).

Jupyter and Colab render CommonMark with ``$...$`` math; they show MyST's roles (``{cite}`key```,
``{prf:ref}`label```, ``{eq}`label```, ``{doc}`page```, ``{glue:text}`key```), its label targets
``(label)=``, the labels after display math ``$$ ... $$ (label)`` and its directive fences
(````{prf:theorem} ...``) as raw text. :func:`to_markdown` writes each as a reader of the book sees
it: the citation in author–year form, the number of an equation, the title of a box or a page (a
link where the page has an address), a pasted value, and a directive as a quoted block under its
title. Nothing is looked up here: the book's names and numbers come in a :class:`Names`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

#: ``{role}`content``` (a role's name: letters, digits, ``:``, ``-``, ``_``).
ROLE = re.compile(r"\{(?P<name>[A-Za-z][\w:-]*)\}`(?P<content>[^`]*)`")
_TARGET = re.compile(r"^\((?P<label>[^()\s]+)\)=\s*$")
_MATH_LABEL = re.compile(r"^(?P<close>\s*\$\$)\s*\((?P<label>[^()\s]+)\)\s*$")
_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[A-Za-z][\w:-]*)\}\s*(?P<arg>.*)$")
_OPTION = re.compile(r"^:[\w-]+:.*$")


@dataclass
class Names:
    """What the book calls things: every lookup returns None where it does not know the name."""

    cite: Callable[[str, bool], str | None] = lambda key, textual: None
    eq: Callable[[str], str | None] = lambda label: None
    ref: Callable[[str], str | None] = lambda label: None
    doc: Callable[[str], tuple[str, str | None] | None] = lambda target: None
    glue: Callable[[str], str | None] = lambda spec: None
    json: Callable[[str], str | None] = lambda spec: None
    block: Callable[[str], str | None] = lambda spec: None  # a glued output as Markdown (HTML, image)
    unresolved: list[str] = field(default_factory=list)


def _split_title(content: str) -> tuple[str | None, str]:
    """``title <target>`` -> (title, target); ``target`` -> (None, target)."""
    m = re.match(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$", content.strip())
    return (m["title"], m["target"]) if m else (None, content.strip())


def _cite(names: Names, name: str, content: str) -> str:
    textual = name in ("cite:t", "cite:ts", "citet")
    parts = [names.cite(k.strip(), textual) or k.strip() for k in content.split(",") if k.strip()]
    return "; ".join(parts) if textual else "(" + "; ".join(parts) + ")"


def _role(names: Names, m: re.Match[str]) -> str:
    name, content = m["name"], m["content"]
    title, target = _split_title(content)
    if name == "cite" or name.startswith("cite:"):
        return _cite(names, name, content)
    if name == "eq":
        return names.eq(target) or f"({target})"
    if name == "math":
        return f"${content}$"
    if name in ("glue", "glue:text", "glue:any", "glue:md"):
        value = names.glue(content)
        if value is None:
            names.unresolved.append(m[0])
        return value if value is not None else "(not computed)"
    if name == "sdlib-json":
        value = names.json(content)
        return value if value is not None else "(not recorded)"
    if name == "doc":
        found = names.doc(target)
        text, url = found if found else (target.rsplit("/", 1)[-1], None)
        text = title or text
        return f"[{text}]({url})" if url else f"*{text}*"
    if name in ("ref", "numref", "prf:ref", "term", "any"):
        return title or names.ref(target) or target
    return title or target  # another role: its text


def _roles(text: str, names: Names) -> str:
    """Every role of ``text`` written out."""
    return ROLE.sub(lambda m: _role(names, m), text)


def _fence_title(name: str, arg: str) -> str:
    kind = name.split(":")[-1]
    if kind == "proof":
        return "*Proof.*"
    label = kind.replace("-", " ").capitalize()
    if not arg:
        return f"**{label}.**"
    return f"**{arg}.**" if arg.lower().startswith(kind.lower()) else f"**{label} ({arg}).**"


def _directives(lines: list[str]) -> list[str]:
    """Directive fences as quoted blocks under their title (options dropped); code fences kept."""
    out: list[str] = []
    stack: list[str] = []  # the closing fences of the open directives
    for line in lines:
        m = _FENCE.match(line)
        if stack and line.strip() == stack[-1]:
            stack.pop()
            continue
        if m and m["name"] not in ("code-cell", "code", "code-block"):
            out.append("> " * (len(stack) + 1) + _fence_title(m["name"], m["arg"].strip()))
            out.append("> " * (len(stack) + 1))
            stack.append(m["fence"])
            continue
        if stack and _OPTION.match(line.strip()) and out and out[-1].rstrip() == ">" * len(stack):
            continue  # a directive's option (:label:, :class:, ...) right after its title
        out.append(("> " * len(stack) + line) if stack else line)
    return out


#: Directives that paste a glued output (a figure, a table) where they stand.
GLUE_BLOCKS = ("glue", "glue:any", "glue:figure", "glue:md")


def _glue_blocks(lines: list[str], names: Names) -> list[str]:
    """Each ``{glue:figure} KEY`` (and the like) as the glued output, its caption in italics."""
    out: list[str] = []
    it = iter(lines)
    for line in it:
        m = _FENCE.match(line)
        if not (m and m["name"] in GLUE_BLOCKS):
            out.append(line)
            continue
        body = []
        for inner in it:
            if inner.strip() == m["fence"]:
                break
            body.append(inner)
        key = m["arg"].strip()
        block = names.block(key)
        if block is None:
            names.unresolved.append(key)
        out.append(block if block is not None else "(not computed)")
        caption = " ".join(b.strip() for b in body if b.strip() and not _OPTION.match(b.strip()))
        if caption:
            out += ["", f"*{caption}*"]
    return out


def to_markdown(text: str, names: Names | None = None) -> str:
    """``text`` (a MyST Markdown cell) as CommonMark with ``$`` math, for Jupyter and Colab."""
    names = names or Names()
    lines = []
    for line in text.splitlines():
        if _TARGET.match(line):
            continue
        m = _MATH_LABEL.match(line)
        lines.append(m["close"] if m else line)
    return _roles("\n".join(_directives(_glue_blocks(lines, names))), names)


def raw_myst(text: str) -> list[str]:
    """What of MyST is left in ``text``: roles, label targets, math labels and directive fences."""
    found = [m[0] for m in ROLE.finditer(text)]
    for line in text.splitlines():
        if _TARGET.match(line) or _MATH_LABEL.match(line) or (
                (m := _FENCE.match(line)) and m["name"] not in ("code-cell", "code", "code-block")):
            found.append(line)
    return found
