"""A chapter's parameters: its ``parameters`` cell, the values a rerun gives, and their validation.

The parameters cell (tag ``parameters``) holds only plain literal assignments, one per line
(``lam = 0.2``); their defaults give each parameter's type, and a trailing comment its declared
constraint and description (:mod:`sdlib.chapters.constraints`). A value given on the command line
or in a parameter file (:func:`load_parameter_file`) is checked before anything runs
(:func:`validate_parameters`): an ``int`` is accepted for a ``float`` parameter, a ``None`` default
accepts any value, and anything else must have the default's type and satisfy the constraint.
Every default is checked against its constraint when the notebook is read.
"""

from __future__ import annotations

import ast
import io
import json
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdlib.chapters import claims as claims_api
from sdlib.chapters.constraints import Constraint, parse_constraint
from sdlib.errors import UsageError
from sdlib.provenance import read_yaml

__all__ = [
    "NotebookError", "Parameter", "ParameterError", "format_parameters", "load_parameter_file",
    "notebook_parameters", "parameters_cell", "parameters_json", "parse_parameters_cell", "read_chapter",
    "read_notebook", "validate_parameters",
]

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", type(None): "any"}


class NotebookError(UsageError):
    """The notebook cannot be run: no parameters cell, a cell that is not plain assignments, or a
    declared constraint that does not parse or that its own default violates."""


class ParameterError(UsageError):
    """A parameter given on the command line or in a config file does not fit the notebook."""


@dataclass(frozen=True)
class Parameter:
    """One assignment of a notebook's ``parameters`` cell, with its declared constraint."""

    name: str
    default: Any
    line: int
    constraint: Constraint | None = field(default=None, compare=False)
    description: str = ""

    @property
    def type_name(self) -> str:
        """``int``, ``float``, ``str``, ``bool``, ``list``, ... or ``any`` for a ``None`` default."""
        return _TYPE_NAMES.get(type(self.default), type(self.default).__name__)


