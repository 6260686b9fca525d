"""The command line ``python -m sdlib``: one spelling of the options, one line per error.

What is checked: ``train`` reads ``-f``, ``-o``, ``-p``, ``--checkpoint-dir``, ``--dry-run`` and
passes them to :func:`sdlib.nn.graph.train` (replaced here by a stand-in that records its call),
with a Dask client only when ``--workers`` or ``--scheduler`` asks for one; every error (usage,
invalid parameter, missing file, an :mod:`sdlib.errors` error raised by the run, a failed download,
an unexpected exception, an unreachable scheduler) is one line on stderr naming the cause, with
exit status 2 for usage and 1 for a failed run, and a traceback only with ``--debug``; Ctrl-C exits
130; ``python -m sdlib.nn`` is gone; the errors quoted on book/rerun.md are what the commands print.
One test runs the real ``train`` on the smoke configuration (``--dry-run``) and resumes it; the
task graph itself (serial against 2 workers, a worker killed, resume) is tested in
tests/test_nn_graph.py.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdlib.cli import DRY_RUN, main
from sdlib.errors import DataMissingError, DeviceUnavailableError

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke_cpu.yaml"


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text("dataset: digits\narch: small_cnn\nepochs: 3\nsteps: 3\nalphas: [0.0, 0.5]\nseeds: [0, 1]\n"
                    "device: cpu\nresults_dir: null\ntrain: true\n")
    return path


class StandIn:
    """Records the calls of ``train`` and of ``dask_client``; raises ``error`` if set."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.clients: list[tuple] = []
        self.error: BaseException | None = None

    def train(self, cfg: Any, outdir: Path, *, client: Any = None, checkpoint_dir: Any = None,
              progress: bool = True) -> dict[str, Any]:
        self.calls.append({"cfg": cfg, "outdir": Path(outdir), "client": client, "checkpoint_dir": checkpoint_dir,
                           "progress": progress})
        if self.error is not None:
            raise self.error
        return {"results": {"records": [{}] * 3, "fits_trained": 3, "fits_loaded": 0},
                "provenance": {"seconds": 1.0, "device": "cpu"}}

    @contextlib.contextmanager
    def dask_client(self, workers: int | None = None, scheduler: str | None = None, **kw: Any) -> Iterator[str]:
        self.clients.append((workers, scheduler, kw))
        yield f"client({workers}, {scheduler})"


@pytest.fixture()
def stand_in(monkeypatch: pytest.MonkeyPatch) -> StandIn:
    pytest.importorskip("torch")
    import sdlib.nn.graph
    import sdlib.sweeps.cluster

    s = StandIn()
    monkeypatch.setattr(sdlib.nn.graph, "train", s.train)
    monkeypatch.setattr(sdlib.sweeps.cluster, "dask_client", s.dask_client)
    return s


def _one_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"python -m sdlib {command}: error: ") and "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------------------
# train: the options reach sdlib.nn.graph.train


def test_train_passes_config_overrides_and_outdir(stand_in: StandIn, config: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["train", "-f", str(config), "-o", str(out), "-p", "epochs", "5", "--param", "lr", "3e-4",
                 "--checkpoint-dir", str(tmp_path / "ck")]) == 0
    [call] = stand_in.calls
    cfg = call["cfg"]
    assert (cfg.epochs, cfg.lr, cfg.steps, cfg.seeds, cfg.alphas) == (5, 3e-4, 3, [0, 1], [0.0, 0.5])
    assert call["outdir"] == out and call["checkpoint_dir"] == str(tmp_path / "ck")
    assert call["client"] is None and stand_in.clients == []      # serial on a CPU by default
    assert call["progress"] is True
    assert "3 records, 3 fits trained" in capsys.readouterr().out


def test_train_dry_run_shrinks_the_configuration(stand_in: StandIn, config: Path, tmp_path: Path) -> None:
    assert main(["train", "-f", str(config), "-o", str(tmp_path / "o"), "--dry-run", "-p", "lr", "0.01"]) == 0
    cfg = stand_in.calls[0]["cfg"]
    for name, value in DRY_RUN.items():
        assert getattr(cfg, name) == value
    assert cfg.alphas == [0.0] and cfg.lr == 0.01


