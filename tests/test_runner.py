"""``python -m sdlib run`` / :mod:`sdlib.chapters.runner` on tiny notebooks written into tmp_path.

What is checked: the parameters cell is parsed with its types and its declared constraints (the
grammar of the trailing comments, each form against values inside and outside it, intervals
against their definition); unknown names, wrong types and values outside a constraint are errors
naming the parameter and the value (exit status 2, one line on stderr, nothing executed); YAML
config values are merged under ``-p``; the notebook runs in its own folder; ``results.json`` holds
the glued values decoded, the claims' records, the figures and a provenance block; a failing
notebook keeps its executed copy with the traceback, says ``"status": "failed"`` and exits 1;
SIGINT during a cell keeps the notebook executed so far, says ``"status": "interrupted"``, prints
one line, exits 130 and leaves no kernel (SIGTERM, handled alike, is sent to a run in
tests/test_sweep.py); no temporary file is left behind; papermill's warnings about the constraint
comments are silenced during a run only; the example of results.json on book/rerun.md has the keys
of a real one.

The end-to-end tests start a Jupyter kernel (a few seconds each); the rest are pure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdlib.chapters import constraints, execute, outputs, runner
from sdlib.chapters import params as chapter_params
from sdlib.cli import main

HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
    jupytext_version: 1.19.6
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""

TINY = HEADER + """
# A tiny chapter

```{code-cell} ipython3
:tags: [parameters]
lam = 0.2              # ridge penalty (any sign, so that a claim can fail)
steps = 3              # >= 1; distillation steps
kernel = "rbf"         # one of: rbf, laplacian; kernel name
alphas = [0.1, 0.25]   # each in [0, 1]; weights
fail = False
note = None
claims_mode = "assert"  # one of: assert, report; assert the claims, or only report them
```

```{code-cell} ipython3
from pathlib import Path

import matplotlib.pyplot as plt
from myst_nb import glue

from sdlib.chapters.claims import Claims, at_least, at_most

here = Path("data.txt").read_text().strip()   # relative to the notebook's folder
claims = Claims("tiny", chapter="Tiny", mode=claims_mode)
claims.check("lam_positive", "lam is positive", where="test", measured=lam,
             criterion=at_least(1e-300, why="a ridge penalty"))
claims.check("lam_negative", "lam is negative (a claim that does not hold)", where="test", measured=lam,
             criterion=at_most(0.0, why="sign"), expect="fails")
glue("tiny_twice_lam", 2 * lam, display=False)
glue("tiny_steps", steps, display=False)
glue("tiny_kernel", kernel, display=False)
glue("tiny_alphas", alphas, display=False)
glue("tiny_here", here, display=False)
glue("tiny_note", note, display=False)
```

```{code-cell} ipython3
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot(range(steps), [lam * t for t in range(steps)])
ax.set_title(kernel)
plt.show()
claims.glue()
```

