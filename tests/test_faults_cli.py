"""The commands as a user runs them, on bad input and faults (issue 16): one process per case, and
for each the exit status, the first line of the message and the files left behind.

What is checked: an unusable output folder (a file, a path under a file, a read-only folder, under
/proc), a parameters file that is not UTF-8, a malformed YAML configuration of ``train``, ``params``
on a file that is not a notebook, a Section 5 boolean or ``split_seed`` of the wrong type and a
non-finite value for a ``> 0`` constraint are one-line usage errors (exit 2) that leave nothing
behind; a folder holding a finished run or a notebook that no run wrote is refused without
``--force`` and left as it was; a run killed with SIGKILL under ``--force`` leaves no old "ok"
result in its place, and the next run removes its temporary folder; a run stopped before its first
cell marks no cell "completed"; a second sweep into a folder a sweep is using stops with exit 2;
negative grid values keep their sign; a plain ``tcp://`` scheduler on another host warns in one
line; ``train`` refused for missing data leaves no ``config.json`` that would block the corrected
rerun. Library-level faults are in tests/test_faults.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

NOTEBOOK = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A chapter for the fault tests

```{code-cell} ipython3
:tags: [parameters]
lam = 0.2       # > 0; ridge penalty
gamma = 80.0    # > 0; kernel width
shift = 0.0     # any real number
wait = 0.0      # >= 0; seconds to sleep in the second cell
marker = ""     # a file written when the second cell starts
```

```{code-cell} ipython3
import os
import time
from pathlib import Path

from myst_nb import glue

glue("faults_lam", lam, display=False)
```

```{code-cell} ipython3
if marker:
    Path(marker).write_text(str(os.getpid()))
time.sleep(wait)
glue("faults_done", True, display=False)
```
"""

PROG = "python -m sdlib"


@pytest.fixture()
def nb(tmp_path: Path) -> Path:
    path = tmp_path / "chapter.md"
    path.write_text(NOTEBOOK)
    return path


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore::DeprecationWarning", **extra}


