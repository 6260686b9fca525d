"""Command line of the companion: ``python -m sdlib run | params | sweep | train`` (entry point: :mod:`sdlib.__main__`).

Examples::

    python -m sdlib params notebooks/illustrative_example.md
    python -m sdlib run notebooks/illustrative_example.md -p lam 0.05 -p gamma 40 -o runs/ex45_lam005
    python -m sdlib sweep notebooks/theorem45.md -g configs/sweep_theorem45.yaml -o runs/sweep45 --workers 2
    python -m sdlib train -f configs/smoke_cpu.yaml -o runs/smoke --dry-run

The same options everywhere: ``-o/--outdir``, ``-p/--param NAME VALUE``, ``-f/--config``,
``--workers N`` or ``--scheduler ADDR``, ``--debug``. Every error is one line on stderr,
``python -m sdlib CMD: error: MESSAGE`` naming the cause and the fix, without a traceback unless
``--debug`` is given. Exit status: 0 done; 1 the run failed (a notebook raised, a sweep point failed,
data or a GPU missing); 2 invalid parameters or usage (nothing ran); 130 interrupted (Ctrl-C or
SIGTERM: what ran so far is written, and results.json says ``"status": "interrupted"``).

One function builds each command's options (``_add_run``, ...) and one carries each command out
(:func:`run_command`, :func:`params_command`, :func:`sweep_command`, :func:`train_command`). The
library is imported inside them, so that ``python -m sdlib --help`` imports neither papermill nor
Dask, scikit-learn or torch.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from sdlib.errors import DeviceUnavailableError, RunError, SdlibError, UsageError

PROG = "python -m sdlib"

EPILOG = """\
examples:
  python -m sdlib params notebooks/illustrative_example.md
  python -m sdlib run notebooks/illustrative_example.md -p lam 0.05 -p gamma 40 -o runs/ex45_lam005
  python -m sdlib sweep notebooks/theorem45.md -g configs/sweep_theorem45.yaml -o runs/sweep45
  python -m sdlib train -f configs/smoke_cpu.yaml -o runs/smoke --dry-run