```{code-cell} ipython3
if fail:
    raise RuntimeError("asked to fail at lam = " + str(lam))
glue("tiny_done", True, display=False)
```
"""


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    folder = tmp_path / "nb"
    folder.mkdir()
    (folder / "data.txt").write_text("beside the notebook\n")
    path = folder / "tiny.md"
    path.write_text(TINY)
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith("."))


# ------------------------------------------------------------------------------------------------
# Pure parts: no kernel


def test_parameters_cell_is_parsed_with_types(tiny: Path) -> None:
    params = chapter_params.notebook_parameters(tiny)
    assert list(params) == ["lam", "steps", "kernel", "alphas", "fail", "note", "claims_mode"]
    assert {n: p.type_name for n, p in params.items()} == {
        "lam": "float", "steps": "int", "kernel": "str", "alphas": "list", "fail": "bool", "note": "any",
        "claims_mode": "str"}
    assert params["alphas"].default == [0.1, 0.25]
    assert params["note"].default is None


@pytest.mark.parametrize("source, fragment", [
    ("lam = 0.2\nx = lam * 2\n", "literal"),
    ("import numpy\n", "only plain assignments"),
    ("a, b = 1, 2\n", "only plain assignments"),
    ("lam = 0.2\nlam = 0.3\n", "assigned twice"),
    ("lam = (\n", "not valid Python"),
])
def test_parameters_cell_must_hold_plain_literals(source: str, fragment: str) -> None:
    with pytest.raises(chapter_params.NotebookError, match=fragment):
        chapter_params.parse_parameters_cell(source)


def test_notebook_without_parameters_cell(tmp_path: Path) -> None:
    path = tmp_path / "bare.md"
    path.write_text(HEADER + "\n# Bare\n\n```{code-cell} ipython3\nx = 1\n```\n")
    with pytest.raises(chapter_params.NotebookError, match="no code cell tagged 'parameters'"):
        chapter_params.notebook_parameters(path)


@pytest.mark.parametrize("text, value", [
    ("0.05", 0.05), ("1e-3", 1e-3), ("40", 40), ("-2", -2), ("true", True), ("True", True),
    ("False", False), ("None", None), ("null", None), ("rbf", "rbf"), ("[0.1, 0.25]", [0.1, 0.25]),
    ("2021-01-01", "2021-01-01"),
])
def test_cli_values_are_yaml_scalars(text: str, value: object) -> None:
    got = constraints.parse_cli_value(text)
    assert got == value and type(got) is type(value)


def test_validation_accepts_int_for_float_and_anything_for_none(tiny: Path) -> None:
    params = chapter_params.notebook_parameters(tiny)
    out = chapter_params.validate_parameters(params, {"lam": 1, "note": [1, "a"], "alphas": [], "fail": True})
    assert out == {"lam": 1.0, "note": [1, "a"], "alphas": [], "fail": True}
    assert isinstance(out["lam"], float)


@pytest.mark.parametrize("values, fragments", [
    ({"lam": "abc"}, ["'lam'", "'abc'", "expected float"]),
    ({"steps": 2.5}, ["'steps'", "2.5", "expected int"]),
    ({"steps": True}, ["'steps'", "True", "expected int"]),
    ({"lam": True}, ["'lam'", "expected float"]),
    ({"fail": 1}, ["'fail'", "expected bool"]),
    ({"alphas": 0.1}, ["'alphas'", "0.1", "expected list"]),
    ({"kernel": 3}, ["'kernel'", "expected str"]),
    ({"lam": None}, ["'lam'", "None", "expected float"]),
])
def test_wrong_types_name_parameter_value_and_type(tiny: Path, values: dict, fragments: list[str]) -> None:
    params = chapter_params.notebook_parameters(tiny)
    with pytest.raises(chapter_params.ParameterError) as err:
        chapter_params.validate_parameters(params, values, notebook="tiny.md")
    for f in fragments:
        assert f in str(err.value)


def test_unknown_parameter_lists_the_valid_ones(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code = main(["run", str(tiny), "-p", "lamda", "0.1", "-o", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown parameter 'lamda'" in err
    for name in ("lam", "steps", "kernel", "alphas", "fail", "note"):
        assert f"{name} (" in err
    assert not out.exists(), "nothing may be written before the parameters are valid"


def test_wrong_type_on_the_command_line_exits_2(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["run", str(tiny), "-p", "steps", "three", "-o", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'steps'" in err and "'three'" in err and "expected int" in err


def test_config_file_errors(tiny: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(chapter_params.ParameterError, match="must hold a mapping"):
        chapter_params.load_parameter_file(bad)
    with pytest.raises(chapter_params.ParameterError, match="does not exist"):
        chapter_params.load_parameter_file(tmp_path / "missing.yaml")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("gamma: 3\n")
    with pytest.raises(chapter_params.ParameterError, match="unknown parameter 'gamma'"):
        runner.run_notebook(tiny, tmp_path / "o", config=unknown, progress_bar=False)
    nested = tmp_path / "nested.yaml"
    nested.write_text("parameters:\n  lam: 0.5\n")
    assert chapter_params.load_parameter_file(nested) == {"lam": 0.5}


def test_params_command_lists_defaults_and_types(tiny: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["params", str(tiny)]) == 0
    table = capsys.readouterr().out
    assert "lam" in table and "float" in table and "0.2" in table and "[0.1, 0.25]" in table
    assert ">= 1" in table and "one of: rbf, laplacian" in table and "distillation steps" in table
    assert main(["params", str(tiny), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["steps"] == {"type": "int", "default": 3, "constraint": ">= 1", "description": "distillation steps"}
    assert data["note"] == {"type": "any", "default": None, "constraint": None, "description": ""}
    assert data["lam"]["constraint"] is None and data["lam"]["description"].startswith("ridge penalty")


def test_glue_decoding_from_a_hand_made_notebook() -> None:
    import nbformat

    def glued(name: str, bundle: dict) -> nbformat.NotebookNode:
        return nbformat.from_dict({
            "output_type": "display_data", "data": {outputs.GLUE_PREFIX + k: v for k, v in bundle.items()},
            "metadata": {"scrapbook": {"name": name, "mime_prefix": outputs.GLUE_PREFIX}}})

    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        glued("a_float", {"text/plain": "0.125"}),
        glued("a_str", {"text/plain": "'✓'"}),
        glued("a_list", {"text/plain": "[1, 2.5]"}),
        glued("a_json", {"application/json": {"x": 1}, "text/plain": "<IPython.core.display.JSON object>"}),
        glued("a_table", {"text/plain": "<pandas.io.formats.style.Styler at 0x7f>", "text/html": "<table/>"}),
        glued("a_numpy", {"text/plain": "np.float64(0.5)"}),
        nbformat.v4.new_output("display_data", data={"text/plain": "not glued"}),
    ]
    nb = nbformat.from_dict({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    got = outputs.extract_glue(nb)
    assert got == {"a_float": 0.125, "a_str": "✓", "a_list": [1, 2.5], "a_json": {"x": 1},
                   "a_table": {"text/html": "<table/>"}, "a_numpy": 0.5}


# ------------------------------------------------------------------------------------------------
# End to end: one kernel each


def test_run_writes_notebook_figures_and_results(tiny: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("lam: 0.5\nsteps: 4\nkernel: laplacian\n")
    out = tmp_path / "out"
    code = main(["run", str(tiny), "-f", str(config), "-p", "lam", "0.75", "-p", "alphas", "[0.5]",
                 "-o", str(out), "--no-progress", "--timeout", "120"])
    assert code == 0
    assert (out / "tiny.ipynb").is_file()
    doc = json.loads((out / "results.json").read_text())
    assert doc["status"] == "ok" and "error" not in doc
    assert doc["claims_mode"] == "report"  # parameters changed: claims reported, not asserted
    # -p wins over the file; the file wins over the defaults; the rest keep their defaults
    assert doc["parameters"] == {"lam": 0.75, "steps": 4, "kernel": "laplacian", "alphas": [0.5],
                                 "fail": False, "note": None, "claims_mode": "report"}
    res = doc["results"]
    assert res["tiny_twice_lam"] == pytest.approx(1.5)
    assert res["tiny_steps"] == 4 and res["tiny_kernel"] == "laplacian" and res["tiny_alphas"] == [0.5]
    assert res["tiny_here"] == "beside the notebook"          # ran in the notebook's folder
    assert res["tiny_note"] is None and res["tiny_done"] is True
    assert "text/html" in res["tiny_claims"]
    by_key = {c["key"]: c for c in doc["claims"]}
    assert by_key["lam_positive"]["status"] == "✓" and by_key["lam_positive"]["kind"] == "paper"
    assert by_key["lam_negative"]["status"] == "✗" and by_key["lam_negative"]["measured"] == "0.75"
    prov = doc["provenance"]
    for key in ("git_commit", "python", "packages", "device", "started", "seconds", "parameters"):
        assert key in prov
    assert prov["parameters"]["lam"] == 0.75 and prov["seconds"] > 0
    assert doc["figures"] and all((out / f).is_file() for f in doc["figures"])
    png = (out / doc["figures"][0]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # the injected parameters are in the executed notebook
    executed = json.loads((out / "tiny.ipynb").read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "lam = 0.75" in "".join(injected[0]["source"])
    assert _leftovers(out) == []
    _matches_the_rerun_page(doc)


ROOT = Path(__file__).resolve().parents[1]


def _matches_the_rerun_page(doc: dict) -> None:
    """The example of results.json on book/rerun.md has the keys of a real one, down to the claim
    records and the provenance block, and quotes a claim that the chapter it names records."""
    page = (ROOT / "book" / "rerun.md").read_text(encoding="utf8")
    block = re.search(r"```json\n(.*?)\n\s*```", page[page.index("* `results.json`"):], re.S)
    assert block is not None, "no JSON example of results.json on book/rerun.md"
    example = json.loads(block[1])
    assert set(example) == set(doc)
    assert set(example["claims"][0]) == set(doc["claims"][0])
    assert set(example["provenance"]) == set(doc["provenance"])
    chapter = (ROOT / example["notebook"]).read_text(encoding="utf8")
    claim = example["claims"][0]
    assert f'claims.check("{claim["key"]}", "{claim["statement"]}"' in chapter
    assert f'where="{claim["where"]}"' in chapter


def test_failing_notebook_keeps_traceback_and_exits_1(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "failed"
    proc = subprocess.run(
        [sys.executable, "-m", "sdlib", "run", str(tiny), "-p", "fail", "true", "-p", "lam", "0.3",
         "-p", "steps", "2", "-o", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    # one line: no papermill warning about the constraint comment of 'steps' ('>= 1' holds a second '=')
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("python -m sdlib run: error:"), proc.stderr
    assert "failed" in proc.stderr and "asked to fail at lam = 0.3" in proc.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["status"] == "failed"
    assert "RuntimeError" in doc["error"] and "asked to fail" in doc["error"]
    assert "tiny_done" not in doc["results"] and doc["results"]["tiny_twice_lam"] == pytest.approx(0.6)
    executed = json.loads((out / "tiny.ipynb").read_text())
    errors = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors and errors[0]["ename"] == "RuntimeError"
    assert any("asked to fail" in line for line in errors[0]["traceback"])
    assert "provenance" in doc and doc["provenance"]["parameters"]["fail"] is True
    assert _leftovers(out) == []


def test_papermill_inspection_warnings_are_dropped_only_during_a_run(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    loggers = [logging.getLogger("papermill"), logging.getLogger("papermill.translators")]
    with caplog.at_level(logging.WARNING), execute.quiet_papermill_inspection():
        loggers[1].warning("Unable to parse line 3 'steps = 6  # >= 1; steps'.")
        loggers[0].warning("Passed unknown parameter: steps")
        loggers[0].warning("Input notebook missing")      # any other warning still shows
    assert [r.getMessage() for r in caplog.records] == ["Input notebook missing"]
    assert all(not lg.filters for lg in loggers)          # nothing left behind after the run


def test_claims_mode_is_a_parameter_that_the_runner_sets(tiny: Path, tmp_path: Path) -> None:
    """At the defaults the chapter asserts; with other parameters the runner passes claims_mode='report';
    an explicit -p claims_mode wins, and a value outside ('assert', 'report') is refused before running."""
    out = tmp_path / "defaults"
    assert main(["run", str(tiny), "-o", str(out), "--no-progress"]) == 0
    assert json.loads((out / "results.json").read_text())["claims_mode"] == "assert"
    out2 = tmp_path / "forced"
    assert main(["run", str(tiny), "-p", "lam", "-1", "-p", "claims_mode", "assert", "-o", str(out2),
                 "--no-progress"]) == 1  # lam = -1 makes lam_positive fail, and assert mode stops there
    doc = json.loads((out2 / "results.json").read_text())
    assert doc["status"] == "failed" and "ClaimFailed" in doc["error"]
    assert main(["run", str(tiny), "-p", "claims_mode", "loud", "-o", str(tmp_path / "bad"), "--no-progress"]) == 2


# ------------------------------------------------------------------------------------------------
# Declared constraints: the grammar of the parameters cell's trailing comments


@pytest.mark.parametrize("comment, default, text, description, good, bad", [
    ("> 0; ridge penalty λ", 0.2, "> 0", "ridge penalty λ", [1e-300, 5], [0, -1.0, float("nan")]),
    (">= 1; distillation steps τ", 6, ">= 1", "distillation steps τ", [1, 100], [0, -3]),
    ("< 1; x", 0.5, "< 1", "x", [0.99, -5], [1, 2.0]),
    ("<= 1; x", 0.5, "<= 1", "x", [1, -1], [1.0001]),
    (">= -1e-3; tolerance", 0.0, ">= -1e-3", "tolerance", [-1e-3, 0], [-0.0011]),
    ("in [0, 1]; fixed weight", 0.25, "in [0, 1]", "fixed weight", [0, 0.5, 1], [-0.01, 1.01, float("nan")]),
    ("in (0, 1); open", 0.5, "in (0, 1)", "open", [1e-9, 0.999], [0, 1]),
    ("in [0, 1); half-open", 0.5, "in [0, 1)", "half-open", [0], [1]),
    ("in (0, inf); positive", 1.0, "in (0, inf)", "positive", [1e300], [0, float("inf")]),
    ("one of: rbf, laplacian; kernel name", "rbf", "one of: rbf, laplacian", "kernel name",
     ["laplacian"], ["poly", "RBF", ""]),
    ("one of: 1, 2, 4; width", 2, "one of: 1, 2, 4", "width", [1, 4], [3, "1"]),
    ("non-empty and each >= 1; hidden widths", [64, 256], "non-empty and each >= 1", "hidden widths",
     [[1], [3, 7]], [[], [0], [3, 0.5], 5]),
    ("each in [0, 1]; weights", [0.1], "each in [0, 1]", "weights", [[], [0, 1]], [[1.5], [0.2, -0.1]]),
    ("each one of: a, b; names", ["a"], "each one of: a, b", "names", [["a", "b"], []], [["c"], ["a", "A"]]),
    ("non-empty; a name", "x", "non-empty", "a name", ["y"], [""]),
    (">= 1", 3, ">= 1", "", [1], [0]),                          # a constraint alone, no description
])
def test_constraint_grammar(comment: str, default: object, text: str, description: str,
                            good: list, bad: list) -> None:
    constraint, desc = constraints.parse_constraint(comment, default)
    assert constraint is not None and constraint.text == text and desc == description
    for v in good:
        assert constraint.violation(v) is None, v
    for v in bad:
        assert constraint.violation(v) is not None, v


@pytest.mark.parametrize("comment", [
    "ridge penalty λ", "in the paper's notation; see eq. (1)", "each step's weight", "non-empty list of widths",
    "one of the knobs", "",
])
def test_comments_that_are_descriptions(comment: str) -> None:
    assert constraints.parse_constraint(comment, [1.0]) == (None, comment)


@pytest.mark.parametrize("comment, default, fragment", [
    (">= one; steps", 3, "not a constraint"),
    ("in [1, 0]; empty", 0.5, "empty"),
    ("> 0; a kernel", "rbf", "compares numbers"),
    ("each > 0; not a list", 0.5, "applies to lists"),
    ("one of: 1, two; width", 2, "not an integer"),
    ("one of: a, , b; names", "a", "none of them empty"),
    ("each non-empty; x", [[1]], "'each non-empty' is not a constraint"),
    (">= 1; steps", 0, "default 0 violates"),
    ("in (0, 1]; alpha", 0.0, "default 0.0 violates"),
])
def test_malformed_constraints_are_errors(comment: str, default: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        constraints.parse_constraint(comment, default)


@given(lo=st.floats(-1e6, 1e6), width=st.floats(0, 1e6), x=st.floats(allow_nan=False, allow_infinity=False),
       left=st.booleans(), right=st.booleans())
def test_interval_matches_its_definition(lo: float, width: float, x: float, left: bool, right: bool) -> None:
    hi = lo + width
    comment = f"in {'[' if left else '('}{lo!r}, {hi!r}{']' if right else ')'}; x"
    constraint, _ = constraints.parse_constraint(comment)
    inside = (lo <= x if left else lo < x) and (x <= hi if right else x < hi)
    assert (constraint.violation(x) is None) == inside


def test_parameters_cell_reads_constraints_from_trailing_comments() -> None:
    source = (
        '# a standalone comment is not attributed to a parameter\n'
        'lam = 0.2            # > 0; ridge penalty λ\n'
        'name = "a#b"  # one of: a#b, c; a hash inside a string is not a comment\n'
        'widths = [\n'
        '    64,   # a comment inside the list\n'
        '    256,\n'
        ']  # non-empty and each >= 1; hidden widths\n'
        'plain = 3\n'
    )
    params = chapter_params.parse_parameters_cell(source)
    assert params["lam"].constraint.text == "> 0" and params["lam"].description == "ridge penalty λ"
    assert params["name"].constraint.atoms[0].choices == ("a#b", "c")
    assert params["widths"].constraint.text == "non-empty and each >= 1"
    assert params["widths"].description == "hidden widths"
    assert params["plain"].constraint is None and params["plain"].description == ""
    with pytest.raises(chapter_params.NotebookError, match="line 1.*'steps'.*default 0 violates"):
        chapter_params.parse_parameters_cell("steps = 0  # >= 1; distillation steps\n")
    with pytest.raises(chapter_params.NotebookError, match="line 2.*'kernel'.*compares numbers"):
        chapter_params.parse_parameters_cell("lam = 0.2\nkernel = 'rbf'  # > 0; kernel\n")


@pytest.mark.parametrize("values, fragments", [
    ({"steps": 0}, ["'steps'", "value 0", "'>= 1'", "distillation steps"]),
    ({"kernel": "poly"}, ["'kernel'", "'poly'", "one of: rbf, laplacian"]),
    ({"alphas": [0.5, 2.0]}, ["'alphas'", "2.0", "each in [0, 1]"]),
])
def test_values_outside_their_constraint_name_parameter_and_value(tiny: Path, values: dict,
                                                                  fragments: list[str]) -> None:
    params = chapter_params.notebook_parameters(tiny)
    with pytest.raises(chapter_params.ParameterError) as err:
        chapter_params.validate_parameters(params, values, notebook="tiny.md")
    for f in fragments:
        assert f in str(err.value)


def test_constraint_violation_on_the_command_line_exits_2_before_running(
        tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "o"
    assert main(["run", str(tiny), "-p", "steps", "0", "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m sdlib run: error: parameter 'steps'")
    assert "value 0" in err and ">= 1" in err and "Traceback" not in err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM: the notebook executed so far is kept, results.json says "interrupted"

SLOW = HEADER + """
```{code-cell} ipython3
:tags: [parameters]
marker = ""   # a file written when the slow cell starts
wait = 120.0  # > 0; seconds to sleep
```

