"""The claims ledger: every statement a chapter checks, with a verdict *derived* from a measured number.

A chapter builds one :class:`Claims` and records each statement with :meth:`Claims.check` (or
:meth:`Claims.sensitivity`, :meth:`Claims.observe`). The caller passes what was *measured* and a
:class:`Criterion` (``at_most(1e-9, why="float64 round-off")``); the ledger applies the criterion,
derives the verdict and formats the measurement itself. There is no argument through which a verdict
or a measured string could be typed in.

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

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    "value_key",
    "within",
]

KINDS = ("paper", "external", "standin", "sensitivity", "observation")
MODES = ("assert", "report")

#: Verdict symbols. ``holds``/``fails`` for every kind with a verdict; for stand-ins also ``differs``
#: (a significant difference, its size against the margin unresolved) and ``inconclusive``;
#: ``depends`` for a sensitivity claim that holds for some readings only, ``none`` for observations.
STATUS = {"holds": "✓", "fails": "✗", "differs": "≠", "inconclusive": "?", "depends": "◐", "none": "·"}


class ClaimFailed(AssertionError):
    """In assert mode, a claim's derived verdict is not the one the chapter expects."""


# ------------------------------------------------------------------------------------------------
# Criteria


def _fmt_number(x: Any, spec: str | None = None) -> str:
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x)) if spec is None else format(int(x), spec)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if spec is not None:
            return format(x, spec)
        if x == 0.0 or not math.isfinite(x):
            return str(x)
        return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"
    return str(x)


@dataclass(frozen=True)
class Criterion:
    """A test applied to a measured value, with the reason for its threshold.

    ``test(value)`` returns a verdict (``"holds"``, ``"fails"``, ``"differs"`` or
    ``"inconclusive"``); ``summary(value)`` is the number the verdict rests on (the largest error,
    the worst step change), printed as the measurement (by ``show`` when given); ``text`` states
    the test (``"≤ 1e-09"``) and ``why`` the reason in a few words.
    """

    text: str
    why: str
    test: Callable[[Any], str]
    summary: Callable[[Any], Any] = lambda v: v
    fmt: str | None = None
    show: Callable[[Any, str | None], str] | None = None

    def describe(self) -> str:
        return f"{self.text} ({self.why})" if self.why else self.text

    def measure(self, value: Any) -> tuple[str, Any]:
        """``(verdict, summary value)`` for a measured value; NaN never holds."""
        s = self.summary(value)
        if isinstance(s, (float, np.floating)) and not math.isfinite(float(s)):
            return "fails", s
        return self.test(value), s

    def format(self, summary: Any) -> str:
        if self.show is not None:
            return self.show(summary, self.fmt)
        if isinstance(summary, tuple):
            return "[" + ", ".join(_fmt_number(x, self.fmt) for x in summary) + "]"
        return _fmt_number(summary, self.fmt)


def _check_why(why: str) -> str:
    if not isinstance(why, str) or not why.strip():
        raise ValueError("a criterion needs why=: a few words on why its threshold is what it is")
    return why.strip()


def _verdict(ok: bool) -> str:
    return "holds" if ok else "fails"


def at_most(limit: float, *, why: str, fmt: str | None = None) -> Criterion:
    """The measured value (a number, or the largest entry of an array) is ``<= limit``."""
    limit = float(limit)
    return Criterion(f"≤ {_fmt_number(limit)}", _check_why(why), lambda v: _verdict(_max(v) <= limit), _max, fmt)


def at_least(limit: float, *, why: str, fmt: str | None = None) -> Criterion:
    """The measured value (a number, or the smallest entry of an array) is ``>= limit``."""
    limit = float(limit)
    return Criterion(f"≥ {_fmt_number(limit)}", _check_why(why), lambda v: _verdict(_min(v) >= limit), _min, fmt)


