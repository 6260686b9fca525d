"""Rerun a chapter of the book with other parameters: papermill execution of the Jupytext notebooks.

``python -m sdlib run NOTEBOOK [-p NAME VALUE]... [-f configs/NAME.yaml] -o OUTDIR`` (see
:func:`main` in :mod:`sdlib.__main__`) reads a MyST-Markdown notebook, validates the requested
parameters against the notebook's ``parameters`` cell (papermill itself only warns about unknown
names, and never checks types), executes it with papermill and writes into OUTDIR

- ``NAME.ipynb``: the executed notebook (also when it fails: then with the traceback),
- ``figures/*.png``: every image the notebook displayed, named by cell index, and every glued image,
- ``results.json``: ``{"notebook", "status", "parameters", "results", "claims", "figures",
  "provenance"}``; ``results`` holds every value the notebook glued (myst-nb ``glue``), decoded to
  numbers and strings where possible, ``claims`` every record of the chapter's claims ledger
  (:class:`sdlib.claims.Claims`: kind, verdict, measured value, criterion), ``provenance`` the block
  of :func:`sdlib.provenance.provenance`.

Claims are asserted only at the paper's parameters: when any other parameter differs from its
default and ``claims_mode`` is not given, the runner sets the chapter's ``claims_mode`` parameter to
``"report"`` (the paper's statements about its own example need not hold for another one).

Every file is written under a temporary name and renamed when whole.

The parameters cell (tag ``parameters``) holds only plain literal assignments, one per line
(``lam = 0.2``); their defaults give each parameter's type. A value given on the command line is
read as a YAML scalar (``0.05``, ``1e-3``, ``true``, ``None``, ``[0.1, 0.2]``, ``rbf``); an ``int``
is accepted for a ``float`` parameter, a ``None`` default accepts any value, and anything else must
have the default's type.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sdlib import claims as claims_api
from sdlib.provenance import file_mode, provenance, write_bytes_atomic, write_json_atomic

__all__ = [
    "GLUE_PREFIX",
    "NotebookError",
    "Parameter",
    "ParameterError",
    "RunResult",
    "extract_figures",
    "extract_glue",
    "load_config",
    "notebook_parameters",
    "parse_cli_value",
    "parse_parameters_cell",
    "read_notebook",
    "run_notebook",
    "validate_parameters",
]

#: How myst-nb's ``glue(name, value, display=False)`` stores a value in a display_data output:
#: every mimetype of the value's mimebundle prefixed with this, and ``metadata.scrapbook.name``.
GLUE_PREFIX = "application/papermill.record/"

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", type(None): "any"}


class NotebookError(ValueError):
    """The notebook cannot be run: no parameters cell, or a cell that is not plain assignments."""


class ParameterError(ValueError):
    """A parameter given on the command line or in a config file does not fit the notebook."""


@dataclass(frozen=True)
class Parameter:
    """One assignment of a notebook's ``parameters`` cell."""

    name: str
    default: Any
    line: int

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


# --------------------------------------------------------------------------------------------------
# Reading notebooks and their parameters


def read_notebook(path: str | Path) -> Any:
    """Read a Jupytext notebook (MyST ``.md``, ``.py``) or an ``.ipynb`` as an nbformat notebook."""
    path = Path(path)
    if not path.is_file():
        raise NotebookError(f"notebook {str(path)!r} does not exist")
    import jupytext

    return jupytext.read(path)


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


