"""The language of a chapter's parameters: values as the command line reads them, and declared constraints.

A value given with ``-p NAME VALUE`` is read as a YAML scalar or list (:func:`parse_cli_value`:
``0.05``, ``1e-3``, ``true``, ``None``, ``[0.1, 0.2]``, ``rbf``). A trailing comment of a line of a
chapter's ``parameters`` cell declares the parameter's constraint and its description
(:func:`parse_constraint`)::

    lam = 0.2            # > 0; ridge penalty λ
    steps = 6            # >= 1; distillation steps τ
    alpha = 0.25         # in [0, 1]; fixed weight of the ground truth
    kernel = "rbf"       # one of: rbf, laplacian; kernel name
    widths = [64, 256]   # non-empty and each >= 1; hidden widths

The comment is ``# CONSTRAINT; description`` or ``# description``. CONSTRAINT is ``> x``,
``>= x``, ``< x``, ``<= x``, ``in [a, b]`` (brackets for closed, parentheses for open ends),
``one of: a, b, c`` (strings without quotes), for lists ``each`` followed by one of these, and
``non-empty``; or several joined by ``and``. The parameters cell itself is read by
:mod:`sdlib.chapters.params`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["Constraint", "parse_cli_value", "parse_constraint"]

_NUMBER = r"[-+]?(?:inf|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_CMP = re.compile(rf"^(>=|<=|>|<)\s*({_NUMBER})$")
_INTERVAL = re.compile(rf"^in\s*([\[(])\s*({_NUMBER})\s*,\s*({_NUMBER})\s*([\])])$")
_ONE_OF = re.compile(r"^one of:\s*(.*)$", re.S)
#: How a constraint starts; a comment whose first part does not start so is a description.
_FIRST = r"(?:>=|<=|>|<|in\s*[\[(]|one of:)"
_STARTS = rf"(?:{_FIRST}|each\s+(?:{_FIRST}|non-empty)|non-empty(?:\s*$|\s+and\s))"
_AND = re.compile(rf"\s+and\s+(?={_STARTS})")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True)
class _Atom:
    """One test of a constraint: ``>= 1``, ``in [0, 1)``, ``one of: a, b``, ``non-empty``; ``each``."""

    text: str
    kind: str                     # "cmp", "interval", "one_of", "non_empty"
    each: bool = False
    op: str = ""
    bounds: tuple[float, float] = (0.0, 0.0)
    closed: tuple[bool, bool] = (True, True)
    choices: tuple[Any, ...] = ()

    def holds(self, x: Any) -> bool:
        if self.kind == "non_empty":
            return isinstance(x, (list, str)) and len(x) > 0
        if self.kind == "one_of":
            return any(x == c and type(x) is type(c) or (_is_number(x) and _is_number(c) and x == c)
                       for c in self.choices)
        if not _is_number(x) or math.isnan(x):
            return False
        if math.isinf(x) and not self.names_infinity(x):
            return False  # '> 0' means a finite number > 0: inf would fail deep inside the notebook
        if self.kind == "cmp":
            return _OPS[self.op](x, self.bounds[0])
        lo, hi = self.bounds
        return ((lo <= x) if self.closed[0] else (lo < x)) and ((x <= hi) if self.closed[1] else (x < hi))

    def names_infinity(self, x: float) -> bool:
        """Whether the constraint admits the infinite ``x`` by name: ``<= inf``, ``in [0, inf]``."""
        if self.kind == "cmp":
            return self.op in (">=", "<=") and self.bounds[0] == x
        return any(b == x and c for b, c in zip(self.bounds, self.closed, strict=True))


@dataclass(frozen=True)
class Constraint:
    """A parameter's declared constraint (:func:`parse_constraint`): every atom must hold."""

    text: str
    atoms: tuple[_Atom, ...]

    def violation(self, value: Any) -> str | None:
        """``None`` when ``value`` satisfies every atom, else a phrase saying which part fails."""
        for atom in self.atoms:
            if not atom.each:
                if not atom.holds(value):
                    if _is_number(value) and not math.isfinite(value) and atom.kind in ("cmp", "interval"):
                        return f"is not a finite number {atom.text}"
                    return f"is not {atom.text}" if atom.kind != "non_empty" else "is empty"
                continue
            if not isinstance(value, list):
                return f"is not a list ({atom.text})"
            for i, x in enumerate(value):
                if not atom.holds(x):
                    return f"has element {i}, {x!r}, not {atom.text[len('each '):]}"
        return None

    def __str__(self) -> str:
        return self.text


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if re.fullmatch(r"[-+]?\d+", text) else value


