"""Section 5 as a task graph (sdlib.nn.graph): the dependencies of the fits, serial and Dask runs
give identical records on a CPU, a worker killed mid-run leaves a run that resumes by training only
the missing fits, and a second run trains nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
distributed = pytest.importorskip("distributed")

from sdlib.nn.config import ExperimentConfig, load_experiment  # noqa: E402
from sdlib.nn.graph import AH, ALPHA0, FitKey, plan, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _strip(doc: dict) -> list[dict]:
    """Every record (alpha-hat's alpha = 0 fits included) without the wall-clock seconds."""
    res = doc["results"]
    return [{k: v for k, v in r.items() if not k.startswith("seconds")}
            for r in res["records"] + res["helper_records"]]


def _cluster(**kw):  # type: ignore[no-untyped-def]
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None, **kw)


def test_plan_has_the_real_dependencies() -> None:
    cfg = ExperimentConfig(dataset="digits", steps=3, alphas=[0.0, 0.5], seeds=[0, 1])
    tasks = {t.name: t for t in plan(cfg)}
    assert len(tasks) == 2 * (1 + 2 * 4)                # per seed: first, then per step 2 fixed + alpha0 + alpha-hat
    order = [t.name for t in plan(cfg)]
    for t in tasks.values():                             # a topological order
        assert all(order.index(d) < order.index(t.name) for d in t.deps)
    dep = {n: set(t.deps) for n, t in tasks.items()}
    assert dep["seed0-first-step1"] == set()
    assert dep["seed0-alpha=0.5-step2"] == {"seed0-first-step1"}
    assert dep["seed0-alpha=0.5-step3"] == {"seed0-alpha=0.5-step2"}
    assert dep[f"seed1-{ALPHA0}-step3"] == {f"seed1-{AH}-step2"}
    assert dep[f"seed1-{AH}-step3"] == {f"seed1-{AH}-step2", f"seed1-{ALPHA0}-step3", "seed1-first-step1"}
    assert dep[f"seed1-{AH}-step2"] == {f"seed1-{ALPHA0}-step2", "seed1-first-step1"}
    # with chains_together the fixed fits and the alpha = 0 fit of a step are one task
    together = {t.name: t for t in plan(ExperimentConfig(dataset="digits", steps=3, alphas=[0.0, 0.5],
                                                         seeds=[0], chains_together=True))}
    assert set(together["seed0-together-step3"].deps) == {"seed0-together-step2", f"seed0-{AH}-step2"}
    assert FitKey(0, ALPHA0, 3) in together["seed0-together-step3"].fits


#: the smoke configuration cut to 2 seeds x 4 fits (first, alpha = 0.5, alpha-hat and its alpha = 0
#: fit at step 2), so that the three runs below stay within a few seconds each on 2 cores
N_FITS = 2 * (1 + 3)


@pytest.fixture(scope="module")
def smoke():  # type: ignore[no-untyped-def]
    return load_experiment(ROOT / "configs" / "smoke_cpu.yaml", steps=2, alphas=[0.5], epochs=4, n_train=128)


@pytest.fixture(scope="module")
def serial(tmp_path_factory, smoke):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("serial")
    return out, train(smoke, out, progress=False)


def test_serial_and_two_workers_give_identical_records(tmp_path: Path, smoke, serial) -> None:  # type: ignore[no-untyped-def]
    with _cluster() as lc, distributed.Client(lc) as client:
        doc = train(smoke, tmp_path, client=client, progress=False)
    assert doc["results"]["workers"] == 2
    assert doc["results"]["fits_trained"] == serial[1]["results"]["fits_trained"] == N_FITS
    assert _strip(doc) == _strip(serial[1])       # bitwise: accuracies, losses, alpha-hat
    assert (tmp_path / "results.json").is_file() and not (tmp_path / "progress.json").exists()


def test_a_second_run_trains_nothing(serial, smoke) -> None:  # type: ignore[no-untyped-def]
    out, first = serial
    again = train(smoke, out, progress=False)
    assert again["results"]["fits_trained"] == 0 and again["results"]["fits_loaded"] == N_FITS
    assert _strip(again) == _strip(first)


def test_killed_worker_then_resume_trains_only_what_is_missing(tmp_path: Path, smoke, serial) -> None:  # type: ignore[no-untyped-def]
    import dask

    ckpt = tmp_path / "ck"
    failure: list[BaseException] = []
    # the scheduler gives up on a task whose worker died (by default it would retry it elsewhere)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), _closing(_cluster()) as lc, \
            _closing(distributed.Client(lc)) as client:
        run = threading.Thread(target=lambda: _catch(failure, train, smoke, tmp_path / "a", client=client,
                                                     checkpoint_dir=ckpt, progress=False))
        run.start()
        deadline = time.monotonic() + 240
        busy: list[str] = []
        while time.monotonic() < deadline and not busy:   # once a first model is saved and a task runs
            time.sleep(0.02)
            if list(ckpt.rglob("*.pt")):
                busy = [w for w, keys in client.processing().items() if keys]
        assert busy, "no task was running when the worker was to be killed"
        pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
        os.kill(pid, signal.SIGKILL)                     # a worker dies mid-fit
        run.join(timeout=240)
    assert not run.is_alive()
    assert failure and type(failure[0]).__name__ == "KilledWorker", failure
    assert not (tmp_path / "a" / "results.json").exists()
    have = len(list(ckpt.rglob("*.pt")))
    n_fits = N_FITS
    assert 1 <= have < n_fits
    doc = train(smoke, tmp_path / "b", checkpoint_dir=ckpt, progress=False)    # resume (here, serially)
    assert doc["results"]["fits_loaded"] == have
    assert doc["results"]["fits_trained"] == n_fits - have
    assert _strip(doc) == _strip(serial[1])          # the same records as a run straight through


@contextlib.contextmanager
def _closing(thing):  # type: ignore[no-untyped-def]
    """Close a cluster or client on exit; a close that times out while the nanny restarts the
    killed worker (a loaded machine) is not what the test is about."""
    try:
        yield thing
    finally:
        with contextlib.suppress(TimeoutError, OSError):
            thing.close(timeout=120)


def _catch(sink: list[BaseException], fn, *a, **kw) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*a, **kw)
    except BaseException as e:  # noqa: BLE001 - the test inspects it
        sink.append(e)