def parse_parameters_cell(source: str, *, where: str = "parameters cell") -> dict[str, Parameter]:
    """Parse a ``parameters`` cell: plain literal assignments ``name = literal``, one per line.

    Comments and blank lines are allowed; anything else (an expression, an import, a tuple target)
    raises :class:`NotebookError` naming the line.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise NotebookError(f"{where}: not valid Python ({exc.msg}, line {exc.lineno})") from exc
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
        params[name] = Parameter(name=name, default=default, line=stmt.lineno)
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


def load_config(path: str | Path) -> dict[str, Any]:
    """Parameters from a YAML file: a mapping ``name: value`` (or ``parameters: {name: value}``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf8"))
    except yaml.YAMLError as exc:
        raise ParameterError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
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

    Raises :class:`ParameterError` for an unknown name (listing the valid ones) or a value whose
    type does not match the default's (naming the parameter, the value and the expected type).
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
        out[name] = float(value) if isinstance(p.default, float) else value
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


def run_notebook(
    notebook: str | Path,
    outdir: str | Path,
    *,
    parameters: Mapping[str, Any] | None = None,
    config: str | Path | None = None,
    kernel_name: str | None = None,
    timeout: float | None = None,
    progress_bar: bool = True,
) -> RunResult:
    """Validate the parameters, execute ``notebook`` with papermill and write OUTDIR's files.

    ``config`` (a YAML file) is merged under ``parameters`` (``parameters`` wins). The notebook
    runs with its own directory as the working directory. A notebook that raises is not an
    exception here: its executed copy (with the traceback) and a ``results.json`` with
    ``"status": "failed"`` are written and the :class:`RunResult` says so. Invalid parameters raise
    :class:`ParameterError` before anything runs; a notebook without a usable parameters cell
    raises :class:`NotebookError`.
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

    outdir.mkdir(parents=True, exist_ok=True)
    target = outdir / f"{notebook.stem}.ipynb"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp.ipynb", dir=outdir)
    os.close(fd)
    tmp = Path(tmp_name)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    status, error, error_tb = "ok", None, None
    executed = None
    # The paper's claims are asserted at the paper's parameters only; with other parameters the
    # notebook reports each claim's verdict instead of stopping at the first that differs.
    changed = sorted(k for k, v in overrides.items() if v != params[k].default and k != "claims_mode")
    if "claims_mode" in params and "claims_mode" not in overrides and changed:
        overrides["claims_mode"] = "report"
    claims_mode = overrides.get("claims_mode", params["claims_mode"].default if "claims_mode" in params else None)
    if claims_mode is not None:
        effective["claims_mode"] = claims_mode
    try:
        executed = papermill.execute_notebook(
            nb,
            str(tmp),
            parameters=overrides,
            kernel_name=kernel_name,
            progress_bar=progress_bar,
            cwd=str(notebook.resolve().parent),
            execution_timeout=timeout,
            log_output=False,
        )
    except papermill.PapermillExecutionError as exc:
        status = "failed"
        error = f"{exc.ename}: {exc.evalue} (execution count {exc.exec_count})"
    except Exception as exc:  # noqa: BLE001 - a kernel that dies, a timeout: still record it
        status = "failed"
        error = f"{type(exc).__name__}: {exc}"
        error_tb = traceback.format_exc()
    seconds = time.perf_counter() - t0

    if executed is None and tmp.exists() and tmp.stat().st_size > 0:
        try:
            executed = nbformat.read(tmp, as_version=4)
        except Exception:  # noqa: BLE001 - papermill may have left a partial file
            executed = None
    if executed is None:
        # papermill failed before writing anything (e.g. no such kernel): keep the input notebook.
        executed = nb
        nbformat.write(executed, tmp)
    os.chmod(tmp, file_mode())
    os.replace(tmp, target)

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
    return RunResult(status=status, notebook=target, results_json=results_json, figures=figures,
                     results=results, error=error)


def format_parameters(params: Mapping[str, Parameter]) -> str:
    """A plain-text table of a notebook's parameters (name, type, default)."""
    rows = [("name", "type", "default")] + [(p.name, p.type_name, repr(p.default)) for p in params.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def parameters_json(params: Mapping[str, Parameter]) -> str:
    """The parameters as JSON: ``{name: {"type", "default"}}``."""
    return json.dumps({p.name: {"type": p.type_name, "default": p.default} for p in params.values()}, indent=2)
