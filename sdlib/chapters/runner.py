"""Rerun a chapter of the book with other parameters: papermill execution of the Jupytext notebooks.

``python -m sdlib run NOTEBOOK [-p NAME VALUE]... [-f configs/NAME.yaml] -o OUTDIR`` (see
:func:`main` in :mod:`sdlib.__main__`) reads a MyST-Markdown notebook, validates the requested
parameters against the notebook's ``parameters`` cell (papermill itself only warns about unknown
names, and never checks types), executes it with papermill and writes into OUTDIR

- ``NAME.ipynb``: the executed notebook (also when it fails: then with the traceback),
- ``figures/*.png``: every image the notebook displayed, named by cell index, and every glued image,
- ``results.json``: ``{"notebook", "status", "parameters", "results", "claims", "figures",
  "provenance"}``; ``status`` is ``"ok"``, ``"failed"`` or ``"interrupted"``, ``results`` holds every
  value the notebook glued (myst-nb ``glue``), decoded to numbers and strings where possible,
  ``claims`` every record of the chapter's claims ledger (:class:`sdlib.chapters.claims.Claims`: kind,
  verdict, measured value, criterion), ``provenance`` the block of :func:`sdlib.provenance.provenance`.

Claims are asserted only at the paper's parameters: when any other parameter differs from its
default and ``claims_mode`` is not given, the runner sets the chapter's ``claims_mode`` parameter to
``"report"`` (the paper's statements about its own example need not hold for another one).

OUTDIR is locked while a run writes into it, and a folder holding a finished run (or an
``NAME.ipynb`` no run wrote) is refused unless ``force`` (``--force``); from its start the run's
``results.json`` says ``"status": "running"``, so a killed run never leaves an old result in place.
Every file is written under a temporary name and renamed when whole. Ctrl-C (SIGINT) or SIGTERM
during a run interrupts the running cell, keeps the notebook executed so far and writes
``results.json`` with ``"status": "interrupted"``; :func:`run_notebook` then raises
:class:`RunInterrupted` (a ``KeyboardInterrupt``). No temporary file is left behind.

The parameters cell (tag ``parameters``) holds only plain literal assignments, one per line
(``lam = 0.2``); their defaults give each parameter's type. A value given on the command line is
read as a YAML scalar (``0.05``, ``1e-3``, ``true``, ``None``, ``[0.1, 0.2]``, ``rbf``); an ``int``
is accepted for a ``float`` parameter, a ``None`` default accepts any value, and anything else must
have the default's type.

A trailing comment declares a parameter's constraint and its description
(:func:`parse_constraint`)::

    lam = 0.2            # > 0; ridge penalty λ
    steps = 6            # >= 1; distillation steps τ
    alpha = 0.25         # in [0, 1]; fixed weight of the ground truth
    kernel = "rbf"       # one of: rbf, laplacian; kernel name
    widths = [64, 256]   # non-empty and each >= 1; hidden widths
    claims_mode = "assert"  # one of: assert, report; assert the paper's claims, or only report them

The comment is ``# CONSTRAINT; description`` or ``# description``. CONSTRAINT is ``> x``,
``>= x``, ``< x``, ``<= x``, ``in [a, b]`` (brackets for closed, parentheses for open ends),
``one of: a, b, c`` (strings without quotes), for lists ``each`` followed by one of these, and
``non-empty``; or several joined by ``and``. Every requested value is checked against its
parameter's constraint before anything runs (:func:`validate_parameters`), every default when the
notebook is read.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import tokenize
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sdlib.chapters import claims as claims_api
from sdlib.errors import UsageError
from sdlib.provenance import folder_lock, prepare_outdir, provenance, write_bytes_atomic, write_json_atomic

__all__ = [
    "GLUE_PREFIX",
    "Constraint",
    "NotebookError",
    "Parameter",
    "ParameterError",
    "RunInterrupted",
    "RunResult",
    "abandoned_executions",
    "extract_figures",
    "extract_glue",
    "format_parameters",
    "load_config",
    "notebook_parameters",
    "parameters_json",
    "parse_cli_value",
    "parse_constraint",
    "parse_parameters_cell",
    "read_notebook",
    "run_notebook",
    "validate_parameters",
]

#: How myst-nb's ``glue(name, value, display=False)`` stores a value in a display_data output:
#: every mimetype of the value's mimebundle prefixed with this, and ``metadata.scrapbook.name``.
GLUE_PREFIX = "application/papermill.record/"

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", type(None): "any"}


class NotebookError(UsageError):
    """The notebook cannot be run: no parameters cell, a cell that is not plain assignments, or a
    declared constraint that does not parse or that its own default violates."""


class ParameterError(UsageError):
    """A parameter given on the command line or in a config file does not fit the notebook."""


# --------------------------------------------------------------------------------------------------
# Declared constraints


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


@dataclass
class RunResult:
    """What :func:`run_notebook` wrote: paths, status and the decoded results."""

    status: str
    notebook: Path
    results_json: Path
    figures: list[Path]
    results: dict[str, Any]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM; its files are written (``result.status == "interrupted"``)."""

    def __init__(self, signame: str, result: RunResult | None = None) -> None:
        super().__init__(signame)
        self.signame = signame
        self.result = result


