"""Executing a notebook with papermill in a thread of its own, so that a signal stops it cleanly.

:func:`execute` runs papermill on an nbformat notebook in a private temporary folder and returns the
executed notebook with its status (``"ok"``, ``"failed"``, ``"interrupted"``) and error. The main
thread keeps SIGINT and SIGTERM (:func:`signals_to`): a signal interrupts the running cell, no
further cell starts, and after a grace period (or at a second signal) the kernel is killed. Cells
that never ran are marked ``"pending"``. papermill's warnings about the constraint comments of a
parameters cell, which the runner has already checked, are silenced for the run only.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["Execution", "Executed", "abandoned_executions", "execute", "signals_to"]

_SIGNAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
#: Seconds an interrupted cell is given to stop after SIGINT, then the kernel after SIGKILL.
_GRACE_INTERRUPT, _GRACE_KILL = 10.0, 30.0
_THREAD_NAME = "sdlib-papermill"


def abandoned_executions() -> list[threading.Thread]:
    """papermill threads still alive after their run returned (an interrupted run whose last save
    hangs): a command line about to exit ends the process without waiting for them."""
    return [t for t in threading.enumerate() if t.name == _THREAD_NAME and t.is_alive()]


class _Cancelled(Exception):
    """Raised in the executing thread before the next cell once a run is interrupted."""


class Execution:
    """papermill runs in a thread of its own; the main thread keeps SIGINT and SIGTERM.

    A signal sets :attr:`signame`; the main thread then sends SIGINT to the kernel (the running
    cell stops with ``KeyboardInterrupt``, which papermill records in the notebook), no further
    cell starts (:meth:`on_cell_start`), and after a grace period, or at a second signal, the
    kernel is killed. nbclient installs no signal handlers of its own outside the main thread.
    """

    def __init__(self) -> None:
        self.signame: str | None = None
        self.signals = 0
        self.cell_index: int | None = None
        self.km: Any = None
        self.wake = threading.Event()

    def kernel_manager_class(self) -> type:
        from jupyter_client.manager import AsyncKernelManager  # the 'book' extra, imported when a run starts

        execution = self

        class _KernelManager(AsyncKernelManager):  # remembers itself, so that the kernel can be signalled
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                execution.km = self

        return _KernelManager

    def on_cell_start(self, cell: Any = None, cell_index: int | None = None, **_: Any) -> None:
        if self.signame is not None:
            raise _Cancelled(f"interrupted by {self.signame}")
        self.cell_index = cell_index

    def handler(self, signum: int, frame: Any) -> None:
        self.signals += 1
        if self.signame is None:
            self.signame = _SIGNAMES.get(signum, f"signal {signum}")
        self.wake.set()

    def signal_kernel(self, signum: int) -> None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if process is None or process.poll() is not None:
            return
        try:  # the kernel runs in a session of its own: signal its process group
            os.killpg(os.getpgid(process.pid), signum)
        except OSError:
            try:
                os.kill(process.pid, signum)
            except OSError:
                pass

    def stop(self, thread: threading.Thread) -> None:
        """Interrupt the running cell, then kill the kernel if it does not stop, and wait for papermill.

        Before the first cell the kernel is still starting (a SIGINT would only print its import
        traceback): it is left to start, and :meth:`on_cell_start` ends the run before any cell.
        """
        if self.cell_index is not None:
            self.signal_kernel(signal.SIGINT)
        t_end = time.monotonic() + _GRACE_INTERRUPT
        while thread.is_alive() and time.monotonic() < t_end and self.signals < 2:
            thread.join(0.1)
        if thread.is_alive():
            self.signal_kernel(signal.SIGKILL)
            thread.join(_GRACE_KILL)


@contextmanager
def signals_to(execution: Execution) -> Iterator[bool]:
    """In the main thread: SIGINT and SIGTERM only set a flag while the run and its files are written."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {s: signal.signal(s, execution.handler) for s in _SIGNAMES}
    try:
        yield True
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


class _PapermillInspectionFilter(logging.Filter):
    """Drops papermill's parameter-inspection warnings, which a declared constraint sets off: its
    inspection cannot parse a line with a second '=' (``steps = 6  # >= 1; ...``: "Unable to parse
    line"), so it calls that parameter unknown ("Passed unknown parameter"). The runner has checked
    every name and value already (:func:`validate_parameters`); every other record passes."""

    _DROP = ("Unable to parse line", "Passed unknown parameter")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self._DROP)


@contextmanager
def quiet_papermill_inspection() -> Iterator[None]:
    """:class:`_PapermillInspectionFilter` on the two papermill loggers that emit those warnings,
    for the duration of a run only."""
    loggers = [logging.getLogger("papermill"), logging.getLogger("papermill.translators")]
    quiet = _PapermillInspectionFilter()
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def _kernel_arguments(kernel_name: str) -> list[str]:
    """Quieter ipykernel: its own log goes to the terminal of every run, not to the notebook (start-up
    warnings; "KeyboardInterrupt caught in kernel" when an interrupt lands between two statements of
    the kernel rather than in the cell's code). Every error of a cell is in the executed notebook."""
    try:
        from jupyter_client.kernelspec import get_kernel_spec  # the 'book' extra, imported when a run starts

        argv = get_kernel_spec(kernel_name).argv
    except Exception:  # noqa: BLE001 - an unknown kernel is reported by papermill itself
        return []
    return ["--IPKernelApp.log_level=CRITICAL"] if any("ipykernel" in a for a in argv) else []


