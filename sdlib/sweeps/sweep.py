"""Runs beyond one process on Dask distributed: sweeps of a chapter's parameters, and the cluster.

:func:`dask_client` is the one place where sdlib starts or joins a Dask cluster: an in-process
``LocalCluster`` by default (nothing to start by hand), the scheduler at an address for a cluster
started with ``dask scheduler`` / ``dask worker`` or dask-jobqueue, one worker per GPU with
``gpus=True``. Sweeps (:func:`run_sweep`, ``python -m sdlib sweep``) and the Section 5 fit graph
(:func:`sdlib.nn.graph.train`, ``python -m sdlib train``) submit their tasks to the client it yields.

A sweep runs one chapter at every point of a grid (a GRID.yaml file, :func:`make_grid`)::

    grid:                  # all combinations of the lists
      lam: [0.05, 0.1, 0.2]
      steps: [2, 6]
    parameters:            # the same at every point (optional)
      claims_mode: report
    plot: [thm45_limit_gap]   # glued numbers of the summary figure (optional)

or ``points: [{lam: 0.05, steps: 2}, {lam: 0.2, steps: 6}]`` for points given one by one. Each point
runs as ``python -m sdlib run`` in a process of its own (papermill is not thread-safe) as one Dask
task, into ``OUTDIR/<point-id>/`` (``lam=0.05_steps=2``); the results land in ``OUTDIR/sweep.csv``,
``OUTDIR/sweep.json`` and ``OUTDIR/sweep.png``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sdlib.errors import DeviceUnavailableError, RunError, UsageError
from sdlib.provenance import folder_lock, prepare_outdir, provenance, write_bytes_atomic, write_json_atomic

__all__ = [
    "Grid", "Point", "SweepResult", "dask_client", "default_workers", "load_grid", "make_grid", "plan_sweep",
    "point_id", "run_point", "run_sweep", "visible_gpus", "InsecureSchedulerWarning", "insecure_scheduler",
    "make_security",
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
        import torch

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
    import ipaddress
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
    from distributed.security import Security

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
    from distributed import Client, LocalCluster

    _check_workers(workers)
    if scheduler is not None and workers is not None:
        raise UsageError(
            f"give either workers={workers!r} or scheduler={scheduler!r}, not both: the workers of a "
            "scheduler are started with 'dask worker ADDR'")
    if not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise UsageError(f"threads_per_worker must be a positive integer, got {threads_per_worker!r}")
    with ExitStack() as stack:
        if scheduler is not None:
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
                warnings.warn(why, InsecureSchedulerWarning, stacklevel=3)
            if shown.startswith("tls://") and security is None:
                import dask

                if not dask.config.get("distributed.comm.tls.ca-file", None):
                    raise UsageError(
                        f"the scheduler {shown!r} speaks TLS: give --tls-ca-file, --tls-cert and --tls-key (or set "
                        "Dask's distributed.comm.tls configuration)")
            try:
                client = stack.enter_context(Client(address, **kwargs))
            except (OSError, TimeoutError, ValueError) as exc:
                raise RunError(
                    f"cannot reach the Dask scheduler at {scheduler!r} ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else 'no answer'}); start one with "
                    "'dask scheduler' and give the address it prints (tcp://HOST:8786), or leave "
                    "--scheduler out to use a local cluster") from exc
            yield client
            return
        if dashboard_address is not None:
            dashboard_address = _loopback_address(dashboard_address)
        common: dict[str, Any] = dict(
            threads_per_worker=threads_per_worker, host="127.0.0.1", dashboard_address=dashboard_address,
            worker_dashboard_address=_WORKER_HTTP, silence_logs=logging.ERROR)
        if dashboard_address is None:
            # No dashboard, but the scheduler's HTTP server (health checks) still starts, by default on
            # port 8787, and warns when another cluster holds that port: a free port of 127.0.0.1.
            common["scheduler_kwargs"] = {"dashboard_address": _NO_DASHBOARD}
        if gpus:
            devices = visible_gpus()
            if not devices:
                raise DeviceUnavailableError(
                    "one Dask worker per GPU was asked for, but no CUDA GPU is visible on this machine "
                    "(CUDA_VISIBLE_DEVICES, torch, nvidia-smi); run on a machine with a GPU or use "
                    "device: cpu")
            devices = devices[:workers] if workers is not None else devices
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError:
                with _children_ignore_sigint():
                    cluster = stack.enter_context(_pinned_gpu_cluster(devices, common))
            else:
                with _children_ignore_sigint():
                    cluster = stack.enter_context(LocalCUDACluster(
                        CUDA_VISIBLE_DEVICES=",".join(devices), n_workers=len(devices), **common))
        else:
            if not processes:  # in-process workers talk through memory (inproc://): no host, no port
                common.pop("host")
            with _children_ignore_sigint():
                cluster = stack.enter_context(LocalCluster(
                    n_workers=workers or default_workers(), processes=processes, **common))
        yield stack.enter_context(Client(cluster))


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
    from distributed import Nanny, Scheduler, SpecCluster

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


# --------------------------------------------------------------------------------------------------
# Sweeps: one notebook run per grid point


GRID_KEYS = ("grid", "points", "parameters", "plot")

#: Characters kept in a point id; everything else becomes "-".
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its folder name and the parameters it sets."""

    id: str
    parameters: dict[str, Any]