def within(low: float, high: float, *, why: str, fmt: str | None = None) -> Criterion:
    """Every entry of the measured value lies in ``[low, high]``; prints the entry farthest out."""
    low, high = float(low), float(high)
    if not low <= high:
        raise ValueError(f"within needs low <= high, got low={low!r}, high={high!r}")
    mid = (low + high) / 2

    def worst(v: Any) -> float:
        a = np.asarray(v, dtype=float).ravel()
        if a.size == 0:
            return float("nan")
        return float(a[np.argmax(np.abs(a - mid))])

    return Criterion(f"in [{_fmt_number(low)}, {_fmt_number(high)}]", _check_why(why),
                     lambda v: _verdict(low <= worst(v) <= high), worst, fmt)


def equal_to(target: int, *, why: str) -> Criterion:
    """An integer count (of steps, of sign changes, of factorisations) equals ``target`` exactly."""
    target = int(target)

    def count(v: Any) -> int:
        return int(v)

    return Criterion(f"= {target}", _check_why(why), lambda v: _verdict(count(v) == target), count)


def monotone(direction: str, *, strict: bool = True, tol: float = 0.0, axis: int = 0, why: str,
             fmt: str | None = None) -> Criterion:
    """The measured array changes in one ``direction`` ("increasing"/"decreasing") along ``axis``.

    The summary is the worst consecutive change in the wrong direction: for ``"decreasing"`` the
    largest ``x[t+1] - x[t]``, which must be ``< -tol`` (strict) or ``<= tol`` (not strict).
    """
    if direction not in ("increasing", "decreasing"):
        raise ValueError(f"direction must be 'increasing' or 'decreasing', got direction={direction!r}")
    sign = 1.0 if direction == "decreasing" else -1.0

    def worst(v: Any) -> float:
        a = np.asarray(v, dtype=float)
        if a.shape[axis] < 2:
            return float("nan")
        return float(np.max(sign * np.diff(a, axis=axis)))

    def test(v: Any) -> str:
        w = worst(v)
        return _verdict(w < -tol if strict else w <= tol)

    word = ("strictly " if strict else "") + direction + (f" (tolerance {_fmt_number(tol)})" if tol else "")
    label = "largest step increase" if direction == "decreasing" else "smallest step increase"
    return Criterion(f"{word}; measured: {label}", _check_why(why), test, lambda v: sign * worst(v), fmt)


