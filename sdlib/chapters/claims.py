"""The claims ledger: every statement a chapter checks, with a verdict *derived* from a measured number.

A chapter builds one :class:`Claims` and records each statement with :meth:`Claims.check` (or
:meth:`Claims.sensitivity`, :meth:`Claims.observe`). The caller passes what was *measured* and a
:class:`Criterion` (``at_most(1e-9, why="float64 round-off")``, from :mod:`sdlib.chapters.criteria`,
re-exported here); the ledger applies the criterion, derives the verdict and formats the measurement
itself. There is no argument through which a verdict or a measured string could be typed in.

Kinds of claims (:data:`KINDS`):

``paper``
    A statement the paper makes, tested at the paper's setting: ✓ or ✗. Only these can say that
    the paper does not reproduce.
``external``
    A number the authors published outside the paper (their released notebook, their README),
    recomputed here: ✓ or ✗. ``setting=`` names the source. It can show that the published
    numbers reproduce (and which parameters made them), never that the paper is right or wrong.
``standin``
    A statement of the paper tested in another setting than the paper's (``setting=`` is required,
    e.g. Section 5 on a CPU stand-in): ✓, ✗, ``differs`` (≠: a significant difference whose size
    against the margin is not resolved) or ``inconclusive`` (?), see :func:`ci_within`.
``sensitivity``
    A statement whose verdict depends on a reading the paper leaves open (a tolerance, the meaning
    of "much less"): the criterion is applied at every value of the reading, and the ledger reports
    the values where it holds.
``observation``
    Ours, beyond the paper: a measured number with no verdict.

Limits (``τ → ∞``) are checked on a finite chain of steps: :func:`tends_to` adds the verdict
``unconverged`` (⟳, "not converged within N steps") for a chain whose last step is still too far
from its own limit to tell whether that limit is the claimed one. It is not a failure of the
statement, and a summary counts it apart.

Modes (:data:`MODES`): in ``"assert"`` mode (the paper's parameters, the default) a claim whose
verdict differs from ``expect`` raises :class:`ClaimFailed` after printing its line, so that the
book cannot state an outcome that the computation no longer gives; in ``"report"`` mode (a chapter
rerun with other parameters) every verdict is printed and recorded, and nothing raises. Every
chapter has a ``claims_mode`` parameter; :mod:`sdlib.chapters.runner` sets it to ``"report"`` when other
parameters change.

Glue protocol (one place, imported by :mod:`sdlib.chapters.runner` and the book's extension): per claim the
measured value is glued as :func:`value_key` and its verdict as :func:`status_key`; the chapter's
ledger as JSON under :func:`ledger_key` and its HTML table under :func:`table_key`.

Printed lines read ``✓ [paper] thm41.eq6: <statement> | measured 3.1e-16 | ≤ 1e-09 (why)``. The
measured number changes in its last digits from one machine to the next, so nbval compares these
lines with the number masked (see ``tests/nbval_sanitize.cfg``); the verdict, the key and the
criterion are compared exactly.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdlib.chapters.criteria import (
    STATUS,
    Criterion,
    at_least,
    at_most,
    ci_below,
    ci_within,
    equal_to,
    fmt_number,
    monotone,
    rounds_to,
    tends_to,
    within,
)

__all__ = [
    "KINDS",
    "MODES",
    "STATUS",
    "Claim",
    "ClaimFailed",
    "Claims",
    "Criterion",
    "at_least",
    "at_most",
    "ci_below",
    "ci_within",
    "equal_to",
    "glue_prefixes",
    "ledger_key",
    "monotone",
    "read_ledger",
    "rounds_to",
    "status_key",
    "table_key",
    "tends_to",
    "value_key",
    "within",
]

KINDS = ("paper", "external", "standin", "sensitivity", "observation")
MODES = ("assert", "report")

class ClaimFailed(AssertionError):
    """In assert mode, a claim's derived verdict is not the one the chapter expects."""


# ------------------------------------------------------------------------------------------------
# Glue keys: defined here only.


def value_key(prefix: str, key: str) -> str:
    """Glue key of a claim's measured value (e.g. ``thm41_eq6``)."""
    return f"{prefix}_{key}"


