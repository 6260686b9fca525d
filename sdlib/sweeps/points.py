"""One point of a sweep: ``python -m sdlib run`` in a process of its own, as one Dask task.

papermill is not thread-safe, so every point runs in a new process (:func:`run_point`), which ends
with the worker that started it and is stopped with SIGTERM when the sweep is interrupted
(:func:`terminate_points`, called on every worker). A point whose folder holds an ``"ok"`` run with
the same parameters is done (:func:`done`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sdlib.provenance import write_bytes_atomic

__all__ = ["done", "other_result", "read_json", "run_point", "terminate_points"]

# Processes of the points this worker runs now (point folder -> process): stopped by
# :func:`terminate_points`, which the client calls on every worker when a sweep is interrupted.
_RUNNING: dict[str, subprocess.Popen] = {}
_RUNNING_LOCK = threading.Lock()


def terminate_points(folders: Sequence[str] | None = None) -> int:
    """SIGTERM the ``sdlib run`` processes of this worker (of ``folders`` only, if given)."""
    n = 0
    with _RUNNING_LOCK:
        running = list(_RUNNING.items())
    for folder, proc in running:
        if (folders is None or folder in folders) and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            n += 1
    return n


def read_json(path: Path) -> dict[str, Any] | None:
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
    import yaml  # in the worker's process, when a point runs

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
    # The point's process ends with the worker (see sdlib.cli), and leaves the terminal's
    # Ctrl-C to the sweep, which stops it with SIGTERM through terminate_points.
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
    doc = read_json(out / "results.json")
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


def done(folder: Path, parameters: Mapping[str, Any]) -> dict[str, Any] | None:
    """The results.json of a point already run with these parameters, ``"status": "ok"``; else None."""
    doc = read_json(folder / "results.json")
    if doc is None or doc.get("status") != "ok":
        return None
    got = doc.get("parameters", {})
    if any(k not in got or got[k] != v for k, v in parameters.items()):
        return None
    return doc


def other_result(folder: Path, parameters: Mapping[str, Any]) -> str | None:
    """The parameters of a finished run in ``folder`` made with other ``parameters`` than the point's."""
    doc = read_json(folder / "results.json")
    if doc is None or doc.get("status") != "ok":
        return None
    got = doc.get("parameters", {})
    diff = {k: (got.get(k), v) for k, v in parameters.items() if k not in got or got[k] != v}
    return ", ".join(f"{k}={a!r} there, {b!r} here" for k, (a, b) in diff.items()) if diff else None