```{code-cell} ipython3
import os
import time
from pathlib import Path

from myst_nb import glue

glue("slow_before", 1.5, display=False)
```

```{code-cell} ipython3
Path(marker).write_text(str(os.getpid()))
time.sleep(wait)
```

```{code-cell} ipython3
glue("slow_after", 2.5, display=False)
```
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# SIGINT here; SIGTERM, which the runner handles alike, reaches a run in
# tests/test_sweep.py::test_sigterm_stops_a_sweep_and_its_running_point (one kernel start each in CI)
@pytest.mark.parametrize("signum", [signal.SIGINT], ids=["SIGINT"])
def test_interrupted_run_keeps_the_notebook_and_says_so(tmp_path: Path, signum: int) -> None:
    nb = tmp_path / "slow.md"
    nb.write_text(SLOW)
    marker, out = tmp_path / "started", tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdlib", "run", str(nb), "-p", "marker", str(marker), "-o", str(out),
         "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), proc.communicate(timeout=60)
        kernel_pid = int(marker.read_text())
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    name = signal.Signals(signum).name
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == [stderr.strip()] and "Traceback" not in stderr, stderr
    assert stderr.startswith(f"python -m sdlib run: error: interrupted by {name}")
    doc = json.loads((out / "results.json").read_text())
    # cell 3 of the executed notebook: papermill inserts the injected-parameters cell after cell 0
    assert doc["status"] == "interrupted" and doc["error"] == f"interrupted by {name} while executing cell 3"
    assert doc["results"] == {"slow_before": 1.5} and "provenance" in doc
    executed = json.loads((out / "slow.ipynb").read_text())
    errors = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert [e["ename"] for e in errors] == ["KeyboardInterrupt"]
    assert _leftovers(out) == []
    deadline = time.monotonic() + 10
    while _alive(kernel_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(kernel_pid), "the kernel outlived the run"


# ------------------------------------------------------------------------------------------------
# What a rerun changed: parameters against the defaults, verdicts against the reference, figure files

#: The tiny chapter with its figure labelled as a chapter labels one (``mystnb.figure.name``).
TINY_LABELLED = TINY.replace(
    "```{code-cell} ipython3\nfig, ax = plt.subplots(figsize=(3, 2))",
    "```{code-cell} ipython3\n---\nmystnb:\n  figure:\n    caption: \"Figure 1 (paper). A line.\"\n"
    "    name: fig-tiny\n---\nfig, ax = plt.subplots(figsize=(3, 2))") + """
```{code-cell} ipython3
from sdlib.chapters.changes import rerun_parameters

glue("tiny_rerun", {k: list(v) for k, v in rerun_parameters().items()}, display=False)
```
"""


def _reference(path: Path, lines: list[str]) -> None:
    """A committed reference as tools/refresh_refs.py leaves it: the printed claim lines, no glue."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("claims.check(...)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n".join(lines) + "\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# A tiny chapter"), cell]
    nbformat.write(nb, str(path))


REFERENCE_LINES = [
    "✓ [paper] tiny.lam_positive: lam is positive | measured 0.2 | ≥ 1.00e-300 (a ridge penalty)",
    "✗ [paper] tiny.lam_negative: lam is negative (a claim that does not hold) | measured 0.2 | ≤ 0.0 (sign)",
]


def test_png_text_chunks_are_read_back_by_pillow() -> None:
    """:func:`png_with_text` writes chunks that an independent reader (Pillow) reads back."""
    import io

    PIL = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    PIL.new("RGB", (3, 2), "white").save(buf, format="PNG")
    text = {"Parameters": "lam = 0.05 (paper: 0.2), γ = 40", "sdlib:changed-parameters": '{"lam": 0.05}'}
    tagged = outputs.png_with_text(buf.getvalue(), text)
    image = PIL.open(io.BytesIO(tagged))
    image.load()
    assert image.text == text and image.size == (3, 2)
    assert outputs.png_text(tagged) == text
    assert outputs.png_with_text(b"not a png", text) == b"not a png"


def test_reference_verdicts_are_read_from_the_printed_claim_lines(tmp_path: Path) -> None:
    from sdlib.chapters import changes

    ref = tmp_path / "tiny.ipynb"
    _reference(ref, [*REFERENCE_LINES, "  note: not a claim line", "plain output"])
    got = changes.reference_verdicts(ref)
    assert set(got) == {("tiny", "lam_positive"), ("tiny", "lam_negative")}
    assert got[("tiny", "lam_positive")]["verdict"] == "holds" and got[("tiny", "lam_negative")]["verdict"] == "fails"
    assert got[("tiny", "lam_positive")]["measured"] == "0.2"
    assert got[("tiny", "lam_negative")]["criterion"] == "≤ 0.0 (sign)"


def test_a_rerun_says_what_changed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``-p lam -0.5`` against a reference at lam = 0.2: the console, the banner cell and results.json
    name the changed parameter with both values and both claims whose verdict moved (with the measured
    values and the criterion); the figure is named after its label and carries the parameters."""
    import io

    folder = tmp_path / "nb"
    folder.mkdir()
    (folder / "data.txt").write_text("beside the notebook\n")
    chapter = folder / "tiny.md"
    chapter.write_text(TINY_LABELLED)
    _reference(folder / "tiny.ipynb", REFERENCE_LINES)
    out = tmp_path / "out"
    assert main(["run", str(chapter), "-p", "lam", "-0.5", "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"ran {chapter}: ") and "1 figure(s)" in printed[0]
    assert "parameters changed from the chapter's defaults (the paper's setting):" in printed
    assert "  lam  0.2 -> -0.5  (ridge penalty (any sign, so that a claim can fail))" in printed
    assert f"2 of 2 verdict(s) changed against the run at the defaults ({folder / 'tiny.ipynb'}):" in printed
    assert ("  ✓ → ✗  tiny.lam_positive: lam is positive | measured -0.5 (at the defaults: 0.2) | "
            "≥ 1.00e-300 (a ridge penalty)") in printed
    assert any(line.startswith("  ✗ → ✓  tiny.lam_negative: ") for line in printed)

    doc = json.loads((out / "results.json").read_text())
    rerun = doc["rerun"]
    assert rerun["parameters"] == [{"name": "lam", "default": 0.2, "value": -0.5}]
    assert rerun["compared"] == 2 and rerun["reference"] == str(folder / "tiny.ipynb")
    assert {(v["claim"], v["default"], v["verdict"]) for v in rerun["verdicts"]} == {
        ("tiny.lam_positive", "holds", "fails"), ("tiny.lam_negative", "fails", "holds")}

    executed = json.loads((out / "tiny.ipynb").read_text())
    banner = executed["cells"][0]
    assert banner["cell_type"] == "markdown" and banner["metadata"]["tags"] == ["sdlib-rerun-summary"]
    text = "".join(banner["source"])
    assert "| `lam` | `0.2` | `-0.5` |" in text and "`tiny.lam_positive`" in text and "✓ holds | ✗ fails" in text
    assert banner["metadata"]["sdlib"]["rerun"] == rerun
    # the kernel knew the changed parameters (for the figures' annotation, sdlib.chapters.plotting)
    assert doc["results"]["tiny_rerun"] == {"lam": [0.2, -0.5]}

    assert doc["figures"] == ["figures/fig-tiny.png"]
    PIL = pytest.importorskip("PIL.Image")
    image = PIL.open(io.BytesIO((out / "figures" / "fig-tiny.png").read_bytes()))
    image.load()
    assert image.text["Title"] == "fig-tiny" and image.text["Description"] == "Figure 1 (paper). A line."
    assert image.text["Parameters"] == "lam = -0.5 (paper: 0.2)"
    assert json.loads(image.text["sdlib:changed-parameters"]) == {"lam": -0.5}


def test_a_rerun_at_the_defaults_adds_nothing(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """At the defaults, and without a reference: the one line as before, no banner, an empty summary;
    a figure without a label keeps the index of its cell."""
    out = tmp_path / "out"
    assert main(["run", str(tiny), "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and printed[0].startswith(f"ran {tiny}: ")
    doc = json.loads((out / "results.json").read_text())
    assert doc["rerun"] == {"parameters": [], "claims_mode": "assert", "reference": None, "compared": 0,
                            "verdicts": []}
    executed = json.loads((out / "tiny.ipynb").read_text())
    assert not any("sdlib-rerun-summary" in c["metadata"].get("tags", []) for c in executed["cells"])
    assert [Path(f).name for f in doc["figures"]] == ["cell003_0.png"]


@pytest.mark.parametrize("metadata, label", [
    ({"tags": ["hide-input", "figure:2a"], "mystnb": {"figure": {"name": "fig-2a"}}}, "figure2a"),
    ({"mystnb": {"figure": {"name": "fig-2a", "caption": "Figure 2a (paper)."}}}, "fig-2a"),
    ({"name": "my figure/1"}, "my-figure-1"),
    ({"tags": ["hide-input"]}, None),
    ({"tags": ["figure:"], "mystnb": {"figure": {"caption": "no name"}}}, None),
])
def test_figure_labels_name_the_files(metadata: dict, label: str | None) -> None:
    import nbformat

    cell = nbformat.v4.new_code_cell("fig")
    cell.metadata.update(metadata)
    assert outputs.figure_label(cell) == label


GLUED = HEADER + """
# A chapter that glues its figure

```{code-cell} ipython3
:tags: [parameters]
steps = 3              # >= 1; distillation steps
```

```{code-cell} ipython3
:tags: [remove-output]
import matplotlib.pyplot as plt
from myst_nb import glue

fig, ax = plt.subplots(figsize=(3, 2))
ax.plot(range(steps))
```

```{code-cell} ipython3
:tags: [remove-cell]
glue("gl_fig", fig, display=False)
glue("gl_steps", steps, display=False)
glue("gl_half", steps / 2, display=False)
```

```{glue:figure} gl_fig
:name: fig-glued

Steps 1 to {glue:text}`gl_steps`, half of them {glue:text}`gl_half:.2f`.
```
"""


def test_a_glued_figure_is_written_once_with_its_directive_s_name_and_caption(tmp_path: Path) -> None:
    """A figure drawn in a ``remove-output`` cell and glued into a ``{glue:figure}``: one file (the
    glued one, not also the hidden output), titled by the directive's ``:name:``, its caption holding
    the rerun's glued values."""
    path = tmp_path / "glued.md"
    path.write_text(GLUED)
    out = tmp_path / "out"
    assert main(["run", str(path), "-p", "steps", "5", "-o", str(out), "--no-progress"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["figures"] == ["figures/gl_fig.png"]
    PIL = pytest.importorskip("PIL.Image")
    image = PIL.open(out / "figures" / "gl_fig.png")
    image.load()
    assert image.text["Title"] == "fig-glued"
    assert image.text["Description"] == "Steps 1 to 5, half of them 2.50."