@dataclass
class Grid:
    """A sweep's grid: the points, the parameters every point shares, the results to plot."""

    points: list[Point]
    fixed: dict[str, Any] = field(default_factory=dict)
    varying: list[str] = field(default_factory=list)
    plot: list[str] = field(default_factory=list)
    source: str | None = None


def _slug(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_slug(v) for v in value) or "empty"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)   # the sign is part of the value: lam=-0.2 is not lam=0.2
    return _ID_UNSAFE.sub("-", str(value)).strip("-") or "x"


def point_id(parameters: Mapping[str, Any], names: Sequence[str]) -> str:
    """A readable folder name for a point, ``lam=0.05_steps=3``, from the parameters that vary.

    Long names are shortened and made unique with a hash of the whole point.
    """
    text = "_".join(f"{n}={_slug(parameters[n])}" for n in names) or "defaults"
    if len(text) > 80:
        digest = hashlib.sha1(json.dumps(dict(parameters), sort_keys=True, default=str).encode()).hexdigest()
        text = f"{text[:60]}-{digest[:10]}"
    return text


def _as_list(name: str, values: Any, where: str) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise UsageError(f"{where}: grid entry {name!r} must be a non-empty list of values, got {values!r}; "
                         f"e.g. '{name}: [0.05, 0.1, 0.2]'")
    return values


