"""Regenerate the nbval reference notebooks (notebooks/*.ipynb) from their Jupytext sources.

Usage: python tools/refresh_refs.py notebooks/thm41.md [...]   (no argument: every notebook)

Executes each MyST notebook with its default parameters (cwd = notebooks/), keeps the text
outputs and drops images and widget data (the .ipynb files are references for nbval, not for
reading), and writes NAME.ipynb beside NAME.md through a temporary file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

KEEP = {"text/plain", "text/html", "text/markdown", "text/latex"}


def refresh(md: Path) -> Path:
    nb = jupytext.read(md)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(md.parent)}}).execute()
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        # nbval treats a reference cell without an execution count as unrun.
        count += 1
        cell.execution_count = count
        outs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "execute_result":
                out["execution_count"] = count
            if "data" in out:
                out["data"] = {k: v for k, v in out["data"].items() if k in KEEP}
                if not out["data"]:
                    continue
            outs.append(out)
        cell.outputs = outs
    target = md.with_suffix(".ipynb")
    tmp = target.with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, target)
    return target


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or sorted(Path("notebooks").glob("*.md"))
    for p in paths:
        print("refreshed", refresh(p))