def _choice(item: str, like: Any) -> Any:
    """A ``one of:`` item read with the type of the default (strings stay strings)."""
    if isinstance(like, str):
        return item
    value = parse_cli_value(item)
    if isinstance(like, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{item!r} is not true or false")
    elif isinstance(like, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{item!r} is not an integer")
    elif isinstance(like, float):
        if not _is_number(value):
            raise ValueError(f"{item!r} is not a number")
        value = float(value)
    return value


def _parse_atom(text: str, default: Any) -> _Atom:
    each = text.startswith("each ")
    body = text[len("each "):].strip() if each else text
    if each and not (default is None or isinstance(default, list)):
        raise ValueError(f"'each' applies to lists, and the default {default!r} is not a list")
    # the values the atom will see: the default itself, or the elements of a list default
    samples = ([] if default is None else list(default)) if each else ([] if default is None else [default])
    if body == "non-empty":
        if each:
            raise ValueError("'each non-empty' is not a constraint; write 'non-empty'")
        if not all(isinstance(s, (list, str)) for s in samples):
            raise ValueError(f"'non-empty' applies to lists and strings, and the default is {default!r}")
        return _Atom(text=text, kind="non_empty")
    if m := _CMP.match(body):
        if not all(_is_number(s) for s in samples):
            raise ValueError(f"{body!r} compares numbers, and the default is {default!r}")
        return _Atom(text=text, kind="cmp", each=each, op=m[1], bounds=(_number(m[2]), 0.0))
    if m := _INTERVAL.match(body):
        lo, hi = _number(m[2]), _number(m[3])
        if not lo <= hi:
            raise ValueError(f"the interval {body!r} is empty")
        if not all(_is_number(s) for s in samples):
            raise ValueError(f"{body!r} is an interval of numbers, and the default is {default!r}")
        return _Atom(text=text, kind="interval", each=each, bounds=(lo, hi), closed=(m[1] == "[", m[4] == "]"))
    if m := _ONE_OF.match(body):
        items = [i.strip() for i in m[1].split(",")]
        if not all(items):
            raise ValueError(f"{body!r} needs a comma-separated list of values, none of them empty")
        like = samples[0] if samples else None
        return _Atom(text=text, kind="one_of", each=each, choices=tuple(_choice(i, like) for i in items))
    raise ValueError(
        f"{text!r} is not a constraint: use '> x', '>= x', '< x', '<= x', 'in [a, b]', "
        "'one of: a, b', 'each ...', 'non-empty', joined by ' and '")


def parse_constraint(comment: str, default: Any = None) -> tuple[Constraint | None, str]:
    """The constraint and the description declared by a parameter's trailing comment.

    ``comment`` is the text after ``#``: ``"CONSTRAINT; description"`` or ``"description"``. The
    part before the first ``;`` is a constraint when it starts like one (``>``, ``>=``, ``<``,
    ``<=``, ``in [``/``in (``, ``one of:``, ``each``, ``non-empty``), and must then parse; otherwise
    the whole comment is the description. A comment without ``;`` that parses as a constraint in
    full is read as one (with no description). ``default`` (the parameter's default) gives the type
    of ``one of:`` values and is checked against the constraint. Raises ``ValueError`` for a
    malformed constraint, a constraint that does not fit the default's type, or a default that
    violates it.
    """
    text = comment.strip()
    if text.startswith("#"):
        text = text[1:].strip()
    head, sep, tail = text.partition(";")
    head = head.strip()
    if not re.match(_STARTS, head):
        return None, text
    try:
        atoms = tuple(_parse_atom(part.strip(), default) for part in _AND.split(head))
    except ValueError:
        if not sep:  # no ';': a description that only starts like a constraint
            return None, text
        raise
    constraint = Constraint(text=head, atoms=atoms)
    if default is not None:
        problem = constraint.violation(default)
        if problem is not None:
            raise ValueError(f"the default {default!r} violates it: {default!r} {problem}")
    return constraint, tail.strip() if sep else ""


def parse_cli_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value as papermill reads it, extended to YAML scalars and lists.

    ``True``/``False``/``None`` as papermill; otherwise YAML (``0.05``, ``true``, ``[1, 2]``,
    ``null``); a string YAML leaves as text but that Python reads as a number (``1e-3``) becomes
    that number; anything else stays a string.
    """
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    import yaml  # here, not at the top: `python -m sdlib --help` does not pay for PyYAML

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        for conv in (int, float):
            try:
                return conv(value)
            except ValueError:
                continue
    if isinstance(value, (datetime,)) or type(value).__name__ == "date":
        return text
    return value
