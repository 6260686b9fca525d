"""What a rerun changed: the parameters that differ from the chapter's defaults, and the verdicts that moved.

A chapter's defaults are the paper's setting. After ``python -m sdlib run NOTEBOOK -p lam 0.05``
:func:`summarise_rerun` compares

- every parameter of the run with its default (both values, and the parameter's description), and
- every claim's verdict with its verdict at the defaults, read from the chapter's committed reference
  notebook ``notebooks/NAME.ipynb`` (:func:`reference_verdicts`: the glued ledger when the notebook
  keeps it, else the line each claim prints, ``✓ [paper] ex45.a_collapses: ... | measured ... | ...``,
  which the reference keeps), with the measured value and the criterion of both runs.

The :class:`RerunSummary` is printed by the command line (:meth:`RerunSummary.console`), written into
``results.json`` (:meth:`RerunSummary.record`) and shown as a banner at the top of the executed
notebook (:func:`insert_banner`).

While a rerun executes, its kernel's environment holds the changed parameters
(:data:`RERUN_ENV`, set by the runner), so that a chapter can draw them on its figures:
``annotate_parameters(fig, rerun_parameters())`` (:func:`sdlib.chapters.plotting.annotate_parameters`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdlib.chapters import claims as claims_api
from sdlib.chapters.outputs import notebook_claims
from sdlib.chapters.params import Parameter

__all__ = [
    "BANNER_TAG", "RERUN_ENV", "ChangedParameter", "ChangedVerdict", "RerunSummary", "changed_parameters",
    "changed_verdicts", "insert_banner", "reference_notebook", "reference_verdicts", "rerun_environment",
    "rerun_parameters", "summarise_rerun",
]

#: The tag of the banner cell that :func:`insert_banner` puts at the top of a rerun notebook.
BANNER_TAG = "sdlib-rerun-summary"

#: The environment variable through which a rerun's kernel learns the changed parameters: JSON
#: ``{name: [paper's value, this run's value]}`` (``{}`` at the defaults).
RERUN_ENV = "SDLIB_RERUN_PARAMETERS"

_VERDICT_OF = {symbol: verdict for verdict, symbol in claims_api.STATUS.items()}
#: A claim's printed line (:meth:`sdlib.chapters.claims.Claims.line`).
_LINE = re.compile(r"^(?P<status>\S) \[(?P<kind>\w+)\] (?P<prefix>\w+)\.(?P<key>\w+): (?P<statement>.*?)"
                   r"(?: \| measured (?P<measured>.*?))?(?: \| (?P<criterion>.*?))?"
                   r"(?: \| (?:setting|source): .*)?$")


@dataclass(frozen=True)
class ChangedParameter:
    """A parameter whose value differs from its default (the paper's setting)."""

    name: str
    default: Any
    value: Any
    description: str = ""


@dataclass(frozen=True)
class ChangedVerdict:
    """A claim whose verdict differs from its verdict at the defaults, with what was measured in each."""

    prefix: str
    key: str
    statement: str
    default: str            # the verdict at the defaults ("holds", "fails", ...)
    verdict: str            # the verdict of this run
    measured: str
    criterion: str
    measured_at_default: str = ""

    @property
    def name(self) -> str:
        return f"{self.prefix}.{self.key}"

    def arrow(self) -> str:
        """``✓ → ✗``: the two verdicts' symbols."""
        return f"{claims_api.STATUS.get(self.default, '?')} → {claims_api.STATUS.get(self.verdict, '?')}"


@dataclass
class RerunSummary:
    """The parameters changed against the chapter's defaults and the verdicts changed against the reference."""

    notebook: str
    parameters: list[ChangedParameter] = field(default_factory=list)
    verdicts: list[ChangedVerdict] = field(default_factory=list)
    claims_mode: str | None = None
    reference: str | None = None     # the notebook the verdicts at the defaults were read from
    compared: int = 0                # claims found both in this run and in the reference

    @property
    def changed(self) -> bool:
        return bool(self.parameters or self.verdicts)

    def record(self) -> dict[str, Any]:
        """The summary as JSON for ``results.json``'s ``"rerun"`` entry."""
        return {
            "parameters": [{"name": p.name, "default": p.default, "value": p.value} for p in self.parameters],
            "claims_mode": self.claims_mode, "reference": self.reference, "compared": self.compared,
            "verdicts": [{"claim": v.name, "statement": v.statement, "default": v.default, "verdict": v.verdict,
                          "measured": v.measured, "criterion": v.criterion,
                          "measured_at_default": v.measured_at_default} for v in self.verdicts],
        }

    def parameters_text(self) -> str:
        """``lam = 0.05 (paper: 0.2), gamma = 40.0 (paper: 80.0)``, or the defaults' phrase."""
        if not self.parameters:
            return "the chapter's defaults (the paper's setting)"
        return ", ".join(f"{p.name} = {p.value!r} (paper: {p.default!r})" for p in self.parameters)

    def _verdicts_head(self) -> str:
        if self.reference is None:
            return "verdicts not compared: the chapter has no reference notebook with its verdicts at the defaults"
        return (f"{len(self.verdicts)} of {self.compared} verdict(s) changed against the run at the defaults "
                f"({self.reference})")

    def console(self) -> list[str]:
        """The lines the command line prints after ``ran ...``: nothing when nothing changed."""
        if not self.changed:
            return []
        lines = ["parameters changed from the chapter's defaults (the paper's setting):"]
        width = max((len(p.name) for p in self.parameters), default=0)
        lines += [f"  {p.name.ljust(width)}  {p.default!r} -> {p.value!r}" + (f"  ({p.description})" if p.description
                                                                             else "") for p in self.parameters]
        if not self.parameters:
            lines = ["no parameter changed from the chapter's defaults (the paper's setting)"]
        if self.claims_mode == "report" and self.parameters:
            lines.append("claims are reported, not asserted (claims_mode = 'report')")
        lines.append(self._verdicts_head() + (":" if self.verdicts else ""))
        for v in self.verdicts:
            was = f" (at the defaults: {v.measured_at_default})" if v.measured_at_default else ""
            why = f" | {v.criterion}" if v.criterion else ""
            lines.append(f"  {v.arrow()}  {v.name}: {v.statement} | measured {v.measured}{was}{why}")
        return lines

    def markdown(self) -> str:
        """The banner of the executed notebook: the same summary as Markdown tables."""
        out = [f"**A rerun of this chapter with {self.parameters_text()}** (written by `python -m sdlib run`)."]
        if self.parameters:
            out += ["", "| parameter | the paper's (default) | this run |", "|---|---|---|"]
            out += [f"| `{p.name}` | `{p.default!r}` | `{p.value!r}` |" for p in self.parameters]
            out += ["", "Numbers shown through `glue` follow this run; text written around them describes the "
                        "paper's setting."]
        if self.claims_mode == "report" and self.parameters:
            out += ["The claims are reported, not asserted (`claims_mode = 'report'`)."]
        out += ["", self._verdicts_head() + ("." if not self.verdicts else ":")]
        if self.verdicts:
            out += ["", "| claim | at the defaults | this run | measured (defaults) | criterion |",
                    "|---|---|---|---|---|"]
            out += [f"| `{v.name}`: {_cell(v.statement)} | {_symbol(v.default)} | {_symbol(v.verdict)} | "
                    f"{_cell(v.measured)} ({_cell(v.measured_at_default) or 'n/a'}) | {_cell(v.criterion)} |"
                    for v in self.verdicts]
        return "\n".join(out)


def _symbol(verdict: str) -> str:
    return f"{claims_api.STATUS.get(verdict, '?')} {verdict}"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: one line, ``|`` escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def reference_notebook(notebook: str | Path) -> Path | None:
    """The committed reference ``NAME.ipynb`` beside a chapter ``NAME.md`` (the chapter itself when it
    is an ``.ipynb``), or None when there is none."""
    path = Path(notebook).with_suffix(".ipynb")
    return path if path.is_file() else None


def _printed_claims(nb: Any) -> list[dict[str, Any]]:
    """The claims a notebook printed (:meth:`sdlib.chapters.claims.Claims.line`) as partial records."""
    out: list[dict[str, Any]] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") != "stream":
                continue
            text = output.get("text", "")
            for line in ("".join(text) if isinstance(text, list) else text).splitlines():
                m = _LINE.match(line)
                if m and m["status"] in _VERDICT_OF:
                    out.append({"prefix": m["prefix"], "key": m["key"], "verdict": _VERDICT_OF[m["status"]],
                                "statement": m["statement"], "measured": m["measured"] or "",
                                "criterion": m["criterion"] or ""})
    return out


def reference_verdicts(path: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
    """``(prefix, key) -> claim record`` of an executed notebook: its glued ledger, else its printed claims."""
    import nbformat  # the book's dependencies are imported by the commands that run a chapter only

    nb = nbformat.read(str(path), as_version=4)
    records = notebook_claims(nb) or _printed_claims(nb)
    return {(str(r.get("prefix", "")), str(r.get("key", ""))): r for r in records if isinstance(r, Mapping)}


def changed_parameters(params: Mapping[str, Parameter], effective: Mapping[str, Any]) -> list[ChangedParameter]:
    """The parameters whose value in ``effective`` differs from the default (``claims_mode`` aside)."""
    return [ChangedParameter(name, p.default, effective[name], p.description)
            for name, p in params.items()
            if name != "claims_mode" and name in effective and _differs(effective[name], p.default)]


def rerun_environment(changed: Sequence[ChangedParameter]) -> dict[str, str]:
    """The kernel environment of a run with these changed parameters (:data:`RERUN_ENV`)."""
    return {RERUN_ENV: json.dumps({p.name: [p.default, p.value] for p in changed}, default=str)}


def rerun_parameters() -> dict[str, tuple[Any, Any]]:
    """In a chapter's kernel: ``{name: (paper's value, this run's value)}`` of the parameters this
    rerun changed, read from :data:`RERUN_ENV`; ``{}`` at the defaults or outside ``python -m sdlib run``."""
    import os

    try:
        data = json.loads(os.environ.get(RERUN_ENV, "{}"))
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): (v[0], v[1]) for k, v in data.items() if isinstance(v, list) and len(v) == 2}