def status_key(prefix: str, key: str) -> str:
    """Glue key of a claim's verdict symbol (e.g. ``thm41_eq6_status``)."""
    return f"{prefix}_{key}_status"


def ledger_key(prefix: str) -> str:
    """Glue key of a chapter's whole ledger, a JSON list of claim records."""
    return f"{prefix}__ledger"


def table_key(prefix: str) -> str:
    """Glue key of a chapter's HTML claims table (pasted into the reproduction report)."""
    return f"{prefix}_claims"


def glue_prefixes(keys: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """The chapter prefixes whose ledgers a set of glue keys holds."""
    suffix = ledger_key("")
    return sorted(k[: -len(suffix)] for k in keys if k.endswith(suffix) and len(k) > len(suffix))


def read_ledger(value: Any) -> list[dict[str, Any]]:
    """A glued ledger (JSON text, possibly still wrapped in quotes, or a list) as claim records."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "'\"" and text[-1:] == text[:1]:
            import ast

            text = ast.literal_eval(text)
        return json.loads(text)
    raise ValueError(f"not a claims ledger: {type(value).__name__}")


@functools.cache
def _claims_frame() -> type:
    """A DataFrame that displays whole and without its index (pandas imported on first use: the
    command line imports this module and must start without it)."""
    import pandas as pd

    class ClaimsFrame(pd.DataFrame):
        def _repr_html_(self) -> str:
            return self.style.hide(axis="index").format(escape="html").to_html()

        def __repr__(self) -> str:
            return self.to_string(index=False, max_colwidth=None)

    return ClaimsFrame


# ------------------------------------------------------------------------------------------------
# The ledger


@dataclass
class Claim:
    """One recorded claim; ``verdict`` is derived, never passed in."""

    key: str
    kind: str
    statement: str
    where: str
    verdict: str
    measured: str
    criterion: str
    setting: str = ""
    value: Any = None
    readings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return STATUS[self.verdict]

    def record(self) -> dict[str, Any]:
        """A JSON-able record (for the glued ledger and ``results.json``)."""
        return {
            "key": self.key, "kind": self.kind, "statement": self.statement, "where": self.where,
            "verdict": self.verdict, "status": self.status, "measured": self.measured,
            "criterion": self.criterion, "setting": self.setting, "value": _jsonable(self.value),
            "readings": self.readings,
        }


def _fmt_reading(r: Any) -> str:
    return f"{r:g}" if isinstance(r, (int, float)) and not isinstance(r, bool) else str(r)


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.generic,)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist()) if x.size <= 64 else None
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


@dataclass
class Claims:
    """The claims of one chapter; ``prefix`` (e.g. ``"thm41"``) namespaces its glue keys.

    ``mode`` is the chapter's ``claims_mode`` parameter: ``"assert"`` or ``"report"``.
    """

    prefix: str
    chapter: str = ""
    mode: str = "assert"
    items: list[Claim] = field(default_factory=list)
    #: Values kept by :meth:`glue_values` for :meth:`glue`, by glue key.
    pending: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"claims_mode must be one of {MODES}, got claims_mode={self.mode!r}")
        if not self.prefix.isidentifier():
            raise ValueError(f"prefix must be an identifier, got prefix={self.prefix!r}")

    # -- recording
    def check(self, key: str, statement: str, *, where: str, measured: Any, criterion: Criterion,
              kind: str = "paper", setting: str = "", expect: str = "holds") -> Claim:
        """Record a ``paper`` or ``standin`` claim: the verdict is ``criterion`` applied to ``measured``.

        ``expect`` is the verdict the chapter's prose was written for at its default parameters
        (``"holds"``, ``"fails"`` or, for stand-ins, ``"differs"`` and ``"inconclusive"``); in assert
        mode another verdict raises :class:`ClaimFailed` after the line is printed. ``kind`` is
        ``"paper"``, ``"external"`` (``setting=`` names the published source) or ``"standin"``
        (``setting=`` names the setting it was tested in).
        """
        if kind not in ("paper", "external", "standin"):
            raise ValueError(f"check() records kind 'paper', 'external' or 'standin', got kind={kind!r}; "
                             "use sensitivity() or observe() for the others")
        if kind == "standin" and not setting:
            raise ValueError("a 'standin' claim needs setting=: the setting it was tested in")
        if kind == "external" and not setting:
            raise ValueError("an 'external' claim needs setting=: the published source of the number")
        if not isinstance(criterion, Criterion):
            raise TypeError(f"criterion must be a Criterion (at_most, at_least, ...), got {criterion!r}")
        allowed = ("holds", "fails", "differs", "inconclusive") if kind == "standin" else ("holds", "fails")
        if expect not in allowed:
            raise ValueError(f"expect must be one of {allowed} for kind={kind!r}, got expect={expect!r}")
        verdict, summary, text = criterion.report(measured)
        claim = Claim(key, kind, statement, where, verdict, text, criterion.describe(),
                      setting=setting, value=summary)
        return self._add(claim, expect)

    def sensitivity(self, key: str, statement: str, *, where: str, reading: str, values: Sequence[Any],
                    measured: Sequence[Any], criterion: Criterion | Callable[[Any], Criterion]) -> Claim:
        """Record a ``sensitivity`` claim: a criterion applied at every value of the open ``reading``.

        ``values`` are the readings (e.g. tolerances) and ``measured`` the measurement at each.
        ``criterion`` is one :class:`Criterion` for every reading, or a function of the reading that
        returns one (when the reading is itself the threshold: ``lambda r: at_most(r, why=...)``).
        The verdict is ✓ when the statement holds at every reading, ✗ at none, ◐ for some; the
        printed measurement names the readings where it holds. Nothing is asserted: which reading is
        meant is the open question.
        """
        if len(values) != len(measured) or not len(values):
            raise ValueError(f"values and measured must be non-empty and of one length, got "
                             f"{len(values)} and {len(measured)}")
        readings = []
        texts: list[str] = []
        for v, m in zip(values, measured, strict=True):
            crit = criterion if isinstance(criterion, Criterion) else criterion(v)
            if not isinstance(crit, Criterion):
                raise TypeError(f"criterion must be a Criterion or return one, got {crit!r}")
            if crit.describe() not in texts:
                texts.append(crit.describe())
            verdict, _, shown = crit.report(m)
            readings.append({"reading": _jsonable(v), "measured": shown,
                             "holds": verdict == "holds"})
        held = [r for r in readings if r["holds"]]
        verdict = "holds" if len(held) == len(readings) else ("fails" if not held else "depends")
        where_held = ", ".join(fmt_number(r["reading"]) for r in held) or "none"
        measured_text = f"holds for {reading} = {where_held} of " + ", ".join(
            f"{fmt_number(r['reading'])} ({r['measured']})" for r in readings)
        claim = Claim(key, "sensitivity", statement, where, verdict, measured_text, "; ".join(texts),
                      setting=f"reading: {reading}", value=[r["holds"] for r in readings], readings=readings)
        return self._add(claim, None)

    def observe(self, key: str, statement: str, *, where: str, measured: Any, fmt: str | None = None,
                setting: str = "") -> Claim:
        """Record an ``observation`` (ours, beyond the paper): a measured value, no verdict."""
        summary = measured if not isinstance(measured, np.ndarray) else float(np.max(measured))
        claim = Claim(key, "observation", statement, where, "none", fmt_number(summary, fmt), "", setting=setting,
                      value=summary)
        return self._add(claim, None)

    def _add(self, claim: Claim, expect: str | None) -> Claim:
        if not claim.key.isidentifier():
            raise ValueError(f"claim key must be an identifier, got key={claim.key!r}")
        if any(c.key == claim.key for c in self.items):
            raise ValueError(f"claim key {claim.key!r} is used twice in {self.prefix}")
        self.items.append(claim)
        print(self.line(claim))
        if expect is not None and claim.verdict != expect:
            note = (f"{self.prefix}.{claim.key}: the chapter was written for the verdict '{expect}', "
                    f"derived '{claim.verdict}' (measured {claim.measured}; {claim.criterion})")
            if self.mode == "assert":
                raise ClaimFailed(note)
            print(f"  note: {note}; reported, not asserted (claims_mode='report')")
        return claim

    def line(self, claim: Claim) -> str:
        """The printed line of a claim (nbval compares it, with the number masked)."""
        head = f"{claim.status} [{claim.kind}] {self.prefix}.{claim.key}: {claim.statement}"
        tail = f" | measured {claim.measured}"
        if claim.criterion:
            tail += f" | {claim.criterion}"
        if claim.setting and claim.kind == "standin":
            tail += f" | setting: {claim.setting}"
        if claim.setting and claim.kind == "external":
            tail += f" | source: {claim.setting}"
        return head + tail

    # -- reading
    def __getitem__(self, key: str) -> Claim:
        for c in self.items:
            if c.key == key:
                return c
        raise KeyError(f"no claim {key!r} in {self.prefix}")

    def held(self, key: str) -> str:
        """The readings at which the sensitivity claim ``key`` holds, as text for the prose
        (``"0.25, 0.1"``; ``"none"`` when it holds at none)."""
        claim = self[key]
        if claim.kind != "sensitivity":
            raise ValueError(f"held() reads a sensitivity claim, but {self.prefix}.{key} is kind={claim.kind!r}")
        ok = [_fmt_reading(r["reading"]) for r in claim.readings if r["holds"]]
        return ", ".join(ok) or "none"

    def counts(self) -> dict[str, dict[str, int]]:
        """Per kind, how many claims have each verdict."""
        out: dict[str, dict[str, int]] = {}
        for c in self.items:
            out.setdefault(c.kind, {}).setdefault(c.verdict, 0)
            out[c.kind][c.verdict] += 1
        return out

    def table(self):  # type: ignore[no-untyped-def]
        """The claims as a :class:`pandas.DataFrame` (one row each), for the reproduction report.

        Shown in a notebook (Jupyter, Colab) it reads whole: no index column and no cell cut to
        pandas' 50 characters (the statement and the criterion are the point of the table)."""
        return _claims_frame()([
            {"claim": c.statement,
             "kind": c.kind + (f" ({c.setting})" if c.kind in ("standin", "external") else ""),
             "where": c.where, "measured": c.measured, "criterion": c.criterion, "verdict": c.status}
            for c in self.items
        ])

    def ledger(self) -> list[dict[str, Any]]:
        return [{**c.record(), "chapter": self.chapter, "prefix": self.prefix} for c in self.items]

    def glue_values(self, **values: Any) -> None:
        """Keep each value to be glued as ``PREFIX_NAME`` for the prose (the ``glue:text`` role)
        by :meth:`glue`: numpy scalars as plain numbers (myst-nb's format specs need them), a
        matplotlib figure as its image (for ``{glue:figure}``; the figure is closed at once, so that
        the cell does not show it). Nothing is output here: a claim cell compared by nbval shows only
        its claims' lines, never numbers or images that differ from one machine to the next."""
        for name, value in values.items():
            key = value_key(self.prefix, name)
            if any(c.key == name for c in self.items) or key in self.pending:
                raise ValueError(f"{key} is glued twice (a claim or an earlier value); give the value another name")
            if hasattr(value, "savefig"):
                import matplotlib.pyplot as plt

                plt.close(value)
            elif hasattr(value, "item") and getattr(value, "ndim", None) == 0:
                value = value.item()
            self.pending[key] = value

    def glue(self) -> None:
        """Glue the table, the ledger (JSON), each claim's value and verdict (see the keys above) and the
        values kept by :meth:`glue_values`; call it once, in a cell that nbval does not compare."""
        from myst_nb import glue

        for key, value in self.pending.items():
            if any(value_key(self.prefix, c.key) == key for c in self.items):
                raise ValueError(f"{key} is the glue key of a claim recorded after the value; rename the value")
            glue(key, value, display=False)
        table = self.table().style.hide(axis="index").format(escape="html")
        glue(table_key(self.prefix), table, display=False)
        glue(ledger_key(self.prefix), json.dumps(self.ledger(), ensure_ascii=False), display=False)
        for c in self.items:
            value = c.value
            if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
                value = value.item()  # numpy scalars: myst-nb's format specs need a plain repr
            glue(value_key(self.prefix, c.key), value, display=False)
            glue(status_key(self.prefix, c.key), c.status, display=False)
