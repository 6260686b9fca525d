"""``python -m sdlib sweep`` / :mod:`sdlib.sweeps.sweep` on a tiny notebook written into tmp_path.

What is checked: a GRID.yaml gives the Cartesian product of its lists or its explicit points, with
readable point ids, and is refused (one line, exit 2, nothing run) when malformed or when a point's
value is outside the notebook's declared constraint; a 4-point sweep on a 2-worker LocalCluster
runs every point in a process of its own, writes each point's folder, a sweep.csv whose glued
numbers equal the products the test computes itself and whose verdicts follow them, a summary
figure and a sweep.json with provenance; a bad point fails alone and is recorded; the same sweep,
rerun on a ``dask scheduler`` and a ``dask worker`` started here as separate processes on
127.0.0.1 (and stopped), skips the points done (their files untouched) and reruns the failed one on
that worker; SIGTERM during a sweep stops the running point, which records "interrupted" and
leaves no temporary file, and the sweep exits 130 with one line; the example grids in configs/
fit their chapters; one Dask worker per GPU is pinned to its GPU by ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from sdlib.chapters.params import ParameterError  # noqa: E402
from sdlib.cli import main  # noqa: E402
from sdlib.errors import UsageError  # noqa: E402
from sdlib.sweeps import cluster, sweep  # noqa: E402
from sdlib.sweeps import grid as sweep_grid  # noqa: E402

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

# Fails at the points listed in bad_points.txt beside it, so that a test can make a point bad and
# then good again without changing the notebook or the grid.
TINY = HEADER + """
# A tiny chapter to sweep

```{code-cell} ipython3
:tags: [parameters]
a = 1.0      # > 0; a positive number
b = 1        # in [1, 5]; a small integer
wait = 0.0   # >= 0; seconds to sleep
marker = ""  # a file written when the point starts
claims_mode = "assert"  # one of: assert, report; assert the claims, or only report them
```