def ci_within(margin: float, *, why: str, level: float = 0.95, fmt: str | None = None) -> Criterion:
    """An equivalence test of a difference against the margin ``±margin``, with four outcomes.

    The measured value is a mapping with two confidence intervals of the same difference:
    ``"tost"``, the two-sided interval at level ``2 * level - 1`` (90 % for ``level = 0.95``), and
    ``"ci"``, the two-sided interval at ``level`` (95 %); the tests are at ``1 - level`` (5 %).

    * ``holds`` (✓, equivalent): the ``"tost"`` interval lies inside ``[-margin, margin]``. This
      is the two one-sided tests (TOST) of Schuirmann (1987) at ``1 - level``: each one-sided test
      at 5 % is the corresponding bound of the 90 % interval.
    * ``fails`` (✗, not equivalent): the ``"ci"`` interval lies entirely outside the band, so
      that a difference larger than the margin is shown at ``1 - level``.
    * ``differs`` (≠, significant, margin not resolved): neither of the above, and the ``"ci"``
      interval excludes 0, so that the difference is significant at ``1 - level`` (its sign says
      in which direction) but whether it exceeds the margin is not shown.
    * ``inconclusive`` (?): neither, and the ``"ci"`` interval contains 0.

    The summary printed is the pair of intervals.
    """
    margin, level = float(margin), float(level)
    if not margin > 0:
        raise ValueError(f"ci_within needs margin > 0, got margin={margin!r}")
    if not 0.5 < level < 1:
        raise ValueError(f"ci_within needs level in (0.5, 1), got level={level!r}")

    def intervals(v: Any) -> tuple[float, float, float, float]:
        if not isinstance(v, Mapping) or set(v) != {"tost", "ci"}:
            raise ValueError("ci_within needs measured={'tost': (low, high), 'ci': (low, high)}: the "
                             f"{2 * level - 1:.0%} and the {level:.0%} interval, got {v!r}")
        (tl, th), (cl, ch) = ((float(x) for x in v[k]) for k in ("tost", "ci"))
        if not all(map(math.isfinite, (tl, th, cl, ch))):
            return tl, th, cl, ch          # fewer than two seeds: nothing can be decided
        if not (tl <= th and cl <= ch):
            raise ValueError(f"ci_within needs intervals (low, high) with low <= high, got {v!r}")
        if not (cl <= tl and th <= ch):
            raise ValueError(f"ci_within: the {2 * level - 1:.0%} interval must lie inside the {level:.0%} "
                             f"one (were they swapped?), got {v!r}")
        return tl, th, cl, ch

    def test(v: Any) -> str:
        tl, th, cl, ch = intervals(v)
        if not all(map(math.isfinite, (tl, th, cl, ch))):
            return "inconclusive"
        if -margin <= tl and th <= margin:
            return "holds"
        if cl > margin or ch < -margin:
            return "fails"
        if cl > 0 or ch < 0:
            return "differs"
        return "inconclusive"

    def show(s: tuple[float, ...], spec: str | None) -> str:
        f = lambda x: _fmt_number(x, spec)  # noqa: E731
        return (f"{2 * level - 1:.0%} [{f(s[0])}, {f(s[1])}]; {level:.0%} [{f(s[2])}, {f(s[3])}]")

    t, c, a = f"{2 * level - 1:.0%}", f"{level:.0%}", f"{1 - level:.0%}"
    text = (f"equivalence within ±{_fmt_number(margin)} at {a}: ✓ {t} interval inside (TOST); "
            f"✗ {c} interval outside; ≠ {c} interval excludes 0 (significant, margin unresolved); "
            "? otherwise")
    return Criterion(text, _check_why(why), test, intervals, fmt, show)


def ci_below(limit: float, *, why: str, fmt: str | None = None) -> Criterion:
    """A confidence interval ``(low, high)`` of an effect lies below ``limit``: ``holds`` when
    ``high < limit`` (the effect is shown to be below it), ``fails`` when ``low > limit`` (shown to be
    above it), ``inconclusive`` otherwise (the interval contains ``limit``; for stand-ins)."""
    limit = float(limit)

    def bounds(v: Any) -> tuple[float, float]:
        lo, hi = (float(x) for x in v)
        if lo > hi:
            raise ValueError(f"ci_below needs an interval (low, high) with low <= high, got {v!r}")
        return lo, hi

    def test(v: Any) -> str:
        lo, hi = bounds(v)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return "inconclusive"
        return "holds" if hi < limit else "fails" if lo > limit else "inconclusive"

    return Criterion(f"interval below {_fmt_number(limit)}: ✓ its upper end below, ✗ its lower end above, "
                     "? otherwise", _check_why(why), test, bounds, fmt)


def rounds_to(printed: str | Sequence[str], *, why: str) -> Criterion:
    """Each measured number rounds to its ``printed`` decimal string: ``|x - p|`` is at most half a
    unit of ``p``'s last printed decimal (``"0.16477"``: 5e-06), the most a printed number can say.

    The summary is the largest ``|x - p|`` in units of that half-unit, which must be ``<= 1``.
    """
    texts = [printed] if isinstance(printed, str) else list(printed)
    if not texts:
        raise ValueError("rounds_to needs at least one printed number, got printed=[]")
    values, halves = [], []
    for t in texts:
        try:
            values.append(float(t))
        except (TypeError, ValueError):
            raise ValueError(f"rounds_to needs decimal strings, got printed={t!r}") from None
        decimals = len(t.split(".")[1]) if "." in t else 0
        halves.append(0.5 * 10.0 ** -decimals)
    p, h = np.array(values), np.array(halves)

    def worst(v: Any) -> float:
        x = np.asarray(v, dtype=float).ravel()
        if x.shape != p.shape:
            raise ValueError(f"rounds_to: {x.size} measured numbers for {p.size} printed ones")
        return float(np.max(np.abs(x - p) / h))

    shown = ", ".join(texts) if len(texts) <= 3 else f"{texts[0]}, ..., {texts[-1]} ({len(texts)} numbers)"
    return Criterion(f"rounds to the printed {shown}; measured: largest |x - p| in half-units of the last "
                     "printed decimal, ≤ 1", _check_why(why), lambda v: _verdict(worst(v) <= 1.0), worst, ".2f")


