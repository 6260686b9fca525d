"""Rerun a chapter of the book with other parameters: the steps of ``python -m sdlib run``.

``python -m sdlib run NOTEBOOK [-p NAME VALUE]... [-f configs/NAME.yaml] -o OUTDIR`` (see
:mod:`sdlib.cli`) reads a MyST-Markdown notebook, validates the requested parameters against the
notebook's ``parameters`` cell (:mod:`sdlib.chapters.params`; papermill itself only warns about
unknown names, and never checks types), executes it with papermill (:mod:`sdlib.chapters.execute`)
and writes into OUTDIR

- ``NAME.ipynb``: the executed notebook (also when it fails: then with the traceback); a rerun away
  from the defaults starts with a banner cell saying what changed (:mod:`sdlib.chapters.changes`),
- ``figures/*.png``: every image the notebook displayed, named after its figure (``fig-2a.png``)
  with the run's parameters in the PNG's text chunks, and every glued image
  (:mod:`sdlib.chapters.outputs`),
- ``results.json``: ``{"notebook", "status", "parameters", "results", "claims", "figures", "rerun",
  "provenance"}``; ``status`` is ``"ok"``, ``"failed"`` or ``"interrupted"``, ``results`` holds every
  value the notebook glued (myst-nb ``glue``), decoded to numbers and strings where possible,
  ``claims`` every record of the chapter's claims ledger (:class:`sdlib.chapters.claims.Claims`: kind,
  verdict, measured value, criterion), ``rerun`` the parameters changed against the defaults and the
  verdicts changed against the reference run, ``provenance`` the block of
  :func:`sdlib.provenance.provenance`.

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
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sdlib.chapters.changes import RerunSummary, changed_parameters, insert_banner, rerun_environment, summarise_rerun
from sdlib.chapters.execute import Executed, Execution, execute, quiet_papermill_inspection, signals_to
from sdlib.chapters.outputs import claim_records, extract_figures, extract_glue
from sdlib.chapters.params import NotebookError as NotebookError
from sdlib.chapters.params import Parameter, ParameterError, load_parameter_file, read_chapter, validate_parameters
from sdlib.chapters.params import notebook_parameters as notebook_parameters
from sdlib.errors import UsageError
from sdlib.provenance import folder_lock, prepare_outdir, provenance, write_bytes_atomic, write_json_atomic

# NotebookError, ParameterError and notebook_parameters stay importable from here, as before the
# parameter language moved to sdlib.chapters.params (new code imports them from there).
__all__ = ["RunInterrupted", "RunPlan", "RunResult", "plan_run", "run_notebook"]


@dataclass
class RunResult:
    """What :func:`run_notebook` wrote: paths, status, the decoded results and what the rerun changed."""

    status: str
    notebook: Path
    results_json: Path
    figures: list[Path]
    results: dict[str, Any]
    error: str | None = None
    summary: RerunSummary | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM; its files are written (``result.status == "interrupted"``)."""

    def __init__(self, signame: str, result: RunResult | None = None) -> None:
        super().__init__(signame)
        self.signame = signame
        self.result = result


@dataclass
class RunPlan:
    """A validated run: the notebook, its parameters, what papermill injects and what the run uses."""

    notebook: Path
    nb: Any
    params: dict[str, Parameter]
    overrides: dict[str, Any]       # what papermill injects (validated, claims_mode included)
    effective: dict[str, Any]       # every parameter's value in this run
    claims_mode: str | None
    kernel_name: str
    timeout: float | None


def plan_run(notebook: str | Path, *, parameters: Mapping[str, Any] | None = None,
             config: str | Path | None = None, kernel_name: str | None = None,
             timeout: float | None = None) -> RunPlan:
    """Read ``notebook`` and validate the run's parameters: ``config`` (a YAML file) under ``parameters``.

    Raises :class:`ParameterError` for an unknown name, a wrong type or a value outside its declared
    constraint, :class:`NotebookError` for a notebook without a usable parameters cell; nothing runs.
    The paper's claims are asserted at the paper's parameters only: with other parameters, and no
    ``claims_mode`` given, the notebook reports each claim's verdict instead of stopping at the
    first that differs (``claims_mode = "report"``).
    """
    notebook = Path(notebook)
    nb, params = read_chapter(notebook)
    requested: dict[str, Any] = dict(load_parameter_file(config)) if config is not None else {}
    requested.update(parameters or {})
    overrides = validate_parameters(params, requested, notebook=str(notebook))
    effective = {name: overrides.get(name, p.default) for name, p in params.items()}
    if timeout is not None and not timeout > 0:
        raise ParameterError(f"timeout must be a positive number of seconds, got {timeout!r}")
    changed = sorted(k for k, v in overrides.items() if v != params[k].default and k != "claims_mode")
    if "claims_mode" in params and "claims_mode" not in overrides and changed:
        overrides["claims_mode"] = "report"
    claims_mode = overrides.get("claims_mode", params["claims_mode"].default if "claims_mode" in params else None)
    if claims_mode is not None:
        effective["claims_mode"] = claims_mode
    kernel = kernel_name if kernel_name is not None else nb.metadata.get("kernelspec", {}).get("name", "python3")
    return RunPlan(notebook=notebook, nb=nb, params=params, overrides=overrides, effective=effective,
                   claims_mode=claims_mode, kernel_name=kernel, timeout=timeout)


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