def make_grid(spec: Mapping[str, Any], *, source: str = "the grid") -> Grid:
    """A :class:`Grid` from a mapping (a GRID.yaml file read by :func:`load_grid`).

    ``grid: {name: [values]}`` gives the Cartesian product of the lists (in the order given);
    ``points: [{name: value, ...}, ...]`` gives the points one by one (an ``id`` key names a point's
    folder); ``parameters: {name: value}`` are set at every point; ``plot: [glue key, ...]`` picks
    the glued numbers of the summary figure. ``grid`` and ``points`` may not be given together.
    """
    if not isinstance(spec, Mapping):
        raise UsageError(f"{source} must hold a mapping with 'grid:' or 'points:', found {type(spec).__name__}")
    unknown = sorted(set(spec) - set(GRID_KEYS))
    if unknown:
        raise UsageError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: "
                         f"{', '.join(GRID_KEYS)}")
    fixed = spec.get("parameters") or {}
    if not isinstance(fixed, Mapping):
        raise UsageError(f"{source}: 'parameters' must be a mapping 'name: value', got {fixed!r}")
    plot = spec.get("plot") or []
    if isinstance(plot, str):
        plot = [plot]
    if not isinstance(plot, list) or not all(isinstance(k, str) for k in plot):
        raise UsageError(f"{source}: 'plot' must be a list of glue keys, got {plot!r}")
    has_grid, has_points = spec.get("grid") is not None, spec.get("points") is not None
    if has_grid == has_points:
        raise UsageError(f"{source}: give exactly one of 'grid:' (lists of values, all combinations) and "
                         "'points:' (a list of points)")
    rows: list[dict[str, Any]] = []
    ids: list[str | None] = []
    if has_grid:
        grid = spec["grid"]
        if not isinstance(grid, Mapping) or not grid:
            raise UsageError(f"{source}: 'grid' must be a mapping 'name: [values]', got {grid!r}")
        names = [str(n) for n in grid]
        lists = [_as_list(n, grid[n], source) for n in names]
        rows = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*lists)]
        ids = [None] * len(rows)
    else:
        points = spec["points"]
        if not isinstance(points, list) or not points:
            raise UsageError(f"{source}: 'points' must be a non-empty list of mappings, got {points!r}")
        for i, p in enumerate(points):
            if not isinstance(p, Mapping):
                raise UsageError(f"{source}: point {i} must be a mapping 'name: value', got {p!r}")
            p = {str(k): v for k, v in p.items()}
            ids.append(str(p.pop("id")) if "id" in p else None)
            rows.append(p)
    both = sorted(set(fixed) & {k for r in rows for k in r})
    if both:
        raise UsageError(f"{source}: {', '.join(map(repr, both))} both varies across points and is fixed "
                         "under 'parameters:'; keep one")
    seen: dict[str, list[Any]] = {}
    for r in rows:
        for k, v in r.items():
            seen.setdefault(k, [])
            if v not in seen[k]:
                seen[k].append(v)
    varying = [k for k, vs in seen.items() if len(vs) > 1 or any(k not in r for r in rows)]
    names_for_id = varying or list(seen)
    out: list[Point] = []
    for r, given in zip(rows, ids, strict=True):
        pid = given if given is not None else point_id(r, [n for n in names_for_id if n in r])
        if not pid or _ID_UNSAFE.search(pid) or pid in (".", ".."):
            raise UsageError(f"{source}: point id {pid!r} is not a plain folder name (letters, digits, . _ = + -)")
        out.append(Point(pid, r))
    same = [p.id for i, p in enumerate(out) if any(_key(p.parameters) == _key(q.parameters) for q in out[:i])]
    if same:
        raise UsageError(f"{source}: points repeat ({', '.join(dict.fromkeys(same))}); every point must differ")
    # different points whose readable ids coincide ([0.5, -0.5] and [0.5, 0.5] as lists, 'a b' and
    # 'a-b'): each gets a hash of its parameters, so that no point ever runs in another's folder
    by_id: dict[str, list[int]] = {}
    for i, p in enumerate(out):
        by_id.setdefault(p.id, []).append(i)
    for pid, members in by_id.items():
        if len(members) == 1:
            continue
        if any(ids[i] is not None for i in members):
            raise UsageError(f"{source}: point id {pid!r} is given to {len(members)} different points")
        for i in members:
            digest = hashlib.sha1(_key(out[i].parameters).encode()).hexdigest()[:8]
            out[i] = Point(f"{pid[:70]}-{digest}", out[i].parameters)
    return Grid(points=out, fixed=dict(fixed), varying=varying, plot=list(plot), source=source)


def load_grid(path: str | Path) -> Grid:
    """Read a GRID.yaml file (see :func:`make_grid` for its keys)."""
    from sdlib.chapters.runner import read_yaml

    spec = read_yaml(path, what="grid file",
                     hint="give a YAML file with 'grid:' or 'points:', e.g. configs/sweep_theorem45.yaml")
    return make_grid(spec or {}, source=f"grid file {str(Path(path))!r}")


@dataclass
class SweepResult:
    """What :func:`run_sweep` did and wrote."""

    outdir: Path
    status: str
    points: list[dict[str, Any]]
    csv: Path
    json: Path
    figure: Path | None

    def count(self, status: str) -> int:
        return sum(p["status"] == status for p in self.points)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# Processes of the points this worker runs now (point folder -> process): stopped by
# :func:`_terminate_points`, which the client calls on every worker when a sweep is interrupted.
_RUNNING: dict[str, subprocess.Popen] = {}
_RUNNING_LOCK = threading.Lock()