def read_notebook(path: str | Path) -> Any:
    """Read a Jupytext notebook (MyST ``.md``, ``.py``) or an ``.ipynb`` as an nbformat notebook."""
    path = Path(path)
    if not path.is_file():
        raise NotebookError(f"notebook {str(path)!r} does not exist; give the path of a chapter, "
                            "e.g. notebooks/theorem45.md")
    import jupytext  # the 'book' extra: read when a notebook is, not by `python -m sdlib --help`

    try:
        return jupytext.read(path)
    except UnicodeDecodeError as exc:
        raise NotebookError(f"notebook {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                            "give a chapter, e.g. notebooks/theorem45.md") from None
    except Exception as exc:  # noqa: BLE001 - jupytext and nbformat raise many types for a non-notebook
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NotebookError(f"{str(path)!r} is not a notebook that jupytext can read ({type(exc).__name__}: "
                            f"{first}); give a chapter, e.g. notebooks/theorem45.md") from None


def parameters_cell(nb: Any, path: str | Path) -> tuple[int, Any]:
    """``(index, cell)`` of the one code cell tagged ``parameters``; else a :class:`NotebookError`."""
    found = [(i, c) for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if not found:
        raise NotebookError(f"notebook {str(path)!r} has no code cell tagged 'parameters'")
    if len(found) > 1:
        raise NotebookError(
            f"notebook {str(path)!r} has {len(found)} cells tagged 'parameters' (cells "
            f"{', '.join(str(i) for i, _ in found)}); it must have exactly one")
    return found[0]


def _trailing_comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment that ends that line after some code."""
    out: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT and tok.line[:tok.start[1]].strip():
                out[tok.start[0]] = tok.string[1:].strip()
    except (tokenize.TokenError, IndentationError):
        pass
    return out


def parse_parameters_cell(source: str, *, where: str = "parameters cell") -> dict[str, Parameter]:
    """Parse a ``parameters`` cell: plain literal assignments ``name = literal``, one per line.

    Comments and blank lines are allowed; a comment at the end of an assignment declares its
    constraint and description (:func:`parse_constraint`). Anything else (an expression, an import,
    a tuple target), a malformed constraint or a default violating its constraint raises
    :class:`NotebookError` naming the line.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise NotebookError(f"{where}: not valid Python ({exc.msg}, line {exc.lineno})") from exc
    comments = _trailing_comments(source)
    params: dict[str, Parameter] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name, value = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            name, value = stmt.target.id, stmt.value
        else:
            raise NotebookError(
                f"{where}, line {stmt.lineno}: only plain assignments 'name = literal' are allowed, "
                f"found {ast.get_source_segment(source, stmt)!r}")
        try:
            default = ast.literal_eval(value)
        except ValueError as exc:
            raise NotebookError(
                f"{where}, line {stmt.lineno}: the default of {name!r} must be a literal, found "
                f"{ast.get_source_segment(source, value)!r}") from exc
        if name in params:
            raise NotebookError(f"{where}, line {stmt.lineno}: parameter {name!r} is assigned twice")
        # the comment closing the assignment (a list over several lines: its last line)
        lines = range(stmt.end_lineno or stmt.lineno, stmt.lineno - 1, -1)
        comment = next((comments[n] for n in lines if n in comments), "")
        try:
            constraint, description = parse_constraint(comment, default)
        except ValueError as exc:
            raise NotebookError(
                f"{where}, line {stmt.lineno}: the constraint declared for {name!r} ({comment!r}) is "
                f"invalid: {exc}") from exc
        params[name] = Parameter(name=name, default=default, line=stmt.lineno, constraint=constraint,
                                 description=description)
    return params


def read_chapter(path: str | Path) -> tuple[Any, dict[str, Parameter]]:
    """The notebook at ``path`` and its parameters (name -> :class:`Parameter`, in the cell's order)."""
    nb = read_notebook(path)
    _, cell = parameters_cell(nb, path)
    return nb, parse_parameters_cell(cell.source, where=f"{path}: parameters cell")


def notebook_parameters(path: str | Path) -> dict[str, Parameter]:
    """The parameters of a notebook (name -> :class:`Parameter`), in the order of its cell."""
    return read_chapter(path)[1]


def load_parameter_file(path: str | Path) -> dict[str, Any]:
    """The parameters of a YAML file given with ``-f``: a mapping ``name: value`` (or
    ``parameters: {name: value}``); a missing, unreadable or malformed file is a :class:`ParameterError`."""
    data = read_yaml(path, what="config file", error=ParameterError,
                     hint="give the path of a YAML file of 'name: value' lines, e.g. configs/smoke_cpu.yaml")
    if set(data) == {"parameters"} and isinstance(data["parameters"], Mapping):
        data = data["parameters"]
    return {str(k): v for k, v in data.items()}


def _type_ok(default: Any, value: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def validate_parameters(params: Mapping[str, Parameter], values: Mapping[str, Any], *,
                        notebook: str = "the notebook") -> dict[str, Any]:
    """Check ``values`` against the notebook's parameters; return them (ints given for floats as floats).

    Raises :class:`ParameterError` for an unknown name (listing the valid ones), a value whose type
    does not match the default's (naming the parameter, the value and the expected type), or a
    value that violates the parameter's declared constraint (naming both). A ``None`` value of a
    parameter whose default is ``None`` is not checked against the constraint.
    """
    unknown = [k for k in values if k not in params]
    if unknown:
        valid = ", ".join(f"{p.name} ({p.type_name}, default {p.default!r})" for p in params.values())
        raise ParameterError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(repr(u) for u in unknown)} "
            f"for {notebook}; valid parameters: {valid or '(none)'}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        p = params[name]
        if not _type_ok(p.default, value):
            raise ParameterError(
                f"parameter {name!r} of {notebook}: value {value!r} has type {type(value).__name__}, "
                f"expected {p.type_name} (default {p.default!r})")
        if name == "claims_mode" and value not in claims_api.MODES:
            raise ParameterError(
                f"parameter 'claims_mode' of {notebook}: value {value!r} is not one of {claims_api.MODES}")
        value = float(value) if isinstance(p.default, float) else value
        if p.constraint is not None and not (value is None and p.default is None):
            problem = p.constraint.violation(value)
            if problem is not None:
                what = f" ({p.description})" if p.description else ""
                raise ParameterError(
                    f"parameter {name!r} of {notebook}: value {value!r} {problem}; {name}{what} must "
                    f"satisfy '{p.constraint.text}' (default {p.default!r})")
        out[name] = value
    return out


def format_parameters(params: Mapping[str, Parameter]) -> str:
    """A plain-text table of a notebook's parameters: name, type, default, constraint, description."""
    rows = [("name", "type", "default", "constraint", "description")] + [
        (p.name, p.type_name, repr(p.default), p.constraint.text if p.constraint else "", p.description)
        for p in params.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def parameters_json(params: Mapping[str, Parameter]) -> str:
    """The parameters as JSON: ``{name: {"type", "default", "constraint", "description"}}``."""
    return json.dumps({p.name: {"type": p.type_name, "default": p.default,
                                "constraint": p.constraint.text if p.constraint else None,
                                "description": p.description} for p in params.values()},
                      indent=2, ensure_ascii=False)