exit status: 0 done; 1 the run failed (OUTDIR still holds what ran, and results.json says
"status": "failed"); 2 invalid parameters or usage (nothing ran); 130 interrupted (Ctrl-C, SIGTERM).
"""


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line naming the fix (``--help``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _common(parser: argparse.ArgumentParser, *, params: bool = True) -> None:
    if params:
        parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                            help="set a parameter; VALUE is read as YAML (0.05, 1e-3, true, None, "
                                 "'[0.1, 0.2]', rbf); repeatable; wins over -f")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")


def _cluster(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help=f"run {what} on a local Dask cluster of N worker processes started here "
                            "(default: one per CPU core)")
    group.add_argument("--scheduler", default=None, metavar="ADDR",
                       help="use the Dask scheduler at ADDR (tls://HOST:8786, or a scheduler file) whose "
                            "workers you started ('dask scheduler', 'dask worker ADDR', dask-jobqueue); plain "
                            "tcp:// to another host is unauthenticated and warns")
    tls = parser.add_argument_group("TLS to a --scheduler (all three, or Dask's distributed.comm.tls configuration)")
    tls.add_argument("--tls-ca-file", default=None, metavar="PEM", help="the certificate authority of the cluster")
    tls.add_argument("--tls-cert", default=None, metavar="PEM", help="this client's certificate")
    tls.add_argument("--tls-key", default=None, metavar="PEM", help="this client's private key")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m sdlib``."""
    parser = _Parser(
        prog=PROG,
        description="Rerun a chapter of the companion to Borup & Andersen (2021) with other parameters, sweep "
                    "a grid of them on Dask, or train the Section 5 fits.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,params,sweep,train}",
                                parser_class=_Parser)
    _add_run(sub)
    _add_params(sub)
    _add_sweep(sub)
    _add_train(sub)
    return parser


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="execute a notebook with papermill and write OUTDIR/NAME.ipynb, OUTDIR/figures, OUTDIR/results.json",
        description=(
            "Execute a Jupytext notebook (notebooks/NAME.md) with papermill, its parameters cell "
            "overridden by -p and -f, in the notebook's own directory. Writes OUTDIR/NAME.ipynb (the "
            "executed notebook), OUTDIR/figures/*.png (every figure) and OUTDIR/results.json (the "
            "glued numbers, the claims' verdicts, the parameters and the provenance). Ctrl-C keeps what "
            "ran and exits 130."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("notebook", help="the notebook, e.g. notebooks/theorem45.md")
    run.add_argument("-f", "--config", metavar="YAML",
                     help="a YAML file of parameters 'name: value' (e.g. configs/smoke_cpu.yaml)")
    run.add_argument("-o", "--outdir", required=True, help="output folder (created if missing)")
    run.add_argument("--kernel", default=None, metavar="NAME",
                     help="Jupyter kernel (default: the notebook's kernelspec, python3)")
    run.add_argument("--timeout", type=float, default=None, metavar="S",
                     help="seconds allowed per cell (default: no limit)")
    run.add_argument("--force", action="store_true",
                     help="replace the finished run (or the notebook) that OUTDIR already holds")
    run.add_argument("--no-progress", action="store_true", help="hide papermill's progress bar")
    _common(run)


def _add_params(sub: Any) -> None:
    params = sub.add_parser(
        "params", help="list a notebook's parameters: type, default, declared constraint, description",
        description="List the parameters of a notebook's 'parameters' cell with their types, defaults, the "
                    "constraints their values must satisfy and their descriptions.")
    params.add_argument("notebook", help="the notebook, e.g. notebooks/theorem45.md")
    params.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common(params, params=False)


def _add_sweep(sub: Any) -> None:
    sweep = sub.add_parser(
        "sweep", help="run a notebook at every point of a grid on Dask: OUTDIR/<point>/, OUTDIR/sweep.csv",
        description=(
            "Run a notebook at every point of GRID.yaml ('grid: {name: [values]}' for all combinations, or "
            "'points: [{name: value}, ...]'), each point through 'python -m sdlib run' in a process of its "
            "own, as Dask tasks (a local cluster by default), into OUTDIR/<point-id>/. Points already done "
            "with the same parameters are skipped, failed ones rerun; a failing point does not stop the "
            "others. Writes OUTDIR/sweep.csv (parameters, glued numbers and claim verdicts of every point), "
            "OUTDIR/sweep.json (statuses, provenance) and OUTDIR/sweep.png (one or two varying parameters)."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_argument("notebook", help="the notebook, e.g. notebooks/theorem45.md")
    sweep.add_argument("-g", "--grid", required=True, metavar="YAML",
                       help="the grid, e.g. configs/sweep_theorem45.yaml")
    sweep.add_argument("-o", "--outdir", required=True, help="output folder (created if missing)")
    sweep.add_argument("-f", "--config", metavar="YAML", help="parameters set at every point (YAML 'name: value')")
    _cluster(sweep, "the points")
    sweep.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds allowed per cell of each run")
    sweep.add_argument("--kernel", default=None, metavar="NAME", help="Jupyter kernel of every run")
    sweep.add_argument("--force", action="store_true", help="rerun the points already done too")
    sweep.add_argument("--dry-run", action="store_true", help="validate the grid, list the points, run nothing")
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar over points")
    _common(sweep)


def _add_train(sub: Any) -> None:
    train = sub.add_parser(
        "train", help="train the Section 5 fits of a configuration as a Dask task graph: OUTDIR/results.json",
        description=(
            "Train (or resume) the fits of a Section 5 experiment (configs/*.yaml): one task per (seed, chain, "
            "step) with its dependencies, checkpoints as the hand-off, done fits skipped. Serial in this process "
            "on a CPU unless --workers or --scheduler is given; one worker per GPU with device: cuda. Writes "
            f"OUTDIR/results.json. --dry-run shrinks the run to seconds ({_dry_run_text()}) to check a "
            "configuration end to end."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("-f", "--config", required=True, metavar="YAML",
                       help="the experiment, e.g. configs/smoke_cpu.yaml")
    train.add_argument("-o", "--outdir", required=True, help="output folder (created if missing)")
    _cluster(train, "the fits")
    train.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                       help="where the fits' checkpoints live (default: OUTDIR/checkpoints); on a cluster a "
                            "path every worker reads and writes")
    train.add_argument("--dry-run", action="store_true",
                       help=f"a few-second version of the configuration: {_dry_run_text()}")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar over fits")
    _common(train)


# --------------------------------------------------------------------------------------------------
# The commands


def params_command(args: argparse.Namespace) -> int:
    """``python -m sdlib params NOTEBOOK [--json]``: the parameters' table (or JSON) on stdout."""
    from sdlib.chapters import params  # each command imports its library when it runs: a fast --help

    found = params.notebook_parameters(args.notebook)
    print(params.parameters_json(found) if args.json else params.format_parameters(found))
    return 0


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from sdlib.chapters.constraints import parse_cli_value  # PyYAML, for the commands that read values

    return {name: parse_cli_value(value) for name, value in args.param}


def run_command(args: argparse.Namespace) -> int:
    """``python -m sdlib run``: execute the chapter; print what ran and what changed against the defaults."""
    from sdlib.chapters import runner  # papermill and nbformat: for this command only

    try:
        result = runner.run_notebook(
            args.notebook, args.outdir, parameters=_overrides(args), config=args.config,
            kernel_name=args.kernel, timeout=args.timeout, progress_bar=not args.no_progress, force=args.force)
    except runner.RunInterrupted as exc:
        where = f"; the notebook executed so far: {exc.result.notebook}" if exc.result else ""
        _say(args, f"interrupted by {exc.signame}{where}; rerun the same command to start again")
        return 130
    if result.status == "interrupted":
        _say(args, f"{args.notebook} was interrupted ({result.error}); the notebook executed so far: {result.notebook}")
        return 130
    if result.ok:
        print(f"ran {args.notebook}: {result.notebook}, {len(result.figures)} figure(s), {result.results_json}")
        for line in result.summary.console() if result.summary is not None else []:
            print(line)
        return 0
    _say(args, f"{args.notebook} failed: {result.error}; the executed notebook with the traceback: "
               f"{result.notebook}, status in {result.results_json}")
    return 1


def sweep_command(args: argparse.Namespace) -> int:
    """``python -m sdlib sweep``: run the chapter at every point of the grid (or list them, ``--dry-run``)."""
    from sdlib.sweeps import sweep  # Dask: for this command only

    grid = sweep.load_grid(args.grid)
    security = _security(args)
    if args.dry_run:
        plan = sweep.plan_sweep(args.notebook, grid, parameters=_overrides(args), config=args.config)
        for p in plan.points:
            print(f"{p.id}: " + ", ".join(f"{k}={v!r}" for k, v in p.parameters.items() if k not in plan.fixed))
        print(f"{len(plan.points)} point(s) valid; set at every point: {plan.fixed or 'nothing'}; nothing ran")
        return 0
    try:
        result = sweep.run_sweep(
            args.notebook, grid, args.outdir, parameters=_overrides(args), config=args.config,
            workers=args.workers, scheduler=args.scheduler, timeout=args.timeout, kernel_name=args.kernel,
            progress=not args.no_progress, force=args.force, security=security)
    except KeyboardInterrupt:
        _say(args, f"interrupted; the points done so far are in {args.outdir}/sweep.csv; rerun the same command "
                   "to run the others (done points are skipped)")
        return 130
    n = len(result.points)
    skipped = sum(p["skipped"] for p in result.points)
    figure = f", {result.figure}" if result.figure else ""
    if result.ok:
        print(f"swept {args.notebook}: {n} point(s) ok ({skipped} already done): {result.csv}, {result.json}{figure}")
        return 0
    bad = [p for p in result.points if p["status"] != "ok"]
    _say(args, f"{len(bad)} of {n} point(s) did not finish ok (first: {bad[0]['id']}: {bad[0]['error']}); each "
               f"point's folder holds its notebook and run.log; table in {result.csv}; rerun the same command to "
               "retry them")
    return 1


def _security(args: argparse.Namespace) -> Any:
    """The TLS security of ``--tls-*`` (only with ``--scheduler``), or None."""
    given = [o for o in ("tls_ca_file", "tls_cert", "tls_key") if getattr(args, o, None) is not None]
    if given and args.scheduler is None:
        raise UsageError(f"--{given[0].replace('_', '-')} applies to a --scheduler; the local cluster listens on "
                         "127.0.0.1 only and needs no TLS")
    from sdlib.sweeps.cluster import make_security  # Dask's security: with a --scheduler only

    return make_security(args.tls_ca_file, args.tls_cert, args.tls_key)


DRY_RUN = dict(seeds=[0], steps=2, epochs=1, n_train=64, n_val=32, n_test=64, progress=False)


def _dry_run_text() -> str:
    """What ``train --dry-run`` sets, for the help (read from :data:`DRY_RUN`)."""
    shown = ", ".join(f"{k}={v}" for k, v in DRY_RUN.items() if k != "progress")
    return f"{shown}, and only the first fixed alpha"


def _train_config(args: argparse.Namespace) -> Any:
    """The Section 5 configuration of ``-f`` with ``-p`` (checked as given, also with ``--dry-run``)."""
    from sdlib.nn.config import load_experiment  # torch-free, but not needed by the other commands

    config = Path(args.config)
    if not config.is_file():
        raise UsageError(f"config file {str(config)!r} does not exist; give a YAML file such as configs/smoke_cpu.yaml")
    overrides = _overrides(args)
    try:
        cfg = load_experiment(config, **overrides)   # the parameters as given are checked, also with --dry-run
        if args.dry_run:
            cfg = load_experiment(config, **{**overrides, **DRY_RUN})
            cfg.alphas = cfg.alphas[:1]
    except SdlibError:
        raise
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{config}: {exc}") from exc
    return cfg


def train_command(args: argparse.Namespace) -> int:
    """``python -m sdlib train``: the Section 5 fits of a configuration, serial here or on a Dask cluster."""
    import contextlib

    cfg = _train_config(args)
    try:
        from sdlib.nn.graph import train  # torch: the 'nn' extra, for this command only
    except ImportError as exc:
        raise RunError(f"the Section 5 task graph cannot be imported ({exc}); install the extras: "
                       "pip install -e '.[nn,dist]'") from exc
    from sdlib.provenance import prepare_outdir
    from sdlib.sweeps import cluster  # Dask: for this command only

    security = _security(args)
    gpus = str(cfg.device).startswith("cuda")
    if gpus and args.scheduler is None and not cluster.visible_gpus():
        raise DeviceUnavailableError(
            f"device={cfg.device!r} but no CUDA GPU is visible on this machine; use -p device cpu (or a "
            "CPU configuration such as configs/smoke_cpu.yaml), or run on a machine with a GPU")
    prepare_outdir(args.outdir)   # after every check that needs nothing written
    if args.checkpoint_dir is not None:
        prepare_outdir(args.checkpoint_dir, option="--checkpoint-dir", what="checkpoint folder")
    outdir = Path(args.outdir)
    with contextlib.ExitStack() as stack:
        client = None
        if args.workers is not None or args.scheduler is not None or gpus:
            client = stack.enter_context(cluster.dask_client(
                args.workers, args.scheduler, gpus=gpus and not args.scheduler, security=security))
        try:
            doc = train(cfg, outdir, client=client, checkpoint_dir=args.checkpoint_dir, progress=not args.no_progress)
        except KeyboardInterrupt:
            where = args.checkpoint_dir or outdir / "checkpoints"
            _say(args, f"interrupted; finished fits are checkpointed under {where}; rerun the same command to "
                       "train only what is missing")
            return 130
    res = doc.get("results", {}) if isinstance(doc, dict) else {}
    prov = doc.get("provenance", {}) if isinstance(doc, dict) else {}
    print(f"wrote {outdir / 'results.json'}: {len(res.get('records', []))} records, {res.get('fits_trained', '?')} "
          f"fits trained, {res.get('fits_loaded', '?')} loaded, {prov.get('seconds', 0.0):.1f} s on "
          f"{prov.get('device', '?')}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": run_command, "params": params_command, "sweep": sweep_command, "train": train_command}


# --------------------------------------------------------------------------------------------------
# Errors: one line each


def _say(args: argparse.Namespace, message: str) -> None:
    print(f"{PROG} {args.command}: error: {' '.join(str(message).split())}", file=sys.stderr)


#: The optional packages of the command line and the extra (pyproject.toml) that installs each.
_EXTRAS = {"dask": "dist", "distributed": "dist", "dask_jobqueue": "dist", "pandas": "dist", "yaml": "dist",
           "dask_cuda": "gpu", "papermill": "book", "jupytext": "book", "nbformat": "book", "myst_nb": "book",
           "matplotlib": "book", "ipykernel": "book", "torch": "nn", "torchvision": "nn"}


def _expected(exc: BaseException) -> SdlibError | None:
    """Exceptions a user can act on, as the :mod:`sdlib.errors` type that says how."""
    import urllib.error

    if isinstance(exc, SdlibError):
        return exc
    if isinstance(exc, urllib.error.URLError):
        url = getattr(exc, "url", None) or getattr(exc, "filename", None) or "a data file"
        return RunError(f"could not download {url} ({getattr(exc, 'reason', exc)}); download it on a machine with "
                        "network access and place the files under the data_dir of the configuration")
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        package = exc.name.split(".")[0]
        extra = _EXTRAS.get(package)
        if extra is not None:
            return RunError(f"the package {package!r} is not installed; install the extra that brings it: "
                            f"pip install -e '.[{extra}]'")
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return RunError(f"out of memory ({type(exc).__name__}: {exc}); lower batch_size, n_train or the number of "
                        "workers")
    return None


def _die_with_parent() -> None:
    """A point of a sweep ends with the Dask worker that started it (Linux: PR_SET_PDEATHSIG)."""
    parent = os.environ.pop("SDLIB_PARENT_PID", None)
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the worker died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m sdlib`` and of the ``sdlib`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    _die_with_parent()
    import warnings

    shown = warnings.showwarning

    def one_line(message: Any, category: type[Warning], *rest: Any, **kw: Any) -> None:
        # sdlib's own warnings are for the user of the command: one line, as its errors
        if category.__module__.startswith("sdlib"):
            print(f"{PROG} {args.command}: warning: {' '.join(str(message).split())}", file=sys.stderr)
        else:
            shown(message, category, *rest, **kw)

    warnings.showwarning = one_line
    previous = None
    if args.command in ("sweep", "train") and threading_is_main():
        # SIGTERM stops a sweep or a training as Ctrl-C does: the summary is written, exit 130.
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        _say(args, "interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - every error is one line; --debug shows the traceback
        if args.debug:
            traceback.print_exc()
        known = _expected(exc)
        if known is not None:
            _say(args, str(known))
            return known.exit_code
        _say(args, f"unexpected {type(exc).__name__}: {exc}; rerun with --debug for the traceback and report it")
        return 1
    finally:
        warnings.showwarning = shown
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def exit_with(code: int) -> NoReturn:
    """Exit; after an interrupted run whose papermill thread still hangs (a save on a slow disk, a
    kernel that does not answer), without waiting for it or for its kernel's clean-up at exit."""
    execute = sys.modules.get("sdlib.chapters.execute")
    if execute is not None and execute.abandoned_executions():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
