"""``python -m sdlib.nn run -f configs/NAME.yaml -o OUTDIR [-p NAME VALUE]... [--checkpoint-dir DIR]``

Runs (or resumes) a Section 5 experiment without the notebook and writes ``OUTDIR/results.json``.
``--dry-run`` shrinks it to a few seconds (1 seed, 2 steps, 1 epoch, 64 training images, the
first fixed alpha) to check a configuration end to end before a long run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from sdlib.nn.config import load_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sdlib.nn")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the chains of a configuration")
    run.add_argument("-f", "--config", required=True, help="YAML parameter file (configs/*.yaml)")
    run.add_argument("-o", "--out", required=True, help="output directory (results.json)")
    run.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="override a parameter (VALUE parsed as YAML)")
    run.add_argument("--checkpoint-dir", default=None, help="default: OUT/checkpoints")
    run.add_argument("--dry-run", action="store_true", help="a few-second version of the configuration")
    args = ap.parse_args(argv)
    overrides = {k: yaml.safe_load(v) for k, v in args.param}
    if args.dry_run:
        overrides.update(seeds=[0], steps=2, epochs=1, n_train=64, n_val=32, n_test=64, progress=False)
    cfg = load_config(args.config, **overrides)
    if args.dry_run:
        cfg.alphas = cfg.alphas[:1]
    from sdlib.nn.chains import run_experiment

    doc = run_experiment(cfg, Path(args.out), checkpoint_dir=args.checkpoint_dir)
    res = doc["results"]
    prov = doc["provenance"]
    print(f"wrote {Path(args.out) / 'results.json'}: {len(res['records'])} records, {res['fits_trained']} fits "
          f"trained, {res['fits_loaded']} loaded, {prov['seconds']:.1f} s on {prov['device']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
