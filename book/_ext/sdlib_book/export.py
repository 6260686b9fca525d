"""Feature 9, the notebooks: every chapter as an executed notebook that runs and reads anywhere.

Every chapter's executed notebook (outputs from the execution cache: nothing runs twice) is written
next to its page, ``notebooks/NAME.ipynb``, with

* a first cell that sets up the environment: in Google Colab it fetches the companion (the
  notebooks branch of ``repository.url``), installs its package with what the chapter imports
  and runs in its ``notebooks/`` folder, as the book does; elsewhere it installs only what is
  missing (nothing in the companion's own environment);
* its prose in plain Markdown (:mod:`sdlib_book.myst_markdown`): the glued numbers written in,
  citations, equation numbers, box and page titles as the book shows them, no MyST role left;
* the claims table of the chapter in full (every statement and criterion, no index column).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ._shared import format_glued
from .claims_tables import claims_html, claims_output_prefix
from .myst_markdown import Names, to_markdown
from .names import book_names, glue_markdown

#: Tag (and id) of the injected first cell (tests and readers can find it).
COLAB_TAG = "colab-setup"
#: What every chapter needs beside the package: its tables (pandas), figures (matplotlib) and the
#: ``glue`` of its numbers (myst-nb). Module name -> the package that provides it.
NOTEBOOK_NEEDS = {"pandas": "pandas", "matplotlib": "matplotlib", "myst_nb": "myst-nb"}
#: Packages a chapter may import that the package ``sdlib`` does not install (its extras).
_EXTRA_PACKAGES = {"yaml": "pyyaml", "torch": "torch", "torchvision": "torchvision",
                   "dask": "dask[distributed]", "distributed": "dask[distributed]", "plotly": "plotly",
                   "bokeh": "bokeh"}
#: Sub-packages of sdlib that need an extra, and the modules they import.
_SDLIB_EXTRAS = {"sdlib.nn": ("torch", "torchvision", "yaml"), "sdlib.ntk": ("torch", "yaml"),
                 "sdlib.sweeps": ("dask", "yaml")}

_COLAB_CELL = '''\
# Set-up. In Google Colab: fetch the companion, install its package sdlib with what this chapter
# needs, and run in its notebooks/ folder as the book does. Elsewhere: install only what is missing
# (nothing in the companion's own environment).
import importlib
import importlib.util
import subprocess
import sys

NEEDS = {needs}  # module: package
REPOSITORY, BRANCH = {repository}, {branch}


def pip_install(*packages):
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *packages], check=True)
    importlib.invalidate_caches()


if importlib.util.find_spec("sdlib") is None and not REPOSITORY:
    raise RuntimeError("the package sdlib is not installed, and this notebook was built without a "
                       "repository URL (repository.url in _config.yml): clone the companion, "
                       "pip install it, and run again")
if "google.colab" in sys.modules and REPOSITORY:
    import os

    subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", BRANCH, REPOSITORY,
                    "/content/companion"], check=True)
    pip_install("/content/companion", *NEEDS.values())
    os.chdir("/content/companion/notebooks")
else:
    missing = [package for module, package in NEEDS.items() if importlib.util.find_spec(module) is None]
    if importlib.util.find_spec("sdlib") is None:
        missing.insert(0, f"git+{{REPOSITORY}}@{{BRANCH}}")
    if missing:
        pip_install(*dict.fromkeys(missing))
'''


def colab_setup_cell(repository: str, branch: str, needs: dict[str, str] | None = None) -> str:
    """Source of the first cell of every exported notebook.

    In Colab (``google.colab`` imported) it clones ``branch`` of ``repository`` (the branch the
    Pages workflow publishes: the commit the book was built from, with the executed notebooks),
    installs the package ``sdlib`` from it with ``needs`` (module -> package; by default
    :data:`NOTEBOOK_NEEDS`) and changes into its ``notebooks/`` folder, where the book runs every
    chapter. Elsewhere it installs the packages of ``needs`` whose module is missing, and sdlib from
    the repository when it is missing. Without a repository and without sdlib it raises, naming
    ``repository.url``; with sdlib installed it needs no repository.
    """
    needs = dict(NOTEBOOK_NEEDS if needs is None else needs)
    return _COLAB_CELL.format(needs=json.dumps(needs, ensure_ascii=False), repository=json.dumps(repository),
                              branch=json.dumps(branch))


def chapter_needs(nb: Any) -> dict[str, str]:
    """What a chapter imports beyond sdlib's own dependencies (module -> package), with
    :data:`NOTEBOOK_NEEDS`; the code cells are read, not run."""
    imported: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line  # IPython magics
                         for line in cell.source.splitlines())
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                imported.add(name.split(".")[0])
                imported.update(m for sub, mods in _SDLIB_EXTRAS.items() if name.startswith(sub) for m in mods)
    return {**NOTEBOOK_NEEDS, **{m: _EXTRA_PACKAGES[m] for m in sorted(imported) if m in _EXTRA_PACKAGES}}


_GLUE_ROLE = re.compile(r"\{glue(?::text)?:?\}`([^`]+)`")


def paste_glue(markdown: str, glue: dict[str, Any]) -> str:
    """Replace the ``{glue:text}`` (and ``{glue}``) roles of a markdown cell by their values.

    The values are formatted as myst-nb formats them in the book; roles whose key is not in
    ``glue`` (or that paste from another notebook, ``path::key``) are left as they are.
    """
    def sub(m: re.Match[str]) -> str:
        value = None if "::" in m[1] else format_glued(glue, m[1])
        return m[0] if value is None else value

    return _GLUE_ROLE.sub(sub, markdown)


def merge_cached_outputs(nb: Any, cache: Path | None) -> Any:
    """``nb`` with the outputs of its record in the execution cache ``cache`` (jupyter-cache).

    With ``execute_notebooks: cache``, myst-nb writes the notebook of a page to its output folder
    (``_build/jupyter_execute``) *without* outputs: they live in the cache, matched by the code of
    the cells. Without a cache, or without a matching record, ``nb`` is returned unchanged.
    """
    if cache is None or not (cache / "global.db").is_file():
        return nb
    from jupyter_cache import get_cache

    try:
        _, merged = get_cache(str(cache)).merge_match_into_notebook(nb)
    except KeyError:
        return nb
    return merged


@dataclass
class ExportContext:
    """What the book knows that a notebook on its own does not (see :mod:`sdlib_book.names`)."""

    names: Names = field(default_factory=Names)

    @classmethod
    def of(cls, app: Any, docname: str) -> ExportContext:
        return cls(names=book_names(app, docname))


def _full_claims_tables(nb: Any, glue: dict[str, Any]) -> None:
    """The claims table of a chapter (pandas' HTML cuts long cells and shows its index) in full."""
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            html = (out.get("data") or {}).get("text/html")
            prefix = claims_output_prefix("".join(html) if isinstance(html, list) else html or "", glue)
            if prefix is not None:
                out["data"]["text/html"] = claims_html(glue, prefix)


def export_notebook(executed: Path, target: Path, *, repository: str, branch: str, gpu: bool,
                    glue: dict[str, Any] | None = None, cache: Path | None = None,
                    context: ExportContext | None = None) -> bool:
    """Write the executed notebook ``executed`` to ``target`` with the set-up cell first.

    The outputs are those of the build: in ``executed``, or in the execution cache ``cache``
    (:func:`merge_cached_outputs`); nothing is executed here. The numbers the prose pastes with
    ``{glue:text}`` are written in and the other MyST roles written out (``context`` knows the
    book's names; Jupyter and Colab do not know the roles). ``gpu`` asks Colab for a GPU runtime.
    Returns False (and writes nothing) when the notebook is unchanged.
    """
    import nbformat

    nb = merge_cached_outputs(nbformat.read(executed, as_version=4), cache)
    nb.metadata.pop("jupytext", None)
    book = (context or ExportContext()).names
    names = replace(book, block=lambda key: book.block(key) or glue_markdown(glue or {}, key), unresolved=[])
    for c in nb.cells:
        if c.cell_type == "markdown":
            c.source = to_markdown(paste_glue(c.source, glue or {}), names)
    _full_claims_tables(nb, glue or {})
    cell = nbformat.v4.new_code_cell(colab_setup_cell(repository, branch, chapter_needs(nb)))
    cell.id = COLAB_TAG  # a fixed id: the same build writes the same file
    cell.metadata["tags"] = [COLAB_TAG]
    nb.cells.insert(0, cell)
    if gpu:
        nb.metadata["accelerator"] = "GPU"
        nb.metadata.setdefault("colab", {})["gpuType"] = "T4"
    data = (nbformat.writes(nb) + "\n").encode("utf8")
    if target.exists() and target.read_bytes() == data:
        return False
    from sdlib.provenance import write_bytes_atomic

    write_bytes_atomic(target, data)
    return True