@pytest.mark.parametrize("option, expected", [(["--workers", "2"], (2, None)),
                                              (["--scheduler", "tcp://10.0.0.1:8786"], (None, "tcp://10.0.0.1:8786"))])
def test_train_on_dask_when_asked(stand_in: StandIn, config: Path, tmp_path: Path, option: list[str],
                                  expected: tuple) -> None:
    assert main(["train", "-f", str(config), "-o", str(tmp_path / "o"), *option]) == 0
    [(workers, scheduler, kw)] = stand_in.clients
    assert (workers, scheduler) == expected and kw == {"gpus": False, "security": None}
    assert stand_in.calls[0]["client"] == f"client({workers}, {scheduler})"


# ------------------------------------------------------------------------------------------------
# One line per error


@pytest.mark.parametrize("args, fragments", [
    (["train", "-o", "x"], ["the following arguments are required: -f/--config", "--help"]),
    (["train", "-f", "c.yaml", "-o", "x", "--workers", "2", "--scheduler", "tcp://h:1"], ["not allowed with"]),
    (["sweep", "nb.md", "-o", "x"], ["-g/--grid"]),
    (["run", "nb.md", "-o", "x", "-p", "lam"], ["-p/--param: expected 2 arguments"]),
    (["fly"], ["invalid choice: 'fly'"]),
])
def test_usage_errors_are_one_line_exit_2(args: list[str], fragments: list[str],
                                          capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage:" not in err
    for f in fragments:
        assert f in err


def test_invalid_train_parameters_exit_2(stand_in: StandIn, config: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    out = str(tmp_path / "o")
    assert main(["train", "-f", str(tmp_path / "missing.yaml"), "-o", out]) == 2
    assert "missing.yaml' does not exist" in _one_line(capsys.readouterr().err, "train")
    assert main(["train", "-f", str(config), "-o", out, "-p", "epochs", "0"]) == 2
    assert "epochs=0" in _one_line(capsys.readouterr().err, "train")
    assert main(["train", "-f", str(config), "-o", out, "--dry-run", "-p", "epochz", "3"]) == 2
    assert "'epochz'" in _one_line(capsys.readouterr().err, "train")
    assert stand_in.calls == []


@pytest.mark.parametrize("error, code, fragment", [
    (DataMissingError("CIFAR-10 not found in /d: extract cifar-10-python.tar.gz into /d"), 1, "extract"),
    (DeviceUnavailableError("device='cuda' was requested but no CUDA GPU is available; use device='cpu'"), 1,
     "no CUDA GPU"),
    (urllib.error.URLError("[Errno -2] Name or service not known"), 1, "could not download"),
    (RuntimeError("something broke\nacross two lines"), 1, "unexpected RuntimeError: something broke across"),
    (KeyboardInterrupt(), 130, "interrupted"),
    (ModuleNotFoundError("No module named 'distributed'", name="distributed"), 1, "pip install -e '.[dist]'"),
])
def test_errors_of_a_run_are_one_line(stand_in: StandIn, config: Path, tmp_path: Path, error: BaseException,
                                      code: int, fragment: str, capsys: pytest.CaptureFixture) -> None:
    stand_in.error = error
    assert main(["train", "-f", str(config), "-o", str(tmp_path / "o")]) == code
    assert fragment in _one_line(capsys.readouterr().err, "train")


def test_debug_shows_the_traceback(stand_in: StandIn, config: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    stand_in.error = RuntimeError("deep inside")
    assert main(["train", "-f", str(config), "-o", str(tmp_path / "o"), "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith(
        "python -m sdlib train: error: unexpected RuntimeError: deep inside")


def test_missing_files_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", str(tmp_path / "nope.md"), "-o", str(tmp_path / "o")]) == 2
    assert "nope.md' does not exist" in _one_line(capsys.readouterr().err, "run")
    assert main(["params", str(tmp_path / "nope.md")]) == 2
    _one_line(capsys.readouterr().err, "params")
    nb = tmp_path / "nb.md"
    nb.write_text("```{code-cell} ipython3\n:tags: [parameters]\nx = 1\n```\n")
    assert main(["sweep", str(nb), "-g", str(tmp_path / "grid.yaml"), "-o", str(tmp_path / "o")]) == 2
    assert "grid.yaml' does not exist" in _one_line(capsys.readouterr().err, "sweep")


def test_unreachable_scheduler_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("distributed")
    import dask

    nb = tmp_path / "nb.md"
    nb.write_text("```{code-cell} ipython3\n:tags: [parameters]\nx = 1\n```\n")
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid:\n  x: [1, 2]\n")
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code = main(["sweep", str(nb), "-g", str(grid), "-o", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:9",
                     "--no-progress"])
    assert code == 1
    line = _one_line(capsys.readouterr().err, "sweep")
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in line and "dask scheduler" in line


def test_sdlib_nn_run_is_gone() -> None:
    assert importlib.util.find_spec("sdlib.nn.__main__") is None


# ------------------------------------------------------------------------------------------------
# The real thing: the smoke configuration, --dry-run, then resumed


def test_train_dry_run_of_the_smoke_config_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("distributed")
    out = tmp_path / "smoke"
    args = ["train", "-f", str(SMOKE), "-o", str(out), "--dry-run", "--no-progress"]
    first = subprocess.run([sys.executable, "-m", "sdlib", *args], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    doc = json.loads((out / "results.json").read_text())
    res = doc["results"]
    # 1 seed x (1 fixed alpha + alpha-hat) chains x 2 steps: the first model, the alpha = 0.0 chain's
    # step 2, the alpha-hat chain's alpha = 0 fit and its step 2
    assert res["fits_trained"] == 4 and res["fits_loaded"] == 0
    assert {(r["chain"], r["step"]) for r in res["records"]} == {
        ("alpha=0", 1), ("alpha_hat", 1), ("alpha=0", 2), ("alpha_hat", 2)}
    assert doc["parameters"]["epochs"] == 1 and doc["parameters"]["seeds"] == [0]
    assert first.stdout.startswith(f"wrote {out / 'results.json'}: 4 records, 4 fits trained, 0 loaded")
    assert first.stderr == ""
    # the same command again (in this process: one start-up of torch less) trains nothing
    assert main(args) == 0, capsys.readouterr().err
    again = json.loads((out / "results.json").read_text())["results"]
    assert again["fits_trained"] == 0 and again["fits_loaded"] == 4
    assert again["records"] == res["records"]


# ------------------------------------------------------------------------------------------------
# The errors quoted on the Rerun page are what the commands print


def _page_errors() -> list[tuple[list[str], str]]:
    """``$ python -m sdlib ...`` lines of book/rerun.md and the error line under each."""
    import shlex

    lines = (ROOT / "book" / "rerun.md").read_text(encoding="utf8").splitlines()
    return [(shlex.split(line[len("$ python -m sdlib "):]), lines[i + 1])
            for i, line in enumerate(lines) if line.startswith("$ python -m sdlib ")]


def test_the_errors_on_the_rerun_page_are_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    examples = _page_errors()
    assert len(examples) >= 3
    monkeypatch.chdir(ROOT)
    for args, shown in examples:
        if args[0] == "train":
            pytest.importorskip("torch")
            from sdlib.sweeps.cluster import visible_gpus

            if visible_gpus():   # the example is of a machine without a GPU
                continue
        out = tmp_path / "out"
        args = [str(out) if a.startswith("runs/") else a for a in args]
        assert main(args) in (1, 2)
        printed = _one_line(capsys.readouterr().err, args[0])
        # '...' on the page shortens a long line: the rest must match exactly
        assert printed.startswith(shown[:-3]) if shown.endswith("...") else printed == shown, (printed, shown)
        assert not out.exists()
