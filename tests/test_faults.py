"""Faults and bad inputs of the library (issue 16, items 1-3, 6, 10-12): nothing written into a
caller's array, nothing wrong without a word, nothing exposed beyond loopback.

What is checked: a precomputed ``K`` is read, never written, and the model does not change when
the caller later changes it (eigenvalues compared with numpy's of an untouched copy); a
non-symmetric kernel matrix, a non-finite one and a non-finite or non-positive ``gamma`` are
refused naming the value; an indefinite ``K`` gives a warning naming its most negative eigenvalue
and is not clipped, so that Theorem 4.5's limit is the end of the path ``path(400)`` (the
contraction of eq. 12 with this spectrum); eq. (16) is scale invariant at 2^(+-530) ~ 1e(+-160)
and beyond 1e(+-200): the targets scaled by a power of two (exact in floating point) give the
alpha* of the unscaled ones; negative grid values keep their sign in point ids and ids never
collide; the default local clusters listen on 127.0.0.1 only (every listening socket of this
process and of its worker processes, read with psutil); a plain ``tcp://`` scheduler on another
host warns; Section 5 booleans and ``split_seed`` are type-checked; the YAML config of ``train``
goes through the shared reader.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.gaussian_process.kernels import RBF
from sklearn.metrics.pairwise import pairwise_kernels

from sdlib import KernelSelfDistillation
from sdlib.errors import UsageError
from sdlib.krr import theory


@pytest.fixture()
def problem() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(16)
    X = rng.uniform(-1, 1, size=(30, 2))
    y = np.sin(3 * X[:, 0]) + 0.1 * rng.standard_normal(30)
    Xv = rng.uniform(-1, 1, size=(12, 2))
    yv = np.sin(3 * Xv[:, 0]) + 0.1 * rng.standard_normal(12)
    return X, y, Xv, yv


# ------------------------------------------------------------------------------------------------
# Item 1: a precomputed K is never written to


def test_precomputed_kernel_is_not_written_to(problem: tuple) -> None:
    X, y, Xv, _ = problem
    K = pairwise_kernels(X, metric="rbf", gamma=2.0)
    K_before = K.copy()
    m = KernelSelfDistillation(kernel="precomputed", lam=0.1, steps=3, alpha=0.2).fit(K, y)
    np.testing.assert_array_equal(K, K_before)
    d_ref = np.linalg.eigvalsh(K_before)
    np.testing.assert_allclose(m.eigenvalues_, np.clip(d_ref, 0, None), rtol=0, atol=1e-12 * d_ref.max())
    np.testing.assert_array_equal(K, K_before)  # eigh works on its own copy too
    # the model keeps its own copy: the caller's later edits do not change it
    Kq = pairwise_kernels(Xv, X, metric="rbf", gamma=2.0)
    before = m.limit(Kq, alpha=0.5)
    K[:] = 0.0
    np.testing.assert_array_equal(m.limit(Kq, alpha=0.5), before)
    named = KernelSelfDistillation(gamma=2.0, lam=0.1, steps=3, alpha=0.2).fit(X, y)
    np.testing.assert_allclose(before, named.limit(Xv, alpha=0.5), atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Item 2: non-symmetric, non-finite and indefinite kernels, gamma inf/nan


def test_non_symmetric_kernel_matrix_is_refused(problem: tuple) -> None:
    X, y, _, _ = problem
    K = pairwise_kernels(X, metric="rbf", gamma=2.0)
    K[0, 1] += 0.3
    with pytest.raises(ValueError, match=r"not symmetric.*0\.3"):
        KernelSelfDistillation(kernel="precomputed", lam=0.1).fit(K, y)

    class Skewed(RBF):  # a kernel object gives the whole matrix at once: nothing symmetrises it
        def __call__(self, X: np.ndarray, Y: np.ndarray | None = None, eval_gradient: bool = False) -> np.ndarray:
            K = super().__call__(X, Y)
            return K + 0.2 * (X[:, :1] - (X if Y is None else Y)[:, 0])

    with pytest.raises(ValueError, match="not symmetric"):
        KernelSelfDistillation(kernel=Skewed(length_scale=0.5), lam=0.1).fit(X, y)


@pytest.mark.parametrize("gamma", [math.inf, -math.inf, math.nan, 0.0, -1.0])
def test_gamma_must_be_finite_and_positive(problem: tuple, gamma: float) -> None:
    X, y, _, _ = problem
    with pytest.raises(ValueError, match=rf"gamma={gamma!r}"):
        KernelSelfDistillation(gamma=gamma, lam=0.1).fit(X, y)


def test_non_finite_kernel_matrix_is_refused(problem: tuple) -> None:
    X, y, _, _ = problem

    def scaled_rbf(a: np.ndarray, b: np.ndarray, g: float) -> float:
        return float(np.exp(-g * np.sum((a - b) ** 2)))  # g = inf: exp(-inf * 0) on the diagonal is NaN

    with np.errstate(invalid="ignore"), pytest.raises(ValueError, match=r"not finite: K\[0, 0\]=nan"):
        KernelSelfDistillation(kernel=scaled_rbf, kernel_params={"g": math.inf}, lam=0.1).fit(X, y)


def test_indefinite_kernel_warns_and_the_limit_ends_the_path(problem: tuple) -> None:
    X, y, Xv, _ = problem
    rng = np.random.default_rng(3)
    K0 = pairwise_kernels(X, metric="rbf", gamma=2.0)
    d, V = np.linalg.eigh(K0)
    d[:3] = [-0.3, -0.2, -0.1]  # clearly negative; K + lam I stays positive definite for lam = 1
    K = (V * d) @ V.T
    K = (K + K.T) / 2
    Kq = rng.uniform(0, 1, size=(5, len(X)))
    m = KernelSelfDistillation(kernel="precomputed", lam=1.0).fit(K, y)
    with pytest.warns(RuntimeWarning, match=r"indefinite.*-0\.3"):
        e = m.eigenvalues_
    np.testing.assert_allclose(e[:3], [-0.3, -0.2, -0.1], atol=1e-12)
    # |(1 - alpha) a_k| <= 0.5 * max(0.3/0.7, d_max/(d_max+1)) < 0.5: path(400) is the limit to 1e-100
    lim = m.limit(Kq, alpha=0.5)
    end = m.path(Kq, steps=400, alpha=0.5)[-1]
    np.testing.assert_allclose(lim, end, atol=1e-10 * np.abs(end).max())
    # the spectral grid at a lam for which K + lam I is not positive definite: refused, not inf
    with pytest.raises(ValueError, match=r"lams=0\.05.*-0\.3"):
        m.grid(Kq, lams=[0.05], alphas=[0.5], steps=2)


# ------------------------------------------------------------------------------------------------
# Item 3: eq. (16) at extreme scales


@pytest.mark.parametrize("k", [-530, -700, -900, 530, 700, 900])
def test_alpha_star_is_scale_invariant_at_extreme_scales(problem: tuple, k: int) -> None:
    """Scaling y and y_val by 2^k is exact in floating point through every solve and product, so
    eq. (16) must give the unscaled alpha* (up to the rounding of its own normalisation)."""
    X, y, Xv, yv = problem
    m = KernelSelfDistillation(gamma=2.0, lam=0.1).fit(X, y)
    ref = m.optimal_alphas(Xv, yv, steps=4)
    s = math.ldexp(1.0, k)
    with warnings.catch_warnings():
        warnings.simplefilter("error", theory.DegenerateAlphaWarning)
        got = KernelSelfDistillation(gamma=2.0, lam=0.1).fit(X, y * s).optimal_alphas(Xv, yv * s, steps=4)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_alpha_star_of_non_finite_predictions_is_an_error() -> None:
    with pytest.raises(ValueError, match="y0_val must be finite"):
        theory.alpha_star(np.ones(3), np.zeros(3), np.array([1.0, np.nan, 0.0]))


def test_alpha_star_function_scale_invariant() -> None:
    rng = np.random.default_rng(0)
    yv, y1, y0 = rng.standard_normal((3, 20))
    ref = theory.alpha_star(yv, y1, y0)
    for k in (-1000, -530, 530, 1000):
        s = math.ldexp(1.0, k)
        assert theory.alpha_star(yv * s, y1 * s, y0 * s) == pytest.approx(ref, abs=1e-14)


# ------------------------------------------------------------------------------------------------
# Items 7, 8, 12: Section 5 (torch)


def _records(doc: dict) -> list[dict]:
    res = doc["results"]
    return [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in res["records"] + res["helper_records"]]


def test_truncated_checkpoint_in_a_stack_is_retrained_with_its_stack(tmp_path: Path) -> None:
    """A repaired run equals an uninterrupted one, record for record (bitwise on a CPU)."""
    pytest.importorskip("torch")
    from sdlib.nn.graph import FitKey, train

    cfg = dict(dataset="digits", arch="small_cnn", epochs=2, batch_size=16, steps=3, alphas=[0.0, 0.5], seeds=[0],
               n_train=64, n_val=32, n_test=32, augment=False, amp="none", chains_together=True)
    from sdlib.nn.config import ExperimentConfig

    whole = train(ExperimentConfig(**cfg), tmp_path / "whole", progress=False)
    ck = FitKey(0, "alpha=0.5", 2).path(tmp_path / "whole" / "checkpoints")
    ck.write_bytes(ck.read_bytes()[:100])   # truncated, as by a full disk
    with pytest.warns(UserWarning, match="corrupt"):
        repaired = train(ExperimentConfig(**cfg), tmp_path / "whole", progress=False)
    assert repaired["results"]["fits_trained"] == 1
    assert _records(repaired) == _records(whole)

    # a teacher that is not the one its student was trained from (here: its record and validation
    # probabilities changed, as a retraining on a GPU would): the student is trained again
    import torch

    teacher = torch.load(ck, weights_only=True)
    teacher["record"]["train_loss"] += 1.0
    teacher["val_probs"] = teacher["val_probs"].flip(0)
    torch.save(teacher, ck)
    again = train(ExperimentConfig(**cfg), tmp_path / "whole", progress=False)
    assert again["results"]["fits_trained"] == 1          # alpha=0.5 at step 3, in its stack
    changed = [(a["chain"], a["step"]) for a, b in zip(_records(again), _records(whole), strict=True) if a != b]
    assert changed == [("alpha=0.5", 2)]                   # the same weights teach the same student
    student = torch.load(FitKey(0, "alpha=0.5", 3).path(tmp_path / "whole" / "checkpoints"), weights_only=True)
    assert set(student["needs"]) == {"seed0-alpha=0.5-step2"}


def test_config_json_is_written_only_once_a_fit_is_done(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from sdlib.errors import DataMissingError
    from sdlib.nn.config import ExperimentConfig
    from sdlib.nn.graph import train

    cfg = dict(arch="small_cnn", epochs=1, steps=2, alphas=[0.5], seeds=[0], n_train=32, n_val=16, n_test=16,
               augment=False, amp="none")
    with pytest.raises(DataMissingError):
        train(ExperimentConfig(dataset="fashion_mnist", data_dir=str(tmp_path / "nothing"), **cfg), tmp_path,
              progress=False)
    assert not (tmp_path / "checkpoints" / "config.json").exists()
    doc = train(ExperimentConfig(dataset="digits", **cfg), tmp_path, progress=False)   # the corrected rerun
    assert doc["results"]["fits_trained"] == 4
    assert (tmp_path / "checkpoints" / "config.json").is_file()


@pytest.mark.parametrize(("name", "value"), [("augment", "false"), ("chains_together", "no"), ("download", 0),
                                             ("split_seed", "x"), ("split_seed", 1.5), ("alphas", ["0.5"])])
def test_section5_parameters_have_their_types(name: str, value: object) -> None:
    from sdlib.nn.config import ExperimentConfig

    with pytest.raises(UsageError, match=rf"{name}="):
        ExperimentConfig(**{name: value})


# ------------------------------------------------------------------------------------------------
# Items 6, 10, 11: sweeps


def test_negative_grid_values_keep_their_sign_and_ids_never_collide() -> None:
    from sdlib.sweeps.grid import make_grid

    assert [p.id for p in make_grid({"grid": {"lam": [-0.2, 0.2]}}).points] == ["lam=-0.2", "lam=0.2"]
    assert [p.id for p in make_grid({"grid": {"alpha": [0.5, -0.5]}}).points] == ["alpha=0.5", "alpha=-0.5"]
    for spec in ({"grid": {"a": [[0.5, -0.5], [0.5, 0.5], [-0.5]]}}, {"grid": {"k": ["a b", "a-b", "a_b"]}}):
        ids = [p.id for p in make_grid(spec).points]
        assert len(set(ids)) == len(ids), ids
    with pytest.raises(UsageError, match="points repeat"):
        make_grid({"points": [{"lam": 1}, {"lam": 1}]})


def _listening(pids: set[int]) -> list[tuple[int, str, int]]:
    import psutil

    out = []
    for pid in pids:
        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            out += [(p.pid, c.laddr.ip, c.laddr.port) for c in p.net_connections(kind="inet")
                    if c.status == psutil.CONN_LISTEN]
    return out


@pytest.mark.parametrize("processes", [False, True], ids=["threads (sweep)", "processes (train)"])
def test_the_default_cluster_listens_on_loopback_only(processes: bool) -> None:
    """Every listening socket of this process and of the workers (scheduler, workers, their HTTP
    servers): 127.0.0.1. Before, the workers' HTTP servers listened on 0.0.0.0 and [::]."""
    pytest.importorskip("distributed")
    from sdlib.sweeps.cluster import dask_client

    before = set(_listening({os.getpid()}))
    with dask_client(2, processes=processes) as client:
        pids = {os.getpid(), *client.run(os.getpid).values()}
        sockets = _listening(pids)
        addresses = [client.scheduler.address, *client.scheduler_info()["workers"]]
    assert len(pids) == (3 if processes else 1)
    new = [s for s in sockets if s not in before]
    # at least the scheduler's and each worker's HTTP server
    assert len(new) >= 3 and all(ip == "127.0.0.1" for _, ip, _ in new), sockets
    # in-process workers talk through memory (inproc://, no socket); worker processes over loopback TCP
    assert all(a.startswith(("tcp://127.0.0.1:", "inproc://")) for a in addresses), addresses


