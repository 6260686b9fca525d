"""The low-rank route on ``dask.array`` inputs: the same numbers as in memory, on two kinds of cluster.

* a ``LocalCluster`` of two worker processes (:func:`sdlib.sweeps.sweep.dask_client`, the sweeps' default,
  listening on 127.0.0.1);
* a ``dask scheduler`` and a ``dask worker`` started here as processes on 127.0.0.1 with free
  ports, and stopped at the end.

The oracle is the in-memory route on the same data (itself checked against the exact engine in
``tests/test_lowrank.py``); only the order of the sums over chunks differs, so agreement is to
rounding (``1e-10`` relative for these well-scaled sums of a few hundred rows).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

from sdlib import KernelSelfDistillation

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.filterwarnings("ignore::sdlib.krr.lowrank.LowRankWarning")

KW = dict(gamma=0.5, lam=0.05, steps=4, alpha=0.4)
TOL = 1e-10


def _data(p: int):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(700, 3))
    y = np.sin(X[:, :p] * 2).reshape(700, p) + 0.1 * rng.normal(size=(700, p))
    Xv = rng.normal(size=(130, 3))
    yv = np.sin(Xv[:, :p] * 2).reshape(130, p)
    Xq = rng.normal(size=(90, 3))
    if p == 1:
        y, yv = y[:, 0], yv[:, 0]
    return X, y, Xv, yv, Xq


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / (np.abs(b).max() or 1.0))


def _check_same_numbers(client, centres: str, p: int) -> None:
    X, y, Xv, yv, Xq = _data(p)
    mem = KernelSelfDistillation(n_components=60, random_state=2, centres=centres, **KW).fit(X, y)
    dX = da.from_array(X, chunks=(128, 3))
    dy = da.from_array(y, chunks=(200,) + y.shape[1:])  # other chunks than X's: rechunked to them
    with distributed.get_task_stream(client) as ts:
        lazy = KernelSelfDistillation(n_components=60, random_state=2, centres=centres, **KW).fit(dX, dy)
    # the chunk sums ran as tasks on the cluster's workers, one per chunk of X (6 chunks of <= 128 rows)
    sums = [t for t in ts.data if "_chunk_sums" in str(t.get("key", ""))]
    workers = set(client.scheduler_info()["workers"])
    assert len(sums) >= 6 and {t["worker"] for t in sums} <= workers, ts.data[:3]
    np.testing.assert_array_equal(np.sort(lazy.component_indices_), np.sort(mem.component_indices_))
    assert _rel(lazy.lowrank_.s2, mem.lowrank_.s2) < TOL
    dXq = da.from_array(Xq, chunks=(40, 3))
    out = lazy.path(dXq)
    assert isinstance(out, da.Array)  # lazy: computed where the data are
    assert _rel(out.compute(), mem.path(Xq)) < TOL
    assert _rel(lazy.predict(dXq).compute(), mem.predict(Xq)) < TOL
    assert _rel(lazy.train_path().compute(), mem.train_path()) < TOL
    dXv, dyv = da.from_array(Xv, chunks=(50, 3)), da.from_array(yv, chunks=(50,) + yv.shape[1:])
    assert _rel(lazy.optimal_alphas(dXv, dyv, steps=5), mem.optimal_alphas(Xv, yv, steps=5)) < 1e-8
    # numpy queries on a model fitted on dask arrays
    assert _rel(lazy.path(Xq), mem.path(Xq)) < TOL


@pytest.fixture(scope="module")
def local_client() -> Iterator[object]:
    from sdlib.sweeps.sweep import dask_client

    with dask_client(workers=2) as client:
        yield client


@pytest.mark.parametrize(("centres", "p"), [("uniform", 1), ("uniform", 2), ("leverage", 1)])
def test_local_cluster_gives_the_in_memory_numbers(local_client, centres: str, p: int) -> None:
    addresses = list(local_client.scheduler_info()["workers"])
    assert len(addresses) == 2 and all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
    _check_same_numbers(local_client, centres, p)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_scheduler_and_worker_processes(tmp_path) -> None:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask_cli = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = []
    log = (tmp_path / "cluster.log").open("w")
    try:
        procs.append(subprocess.Popen(
            [*dask_cli, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", f"127.0.0.1:{_free_port()}"],
            stdout=log, stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1",
             "--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--memory-limit", "1GB"],
            stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        client = None
        while client is None:
            try:
                client = distributed.Client(address, timeout=5)
            except OSError:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise
                time.sleep(0.5)
        with client:
            client.wait_for_workers(1, timeout=60)
            _check_same_numbers(client, "uniform", 1)
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs[::-1]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()
    assert all(p.poll() is not None for p in procs)