def _differs(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str) and a != b


def changed_verdicts(claims: Sequence[Mapping[str, Any]],
                     reference: Mapping[tuple[str, str], Mapping[str, Any]]) -> tuple[list[ChangedVerdict], int]:
    """The claims of this run whose verdict differs from the reference's, and how many were compared."""
    out, compared = [], 0
    for c in claims:
        ref = reference.get((str(c.get("prefix", "")), str(c.get("key", ""))))
        if ref is None:
            continue
        compared += 1
        if ref.get("verdict") != c.get("verdict"):
            out.append(ChangedVerdict(
                prefix=str(c.get("prefix", "")), key=str(c.get("key", "")), statement=str(c.get("statement", "")),
                default=str(ref.get("verdict")), verdict=str(c.get("verdict")), measured=str(c.get("measured", "")),
                criterion=str(c.get("criterion", "")), measured_at_default=str(ref.get("measured", ""))))
    return out, compared


def summarise_rerun(notebook: str | Path, params: Mapping[str, Parameter], effective: Mapping[str, Any],
                    claims: Sequence[Mapping[str, Any]], *, claims_mode: str | None = None) -> RerunSummary:
    """What this run of ``notebook`` changed against the chapter's defaults and its reference's verdicts."""
    ref = reference_notebook(notebook)
    summary = RerunSummary(notebook=str(notebook), parameters=changed_parameters(params, effective),
                           claims_mode=claims_mode)
    if ref is None:
        return summary
    try:
        verdicts = reference_verdicts(ref)
    except Exception:  # noqa: BLE001 - an unreadable reference only means that nothing is compared
        return summary
    summary.reference = str(ref)
    summary.verdicts, summary.compared = changed_verdicts(claims, verdicts)
    return summary


def insert_banner(nb: Any, summary: RerunSummary) -> None:
    """Put the summary as a Markdown cell at the top of ``nb`` (in place), before the chapter's first cell.

    The cell is tagged :data:`BANNER_TAG` and carries :meth:`RerunSummary.record` in its metadata.
    """
    import nbformat  # the 'book' extra, imported when a run writes its notebook

    cell = nbformat.v4.new_markdown_cell(summary.markdown())
    cell.metadata["tags"] = [BANNER_TAG]
    cell.metadata["sdlib"] = {"rerun": summary.record()}
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
        cell.pop("id", None)   # cell ids exist from nbformat 4.5 on
    nb.cells.insert(0, cell)
