"""The grid of a sweep: the points at which a chapter runs, read from a GRID.yaml file.

A GRID.yaml file (:func:`load_grid`, :func:`make_grid`)::

    grid:                  # all combinations of the lists
      lam: [0.05, 0.1, 0.2]
      steps: [2, 6]
    parameters:            # the same at every point (optional)
      claims_mode: report
    plot: [thm45_limit_gap]   # glued numbers of the summary figure (optional)

or ``points: [{lam: 0.05, steps: 2}, {lam: 0.2, steps: 6}]`` for points given one by one. Every point
has a readable folder name, ``lam=0.05_steps=2`` (:func:`point_id`), unique within its grid.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdlib.errors import UsageError
from sdlib.provenance import read_yaml

__all__ = ["GRID_KEYS", "Grid", "Point", "load_grid", "make_grid", "point_id"]

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


def _key(v: Any) -> str:
    """A canonical text of a value, to compare points and values of any type."""
    return json.dumps(v, sort_keys=True, default=str)


def _spec_parts(spec: Any, source: str) -> tuple[dict[str, Any], list[str]]:
    """The checked ``parameters:`` and ``plot:`` of a grid's mapping."""
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
    return dict(fixed), list(plot)


def _rows(spec: Mapping[str, Any], source: str) -> tuple[list[dict[str, Any]], list[str | None]]:
    """Each point's own values and its given ``id`` (or None): the product of ``grid:``, or ``points:``."""
    has_grid, has_points = spec.get("grid") is not None, spec.get("points") is not None
    if has_grid == has_points:
        raise UsageError(f"{source}: give exactly one of 'grid:' (lists of values, all combinations) and "
                         "'points:' (a list of points)")
    if has_grid:
        grid = spec["grid"]
        if not isinstance(grid, Mapping) or not grid:
            raise UsageError(f"{source}: 'grid' must be a mapping 'name: [values]', got {grid!r}")
        names = [str(n) for n in grid]
        lists = [_as_list(n, grid[n], source) for n in names]
        rows = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*lists)]
        return rows, [None] * len(rows)
    points = spec["points"]
    if not isinstance(points, list) or not points:
        raise UsageError(f"{source}: 'points' must be a non-empty list of mappings, got {points!r}")
    rows, ids = [], []
    for i, p in enumerate(points):
        if not isinstance(p, Mapping):
            raise UsageError(f"{source}: point {i} must be a mapping 'name: value', got {p!r}")
        p = {str(k): v for k, v in p.items()}
        ids.append(str(p.pop("id")) if "id" in p else None)
        rows.append(p)
    return rows, ids


def _varying(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The names that vary across the points (or are missing from some), and every name, in order."""
    seen: dict[str, list[Any]] = {}
    for r in rows:
        for k, v in r.items():
            seen.setdefault(k, [])
            if v not in seen[k]:
                seen[k].append(v)
    return [k for k, vs in seen.items() if len(vs) > 1 or any(k not in r for r in rows)], list(seen)


def _distinct_ids(out: list[Point], ids: list[str | None], source: str) -> list[Point]:
    """Different points whose readable ids coincide ([0.5, -0.5] and [0.5, 0.5] as lists, 'a b' and
    'a-b'): each gets a hash of its parameters, so that no point ever runs in another's folder."""
    by_id: dict[str, list[int]] = {}
    for i, p in enumerate(out):
        by_id.setdefault(p.id, []).append(i)
    out = list(out)
    for pid, members in by_id.items():
        if len(members) == 1:
            continue
        if any(ids[i] is not None for i in members):
            raise UsageError(f"{source}: point id {pid!r} is given to {len(members)} different points")
        for i in members:
            digest = hashlib.sha1(_key(out[i].parameters).encode()).hexdigest()[:8]
            out[i] = Point(f"{pid[:70]}-{digest}", out[i].parameters)
    return out


def make_grid(spec: Mapping[str, Any], *, source: str = "the grid") -> Grid:
    """A :class:`Grid` from a mapping (a GRID.yaml file read by :func:`load_grid`).

    ``grid: {name: [values]}`` gives the Cartesian product of the lists (in the order given);
    ``points: [{name: value, ...}, ...]`` gives the points one by one (an ``id`` key names a point's
    folder); ``parameters: {name: value}`` are set at every point; ``plot: [glue key, ...]`` picks
    the glued numbers of the summary figure. ``grid`` and ``points`` may not be given together.
    """
    fixed, plot = _spec_parts(spec, source)
    rows, ids = _rows(spec, source)
    both = sorted(set(fixed) & {k for r in rows for k in r})
    if both:
        raise UsageError(f"{source}: {', '.join(map(repr, both))} both varies across points and is fixed "
                         "under 'parameters:'; keep one")
    varying, names = _varying(rows)
    names_for_id = varying or names
    out: list[Point] = []
    for r, given in zip(rows, ids, strict=True):
        pid = given if given is not None else point_id(r, [n for n in names_for_id if n in r])
        if not pid or _ID_UNSAFE.search(pid) or pid in (".", ".."):
            raise UsageError(f"{source}: point id {pid!r} is not a plain folder name (letters, digits, . _ = + -)")
        out.append(Point(pid, r))
    same = [p.id for i, p in enumerate(out) if any(_key(p.parameters) == _key(q.parameters) for q in out[:i])]
    if same:
        raise UsageError(f"{source}: points repeat ({', '.join(dict.fromkeys(same))}); every point must differ")
    return Grid(points=_distinct_ids(out, ids, source), fixed=fixed, varying=varying, plot=plot, source=source)


def load_grid(path: str | Path) -> Grid:
    """Read a GRID.yaml file (see :func:`make_grid` for its keys)."""
    spec = read_yaml(path, what="grid file",
                     hint="give a YAML file with 'grid:' or 'points:', e.g. configs/sweep_theorem45.yaml")
    return make_grid(spec, source=f"grid file {str(Path(path))!r}")
