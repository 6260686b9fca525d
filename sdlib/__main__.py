"""Command line of the companion: ``python -m sdlib run …`` and ``python -m sdlib params …``.

Examples::

    python -m sdlib params notebooks/illustrative_example.md
    python -m sdlib run notebooks/illustrative_example.md -p lam 0.05 -p gamma 40 -o runs/ex45_lam005
    python -m sdlib run notebooks/section5_deep.md -f configs/figure5_gpu_fast.yaml -o runs/fig5_fast

Exit status: 0 when the notebook ran, 1 when it failed (its executed copy with the traceback and a
``results.json`` with ``"status": "failed"`` are still written), 2 for invalid parameters or usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EPILOG = """\
examples:
  python -m sdlib params notebooks/illustrative_example.md
  python -m sdlib run notebooks/illustrative_example.md -p lam 0.05 -p gamma 40 -o runs/ex45_lam005
  python -m sdlib run notebooks/section5_deep.md -f configs/figure5_gpu_fast.yaml -o runs/fig5_fast

exit status: 0 the notebook ran; 1 it failed (OUTDIR still holds the executed copy with the
traceback, and results.json says "status": "failed"); 2 invalid parameters or usage.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m sdlib``."""
    parser = argparse.ArgumentParser(
        prog="python -m sdlib",
        description="Rerun a chapter of the companion to Borup & Andersen (2021) with other parameters.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,params}")

    run = sub.add_parser(
        "run",
        help="execute a notebook with papermill and write OUTDIR/NAME.ipynb, OUTDIR/figures, OUTDIR/results.json",
        description=(
            "Execute a Jupytext notebook (notebooks/NAME.md) with papermill, its parameters cell "
            "overridden by -p and -f, in the notebook's own directory. Writes OUTDIR/NAME.ipynb (the "
            "executed notebook), OUTDIR/figures/*.png (every figure) and OUTDIR/results.json (the "
            "glued numbers, the claims' statuses, the parameters and the provenance)."),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("notebook", help="the notebook, e.g. notebooks/theorem45.md")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="set a parameter; VALUE is read as YAML (0.05, 1e-3, true, None, '[0.1, 0.2]', rbf); "
                          "repeatable; wins over -f")
    run.add_argument("-f", "--config", metavar="YAML",
                     help="a YAML file of parameters 'name: value' (e.g. configs/smoke_cpu.yaml)")
    run.add_argument("-o", "--outdir", required=True, help="output folder (created if missing)")
    run.add_argument("--kernel", default=None, metavar="NAME",
                     help="Jupyter kernel (default: the notebook's kernelspec, python3)")
    run.add_argument("--timeout", type=float, default=None, metavar="S",
                     help="seconds allowed per cell (default: no limit)")
    run.add_argument("--no-progress", action="store_true", help="hide papermill's progress bar")

    params = sub.add_parser("params", help="list a notebook's parameters with their defaults and types",
                            description="List the parameters of a notebook's 'parameters' cell.")
    params.add_argument("notebook", help="the notebook, e.g. notebooks/theorem45.md")
    params.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m sdlib`` and of the ``sdlib`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from sdlib import runner

    try:
        if args.command == "params":
            params = runner.notebook_parameters(args.notebook)
            print(runner.parameters_json(params) if args.json else runner.format_parameters(params))
            return 0
        overrides = {name: runner.parse_cli_value(value) for name, value in args.parameter}
        result = runner.run_notebook(
            args.notebook, args.outdir, parameters=overrides, config=args.config,
            kernel_name=args.kernel, timeout=args.timeout, progress_bar=not args.no_progress,
        )
    except (runner.ParameterError, runner.NotebookError) as exc:
        print(f"python -m sdlib {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if result.ok:
        print(f"ran {args.notebook}: {result.notebook}, {len(result.figures)} figure(s), {result.results_json}")
        return 0
    print(f"python -m sdlib run: {args.notebook} failed: {result.error}\n"
          f"the executed notebook with the traceback: {result.notebook}; status in {result.results_json}",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