def _running_record(plan: RunPlan) -> dict[str, Any]:
    """``results.json`` from the start of a run: ``"status": "running"``, so that a killed run never
    leaves an old result in place."""
    return {"notebook": str(plan.notebook), "status": "running", "parameters": plan.effective,
            "overrides": plan.overrides, "claims_mode": plan.claims_mode, "pid": os.getpid(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _figure_text(plan: RunPlan, summary: RerunSummary) -> dict[str, str]:
    """The text chunks of every figure of the run: the chapter and the parameters changed against the paper's."""
    changed = {p.name: p.value for p in summary.parameters}
    return {"Source": f"{plan.notebook.as_posix()} (python -m sdlib run)", "Parameters": summary.parameters_text(),
            "sdlib:changed-parameters": json.dumps(changed, ensure_ascii=False, default=str)}


def _provenance(plan: RunPlan, run: Executed) -> dict[str, Any]:
    seed, device = plan.effective.get("seed"), plan.effective.get("device")
    block = provenance(
        started=run.started, seconds=run.seconds, parameters=plan.effective,
        seed=seed if isinstance(seed, (int, list)) and not isinstance(seed, bool) else None,
        device=device if isinstance(device, str) else None)
    block["kernel"] = plan.kernel_name
    block["command"] = " ".join(sys.argv) if sys.argv else None
    return block


def _write_outputs(plan: RunPlan, run: Executed, outdir: Path, target: Path) -> RunResult:
    """Summarise the run, write the executed notebook (with its banner), the figures and ``results.json``."""
    results = extract_glue(run.nb)
    claims = claim_records(results)
    summary = summarise_rerun(plan.notebook, plan.params, plan.effective, claims, claims_mode=plan.claims_mode)
    if summary.changed:
        insert_banner(run.nb, summary)
    import nbformat  # with papermill: only the commands that execute a chapter import it

    write_bytes_atomic(target, nbformat.writes(run.nb).encode("utf8"))
    figures = extract_figures(run.nb, outdir / "figures", text=_figure_text(plan, summary))
    doc: dict[str, Any] = {
        "notebook": str(plan.notebook), "status": run.status, "parameters": plan.effective,
        "overrides": plan.overrides, "claims_mode": plan.claims_mode, "results": results, "claims": claims,
        "figures": [str(p.relative_to(outdir)) for p in figures], "executed_notebook": target.name,
        "rerun": summary.record(),
    }
    if run.error is not None:
        doc["error"] = run.error
        if run.traceback:
            doc["traceback"] = run.traceback
    doc["provenance"] = _provenance(plan, run)
    results_json = write_json_atomic(outdir / "results.json", doc)
    return RunResult(status=run.status, notebook=target, results_json=results_json, figures=figures,
                     results=results, error=run.error, summary=summary)


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

    ``config`` (a YAML file) is merged under ``parameters`` (``parameters`` wins): :func:`plan_run`.
    The notebook runs with its own directory as the working directory. A notebook that raises is
    not an exception here: its executed copy (with the traceback) and a ``results.json`` with
    ``"status": "failed"`` are written and the :class:`RunResult` says so. Invalid parameters
    (unknown, of the wrong type, or outside their declared constraint) raise
    :class:`ParameterError` before anything runs; a notebook without a usable parameters cell
    raises :class:`NotebookError`.

    SIGINT or SIGTERM (when called from the main thread) interrupts the run: the running cell gets
    a ``KeyboardInterrupt``, the notebook executed so far and ``results.json`` with
    ``"status": "interrupted"`` are written, then :class:`RunInterrupted` is raised with the
    :class:`RunResult`. A second signal kills the kernel at once.
    """
    plan = plan_run(notebook, parameters=parameters, config=config, kernel_name=kernel_name, timeout=timeout)
    outdir = prepare_outdir(Path(outdir))
    target = outdir / f"{plan.notebook.stem}.ipynb"
    with folder_lock(outdir, f"a run of {plan.notebook.name} (python -m sdlib run)"):
        _replace_previous(outdir, target, plan.notebook, force=force)
        write_json_atomic(outdir / "results.json", _running_record(plan))
        execution = Execution()
        with signals_to(execution) as in_main_thread, quiet_papermill_inspection():
            run = execute(plan.nb, outdir, target.name, execution, in_main_thread=in_main_thread,
                          parameters=plan.overrides, kernel_name=plan.kernel_name,
                          cwd=plan.notebook.resolve().parent, timeout=plan.timeout, progress_bar=progress_bar,
                          environment=rerun_environment(changed_parameters(plan.params, plan.effective)))
            result = _write_outputs(plan, run, outdir, target)
        # a signal once the notebook had finished (while the files were written) changes nothing: the
        # run is whole and says so; the exit status follows results.json
        if execution.signame is not None and result.status == "interrupted":
            raise RunInterrupted(execution.signame, result)
        return result