@pytest.mark.parametrize(("address", "unsafe"), [
    ("tcp://10.1.2.3:8786", True), ("10.1.2.3:8786", True), ("tcp://cluster.example.org:8786", True),
    ("tcp://127.0.0.1:8786", False), ("tcp://localhost:8786", False), ("tcp://[::1]:8786", False),
    ("tls://10.1.2.3:8786", False), ("inproc://10.1.2.3/1/2", False)])
def test_plain_tcp_to_another_host_is_unsafe(address: str, unsafe: bool) -> None:
    from sdlib.sweeps.cluster import insecure_scheduler

    assert (insecure_scheduler(address) is not None) == unsafe


def test_tls_security_needs_its_three_files(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from sdlib.sweeps.cluster import make_security

    assert make_security() is None
    with pytest.raises(UsageError, match="missing --tls-key"):
        make_security("ca.pem", "cert.pem")
    with pytest.raises(UsageError, match="--tls-ca-file 'nope.pem' does not exist"):
        make_security("nope.pem", "c", "k")
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    sec = make_security(*(str(tmp_path / n) for n in ("ca.pem", "cert.pem", "key.pem")))
    assert sec.require_encryption and sec.tls_ca_file == str(tmp_path / "ca.pem")


def test_rerun_page_recipe_is_private_and_tls() -> None:
    """The multi-machine recipe never starts a scheduler on every interface without TLS."""
    page = (Path(__file__).resolve().parents[1] / "book" / "rerun.md").read_text(encoding="utf8")
    starts = [ln.strip() for ln in page.splitlines() if ln.strip().startswith("dask scheduler")]
    assert starts, "the page shows how to start a scheduler"
    for line in starts:
        assert "--protocol tls" in line or "--host 127.0.0.1" in line, line
    assert "distributed.security.Security" in page and "--tls-ca-file" in page


# ------------------------------------------------------------------------------------------------
# Item 9: a signal once the notebook has finished


TINY = """---
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

```{code-cell} ipython3
:tags: [parameters]
lam = 0.2  # > 0; ridge penalty
```

```{code-cell} ipython3
from myst_nb import glue

glue("twice", 2 * lam, display=False)
```
"""


def test_a_signal_while_the_files_are_written_leaves_a_whole_ok_run(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM after the last cell, while results.json is written: the run is whole, says "ok", and
    run_notebook returns it (the command exits 0), rather than raising 'interrupted' over an ok run."""
    import signal

    from sdlib.chapters import runner

    nb = tmp_path / "tiny.md"
    nb.write_text(TINY)
    real = runner.write_json_atomic

    def write_then_signal(path: Path, obj: object) -> Path:
        if isinstance(obj, dict) and obj.get("status") == "ok":
            os.kill(os.getpid(), signal.SIGTERM)   # the runner's handler only sets a flag
        return real(path, obj)

    monkeypatch.setattr(runner, "write_json_atomic", write_then_signal)
    try:
        result = runner.run_notebook(nb, tmp_path / "out", progress_bar=False)
    except KeyboardInterrupt as exc:   # RunInterrupted: would end the whole test session
        pytest.fail(f"a whole run was reported as interrupted: {exc!r}")
    assert result.ok and result.results == {"twice": 0.4}
    assert json.loads((tmp_path / "out" / "results.json").read_text())["status"] == "ok"


def test_a_tls_scheduler_is_reached_with_the_cluster_certificate(tmp_path: Path) -> None:
    """``--scheduler tls://...`` with the three files: a task runs; without them: a one-line usage error."""
    import shutil
    import subprocess

    pytest.importorskip("distributed")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    from distributed import LocalCluster
    from distributed.security import Security

    from sdlib.sweeps.cluster import dask_client, make_security

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sdlib-test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    c, k = str(cert), str(key)
    sec = Security(tls_ca_file=c, tls_scheduler_cert=c, tls_scheduler_key=k, tls_worker_cert=c, tls_worker_key=k,
                   tls_client_cert=c, tls_client_key=k, require_encryption=True)
    with LocalCluster(n_workers=1, processes=False, protocol="tls://", host="127.0.0.1", security=sec,
                      dashboard_address=None) as lc:
        assert lc.scheduler_address.startswith("tls://127.0.0.1:")
        with dask_client(scheduler=lc.scheduler_address, security=make_security(c, c, k)) as client:
            assert client.submit(sum, [1, 2]).result() == 3
        with pytest.raises(UsageError, match="speaks TLS: give --tls-ca-file"):
            with dask_client(scheduler=lc.scheduler_address):
                pass


def test_recomputing_argv_drops_only_where_to_write_and_dirty() -> None:
    """The rule the benchmarks record their command by, and the reproduce page shows it by."""
    from sdlib.provenance import recomputing_argv

    given = ["--sizes", "500", "--out", "/tmp/x.json", "--allow-dirty", "--out=/tmp/y.json", "--repeats", "2"]
    assert recomputing_argv(given) == ["--sizes", "500", "--repeats", "2"]
    assert given[3] == "/tmp/x.json"  # the caller's list is left as it was
