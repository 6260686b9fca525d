"""A notebook's ledger of the paper's numeric claims: each is checked, asserted, printed and glued.

Every chapter of the book builds one :class:`Claims` and calls :meth:`Claims.check` once per claim.
A claim that the paper makes and that holds is asserted to hold; a claim that does *not* reproduce
is recorded with ``expect=False`` and asserted *not* to hold, so both outcomes are checked and a
change in either direction fails the notebook. :meth:`Claims.glue` hands the table and the values
to myst-nb, from which the reproduction report and the prose quote them (never retyped).

Claims are asserted at the paper's parameters. With other parameters (``python -m sdlib run`` with
``-p``/``-f`` sets the environment variable ``SDLIB_CLAIMS=report``) a notebook reports each claim's
outcome and goes on: the paper's statements about its own example need not hold for another one.

Printed lines carry the status and the tolerance, and values only as formatted by the caller, so
that nbval can compare them across machines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Claim", "Claims", "ClaimFailed", "CLAIMS_MODE_ENV"]

#: Environment variable: "assert" (default) or "report" (set by the runner for changed parameters).
CLAIMS_MODE_ENV = "SDLIB_CLAIMS"


class ClaimFailed(AssertionError):
    """A claim did not come out as the notebook expected."""


@dataclass
class Claim:
    key: str
    statement: str
    where: str
    measured: str
    criterion: str
    passed: bool
    expect: bool = True

    @property
    def status(self) -> str:
        return "✓" if self.passed else "✗"


@dataclass
class Claims:
    """The claims of one chapter; ``prefix`` (e.g. ``"thm41"``) namespaces the glue keys."""

    prefix: str
    chapter: str = ""
    items: list[Claim] = field(default_factory=list)

    def check(
        self,
        key: str,
        statement: str,
        passed: bool,
        *,
        measured: Any = "",
        criterion: str = "",
        where: str = "",
        expect: bool = True,
        value: Any = None,
    ) -> None:
        """Record one claim and assert that ``passed == expect``.

        ``statement`` is the paper's claim in words, ``where`` its place (``"eq. (6)"``),
        ``measured`` what this notebook found (already formatted, or a number) and ``criterion``
        the test applied (``"max rel. error <= 1e-9"``). ``value`` (default ``measured``) is
        glued as ``{prefix}_{key}``. Returns None, so that a notebook cell ending in ``check(...)``
        displays nothing beyond the status line (nbval compares that output).
        """
        if any(c.key == key for c in self.items):
            raise ValueError(f"claim key {key!r} is used twice in {self.prefix}")
        claim = Claim(
            key=key,
            statement=statement,
            where=where,
            measured=_fmt(measured),
            criterion=criterion,
            passed=bool(passed),
            expect=expect,
        )
        claim._value = measured if value is None else value  # type: ignore[attr-defined]
        self.items.append(claim)
        print(f"{claim.status} {self.prefix}.{key}: {statement} [{criterion}]")
        if claim.passed != expect:
            if os.environ.get(CLAIMS_MODE_ENV, "assert") == "report":
                print(f"  (at the paper's parameters this claim is expected to {'hold' if expect else 'fail'}; "
                      "not asserted because the parameters were changed)")
                return
            raise ClaimFailed(
                f"{self.prefix}.{key}: expected the claim to {'hold' if expect else 'fail'}, "
                f"but it {'holds' if claim.passed else 'fails'} (measured {claim.measured}; "
                f"{criterion})"
            )

    def table(self):  # type: ignore[no-untyped-def]
        """The claims as a :class:`pandas.DataFrame` (one row each), for the reproduction report."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "claim": c.statement,
                    "where": c.where,
                    "measured": c.measured,
                    "criterion": c.criterion,
                    "reproduces": c.status,
                    "chapter": self.chapter,
                }
                for c in self.items
            ]
        )

    def glue(self) -> None:
        """Glue ``{prefix}_claims`` (the table) and ``{prefix}_{key}``/``_status`` per claim."""
        from myst_nb import glue

        table = self.table().style.hide(axis="index").format(escape="html")
        glue(f"{self.prefix}_claims", table, display=False)
        for c in self.items:
            value = c._value  # type: ignore[attr-defined]
            if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
                value = value.item()  # numpy scalars: myst-nb's format specs need a plain repr
            glue(f"{self.prefix}_{c.key}", value, display=False)
            glue(f"{self.prefix}_{c.key}_status", c.status, display=False)

    @property
    def all_passed(self) -> bool:
        return all(c.passed for c in self.items)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)
