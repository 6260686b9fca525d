"""The Dask cluster of sdlib: started here or joined at an address, over TLS when it is remote, one worker per GPU.

:func:`dask_client` is the one place where sdlib starts or joins a Dask cluster: an in-process
``LocalCluster`` by default (nothing to start by hand), the scheduler at an address for a cluster
started with ``dask scheduler`` / ``dask worker`` or dask-jobqueue, one worker per GPU with
``gpus=True``. Sweeps (:func:`sdlib.sweeps.sweep.run_sweep`, ``python -m sdlib sweep``) and the
Section 5 fit graph (:func:`sdlib.nn.graph.train`, ``python -m sdlib train``) submit their tasks to
the client it yields. A scheduler on another host is reached over TLS (:func:`make_security`);
plain ``tcp://`` to it warns (:func:`insecure_scheduler`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from sdlib.errors import DeviceUnavailableError, RunError, UsageError

__all__ = [
    "InsecureSchedulerWarning", "dask_client", "default_workers", "insecure_scheduler", "make_security",
    "visible_gpus",
]


def default_workers() -> int:
    """The number of CPU cores this process may use (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (``["0", "1"]``).

    ``CUDA_VISIBLE_DEVICES`` when it is set; otherwise torch's device count when torch is
    installed, else the GPUs ``nvidia-smi -L`` lists; ``[]`` on a machine without a GPU.
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch  # the optional 'nn' extra: asked only where it is installed

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def _check_workers(workers: int | None) -> None:
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise UsageError(f"workers must be a positive integer, got workers={workers!r}; e.g. --workers 2")


#: Where the HTTP server of a scheduler without a dashboard listens: any free port of this machine.
_NO_DASHBOARD = "127.0.0.1:0"
#: Where every worker's HTTP server (/health, /metrics, /sitemap.json) listens: without an address
#: Dask binds it to every interface (0.0.0.0 and [::]), with in-process workers as with processes.
_WORKER_HTTP = "127.0.0.1:0"


class InsecureSchedulerWarning(UserWarning):
    """The scheduler is reached over plain TCP on another machine: anyone who reaches it runs code."""


def _loopback_address(address: str) -> str:
    """``":8787"`` or ``"8787"`` (every interface, in Dask's reading) as ``"127.0.0.1:8787"``."""
    host, sep, port = str(address).rpartition(":")
    if not sep:
        return f"127.0.0.1:{address}"
    return f"127.0.0.1:{port}" if host in ("", "0.0.0.0", "[::]", "::") else str(address)


def insecure_scheduler(address: str) -> str | None:
    """Why connecting to the scheduler at ``address`` is unsafe (plain ``tcp://`` to a host that is
    not this machine), or None (``tls://``, ``inproc://``, ``ucx://``, or a loopback host)."""
    import ipaddress  # standard library, for this check only
    from urllib.parse import urlsplit

    text = str(address)
    scheme = text.split("://", 1)[0] if "://" in text else "tcp"
    if scheme != "tcp":
        return None
    host = urlsplit(text if "://" in text else f"tcp://{text}").hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return (f"the scheduler {text!r} is reached over plain tcp:// without authentication or encryption: anyone "
            "who reaches its port can run code as its user; start it on a private interface with TLS "
            "('dask scheduler --protocol tls --tls-ca-file ... --tls-cert ... --tls-key ...') and give "
            "--scheduler tls://HOST:PORT with --tls-ca-file, --tls-cert and --tls-key (see book/rerun.md)")


def make_security(tls_ca_file: str | None = None, tls_cert: str | None = None, tls_key: str | None = None) -> Any:
    """A ``distributed.security.Security`` for a TLS cluster from the three files (all or none), or None
    (then Dask's own configuration, ``distributed.comm.tls.*``, applies). Missing files are a
    :class:`~sdlib.errors.UsageError`."""
    files = {"--tls-ca-file": tls_ca_file, "--tls-cert": tls_cert, "--tls-key": tls_key}
    given = {k: v for k, v in files.items() if v is not None}
    if not given:
        return None
    if len(given) != 3:
        missing = ", ".join(k for k in files if k not in given)
        raise UsageError(f"a TLS connection needs --tls-ca-file, --tls-cert and --tls-key; missing {missing}")
    for option, path in given.items():
        if not os.path.isfile(path):
            raise UsageError(f"{option} {path!r} does not exist; give the PEM file of the cluster's TLS set-up")
    from distributed.security import Security  # the 'dist' extra, with TLS files only

    return Security(tls_ca_file=tls_ca_file, tls_client_cert=tls_cert, tls_client_key=tls_key,
                    require_encryption=True)


@contextmanager
def dask_client(
    workers: int | None = None,
    scheduler: str | None = None,
    *,
    threads_per_worker: int = 1,
    gpus: bool = False,
    processes: bool = True,
    dashboard_address: str | None = None,
    security: Any = None,
) -> Iterator[Any]:
    """A ``distributed.Client``: of a new in-process cluster, or of the scheduler at ``scheduler``.

    Without ``scheduler`` a ``LocalCluster`` of ``workers`` worker processes (default: one per CPU
    core this process may use), ``threads_per_worker`` threads each, listening on 127.0.0.1 only, is
    started here and closed on exit. With ``gpus=True`` there is one worker per visible GPU (at most
    ``workers``): dask-cuda's ``LocalCUDACluster`` when installed, otherwise worker processes with
    ``CUDA_VISIBLE_DEVICES`` pinned to one GPU each; :class:`~sdlib.errors.DeviceUnavailableError`
    when no GPU is visible. With ``scheduler`` (``tcp://HOST:8786``, or the path of a scheduler
    file written by ``dask scheduler --scheduler-file``) the client joins that cluster, whose
    workers someone started (``dask worker ADDR``, dask-jobqueue); only the client is closed on exit.
    ``processes=False`` makes the local workers threads of this process instead (no process to
    start: for tasks that only wait, such as a sweep's, whose points run in processes of their own).
    ``dashboard_address`` (e.g. ``":8787"``) serves the local cluster's dashboard (off by default), on
    127.0.0.1 unless it names a host. Every server a local cluster starts (scheduler, workers, their
    HTTP servers) listens on 127.0.0.1 only.

    ``security``: a ``distributed.security.Security`` (:func:`make_security`) for a scheduler
    reached over TLS (``tls://HOST:PORT``); without it Dask's configuration (``distributed.comm.tls``)
    applies. A plain ``tcp://`` scheduler on another host gives an :class:`InsecureSchedulerWarning`.
    """
    from distributed import Client  # the 'dist' extra, imported when a cluster is used

    _check_workers(workers)
    if scheduler is not None and workers is not None:
        raise UsageError(
            f"give either workers={workers!r} or scheduler={scheduler!r}, not both: the workers of a "
            "scheduler are started with 'dask worker ADDR'")
    if not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise UsageError(f"threads_per_worker must be a positive integer, got {threads_per_worker!r}")
    with ExitStack() as stack:
        if scheduler is not None:
            yield _join_scheduler(stack, scheduler, security)
            return
        common = _local_options(threads_per_worker, dashboard_address)
        with _children_ignore_sigint():
            if gpus:
                cluster = stack.enter_context(_gpu_cluster(workers, common))
            else:
                cluster = stack.enter_context(_cpu_cluster(workers, processes, common))
        yield stack.enter_context(Client(cluster))


def _join_scheduler(stack: ExitStack, scheduler: str, security: Any) -> Any:
    """A client of the scheduler at an address or a scheduler file, closed with ``stack``."""
    from distributed import Client  # the 'dist' extra, imported when a cluster is used

    kwargs: dict[str, Any] = {}
    address: str | None = scheduler
    shown = scheduler
    if os.path.isfile(scheduler):  # a scheduler file (dask scheduler --scheduler-file PATH)
        kwargs["scheduler_file"], address = scheduler, None
        with contextlib.suppress(OSError, ValueError, AttributeError):
            shown = str(json.loads(Path(scheduler).read_text()).get("address", scheduler))
    if security is not None:
        kwargs["security"] = security
    why = insecure_scheduler(shown)
    if why is not None:
        warnings.warn(why, InsecureSchedulerWarning, stacklevel=4)
    if shown.startswith("tls://") and security is None:
        import dask  # the 'dist' extra, imported when a cluster is used

        if not dask.config.get("distributed.comm.tls.ca-file", None):
            raise UsageError(
                f"the scheduler {shown!r} speaks TLS: give --tls-ca-file, --tls-cert and --tls-key (or set "
                "Dask's distributed.comm.tls configuration)")
    try:
        return stack.enter_context(Client(address, **kwargs))
    except (OSError, TimeoutError, ValueError) as exc:
        raise RunError(
            f"cannot reach the Dask scheduler at {scheduler!r} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no answer'}); start one with "
            "'dask scheduler' and give the address it prints (tcp://HOST:8786), or leave "
            "--scheduler out to use a local cluster") from exc


def _local_options(threads_per_worker: int, dashboard_address: str | None) -> dict[str, Any]:
    """The options of every local cluster: 127.0.0.1 only, quiet, a dashboard only when asked for."""
    if dashboard_address is not None:
        dashboard_address = _loopback_address(dashboard_address)
    common: dict[str, Any] = dict(
        threads_per_worker=threads_per_worker, host="127.0.0.1", dashboard_address=dashboard_address,
        worker_dashboard_address=_WORKER_HTTP, silence_logs=logging.ERROR)
    if dashboard_address is None:
        # No dashboard, but the scheduler's HTTP server (health checks) still starts, by default on
        # port 8787, and warns when another cluster holds that port: a free port of 127.0.0.1.
        common["scheduler_kwargs"] = {"dashboard_address": _NO_DASHBOARD}
    return common


def _cpu_cluster(workers: int | None, processes: bool, common: dict[str, Any]) -> Any:
    """A ``LocalCluster`` of ``workers`` processes (or threads of this process), one per core by default."""
    from distributed import LocalCluster  # the 'dist' extra, imported when a cluster is used

    options = dict(common)
    if not processes:  # in-process workers talk through memory (inproc://): no host, no port
        options.pop("host")
    return LocalCluster(n_workers=workers or default_workers(), processes=processes, **options)


def _gpu_cluster(workers: int | None, common: dict[str, Any]) -> Any:
    """One worker per visible GPU (at most ``workers``): dask-cuda's cluster, else pinned worker processes."""
    devices = visible_gpus()
    if not devices:
        raise DeviceUnavailableError(
            "one Dask worker per GPU was asked for, but no CUDA GPU is visible on this machine "
            "(CUDA_VISIBLE_DEVICES, torch, nvidia-smi); run on a machine with a GPU or use "
            "device: cpu")
    devices = devices[:workers] if workers is not None else devices
    try:
        from dask_cuda import LocalCUDACluster  # the optional 'gpu' extra
    except ImportError:
        return _pinned_gpu_cluster(devices, common)
    return LocalCUDACluster(CUDA_VISIBLE_DEVICES=",".join(devices), n_workers=len(devices), **common)


@contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Worker processes started here ignore SIGINT: a Ctrl-C in the terminal reaches every process
    of its group, and the sweep, not each worker, decides how the running points stop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through spawn (exec keeps SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


@contextmanager
def _pinned_gpu_cluster(devices: list[str], common: dict[str, Any]) -> Iterator[Any]:
    """Worker processes pinned one per GPU by ``CUDA_VISIBLE_DEVICES`` (dask-cuda not installed)."""
    from distributed import Nanny, Scheduler, SpecCluster  # the 'dist' extra, imported when a cluster is used

    address = common["dashboard_address"]
    scheduler = {"cls": Scheduler, "options": {"host": common["host"], "dashboard": address is not None,
                                                "dashboard_address": address or _NO_DASHBOARD}}
    workers = {
        f"gpu{d}": {"cls": Nanny, "options": {
            "nthreads": common["threads_per_worker"], "host": common["host"],
            "dashboard_address": common["worker_dashboard_address"], "dashboard": True,
            "env": {"CUDA_VISIBLE_DEVICES": d}, "silence_logs": common["silence_logs"]}}
        for d in devices}
    with SpecCluster(workers=workers, scheduler=scheduler, silence_logs=common["silence_logs"]) as cluster:
        yield cluster