```{code-cell} ipython3
import os
import time
from pathlib import Path

from myst_nb import glue

from sdlib.chapters.claims import Claims, at_most

if marker:
    Path(marker).write_text("started")
time.sleep(wait)
bad = Path("bad_points.txt").read_text().split() if Path("bad_points.txt").exists() else []
if f"{a:g},{b}" in bad:
    raise RuntimeError(f"bad point a={a:g}, b={b}")
claims = Claims("tiny", chapter="Tiny", mode=claims_mode)
claims.check("small", "a*b is at most 2", where="test", measured=a * b, criterion=at_most(2.0, why="a test"))
glue("tiny_product", a * b, display=False)
glue("tiny_sum", a + b, display=False)
glue("tiny_runner_pid", os.getppid(), display=False)
claims.glue()
```
"""

GRID = "grid:\n  a: [1.0, 2.0]\n  b: [1, 2]\n"
IDS = ["a=1.0_b=1", "a=1.0_b=2", "a=2.0_b=1", "a=2.0_b=2"]


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    folder = tmp_path / "nb"
    folder.mkdir()
    path = folder / "tiny.md"
    path.write_text(TINY)
    (tmp_path / "grid.yaml").write_text(GRID)
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith("."))


def _check_table(out: Path, ok_ids: list[str]) -> None:
    """sweep.csv against the products computed here: one row per point, glued numbers and verdicts."""
    import pandas as pd

    table = pd.read_csv(out / "sweep.csv").set_index("point")
    assert sorted(table.index) == IDS
    for pid in ok_ids:
        row = table.loc[pid]
        assert row["status"] == "ok"
        assert row["tiny_product"] == pytest.approx(row["a"] * row["b"])
        assert row["tiny_sum"] == pytest.approx(row["a"] + row["b"])
        assert row["verdict:small"] == ("holds" if row["a"] * row["b"] <= 2 else "fails")


# ------------------------------------------------------------------------------------------------
# Grids: pure


def test_grid_is_the_cartesian_product_in_order() -> None:
    g = sweep_grid.make_grid({"grid": {"lam": [0.05, 0.1], "steps": [2, 6, 10]},
                              "parameters": {"claims_mode": "report"}})
    assert [p.parameters for p in g.points] == [
        {"lam": lam, "steps": s} for lam in (0.05, 0.1) for s in (2, 6, 10)]
    assert g.points[0].id == "lam=0.05_steps=2" and g.varying == ["lam", "steps"]
    assert g.fixed == {"claims_mode": "report"}


def test_explicit_points_and_ids() -> None:
    g = sweep_grid.make_grid({"points": [{"lam": 0.1, "kernel": "rbf"},
                                         {"id": "wide", "lam": 0.1, "kernel": "laplacian"},
                                         {"lam": 0.2, "alphas": [0.1, 0.5]}]})
    assert [p.id for p in g.points] == ["lam=0.1_kernel=rbf", "wide", "lam=0.2_alphas=0.1-0.5"]
    assert g.points[1].parameters == {"lam": 0.1, "kernel": "laplacian"}
    long = sweep_grid.point_id({"name": "x" * 200}, ["name"])
    assert len(long) <= 80 and long != sweep_grid.point_id({"name": "x" * 199 + "y"}, ["name"])


@pytest.mark.parametrize("spec, fragment", [
    ({"grid": {"a": [1]}, "points": [{"a": 1}]}, "exactly one of 'grid:'"),
    ({}, "exactly one of 'grid:'"),
    ({"grid": {"a": []}}, "non-empty list"),
    ({"grid": {"a": 1}}, "non-empty list"),
    ({"grid": {"a": [1]}, "colour": 3}, "unknown key(s) 'colour'"),
    ({"grid": {"a": [1, 2]}, "parameters": {"a": 3}}, "both varies"),
    ({"points": [{"a": 1}, {"a": 1}]}, "points repeat"),
    ({"points": [{"id": "../up", "a": 1}]}, "not a plain folder name"),
    ({"points": [3]}, "must be a mapping"),
])
def test_malformed_grids_are_usage_errors(spec: dict, fragment: str) -> None:
    with pytest.raises(UsageError) as err:
        sweep_grid.make_grid(spec)
    assert fragment in str(err.value)


def test_points_are_validated_against_the_notebook_before_anything_runs(tiny: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ParameterError, match=r"'b' of tiny.md \(point b=9\): value 9 is not in \[1, 5\]"):
        sweep.plan_sweep(tiny, sweep_grid.make_grid({"grid": {"b": [1, 9]}}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  bee: [1, 2]\n")
    out = tmp_path / "never"
    assert main(["sweep", str(tiny), "-g", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown parameter 'bee'" in err and not out.exists()
    assert main(["sweep", str(tiny), "-g", str(tmp_path / "grid.yaml"), "-p", "a", "3", "-o", str(out)]) == 2
    assert "'a' both varies" in capsys.readouterr().err
    assert main(["sweep", str(tiny), "-g", str(tmp_path / "grid.yaml"), "-o", str(out), "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert all(i in listed for i in IDS) and "nothing ran" in listed and not out.exists()


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("grid_file", sorted((ROOT / "configs").glob("sweep_*.yaml")), ids=lambda p: p.name)
def test_the_example_grids_fit_their_chapters(grid_file: Path) -> None:
    """configs/sweep_NAME.yaml sweeps notebooks/NAME.md: every point is valid, its comment gives the
    command that runs it, and every number it plots is one the chapter glues."""
    name = grid_file.stem[len("sweep_"):]
    notebook = ROOT / "notebooks" / f"{name}.md"
    plan = sweep.plan_sweep(notebook, sweep_grid.load_grid(grid_file))
    assert len(plan.points) >= 2 and 1 <= len(plan.varying) <= 2    # a summary figure is drawn
    assert f"python -m sdlib sweep notebooks/{name}.md -g configs/{grid_file.name} -o " in grid_file.read_text()
    source = notebook.read_text(encoding="utf8")
    assert all(f'glue("{key}"' in source for key in plan.plot), plan.plot


# ------------------------------------------------------------------------------------------------
# End to end


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def test_sweep_on_a_local_cluster_then_resumed_on_a_scheduler_and_a_worker(
        tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """4 points on a 2-worker LocalCluster, one of them bad; then the same command on a ``dask
    scheduler`` and a ``dask worker`` started here as processes: the 3 points done are skipped and
    the failed one runs on that worker. (One test, so that CI runs 5 points rather than 9.)"""
    dask = Path(sys.executable).parent / "dask"
    address = f"tcp://127.0.0.1:{_free_port()}"
    log = tmp_path / "dask.log"
    procs: list[subprocess.Popen] = []
    with open(log, "w") as fh:
        try:
            # started first, so that they come up while the local sweep runs
            procs.append(subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port",
                                           address.rsplit(":", 1)[1], "--no-dashboard"],
                                          stdout=fh, stderr=subprocess.STDOUT))
            procs.append(subprocess.Popen([str(dask), "worker", address, "--nworkers", "1", "--nthreads", "2",
                                           "--host", "127.0.0.1", "--no-dashboard"],
                                          stdout=fh, stderr=subprocess.STDOUT))
            _local_then_scheduler(tiny, tmp_path, capsys, address, log)
        finally:
            for proc in reversed(procs):
                _stop(proc)
    assert all(proc.returncode is not None for proc in procs)


def _local_then_scheduler(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture, address: str, log: Path) -> None:
    (tiny.parent / "bad_points.txt").write_text("2,2\n")
    out = tmp_path / "out"
    args = ["sweep", str(tiny), "-g", str(tmp_path / "grid.yaml"), "-o", str(out), "--no-progress"]
    assert main([*args, "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 of 4 point(s)" in err and "a=2.0_b=2" in err
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["status"] == "failed" and doc["counts"] == {"failed": 1, "ok": 3}
    assert "2 worker(s)" in doc["cluster"] and doc["provenance"]["git_commit"] is not None
    by_id = {p["id"]: p for p in doc["points"]}
    assert "RuntimeError: bad point a=2, b=2" in by_id["a=2.0_b=2"]["error"]
    for pid in IDS:
        res = json.loads((out / pid / "results.json").read_text())
        assert res["status"] == ("failed" if pid == "a=2.0_b=2" else "ok")
        # claims are asserted at the notebook's defaults (a = 1, b = 1) only, reported elsewhere
        assert res["parameters"]["claims_mode"] == ("assert" if pid == "a=1.0_b=1" else "report")
        assert (out / pid / "tiny.ipynb").is_file() and (out / pid / "run.log").is_file()
    # every point ran in a process of its own (the kernel's parent), not in one of the 2 workers
    runners = {json.loads((out / pid / "results.json").read_text())["results"]["tiny_runner_pid"] for pid in IDS[:3]}
    assert len(runners) == 3
    _check_table(out, IDS[:3])
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _leftovers(out) == []

    # the same command on the scheduler: the three points done are skipped (files untouched), the
    # failed one runs again, on the worker started above
    from distributed import Client

    with Client(address, timeout="60s") as client:
        client.wait_for_workers(1, timeout=120)
    (tiny.parent / "bad_points.txt").write_text("")
    before = {pid: (out / pid / "results.json").stat().st_mtime_ns for pid in IDS[:3]}
    assert main([*args, "--scheduler", address]) == 0, capsys.readouterr().err + log.read_text()
    assert "4 point(s) ok (3 already done)" in capsys.readouterr().out
    assert {pid: (out / pid / "results.json").stat().st_mtime_ns for pid in IDS[:3]} == before
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["status"] == "ok" and [p["skipped"] for p in doc["points"]] == [True, True, True, False]
    assert doc["cluster"] == f"{address}: 1 worker(s), 2 thread(s)"
    _check_table(out, IDS)
    assert _leftovers(out) == []


def test_sigterm_stops_a_sweep_and_its_running_point(tiny: Path, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    grid = tmp_path / "slow.yaml"
    grid.write_text(f"points:\n  - {{wait: 300.0, marker: {str(marker)!r}}}\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "sdlib", "sweep", str(tiny), "-g", str(grid), "-o", str(out),
                             "--workers", "1", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), proc.communicate(timeout=60)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == [stderr.strip()] and "interrupted" in stderr
    [pid] = [p.name for p in out.iterdir() if p.is_dir()]
    res = json.loads((out / pid / "results.json").read_text())
    assert res["status"] == "interrupted" and res["error"].startswith("interrupted by SIGTERM")
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["status"] == "interrupted" and doc["points"][0]["status"] == "interrupted"
    assert _leftovers(out) == []


def test_one_worker_per_gpu_is_pinned_to_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without dask-cuda, ``dask_client(gpus=True)`` starts one worker process per visible GPU with
    ``CUDA_VISIBLE_DEVICES`` set to that GPU alone (no GPU is touched: the workers only report it)."""
    import importlib.util
    import os

    if importlib.util.find_spec("dask_cuda") is not None:
        pytest.skip("dask-cuda is installed: LocalCUDACluster would need real GPUs")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert cluster.visible_gpus() == ["3", "5"]
    with cluster.dask_client(gpus=True) as client:
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        assert sorted(seen.values()) == ["3", "5"]
        assert all(w["nthreads"] == 1 for w in client.scheduler_info()["workers"].values())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    from sdlib.errors import DeviceUnavailableError

    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU is visible"), cluster.dask_client(gpus=True):
        pass