def _max(v: Any) -> float:
    a = np.asarray(v, dtype=float)
    return float(np.max(a)) if a.size else float("nan")


def _min(v: Any) -> float:
    a = np.asarray(v, dtype=float)
    return float(np.min(a)) if a.size else float("nan")


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
        verdict, summary = criterion.measure(measured)
        claim = Claim(key, kind, statement, where, verdict, criterion.format(summary), criterion.describe(),
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
            verdict, summary = crit.measure(m)
            readings.append({"reading": _jsonable(v), "measured": crit.format(summary),
                             "holds": verdict == "holds"})
        held = [r for r in readings if r["holds"]]
        verdict = "holds" if len(held) == len(readings) else ("fails" if not held else "depends")
        where_held = ", ".join(_fmt_number(r["reading"]) for r in held) or "none"
        measured_text = f"holds for {reading} = {where_held} of " + ", ".join(
            f"{_fmt_number(r['reading'])} ({r['measured']})" for r in readings)
        claim = Claim(key, "sensitivity", statement, where, verdict, measured_text, "; ".join(texts),
                      setting=f"reading: {reading}", value=[r["holds"] for r in readings], readings=readings)
        return self._add(claim, None)

    def observe(self, key: str, statement: str, *, where: str, measured: Any, fmt: str | None = None,
                setting: str = "") -> Claim:
        """Record an ``observation`` (ours, beyond the paper): a measured value, no verdict."""
        summary = measured if not isinstance(measured, np.ndarray) else float(np.max(measured))
        claim = Claim(key, "observation", statement, where, "none", _fmt_number(summary, fmt), "", setting=setting,
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

    def counts(self) -> dict[str, dict[str, int]]:
        """Per kind, how many claims have each verdict."""
        out: dict[str, dict[str, int]] = {}
        for c in self.items:
            out.setdefault(c.kind, {}).setdefault(c.verdict, 0)
            out[c.kind][c.verdict] += 1
        return out

    def table(self):  # type: ignore[no-untyped-def]
        """The claims as a :class:`pandas.DataFrame` (one row each), for the reproduction report."""
        import pandas as pd

        return pd.DataFrame([
            {"claim": c.statement,
             "kind": c.kind + (f" ({c.setting})" if c.kind in ("standin", "external") else ""),
             "where": c.where, "measured": c.measured, "criterion": c.criterion, "verdict": c.status}
            for c in self.items
        ])

    def ledger(self) -> list[dict[str, Any]]:
        return [{**c.record(), "chapter": self.chapter, "prefix": self.prefix} for c in self.items]

    def glue(self) -> None:
        """Glue the table, the ledger (JSON) and each claim's value and verdict (see the keys above)."""
        from myst_nb import glue

        table = self.table().style.hide(axis="index").format(escape="html")
        glue(table_key(self.prefix), table, display=False)
        glue(ledger_key(self.prefix), json.dumps(self.ledger(), ensure_ascii=False), display=False)
        for c in self.items:
            value = c.value
            if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
                value = value.item()  # numpy scalars: myst-nb's format specs need a plain repr
            glue(value_key(self.prefix, c.key), value, display=False)
            glue(status_key(self.prefix, c.key), c.status, display=False)
