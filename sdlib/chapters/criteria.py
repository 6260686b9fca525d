"""Criteria: how a measured number becomes a verdict, with the reason for its threshold.

A :class:`Criterion` applies a test to what a chapter measured and returns one of the verdicts of
:data:`STATUS` (``holds``, ``fails``, and for some criteria ``differs``, ``inconclusive`` or
``unconverged``); it also names the number the verdict rests on (the largest error, the worst step
change) and states the test in words. The ledger (:mod:`sdlib.chapters.claims`) applies them; a
chapter imports them from there.

* :func:`at_most`, :func:`at_least`, :func:`within`, :func:`equal_to`: a number against a threshold;
* :func:`monotone`: an array changes in one direction (Lemma 4.2, eq. (14));
* :func:`rounds_to`: a number against a printed decimal (the authors' published losses);
* :func:`ci_within`, :func:`ci_below`: confidence intervals of stand-in experiments (Section 5);
* :func:`tends_to`: a limit (``tau -> inf``, Theorem 4.5) checked on a finite chain of steps, with
  the verdict ``unconverged`` (⟳, "not converged within N steps") when the contraction bound cannot
  tell a chain that has not converged from a wrong limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "STATUS", "Criterion", "at_least", "at_most", "ci_below", "ci_within", "equal_to", "fmt_number",
    "monotone", "rounds_to", "tends_to", "within",
]

#: Verdict symbols. ``holds``/``fails`` for every kind with a verdict; for stand-ins also ``differs``
#: (a significant difference, its size against the margin unresolved) and ``inconclusive``;
#: ``depends`` for a sensitivity claim that holds for some readings only, ``none`` for observations;
#: ``unconverged`` for a limit claim whose finite chain has not come close enough to its own limit to
#: decide (:func:`tends_to`): "not converged within N steps", neither ✓ nor ✗.
STATUS = {"holds": "✓", "fails": "✗", "differs": "≠", "inconclusive": "?", "depends": "◐", "none": "·",
          "unconverged": "⟳"}


# ------------------------------------------------------------------------------------------------
# Criteria


def fmt_number(x: Any, spec: str | None = None) -> str:
    """A measured number as the ledger prints it (three significant digits, or ``spec``)."""
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
    #: Optional text appended to the printed measurement, from the measured value itself (e.g.
    #: ``" after 100 steps; not converged ..."``); the summary value stays a plain number.
    detail: Callable[[Any], str] | None = None

    def describe(self) -> str:
        return f"{self.text} ({self.why})" if self.why else self.text

    def measure(self, value: Any) -> tuple[str, Any]:
        """``(verdict, summary value)`` for a measured value; NaN never holds."""
        s = self.summary(value)
        if isinstance(s, (float, np.floating)) and not math.isfinite(float(s)):
            return "fails", s
        return self.test(value), s

    def report(self, value: Any) -> tuple[str, Any, str]:
        """``(verdict, summary value, printed measurement)`` of a measured value."""
        verdict, summary = self.measure(value)
        text = self.format(summary)
        if self.detail is not None:
            text += self.detail(value)
        return verdict, summary, text

    def format(self, summary: Any) -> str:
        if self.show is not None:
            return self.show(summary, self.fmt)
        if isinstance(summary, tuple):
            return "[" + ", ".join(fmt_number(x, self.fmt) for x in summary) + "]"
        return fmt_number(summary, self.fmt)


def _check_why(why: str) -> str:
    if not isinstance(why, str) or not why.strip():
        raise ValueError("a criterion needs why=: a few words on why its threshold is what it is")
    return why.strip()


def _verdict(ok: bool) -> str:
    return "holds" if ok else "fails"


def at_most(limit: float, *, why: str, fmt: str | None = None) -> Criterion:
    """The measured value (a number, or the largest entry of an array) is ``<= limit``."""
    limit = float(limit)
    return Criterion(f"≤ {fmt_number(limit)}", _check_why(why), lambda v: _verdict(_max(v) <= limit), _max, fmt)


def at_least(limit: float, *, why: str, fmt: str | None = None) -> Criterion:
    """The measured value (a number, or the smallest entry of an array) is ``>= limit``."""
    limit = float(limit)
    return Criterion(f"≥ {fmt_number(limit)}", _check_why(why), lambda v: _verdict(_min(v) >= limit), _min, fmt)


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

    return Criterion(f"in [{fmt_number(low)}, {fmt_number(high)}]", _check_why(why),
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

    word = ("strictly " if strict else "") + direction + (f" (tolerance {fmt_number(tol)})" if tol else "")
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
        f = lambda x: fmt_number(x, spec)  # noqa: E731
        return (f"{2 * level - 1:.0%} [{f(s[0])}, {f(s[1])}]; {level:.0%} [{f(s[2])}, {f(s[3])}]")

    t, c, a = f"{2 * level - 1:.0%}", f"{level:.0%}", f"{1 - level:.0%}"
    text = (f"equivalence within ±{fmt_number(margin)} at {a}: ✓ {t} interval inside (TOST); "
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

    return Criterion(f"interval below {fmt_number(limit)}: ✓ its upper end below, ✗ its lower end above, "
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


def tends_to(tol: float, *, steps: int, rate: float | Sequence[float], why: str,
             fmt: str | None = None) -> Criterion:
    """A limit ``x^(inf)`` claimed for a chain ``x^(1), x^(2), ...``, checked at its step ``steps``.

    The measured value is a mapping ``{"distance": d, "last_change": c}``: ``d = ||x^(N) - L||``, the
    distance of the last step ``N = steps`` to the claimed limit ``L``, and ``c = ||x^(N) -
    x^(N-1)||``, the last step's change (numbers, or arrays with one entry per chain). ``rate`` is
    the contraction factor ``rho`` per step that the theory gives for the chain in the same norm
    (eq. (12) with a fixed ``alpha``: ``(1 - alpha) max_k a_k`` in the max norm over ``k``). For a
    contraction the chain's own limit ``x*`` lies within ``r = rho / (1 - rho) * c`` of step ``N``
    (the a-posteriori bound of Banach's fixed-point theorem). Hence, per chain:

    * ``holds`` (✓): ``d <= tol``;
    * ``fails`` (✗): ``d - r > tol``: the chain is close enough to its own limit to show that this
      limit is not within ``tol`` of ``L``;
    * ``unconverged`` (⟳): neither: step ``N`` is too far from the chain's limit to tell. The printed
      measurement says "not converged within N steps" and after how many steps the bound would
      reach ``tol`` if ``L`` is the limit (``r rho^m <= tol``).

    Over several chains the verdict is ✗ if any fails, ✓ if all hold, ⟳ otherwise. The summary (the
    claim's value) is the largest distance ``d``.
    """
    tol = float(tol)
    if not (tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tends_to needs tol > 0, got tol={tol!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"tends_to needs an integer steps >= 1, got steps={steps!r}")
    rates = np.atleast_1d(np.asarray(rate, dtype=float)).ravel()
    if rates.size == 0 or np.any(~np.isfinite(rates)) or np.any(rates < 0):
        raise ValueError(f"tends_to needs rate >= 0 (the contraction factor per step), got rate={rate!r}")
    steps = int(steps)

    def parts(v: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not isinstance(v, Mapping) or set(v) != {"distance", "last_change"}:
            raise ValueError("tends_to needs measured={'distance': ||x^(N) - L||, 'last_change': "
                             f"||x^(N) - x^(N-1)||}}, got {v!r}")
        d = np.atleast_1d(np.asarray(v["distance"], dtype=float)).ravel()
        c = np.atleast_1d(np.asarray(v["last_change"], dtype=float)).ravel()
        if d.shape != c.shape or rates.size not in (1, d.size):
            raise ValueError(f"tends_to: distance ({d.size}), last_change ({c.size}) and rate "
                             f"({rates.size}) need one entry per chain")
        if np.any(d < 0) or np.any(c < 0):
            raise ValueError(f"tends_to: distances and changes are norms (>= 0), got {v!r}")
        rho = np.broadcast_to(rates, d.shape)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            r = np.where(rho < 1, rho / np.where(rho < 1, 1 - rho, 1.0) * c, np.inf)
        return d, np.where(c == 0, 0.0, r), rho  # a chain that no longer moves is at its limit

    def verdicts(v: Any) -> list[str]:
        d, r, _ = parts(v)
        return ["fails" if not math.isfinite(di) else "holds" if di <= tol
                else "fails" if di - ri > tol else "unconverged" for di, ri in zip(d, r, strict=True)]

    def test(v: Any) -> str:
        got = verdicts(v)
        return "fails" if "fails" in got else "holds" if set(got) == {"holds"} else "unconverged"

    def detail(v: Any) -> str:
        got = verdicts(v)
        if "fails" in got or "unconverged" not in got:
            return f" at step {steps}"
        d, r, rho = parts(v)
        i = max((j for j, g in enumerate(got) if g == "unconverged"), key=lambda j: d[j])
        ri, pi = float(r[i]), float(rho[i])
        out = (f" at step {steps}; not converged within {steps} steps: the chain's limit lies within "
               f"{fmt_number(ri, fmt)} of step {steps} (rate {pi:.4g} per step)")
        if 0 < pi < 1 and math.isfinite(ri) and ri > tol:
            more = math.ceil(math.log(tol / ri) / math.log(pi))
            out += f"; about {steps + more} steps would reach ≤ {fmt_number(tol)}"
        return out

    text = (f"≤ {fmt_number(tol)} at step {steps}; else ✗ if the contraction bound puts the chain's limit "
            "farther, ⟳ (not converged) if it cannot tell")
    return Criterion(text, _check_why(why), test, lambda v: float(np.max(parts(v)[0])), fmt, detail=detail)


def _max(v: Any) -> float:
    a = np.asarray(v, dtype=float)
    return float(np.max(a)) if a.size else float("nan")


def _min(v: Any) -> float:
    a = np.asarray(v, dtype=float)
    return float(np.min(a)) if a.size else float("nan")
