"""A chapter's setting in words: which parameters differ from the paper's, for captions and prose.

A chapter's defaults are the paper's setting. When a rerun changes some of them (``python -m sdlib run
NOTEBOOK -p lam 0.05``), its prose and captions must not say "(paper)": :func:`setting_label` gives the
words a caption or a sentence uses, glued into the chapter (key ``ex45_setting``, the ``glue:text`` role), and
:func:`sdlib.chapters.plotting.annotate_parameters` writes the same parameters on the figures.

``changed`` is always a mapping ``{name: (paper's value, this run's value)}`` holding only the
parameters that differ (e.g. :func:`sdlib.experiments.examples.changed_setting`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["NAMES", "setting_label"]

#: How a parameter is named in plain text (a glued caption cannot hold math).
NAMES = {"lam": "λ", "gamma": "γ", "alpha": "α", "alpha_b": "α of case (b)", "steps": "steps",
         "n_grid": "grid points", "steps_long": "steps of the long run", "eta": "η"}


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        return f"{float(v):g}"
    return str(v)


def _pairs(changed: Mapping[str, tuple[Any, Any]]) -> list[tuple[str, Any, Any]]:
    out = []
    for name, pair in changed.items():
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"changed[{name!r}] must be a pair (paper's value, this run's value), got {pair!r}")
        out.append((NAMES.get(name, name), *pair))
    return out


def setting_label(changed: Mapping[str, tuple[Any, Any]]) -> str:
    """``"paper"`` at the paper's setting, else the changed values against the paper's, for a caption's
    parenthesis: ``"rerun at λ = 0.05, γ = 40; the paper's: λ = 0.2, γ = 80"``."""
    pairs = _pairs(changed)
    if not pairs:
        return "paper"
    now = ", ".join(f"{n} = {_fmt(v)}" for n, _, v in pairs)
    paper = ", ".join(f"{n} = {_fmt(p)}" for n, p, _ in pairs)
    return f"rerun at {now}; the paper's: {paper}"