def _terminate_points(folders: Sequence[str] | None = None) -> int:
    """SIGTERM the ``sdlib run`` processes of this worker (of ``folders`` only, if given)."""
    n = 0
    with _RUNNING_LOCK:
        running = list(_RUNNING.items())
    for folder, proc in running:
        if (folders is None or folder in folders) and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            n += 1
    return n


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def run_point(notebook: str, folder: str, parameters: dict[str, Any], *, timeout: float | None = None,
              kernel_name: str | None = None) -> dict[str, Any]:
    """Run one point: ``python -m sdlib run NOTEBOOK -f folder/point.yaml -o folder`` in a new process.

    The Dask task of a sweep (papermill is not thread-safe, so every point has a process of its
    own). Writes ``folder/point.yaml`` (the point's parameters) and ``folder/run.log`` (the
    command's output); returns ``{"status", "seconds", "returncode", "error", "doc", "t_start",
    "t_end"}`` with ``doc`` the point's ``results.json`` (so that a client without the workers' file
    system still gets it) and the Unix times at which the point's process started and ended.
    """
    import yaml

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").unlink(missing_ok=True)  # a stale one must not speak for this run
    config = write_bytes_atomic(out / "point.yaml", yaml.safe_dump(parameters, sort_keys=False).encode("utf8"))
    # --force: the sweep has decided that this point runs again (failed, interrupted, or --force)
    cmd = [sys.executable, "-m", "sdlib", "run", notebook, "-f", str(config), "-o", str(out), "--no-progress",
           "--force"]
    if timeout is not None:
        cmd += ["--timeout", str(timeout)]
    if kernel_name is not None:
        cmd += ["--kernel", kernel_name]
    # The point's process ends with the worker (see sdlib.__main__), and leaves the terminal's
    # Ctrl-C to the sweep, which stops it with SIGTERM through _terminate_points.
    env = dict(os.environ, SDLIB_PARENT_PID=str(os.getpid()))
    t_start, t0 = time.time(), time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, text=True, encoding="utf8", errors="replace")
    with _RUNNING_LOCK:
        _RUNNING[str(out)] = proc
    try:
        log, _ = proc.communicate()
    finally:
        with _RUNNING_LOCK:
            _RUNNING.pop(str(out), None)
        if proc.poll() is None:
            proc.kill()
    seconds = time.perf_counter() - t0
    write_bytes_atomic(out / "run.log", (log or "").encode("utf8"))
    doc = _read_json(out / "results.json")
    rc = proc.returncode
    lines = [ln for ln in (log or "").splitlines() if ln.strip()]
    if doc is not None and doc.get("status") in ("ok", "failed", "interrupted"):
        status, error = doc["status"], doc.get("error")
    elif rc == 130 or rc in (-signal.SIGTERM, -signal.SIGINT):
        status, error = "interrupted", f"interrupted (exit status {rc})"
    else:
        status = "failed"
        error = (lines[-1] if lines else "") + f" (exit status {rc})"
    return {"status": status, "seconds": seconds, "returncode": rc, "error": error, "doc": doc,
            "t_start": t_start, "t_end": t_start + seconds}


def _done(folder: Path, parameters: Mapping[str, Any]) -> dict[str, Any] | None:
    """The results.json of a point already run with these parameters, ``"status": "ok"``; else None."""
    doc = _read_json(folder / "results.json")
    if doc is None or doc.get("status") != "ok":
        return None
    got = doc.get("parameters", {})
    if any(k not in got or got[k] != v for k, v in parameters.items()):
        return None
    return doc


def _scalar(value: Any) -> bool:
    return (value is None or isinstance(value, (bool, int, float))
            or (isinstance(value, str) and len(value) <= 200 and "\n" not in value))


