"""Provenance of every result file: parameters, seed, package versions, device, git commit, time.

Also :func:`write_json_atomic`, so that no result file is ever left half-written, and
:func:`read_yaml`, the one reader of the YAML files a user gives (configs, grids).
"""

from __future__ import annotations

import errno
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from sdlib.errors import UsageError

__all__ = [
    "git_commit", "package_versions", "device_description", "provenance", "file_mode", "write_bytes_atomic",
    "write_json_atomic", "prepare_outdir", "folder_lock", "LOCK_NAME", "read_yaml", "recomputing_argv",
]

PACKAGES = (
    "sdlib", "numpy", "scipy", "scikit-learn", "torch", "torchvision", "papermill", "jupytext",
    "myst-nb", "jupyter-book", "matplotlib",
)


def git_commit(path: str | Path | None = None) -> str | None:
    """The current commit of the repository holding ``path`` (``+dirty`` if changed), or None."""
    cwd = Path(path or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape the numbers (missing ones are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def device_description(device: str | None = None) -> str:
    """A human-readable description of the device: the CUDA device name, or the CPU."""
    if device is not None and str(device).startswith("cuda"):
        try:
            import torch

            return f"{device}: {torch.cuda.get_device_name(torch.device(device))}"
        except Exception:  # noqa: BLE001 - describing the device must never fail a run
            return str(device)
    cpu = platform.processor() or platform.machine()
    return f"cpu: {cpu}, {os.cpu_count()} logical cores"


def provenance(
    *,
    started: datetime,
    seconds: float,
    parameters: dict[str, Any] | None = None,
    seed: int | list[int] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """The provenance block every result file carries."""
    return {
        "parameters": parameters or {},
        "seed": seed,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": device_description(device),
        "started": started.astimezone(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(float(seconds), 3),
    }


def file_mode() -> int:
    """The permissions of an ordinary new file under the current umask (mkstemp makes 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as JSON to a temporary file beside ``path``, then rename it into place."""
    return write_bytes_atomic(path, (json.dumps(obj, indent=2, default=str) + "\n").encode("utf8"))


def read_yaml(
    path: str | Path, *, what: str, hint: str | None = None, error: type[UsageError] = UsageError
) -> dict[str, Any]:
    """The mapping held by the YAML file ``path`` (an empty file is ``{}``).

    Anything else is a one-line ``error`` (a :class:`~sdlib.errors.UsageError`) naming the ``what``
    file (e.g. ``"config file"``) and its path: missing (then ``hint``, what to give instead, follows),
    unreadable, not UTF-8, not valid YAML, or not a mapping ``name: value``.
    """
    import yaml  # only the commands that read a file pay for importing PyYAML

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {str(path)!r} does not exist" + (f"; {hint}" if hint else ""))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf8"))
    except UnicodeDecodeError as exc:
        raise error(f"{what} {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as "
                    "UTF-8") from None
    except OSError as exc:
        raise error(f"{what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise error(f"{what} {str(path)!r} is not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{what} {str(path)!r} must hold a mapping 'name: value', found {type(data).__name__}")
    return data


def prepare_outdir(path: str | Path, *, option: str = "-o/--outdir", what: str = "output folder") -> Path:
    """Create the output folder ``path`` if missing and check that files can be written in it;
    otherwise a one-line :class:`~sdlib.errors.UsageError` naming the folder, the reason and
    ``option`` (a path that is a file or lies under one, a read-only folder, ``/proc``)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".sdlib-probe.", suffix=".tmp", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, FileExistsError) or (path.exists() and not path.is_dir()):
            reason = "it is a file, not a folder"
        elif exc.errno == errno.ENOTDIR:
            reason = "a part of the path is a file, not a folder"
        raise UsageError(f"{what} {str(path)!r} cannot be used: {reason}; give a writable folder with "
                         f"{option}") from None
    return path


#: The lock file of an output folder while a command writes into it (:func:`folder_lock`).
LOCK_NAME = ".sdlib.lock"


@contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (a hidden ``.sdlib.lock`` file, ``flock``) while ``what``
    (e.g. ``"sweep"``) writes into it: a second command into the same folder is a
    :class:`~sdlib.errors.UsageError` naming the process that holds it, never a mix of the two.

    The lock file is removed on exit; a process killed with the lock leaves the file, but not the
    lock (the kernel drops it with the process), so the next command takes it over.
    """
    import fcntl

    folder = Path(folder)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 200, 0).decode("utf8", "replace").strip() or "another process"
            finally:
                os.close(fd)
            raise UsageError(f"output folder {str(folder)!r} is in use by {holder}; wait for it to end, or "
                             "give another output folder") from None
        try:  # the file may have been removed by the holder that just released it: lock the current one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what} (pid {os.getpid()})".encode(), 0)
        yield path
    finally:
        try:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def recomputing_argv(argv: Sequence[str]) -> list[str]:
    """A recorded command line without the options that do not change the numbers (``--out PATH``,
    ``--out=PATH``, ``--allow-dirty``): the command that recomputes a committed result."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not a.startswith(("--out=", "--allow-dirty")):
            out.append(a)
    return out