def _mark_not_run(nb: Any, last_started: int | None) -> None:
    """Cells after the last one started never ran: papermill's clean-up calls them "completed" when the
    run stops between cells; call them "pending", as papermill does after a failed cell."""
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("papermill")
        if last_started is not None and index <= last_started or not isinstance(meta, dict):
            continue
        if meta.get("status") == "completed" and (cell.cell_type != "code" or cell.get("execution_count") is None):
            meta["status"] = "pending"


def _outcome(box: Mapping[str, Any], execution: Execution) -> tuple[str, str | None, str | None]:
    """``(status, error, traceback)`` of a papermill execution."""
    import papermill  # the 'book' extra, imported when a run starts

    exc = box.get("exc")
    # the index in the executed notebook (0-based, papermill's injected-parameters cell included)
    where = f" while executing cell {execution.cell_index}" if execution.cell_index is not None else ""
    if execution.signame is not None and "nb" not in box:
        return "interrupted", f"interrupted by {execution.signame}{where}", None
    if exc is None:
        return "ok", None, None
    if isinstance(exc, papermill.PapermillExecutionError):
        error = f"{exc.ename}: {exc.evalue} (execution count {exc.exec_count})"
        return ("interrupted" if exc.ename == "KeyboardInterrupt" else "failed"), error, None
    # a kernel that dies, a timeout: still recorded
    return "failed", f"{type(exc).__name__}: {exc}", box.get("tb")


@dataclass
class Executed:
    """What :func:`execute` gives back: the executed notebook (as far as it ran), status and timing."""

    nb: Any
    status: str
    error: str | None
    traceback: str | None
    started: datetime
    seconds: float


def _papermill_call(nb: Any, path: Path, execution: Execution, box: dict[str, Any], **options: Any) -> None:
    """papermill's execution of ``nb`` into ``path``; its notebook or its exception lands in ``box``."""
    import papermill  # the 'book' extra, imported when a run starts

    try:
        box["nb"] = papermill.execute_notebook(
            nb, str(path), log_output=False, kernel_manager_class=execution.kernel_manager_class(),
            on_cell_start=execution.on_cell_start, extra_arguments=_kernel_arguments(options["kernel_name"]),
            **options)
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread by execute()
        box["exc"], box["tb"] = exc, traceback.format_exc()


def _last_saved(box: Mapping[str, Any], path: Path, nb: Any) -> Any:
    """The executed notebook: papermill's, else as papermill last saved it, else the input ``nb``
    (papermill failed before writing anything, e.g. no such kernel)."""
    if box.get("nb") is not None:
        return box["nb"]
    if path.exists() and path.stat().st_size > 0:
        import nbformat  # the 'book' extra, imported when a run starts

        try:
            return nbformat.read(path, as_version=4)
        except Exception:  # noqa: BLE001 - papermill may have left a partial file
            pass
    return nb


@contextmanager
def _environment(extra: Mapping[str, str]) -> Iterator[None]:
    """``extra`` in ``os.environ`` for the duration (the kernel started meanwhile inherits it), then as before."""
    previous = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(nb: Any, folder: Path, name: str, execution: Execution, *, in_main_thread: bool,
            parameters: Mapping[str, Any], kernel_name: str, cwd: Path, timeout: float | None,
            progress_bar: bool, environment: Mapping[str, str] | None = None) -> Executed:
    """Execute ``nb`` with ``parameters`` injected, in ``cwd``, each cell within ``timeout`` seconds;
    the kernel's environment has ``environment`` added.

    papermill saves its output after every cell into a private folder ``folder/.NAME.*.tmp``
    (removed on return): a papermill thread that outlives an interrupted run (a save that hangs)
    can then write nothing once it is gone. In the main thread papermill runs in a thread of its own
    and a signal caught by :func:`signals_to` stops it (:meth:`Execution.stop`).
    """
    workdir = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=folder))
    tmp = workdir / name
    try:
        started, t0 = datetime.now(timezone.utc), time.perf_counter()
        box: dict[str, Any] = {}
        options = dict(parameters=dict(parameters), kernel_name=kernel_name, progress_bar=progress_bar,
                       cwd=str(cwd), execution_timeout=timeout)
        with _environment(environment or {}):
            if in_main_thread:
                thread = threading.Thread(target=_papermill_call, args=(nb, tmp, execution, box), kwargs=options,
                                          name=_THREAD_NAME, daemon=True)
                thread.start()
                while thread.is_alive() and execution.signame is None:
                    execution.wake.wait(0.2)
                if execution.signame is not None:
                    execution.stop(thread)
            else:
                _papermill_call(nb, tmp, execution, box, **options)
        seconds = time.perf_counter() - t0
        status, error, error_tb = _outcome(box, execution)
        executed = _last_saved(box, tmp, nb)
        if status != "ok":
            _mark_not_run(executed, execution.cell_index)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return Executed(nb=executed, status=status, error=error, traceback=error_tb, started=started, seconds=seconds)