def _row(point: Point, record: Mapping[str, Any], doc: Mapping[str, Any] | None) -> dict[str, Any]:
    """One line of sweep.csv: the point, its status, its parameters, glued numbers and verdicts."""
    row: dict[str, Any] = {"point": point.id, "status": record["status"],
                           "seconds": round(float(record.get("seconds") or 0.0), 3),
                           "error": record.get("error") or ""}
    params = dict(record.get("parameters", point.parameters))
    row.update({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in params.items()})
    if doc:
        from sdlib.chapters import claims as claims_api

        skip = {claims_api.ledger_key(p) for p in claims_api.glue_prefixes(doc.get("results", {}))}
        for key, value in (doc.get("results") or {}).items():
            if key not in skip and key not in row and not key.endswith("_status") and _scalar(value):
                row[key] = value
        for claim in doc.get("claims") or []:
            if isinstance(claim, Mapping) and "key" in claim:
                row[f"verdict:{claim['key']}"] = claim.get("verdict")
    return row


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _key(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def _figure(rows: list[dict[str, Any]], grid: Grid, notebook: Path, path: Path) -> Path | None:
    """The summary figure: glued numbers against the one or two parameters that vary."""
    varying = grid.varying
    ok = [(p, r) for p, r in zip(grid.points, rows, strict=True) if r["status"] == "ok"]
    if not 1 <= len(varying) <= 2 or not ok:
        return None
    skip = {"point", "status", "seconds", "error", *grid.fixed, *{k for p in grid.points for k in p.parameters}}
    keys = [k for k in grid.plot if any(_number(r.get(k)) for _, r in ok)]
    if not keys:  # none asked for, or none glued by this version of the chapter: the numbers that vary
        columns = list(dict.fromkeys(k for _, r in ok for k in r))
        keys = [c for c in columns if c not in skip and not c.startswith("verdict:") and "seconds" not in c
                and all(_number(r.get(c)) or r.get(c) is None for _, r in ok)
                and len({r[c] for _, r in ok if _number(r.get(c))}) > 1][:6]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = varying[0]
    xs = list({_key(p.parameters[x]): p.parameters[x] for p in grid.points if x in p.parameters}.values())
    numeric = all(_number(v) for v in xs)
    order = [_key(v) for v in xs]
    groups: dict[str, tuple[str | None, list[tuple[Any, dict[str, Any]]]]] = {}
    for p, r in ok:
        if x not in p.parameters:
            continue
        g = p.parameters.get(varying[1]) if len(varying) == 2 else None
        label = None if len(varying) == 1 else f"{varying[1]} = {g}"
        groups.setdefault(_key(g), (label, []))[1].append((p.parameters[x], r))
    cols = min(3, len(keys))
    nrows = -(-len(keys) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for label, members in groups.values():
            pts = sorted((v if numeric else order.index(_key(v)), r[key]) for v, r in members if _number(r.get(key)))
            if pts:
                ax.plot([a for a, _ in pts], [b for _, b in pts], "o-", label=label)
        ax.set_xlabel(x)
        ax.set_ylabel(key)
        ax.set_title(key, fontsize=9)
        if numeric and min(xs) > 0 and max(xs) / min(xs) >= 100:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        if len(groups) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.suptitle(f"Not a figure of the paper. Sweep of {notebook.name}: {len(ok)} of {len(rows)} points ok",
                 fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return write_bytes_atomic(path, buf.getvalue())


def _csv(rows: list[dict[str, Any]]) -> bytes:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf8")


def _summarise(notebook: Path, grid: Grid, outdir: Path, records: Mapping[str, dict[str, Any]],
               started: datetime, seconds: float, status: str, cluster: str) -> SweepResult:
    rows, points = [], []
    for p in grid.points:
        rec = records.get(p.id) or {"status": "not run", "parameters": p.parameters}
        doc = rec.get("doc")
        rows.append(_row(p, rec, doc))
        points.append({"id": p.id, "status": rec["status"], "parameters": p.parameters,
                       "seconds": rec.get("seconds"), "skipped": bool(rec.get("skipped")),
                       "error": rec.get("error"), "folder": p.id,
                       "t_start": rec.get("t_start"), "t_end": rec.get("t_end")})
    table = write_bytes_atomic(outdir / "sweep.csv", _csv(rows))
    figure = None
    try:
        figure = _figure(rows, grid, notebook, outdir / "sweep.png")
    except Exception as exc:  # noqa: BLE001 - a figure must never lose the table
        logging.getLogger(__name__).warning("no summary figure: %s", exc)
    doc = {
        "notebook": str(notebook), "grid": grid.source, "status": status,
        "counts": {s: sum(pt["status"] == s for pt in points) for s in sorted({pt["status"] for pt in points})},
        "varying": grid.varying, "fixed": grid.fixed, "cluster": cluster,
        "points": points, "table": table.name, "figure": figure.name if figure else None,
        "provenance": provenance(started=started, seconds=seconds, parameters=grid.fixed),
    }
    doc["provenance"]["command"] = " ".join(sys.argv) if sys.argv else None
    js = write_json_atomic(outdir / "sweep.json", doc)
    return SweepResult(outdir=outdir, status=status, points=points, csv=table, json=js, figure=figure)


def plan_sweep(notebook: str | Path, grid: Grid | str | Path, *, parameters: Mapping[str, Any] | None = None,
               config: str | Path | None = None) -> Grid:
    """The grid with every point's parameters complete and validated against the notebook.

    A point's parameters are the grid's fixed ``parameters:``, then ``config`` (a YAML file), then
    ``parameters`` (``-p``), then the point's own values; a parameter both varied by the grid and set
    by ``config``/``parameters`` is an error, and so is any value the notebook refuses (unknown name,
    wrong type, outside its declared constraint: :func:`sdlib.chapters.runner.validate_parameters`). Nothing runs.
    """
    from sdlib.chapters import runner

    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    params = runner.notebook_parameters(notebook)
    base = dict(runner.load_config(config)) if config is not None else {}
    base.update(parameters or {})
    clash = sorted(set(base) & {k for p in grid.points for k in p.parameters})
    if clash:
        raise UsageError(f"{', '.join(map(repr, clash))} both varies across the grid's points and is set by "
                         "-p/-f; drop it from one of them")
    fixed = {**grid.fixed, **base}
    points = [Point(p.id, runner.validate_parameters(params, {**fixed, **p.parameters},
                                                     notebook=f"{Path(notebook).name} (point {p.id})"))
              for p in grid.points]
    return Grid(points=points, fixed=fixed, varying=list(grid.varying), plot=list(grid.plot), source=grid.source)


def run_sweep(
    notebook: str | Path,
    grid: Grid | str | Path,
    outdir: str | Path,
    *,
    parameters: Mapping[str, Any] | None = None,
    config: str | Path | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    timeout: float | None = None,
    kernel_name: str | None = None,
    progress: bool = True,
    force: bool = False,
    security: Any = None,
) -> SweepResult:
    """Run ``notebook`` at every point of ``grid`` on Dask and write OUTDIR's summary.

    Every point's parameters are completed and validated before anything runs (:func:`plan_sweep`:
    :class:`sdlib.chapters.runner.ParameterError` for a value the notebook refuses). Each point runs through
    :func:`run_point` as a Dask task (on ``client``, or a :func:`dask_client` of
    ``workers``/``scheduler``) into ``OUTDIR/<point-id>/``.
    Points whose ``results.json`` says ``"ok"`` with the same parameters are skipped (``force``
    reruns them); failed and interrupted ones run again; a failing point does not stop the others.
    Writes ``OUTDIR/sweep.csv`` (one line per point: status, parameters, glued numbers, claim
    verdicts), ``OUTDIR/sweep.json`` (the points, their statuses and the provenance) and, when one
    or two parameters vary, ``OUTDIR/sweep.png``. On Ctrl-C or SIGTERM the running points are
    stopped (each records ``"interrupted"``), the summary is written and ``KeyboardInterrupt`` raised.
    Returns a :class:`SweepResult`; its status is ``"ok"`` when every point is.

    OUTDIR is locked for the sweep (a second sweep into it is a :class:`~sdlib.errors.UsageError`),
    and a point folder holding a finished run made with other parameters is refused unless
    ``force``. ``security``: see :func:`dask_client`.
    """
    notebook = Path(notebook).resolve()
    outdir = Path(outdir).resolve()
    grid = plan_sweep(notebook, grid, parameters=parameters, config=config)
    if timeout is not None and not timeout > 0:
        raise UsageError(f"timeout must be a positive number of seconds, got {timeout!r}")

    prepare_outdir(outdir)
    # one sweep at a time in a folder: two would run the same points and mix their tables
    with folder_lock(outdir, f"a sweep of {notebook.name} (python -m sdlib sweep)"):
        return _sweep_locked(notebook, grid, outdir, workers=workers, scheduler=scheduler, client=client,
                             timeout=timeout, kernel_name=kernel_name, progress=progress, force=force,
                             security=security)


def _other_result(folder: Path, parameters: Mapping[str, Any]) -> str | None:
    """The parameters of a finished run in ``folder`` made with other ``parameters`` than the point's."""
    doc = _read_json(folder / "results.json")
    if doc is None or doc.get("status") != "ok":
        return None
    got = doc.get("parameters", {})
    diff = {k: (got.get(k), v) for k, v in parameters.items() if k not in got or got[k] != v}
    return ", ".join(f"{k}={a!r} there, {b!r} here" for k, (a, b) in diff.items()) if diff else None


def _sweep_locked(notebook: Path, grid: Grid, outdir: Path, *, workers: int | None, scheduler: str | None,
                  client: Any, timeout: float | None, kernel_name: str | None, progress: bool,
                  force: bool, security: Any) -> SweepResult:
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    records: dict[str, dict[str, Any]] = {}
    todo: list[Point] = []
    if not force:
        for p in grid.points:
            other = _other_result(outdir / p.id, p.parameters)
            if other is not None:
                raise UsageError(f"point {p.id} of {outdir} holds a finished run with other parameters ({other}); "
                                 "give another -o/--outdir, or --force to rerun every point")
    for p in grid.points:
        doc = None if force else _done(outdir / p.id, p.parameters)
        if doc is not None:
            records[p.id] = {"status": "ok", "skipped": True, "parameters": p.parameters, "doc": doc,
                             "seconds": doc.get("provenance", {}).get("seconds")}
        else:
            todo.append(p)
    status = "ok"
    cluster = "none (every point done)"
    bar = tqdm(total=len(grid.points), initial=len(records), unit="point", disable=not progress,
               desc=f"sweep {notebook.name}", dynamic_ncols=True)
    try:
        if todo:
            with ExitStack() as stack:
                if client is None:
                    # each point runs in a process of its own, so that the local workers only wait:
                    # threads of this process, with nothing to start
                    client = stack.enter_context(dask_client(workers, scheduler, processes=False,
                                                             security=security))
                cluster = _describe(client)
                _run_points(client, str(notebook), outdir, todo, records, bar, timeout, kernel_name)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        _summarise(notebook, grid, outdir, records, started, time.perf_counter() - t0, status, cluster)
        raise
    finally:
        bar.close()
    if any(r["status"] != "ok" for r in records.values()) or len(records) < len(grid.points):
        status = "failed"
    return _summarise(notebook, grid, outdir, records, started, time.perf_counter() - t0, status, cluster)


def _describe(client: Any) -> str:
    try:
        info = client.scheduler_info()
        workers = info.get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers.values())
        return f"{info.get('address', '?')}: {len(workers)} worker(s), {threads} thread(s)"
    except Exception:  # noqa: BLE001 - a description only
        return str(client)


def _run_points(client: Any, notebook: str, outdir: Path, todo: list[Point], records: dict[str, dict[str, Any]],
                bar: Any, timeout: float | None, kernel_name: str | None) -> None:
    """Submit one task per point and record each as it completes; on interrupt stop the running ones."""
    from distributed import as_completed

    futures = {}
    for p in todo:
        fut = client.submit(run_point, notebook, str(outdir / p.id), p.parameters, timeout=timeout,
                            kernel_name=kernel_name, key=f"sdlib-sweep-{p.id}-{uuid.uuid4().hex[:8]}",
                            pure=False, retries=0)
        futures[fut] = p
    try:
        for fut in as_completed(futures):
            p = futures[fut]
            try:
                rec = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker lost, a task killed: this point fails alone
                rec = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "doc": None}
            rec["parameters"] = p.parameters
            records[p.id] = rec
            bar.update(1)
            bar.set_postfix_str(f"{p.id}: {rec['status']}", refresh=True)
    except BaseException:
        # Stop the points still running (Dask does not stop running tasks when futures are
        # cancelled), give them a moment to record "interrupted", then cancel the rest.
        pending = [f for f in futures if not f.done()]
        folders = [str(outdir / futures[f].id) for f in pending]
        with contextlib.suppress(Exception):
            client.run(_terminate_points, folders)
        deadline = time.monotonic() + 20
        for fut in pending:
            p = futures[fut]
            with contextlib.suppress(Exception):
                rec = fut.result(timeout=max(0.1, deadline - time.monotonic()))
                rec["parameters"] = p.parameters
                records[p.id] = rec
        with contextlib.suppress(Exception):
            client.cancel(pending)
        for fut in pending:
            p = futures[fut]
            records.setdefault(p.id, {"status": "interrupted", "error": "the sweep was interrupted",
                                      "parameters": p.parameters, "doc": None})
        raise