# --------------------------------------------------------------------------------------------------
# Reading notebooks and their parameters


def read_notebook(path: str | Path) -> Any:
    """Read a Jupytext notebook (MyST ``.md``, ``.py``) or an ``.ipynb`` as an nbformat notebook."""
    path = Path(path)
    if not path.is_file():
        raise NotebookError(f"notebook {str(path)!r} does not exist; give the path of a chapter, "
                            "e.g. notebooks/theorem45.md")
    import jupytext

    try:
        return jupytext.read(path)
    except UnicodeDecodeError as exc:
        raise NotebookError(f"notebook {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                            "give a chapter, e.g. notebooks/theorem45.md") from None
    except Exception as exc:  # noqa: BLE001 - jupytext and nbformat raise many types for a non-notebook
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NotebookError(f"{str(path)!r} is not a notebook that jupytext can read ({type(exc).__name__}: "
                            f"{first}); give a chapter, e.g. notebooks/theorem45.md") from None


def _parameters_cell(nb: Any, path: str | Path) -> tuple[int, Any]:
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


def notebook_parameters(path: str | Path) -> dict[str, Parameter]:
    """The parameters of a notebook (name -> :class:`Parameter`), in the order of its cell."""
    nb = read_notebook(path)
    _, cell = _parameters_cell(nb, path)
    return parse_parameters_cell(cell.source, where=f"{path}: parameters cell")


# --------------------------------------------------------------------------------------------------
# Values from the command line and config files


def parse_cli_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value as papermill reads it, extended to YAML scalars and lists.

    ``True``/``False``/``None`` as papermill; otherwise YAML (``0.05``, ``true``, ``[1, 2]``,
    ``null``); a string YAML leaves as text but that Python reads as a number (``1e-3``) becomes
    that number; anything else stays a string.
    """
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    import yaml

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


def read_yaml(path: str | Path, *, what: str, hint: str, error: type[UsageError] = UsageError) -> Any:
    """The content of the YAML file ``path``, or a one-line ``error`` naming the ``what`` file and,
    when it is missing, ``hint`` (what to give instead)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {str(path)!r} does not exist; {hint}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf8"))
    except UnicodeDecodeError as exc:
        raise error(f"{what} {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as "
                    "UTF-8") from None
    except OSError as exc:
        raise error(f"{what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ")
        raise error(f"{what} {str(path)!r} is not valid YAML: {first}") from exc


def load_config(path: str | Path) -> dict[str, Any]:
    """Parameters from a YAML file: a mapping ``name: value`` (or ``parameters: {name: value}``)."""
    data = read_yaml(path, what="config file", error=ParameterError,
                     hint="give the path of a YAML file of 'name: value' lines, e.g. configs/smoke_cpu.yaml")
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ParameterError(
            f"config file {str(path)!r} must hold a mapping 'name: value', found {type(data).__name__}")
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


# --------------------------------------------------------------------------------------------------
# What an executed notebook holds


_NUMPY_SCALAR = re.compile(r"^(?:np|numpy)\.(?:float|int|uint|bool|complex)\w*\((?P<inner>.*)\)$", re.S)


def _decode_text(text: str) -> Any:
    """A text/plain repr -> the Python literal it shows (``np.float64(0.5)`` -> 0.5), else the text."""
    m = _NUMPY_SCALAR.match(text.strip())
    candidate = m["inner"] if m else text
    try:
        return ast.literal_eval(candidate)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _decode_glue(data: Mapping[str, Any]) -> Any:
    """A glued mimebundle (prefix removed) -> a JSON-able value: JSON, a literal, text or HTML."""
    if "application/json" in data:
        return data["application/json"]
    text = data.get("text/plain")
    if isinstance(text, list):
        text = "".join(text)
    if text is not None:
        value = _decode_text(text)
        is_repr = isinstance(value, str) and value.startswith("<") and " at 0x" in value
        if not is_repr:
            return value
    html = data.get("text/html")
    if html is not None:
        return {"text/html": "".join(html) if isinstance(html, list) else html}
    for mime in data:
        if mime.startswith("image/"):
            return {"image": mime}
    return text


def extract_glue(nb: Any) -> dict[str, Any]:
    """Every value glued with myst-nb's ``glue`` in an executed notebook, decoded."""
    out: dict[str, Any] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if not meta or "name" not in meta:
                continue
            prefix = meta.get("mime_prefix", "")
            data = {k[len(prefix):] if prefix and k.startswith(prefix) else k: v
                    for k, v in output.get("data", {}).items()}
            out[meta["name"]] = _decode_glue(data)
    return out


def _claims(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every claim record of the chapters' ledgers glued in ``results``."""
    out: list[dict[str, Any]] = []
    for prefix in claims_api.glue_prefixes(results):
        try:
            out.extend(claims_api.read_ledger(results[claims_api.ledger_key(prefix)]))
        except ValueError:
            continue
    return out


def extract_figures(nb: Any, folder: str | Path) -> list[Path]:
    """Write every PNG/JPEG/SVG output as ``folder/cellNNN_K.EXT``, glued images as ``folder/KEY.EXT``."""
    folder = Path(folder)
    written: list[Path] = []
    exts = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        k = 0
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            meta = output.get("metadata", {}).get("scrapbook") or {}
            prefix = meta.get("mime_prefix", "")
            for mime, ext in exts.items():
                payload = data.get(prefix + mime)
                if payload is None:
                    continue
                if isinstance(payload, list):
                    payload = "".join(payload)
                raw = payload.encode("utf8") if ext == "svg" else base64.b64decode(payload)
                name = f"{meta['name']}.{ext}" if meta.get("name") else f"cell{index:03d}_{k}.{ext}"
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / name
                write_bytes_atomic(target, raw)
                written.append(target)
                k += 1
                break
    return written


# --------------------------------------------------------------------------------------------------
# Running


_SIGNAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
#: Seconds an interrupted cell is given to stop after SIGINT, then the kernel after SIGKILL.
_GRACE_INTERRUPT, _GRACE_KILL = 10.0, 30.0
_THREAD_NAME = "sdlib-papermill"


def abandoned_executions() -> list[threading.Thread]:
    """papermill threads still alive after their run returned (an interrupted run whose last save
    hangs): a command line about to exit ends the process without waiting for them."""
    return [t for t in threading.enumerate() if t.name == _THREAD_NAME and t.is_alive()]


class _Cancelled(Exception):
    """Raised in the executing thread before the next cell once a run is interrupted."""


class _Execution:
    """papermill runs in a thread of its own; the main thread keeps SIGINT and SIGTERM.

    A signal sets :attr:`signame`; the main thread then sends SIGINT to the kernel (the running
    cell stops with ``KeyboardInterrupt``, which papermill records in the notebook), no further
    cell starts (:meth:`on_cell_start`), and after a grace period, or at a second signal, the
    kernel is killed. nbclient installs no signal handlers of its own outside the main thread.
    """

    def __init__(self) -> None:
        self.signame: str | None = None
        self.signals = 0
        self.cell_index: int | None = None
        self.km: Any = None
        self.wake = threading.Event()

    def kernel_manager_class(self) -> type:
        from jupyter_client.manager import AsyncKernelManager

        execution = self

        class _KernelManager(AsyncKernelManager):  # remembers itself, so that the kernel can be signalled
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                execution.km = self

        return _KernelManager

    def on_cell_start(self, cell: Any = None, cell_index: int | None = None, **_: Any) -> None:
        if self.signame is not None:
            raise _Cancelled(f"interrupted by {self.signame}")
        self.cell_index = cell_index

    def handler(self, signum: int, frame: Any) -> None:
        self.signals += 1
        if self.signame is None:
            self.signame = _SIGNAMES.get(signum, f"signal {signum}")
        self.wake.set()

    def signal_kernel(self, signum: int) -> None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if process is None or process.poll() is not None:
            return
        try:  # the kernel runs in a session of its own: signal its process group
            os.killpg(os.getpgid(process.pid), signum)
        except OSError:
            try:
                os.kill(process.pid, signum)
            except OSError:
                pass

    def stop(self, thread: threading.Thread) -> None:
        """Interrupt the running cell, then kill the kernel if it does not stop, and wait for papermill.

        Before the first cell the kernel is still starting (a SIGINT would only print its import
        traceback): it is left to start, and :meth:`on_cell_start` ends the run before any cell.
        """
        if self.cell_index is not None:
            self.signal_kernel(signal.SIGINT)
        t_end = time.monotonic() + _GRACE_INTERRUPT
        while thread.is_alive() and time.monotonic() < t_end and self.signals < 2:
            thread.join(0.1)
        if thread.is_alive():
            self.signal_kernel(signal.SIGKILL)
            thread.join(_GRACE_KILL)


@contextmanager
def _signals_to(execution: _Execution) -> Iterator[bool]:
    """In the main thread: SIGINT and SIGTERM only set a flag while the run and its files are written."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {s: signal.signal(s, execution.handler) for s in _SIGNAMES}
    try:
        yield True
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


class _PapermillInspectionFilter(logging.Filter):
    """Drops papermill's parameter-inspection warnings, which a declared constraint sets off: its
    inspection cannot parse a line with a second '=' (``steps = 6  # >= 1; ...``: "Unable to parse
    line"), so it calls that parameter unknown ("Passed unknown parameter"). The runner has checked
    every name and value already (:func:`validate_parameters`); every other record passes."""

    _DROP = ("Unable to parse line", "Passed unknown parameter")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self._DROP)


@contextmanager
def _quiet_papermill_inspection() -> Iterator[None]:
    """:class:`_PapermillInspectionFilter` on the two papermill loggers that emit those warnings,
    for the duration of a run only."""
    loggers = [logging.getLogger("papermill"), logging.getLogger("papermill.translators")]
    quiet = _PapermillInspectionFilter()
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def _kernel_arguments(kernel_name: str) -> list[str]:
    """Quieter ipykernel: its own log goes to the terminal of every run, not to the notebook (start-up
    warnings; "KeyboardInterrupt caught in kernel" when an interrupt lands between two statements of
    the kernel rather than in the cell's code). Every error of a cell is in the executed notebook."""
    try:
        from jupyter_client.kernelspec import get_kernel_spec

        argv = get_kernel_spec(kernel_name).argv
    except Exception:  # noqa: BLE001 - an unknown kernel is reported by papermill itself
        return []
    return ["--IPKernelApp.log_level=CRITICAL"] if any("ipykernel" in a for a in argv) else []


def _replace_previous(outdir: Path, target: Path, notebook: Path, *, force: bool) -> None:
    """Refuse (unless ``force``) a folder whose files a run would replace and that hold a result, then
    remove the previous run's files and the temporary files a killed run left."""
    previous = outdir / "results.json"
    why = None
    if previous.exists():
        try:
            doc = json.loads(previous.read_text(encoding="utf8"))
        except (OSError, ValueError):
            doc = None
        if not isinstance(doc, dict):
            why = "a results.json that no run of this command wrote"
        elif doc.get("status") == "ok":
            why = f"a finished run of {doc.get('notebook')}"
        elif Path(str(doc.get("notebook", ""))).stem != notebook.stem:
            why = f"a run of another notebook ({doc.get('notebook')})"
    elif target.exists():
        why = f"{target.name}, which no run of this command wrote"
    if why is not None and not force:
        raise UsageError(f"output folder {str(outdir)!r} already holds {why}; give another -o/--outdir, or "
                         "--force to replace it")
    for stale in [*outdir.glob(f".{target.name}.*.tmp"), *outdir.glob(".results.json.*.tmp"),
                  *(outdir / "figures").glob(".*.tmp")]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    if previous.exists() or target.exists():
        target.unlink(missing_ok=True)
        shutil.rmtree(outdir / "figures", ignore_errors=True)   # the previous run's figures


def _mark_not_run(nb: Any, last_started: int | None) -> None:
    """Cells after the last one started never ran: papermill's clean-up calls them "completed" when the
    run stops between cells; call them "pending", as papermill does after a failed cell."""
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("papermill")
        if last_started is not None and index <= last_started or not isinstance(meta, dict):
            continue
        if meta.get("status") == "completed" and (cell.cell_type != "code" or cell.get("execution_count") is None):
            meta["status"] = "pending"


def run_notebook(
    notebook: str | Path,
    outdir: str | Path,
    *,
    parameters: Mapping[str, Any] | None = None,
    config: str | Path | None = None,
    kernel_name: str | None = None,
    timeout: float | None = None,
    progress_bar: bool = True,
    force: bool = False,
) -> RunResult:
    """Validate the parameters, execute ``notebook`` with papermill and write OUTDIR's files.

    OUTDIR is locked while the run writes into it (a second run into it is a :class:`UsageError`).
    A folder holding a finished run (``results.json`` says ``"ok"``), a run of another notebook, or
    an ``NAME.ipynb`` that no run wrote (``-o notebooks``) is refused unless ``force``; a failed or
    interrupted run of the same notebook is replaced. From the start ``results.json`` says
    ``"status": "running"``: a run killed before its end never leaves an old result in place.
    Hidden temporary files of a killed run are removed.

    ``config`` (a YAML file) is merged under ``parameters`` (``parameters`` wins). The notebook
    runs with its own directory as the working directory. A notebook that raises is not an
    exception here: its executed copy (with the traceback) and a ``results.json`` with
    ``"status": "failed"`` are written and the :class:`RunResult` says so. Invalid parameters
    (unknown, of the wrong type, or outside their declared constraint) raise
    :class:`ParameterError` before anything runs; a notebook without a usable parameters cell
    raises :class:`NotebookError`.

    SIGINT or SIGTERM (when called from the main thread) interrupts the run: the running cell gets
    a ``KeyboardInterrupt``, the notebook executed so far and ``results.json`` with
    ``"status": "interrupted"`` are written, then :class:`RunInterrupted` is raised with the
    :class:`RunResult`. A second signal kills the kernel at once.
    """
    import nbformat
    import papermill

    notebook = Path(notebook)
    outdir = Path(outdir)
    nb = read_notebook(notebook)
    _, cell = _parameters_cell(nb, notebook)
    params = parse_parameters_cell(cell.source, where=f"{notebook}: parameters cell")
    requested: dict[str, Any] = dict(load_config(config)) if config is not None else {}
    requested.update(parameters or {})
    overrides = validate_parameters(params, requested, notebook=str(notebook))
    effective = {name: overrides.get(name, p.default) for name, p in params.items()}
    if kernel_name is None:
        kernel_name = nb.metadata.get("kernelspec", {}).get("name", "python3")
    if timeout is not None and not timeout > 0:
        raise ParameterError(f"timeout must be a positive number of seconds, got {timeout!r}")
    # The paper's claims are asserted at the paper's parameters only; with other parameters the
    # notebook reports each claim's verdict instead of stopping at the first that differs.
    changed = sorted(k for k, v in overrides.items() if v != params[k].default and k != "claims_mode")
    if "claims_mode" in params and "claims_mode" not in overrides and changed:
        overrides["claims_mode"] = "report"
    claims_mode = overrides.get("claims_mode", params["claims_mode"].default if "claims_mode" in params else None)
    if claims_mode is not None:
        effective["claims_mode"] = claims_mode

    outdir = prepare_outdir(outdir)
    target = outdir / f"{notebook.stem}.ipynb"
    with folder_lock(outdir, f"a run of {notebook.name} (python -m sdlib run)"):
        _replace_previous(outdir, target, notebook, force=force)
        write_json_atomic(outdir / "results.json", {
            "notebook": str(notebook), "status": "running", "parameters": effective, "overrides": overrides,
            "claims_mode": claims_mode, "pid": os.getpid(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        execution = _Execution()
        with _signals_to(execution) as in_main_thread, _quiet_papermill_inspection():
            # papermill saves its output after every cell into a private folder: a papermill thread that
            # outlives an interrupted run (a save that hangs) can then write nothing once it is removed.
            workdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=outdir))
            tmp = workdir / target.name
            try:
                started = datetime.now(timezone.utc)
                t0 = time.perf_counter()
                box: dict[str, Any] = {}

                def execute() -> None:
                    try:
                        box["nb"] = papermill.execute_notebook(
                            nb, str(tmp), parameters=overrides, kernel_name=kernel_name,
                            progress_bar=progress_bar, cwd=str(notebook.resolve().parent),
                            execution_timeout=timeout, log_output=False,
                            kernel_manager_class=execution.kernel_manager_class(),
                            on_cell_start=execution.on_cell_start,
                            extra_arguments=_kernel_arguments(kernel_name))
                    except BaseException as exc:  # noqa: BLE001 - handed to the main thread below
                        box["exc"], box["tb"] = exc, traceback.format_exc()

                if in_main_thread:
                    thread = threading.Thread(target=execute, name=_THREAD_NAME, daemon=True)
                    thread.start()
                    while thread.is_alive() and execution.signame is None:
                        execution.wake.wait(0.2)
                    if execution.signame is not None:
                        execution.stop(thread)
                else:
                    execute()
                seconds = time.perf_counter() - t0
                status, error, error_tb = _outcome(box, execution)
                executed = box.get("nb")
                if executed is None and tmp.exists() and tmp.stat().st_size > 0:
                    try:  # the notebook as papermill last saved it
                        executed = nbformat.read(tmp, as_version=4)
                    except Exception:  # noqa: BLE001 - papermill may have left a partial file
                        executed = None
                if executed is None:
                    # papermill failed before writing anything (e.g. no such kernel): keep the input notebook.
                    executed = nb
                if status != "ok":
                    _mark_not_run(executed, execution.cell_index)
                write_bytes_atomic(target, nbformat.writes(executed).encode("utf8"))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)

            results = extract_glue(executed)
            figures = extract_figures(executed, outdir / "figures")
            doc: dict[str, Any] = {
                "notebook": str(notebook),
                "status": status,
                "parameters": effective,
                "overrides": overrides,
                "claims_mode": claims_mode,
                "results": results,
                "claims": _claims(results),
                "figures": [str(p.relative_to(outdir)) for p in figures],
                "executed_notebook": target.name,
            }
            if error is not None:
                doc["error"] = error
                if error_tb:
                    doc["traceback"] = error_tb
            seed = effective.get("seed")
            device = effective.get("device")
            doc["provenance"] = provenance(
                started=started, seconds=seconds, parameters=effective,
                seed=seed if isinstance(seed, (int, list)) and not isinstance(seed, bool) else None,
                device=device if isinstance(device, str) else None,
            )
            doc["provenance"]["kernel"] = kernel_name
            doc["provenance"]["command"] = " ".join(sys.argv) if sys.argv else None
            results_json = write_json_atomic(outdir / "results.json", doc)
        result = RunResult(status=status, notebook=target, results_json=results_json, figures=figures,
                           results=results, error=error)
        # a signal once the notebook had finished (while the files were written) changes nothing: the
        # run is whole and says so; the exit status follows results.json
        if execution.signame is not None and status == "interrupted":
            raise RunInterrupted(execution.signame, result)
        return result


def _outcome(box: Mapping[str, Any], execution: _Execution) -> tuple[str, str | None, str | None]:
    """``(status, error, traceback)`` of a papermill execution."""
    import papermill

    exc = box.get("exc")
    # the index in the executed notebook (0-based, papermill's injected-parameters cell included)
    where = f" while executing cell {execution.cell_index}" if execution.cell_index is not None else ""
    if execution.signame is not None and "nb" not in box:
        return "interrupted", f"interrupted by {execution.signame}{where}", None
    if exc is None:
        return "ok", None, None
    if isinstance(exc, papermill.PapermillExecutionError):
        error = f"{exc.ename}: {exc.evalue} (execution count {exc.exec_count})"
        return ("interrupted" if exc.ename == "KeyboardInterrupt" else "failed"), error, None
    # a kernel that dies, a timeout: still recorded
    return "failed", f"{type(exc).__name__}: {exc}", box.get("tb")


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