def sdlib(*args: str | Path, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdlib", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=_env(**env))


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its content."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_usage_error(proc: subprocess.CompletedProcess, command: str, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    line = first_line(proc.stderr)
    assert line.startswith(f"{PROG} {command}: error: "), proc.stderr
    assert proc.stderr.strip() == line and "Traceback" not in proc.stderr, proc.stderr
    assert "report it" not in line, line
    for f in fragments:
        assert f in line, (f, line)


# ------------------------------------------------------------------------------------------------
# Usage errors: one line, exit 2, nothing written


def test_an_output_folder_that_is_a_file(nb: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    proc = sdlib("run", nb, "-o", "afile", cwd=tmp_path)
    assert_usage_error(proc, "run", "output folder 'afile' cannot be used", "is a file")
    proc = sdlib("run", nb, "-o", "afile/sub", cwd=tmp_path)
    assert_usage_error(proc, "run", "output folder 'afile/sub' cannot be used", "is a file")
    assert (tmp_path / "afile").read_text() == "x"


def test_a_checkpoint_folder_that_is_a_file(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    (tmp_path / "afile").write_text("x")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("dataset: digits\nsteps: 2\nalphas: [0.5]\n")
    proc = sdlib("train", "-f", cfg, "-o", "out", "--checkpoint-dir", "afile", "--dry-run", cwd=tmp_path)
    assert_usage_error(proc, "train", "checkpoint folder 'afile' cannot be used", "--checkpoint-dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder(nb: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        proc = sdlib("run", nb, "-o", ro, cwd=tmp_path)
    finally:
        ro.chmod(0o700)
    assert_usage_error(proc, "run", "cannot be used")
    assert files(ro) == {}


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc")
@pytest.mark.parametrize("command", ["run", "sweep", "train"])
def test_an_output_folder_under_proc(nb: Path, tmp_path: Path, command: str) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid: {lam: [0.1, 0.2]}\n")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("dataset: digits\nsteps: 2\nalphas: [0.5]\n")
    args = {"run": ["run", nb], "sweep": ["sweep", nb, "-g", grid], "train": ["train", "-f", cfg, "--dry-run"]}
    proc = sdlib(*args[command], "-o", "/proc/sdlib-faults", cwd=tmp_path)
    assert_usage_error(proc, command, "output folder '/proc/sdlib-faults' cannot be used")


def test_a_parameters_file_that_is_not_utf8(nb: Path, tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_bytes("lam: 0.1  # λ in Latin-1\n".encode("latin-1", "replace") + b"\xe9\xff\n")
    proc = sdlib("run", nb, "-f", params, "-o", "out", cwd=tmp_path)
    assert_usage_error(proc, "run", "config file", "is not UTF-8 text")
    proc = sdlib("sweep", nb, "-g", params, "-o", "out", cwd=tmp_path)
    assert_usage_error(proc, "sweep", "grid file", "is not UTF-8 text")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "content"), [("data.ipynb", b"\x89PNG\r\n\x1a\n\x00\x00"),
                                               ("notes.txt", b"just text\n"),
                                               ("broken.ipynb", b'{"cells": [')])
def test_params_on_a_file_that_is_not_a_notebook(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    proc = sdlib("params", name, cwd=tmp_path)
    assert_usage_error(proc, "params", name)


@pytest.mark.parametrize(("content", "fragments"), [
    ("dataset: digits\nalphas: [0.5\n", ["config file", "is not valid YAML"]),
    ("dataset: digits\nsplit_seed: x\n", ["split_seed must be a non-negative int", "split_seed='x'"]),
    ('dataset: digits\naugment: "false"\n', ["augment must be true or false", "augment='false'"]),
    ("- dataset\n- digits\n", ["must hold a mapping"]),
], ids=["malformed YAML", "split_seed x", "augment 'false'", "a list"])
def test_train_configurations_of_the_wrong_shape(tmp_path: Path, content: str, fragments: list[str]) -> None:
    pytest.importorskip("torch")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(content)
    proc = sdlib("train", "-f", cfg, "-o", "out", "--dry-run", cwd=tmp_path)
    assert_usage_error(proc, "train", *fragments)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "value"), [("lam", "inf"), ("gamma", "1e400"), ("lam", ".inf"), ("lam", "nan")])
def test_non_finite_values_fail_a_positive_constraint(nb: Path, tmp_path: Path, name: str, value: str) -> None:
    proc = sdlib("run", nb, "-p", name, value, "-o", "out", cwd=tmp_path)
    assert_usage_error(proc, "run", f"parameter {name!r}", "> 0")
    assert not (tmp_path / "out").exists()


def test_tls_options_need_a_scheduler(nb: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid: {lam: [0.1, 0.2]}\n")
    proc = sdlib("sweep", nb, "-g", grid, "-o", "out", "--tls-cert", "c.pem", cwd=tmp_path)
    assert_usage_error(proc, "sweep", "--tls-cert applies to a --scheduler")


# ------------------------------------------------------------------------------------------------
# Finished results are never replaced without being asked


def _finished_run(folder: Path, notebook: Path) -> dict[str, bytes]:
    """A folder as a finished run leaves it (its content only matters as bytes to compare)."""
    (folder / "figures").mkdir(parents=True)
    (folder / f"{notebook.stem}.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    (folder / "figures" / "cell003_0.png").write_bytes(b"\x89PNG")
    (folder / "results.json").write_text(json.dumps({"notebook": str(notebook), "status": "ok", "results": {}}))
    return files(folder)


def test_a_finished_run_is_not_replaced_without_force(nb: Path, tmp_path: Path) -> None:
    before = _finished_run(tmp_path / "out", nb)
    proc = sdlib("run", nb, "-p", "lam", "0.1", "-o", "out", cwd=tmp_path)
    assert_usage_error(proc, "run", "already holds a finished run", "--force")
    assert files(tmp_path / "out") == before


def test_a_notebook_no_run_wrote_is_not_overwritten(nb: Path, tmp_path: Path) -> None:
    """``-o notebooks``: the folder holds the chapter's reference notebook NAME.ipynb."""
    (tmp_path / f"{nb.stem}.ipynb").write_text('{"reference": true}')
    before = files(tmp_path)
    proc = sdlib("run", nb, "-o", ".", cwd=tmp_path)
    assert_usage_error(proc, "run", f"{nb.stem}.ipynb, which no run of this command wrote", "--force")
    assert files(tmp_path) == before


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path.exists(), proc.communicate(timeout=30)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_a_killed_forced_rerun_leaves_no_old_result_and_the_next_run_cleans_up(nb: Path, tmp_path: Path) -> None:
    """Two kernel starts (about 5 s each): ``--force`` over a finished run, SIGKILL mid-cell, then a
    plain rerun into the same folder."""
    out = tmp_path / "out"
    old = _finished_run(out, nb)
    marker = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-m", "sdlib", "run", str(nb), "-p", "wait", "60", "-p", "marker",
                             str(marker), "-o", str(out), "--force", "--no-progress"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(marker, proc)
        kernel = int(marker.read_text())
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _kill(kernel)   # SIGKILL leaves the kernel, in a session of its own, to the one who killed
    doc = json.loads((out / "results.json").read_text())
    assert doc["status"] == "running" and doc["parameters"]["wait"] == 60.0
    assert not (out / f"{nb.stem}.ipynb").exists() and not (out / "figures" / "cell003_0.png").exists(), old.keys()
    assert [p.name for p in out.glob(f".{nb.stem}.ipynb.*.tmp")], "SIGKILL leaves papermill's temporary folder"

    # not "ok": a dead run of this notebook is rerun without --force, and its leftovers are removed
    proc2 = sdlib("run", nb, "-o", "out", "--no-progress", cwd=tmp_path)
    assert proc2.returncode == 0, proc2.stderr
    assert json.loads((out / "results.json").read_text())["status"] == "ok"
    assert sorted(p for p in files(out) if p.startswith(".") or ".tmp" in p) == []


def test_a_run_stopped_before_its_first_cell_marks_no_cell_completed(nb: Path, tmp_path: Path) -> None:
    """SIGTERM while the kernel starts: nothing ran, and the executed notebook says so."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "sdlib", "run", str(nb), "-o", str(out), "--no-progress"],
                            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(out / "results.json", proc, 60)   # written once the run starts, before the kernel
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert first_line(stderr).startswith(f"{PROG} run: error: interrupted by SIGTERM")
    assert json.loads((out / "results.json").read_text())["status"] == "interrupted"
    executed = json.loads((out / f"{nb.stem}.ipynb").read_text())
    statuses = [c["metadata"].get("papermill", {}).get("status") for c in executed["cells"]
                if c["cell_type"] == "code" and c.get("execution_count") is None]
    assert statuses and "completed" not in statuses, statuses
    assert sorted(p for p in files(out) if p.startswith(".")) == []


# ------------------------------------------------------------------------------------------------
# Sweeps


def test_negative_grid_values_keep_their_sign(nb: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid: {shift: [0.5, -0.5, -0.2, 0.2]}\n")
    proc = sdlib("sweep", nb, "-g", grid, "-o", "out", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ids = [line.split(":")[0] for line in proc.stdout.splitlines()[:-1]]
    assert ids == ["shift=0.5", "shift=-0.5", "shift=-0.2", "shift=0.2"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_second_sweep_into_the_same_folder_stops(nb: Path, tmp_path: Path) -> None:
    """About 10 s: the first sweep's point starts a kernel, and is stopped once its cell runs."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"points: [{{wait: 60.0, marker: {str(tmp_path / 'started')!r}}}]\n")
    first = subprocess.Popen([sys.executable, "-m", "sdlib", "sweep", str(nb), "-g", str(grid), "-o", "out",
                              "--workers", "1", "--no-progress"], cwd=tmp_path, env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "out" / ".sdlib.lock", first, 60)
        other = tmp_path / "grid2.yaml"
        other.write_text("grid: {lam: [0.1]}\n")
        second = sdlib("sweep", nb, "-g", other, "-o", "out", "--workers", "1", cwd=tmp_path)
        assert_usage_error(second, "sweep", "output folder", "is in use by a sweep of chapter.md",
                           f"pid {first.pid}")
        assert not (tmp_path / "out" / "lam=0.1").exists()
        _wait_for(tmp_path / "started", first, 90)   # stopped in its cell, the point stops at once
    finally:
        first.send_signal(signal.SIGTERM)
        try:
            first.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            first.kill()
        if (tmp_path / "started").exists():
            _kill(int((tmp_path / "started").read_text()))


def test_plain_tcp_to_another_host_warns_in_one_line(nb: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid: {lam: [0.1]}\n")
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never routed, so the connection fails after 1 s
    proc = sdlib("sweep", nb, "-g", grid, "-o", "out", "--scheduler", "tcp://192.0.2.1:8786", "--no-progress",
                 cwd=tmp_path,
                 DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="1s")
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith(f"{PROG} sweep: warning: the scheduler 'tcp://192.0.2.1:8786' is reached over plain "
                               "tcp://"), proc.stderr
    assert proc.returncode == 1 and lines[-1].startswith(f"{PROG} sweep: error: cannot reach the Dask scheduler")


# ------------------------------------------------------------------------------------------------
# Section 5


@pytest.mark.slow
def test_train_refused_for_missing_data_does_not_block_the_corrected_rerun(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"dataset: fashion_mnist\ndata_dir: {str(tmp_path / 'nothing')!r}\narch: small_cnn\nsteps: 2\n"
                   "alphas: [0.5]\nseeds: [0]\naugment: false\namp: none\n")
    proc = sdlib("train", "-f", cfg, "-o", "out", "--dry-run", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "fashion_mnist" in first_line(proc.stderr) or "data" in first_line(proc.stderr)
    assert not (tmp_path / "out" / "checkpoints" / "config.json").exists()
    proc = sdlib("train", "-f", cfg, "-p", "dataset", "digits", "-o", "out", "--dry-run", "--no-progress",
                 cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "results.json").is_file()
