"""The claims ledger derives every verdict from the measured value and the criterion.

The point of the API: no verdict and no measured string can be typed in. A failing criterion prints
✗ next to the real number, in assert mode (then raises) and in report mode (then goes on).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from sdlib.chapters import claims as C
from sdlib.chapters.claims import (
    ClaimFailed,
    Claims,
    at_least,
    at_most,
    ci_below,
    ci_within,
    equal_to,
    monotone,
    rounds_to,
    within,
)


def test_failing_check_prints_cross_with_the_real_number_in_report_mode(capsys: pytest.CaptureFixture) -> None:
    ledger = Claims("t", mode="report")
    claim = ledger.check("err", "the error is round-off", where="eq. (6)", measured=3.25e-3,
                         criterion=at_most(1e-9, why="float64 round-off"))
    out = capsys.readouterr().out
    assert claim.verdict == "fails" and claim.status == "✗"
    assert "✗ [paper] t.err" in out and "measured 0.00325" in out and "≤ 1.00e-09 (float64 round-off)" in out
    assert "reported, not asserted" in out


def test_failing_check_prints_cross_then_raises_in_assert_mode(capsys: pytest.CaptureFixture) -> None:
    ledger = Claims("t")  # assert is the default
    with pytest.raises(ClaimFailed, match=r"derived 'fails' \(measured 0.5"):
        ledger.check("err", "small", where="x", measured=0.5, criterion=at_most(0.1, why="tolerance"))
    assert "✗ [paper] t.err: small | measured 0.5 |" in capsys.readouterr().out


def test_expected_failure_is_recorded_without_raising_and_holds_if_it_flips() -> None:
    ledger = Claims("t")
    c = ledger.check("fn7", "the paper's constant", where="fn. 7", measured=1.5,
                     criterion=at_most(1e-9, why="round-off"), expect="fails")
    assert c.status == "✗" and c.measured == "1.5"
    with pytest.raises(ClaimFailed):  # the same statement now holding contradicts the errata prose
        ledger.check("fn7b", "the paper's constant", where="fn. 7", measured=0.0,
                     criterion=at_most(1e-9, why="round-off"), expect="fails")


@pytest.mark.parametrize(("criterion", "value", "verdict", "shown"), [
    (at_most(1.0, why="w"), [0.2, 0.9], "holds", "0.9"),
    (at_most(1.0, why="w"), np.array([0.2, 1.5]), "fails", "1.5"),
    (at_least(2.0, why="w"), [3.0, 2.5], "holds", "2.5"),
    (at_least(2.0, why="w"), 1.0, "fails", "1"),
    (within(0.0, 1.0, why="w"), [0.5, 1.2], "fails", "1.2"),
    (within(0.0, 1.0, why="w"), [0.5, 0.9], "holds", "0.9"),
    (equal_to(5, why="w"), 5, "holds", "5"),
    (equal_to(5, why="w"), 6, "fails", "6"),
    (at_most(1.0, why="w"), float("nan"), "fails", "nan"),
])
def test_criteria(criterion: C.Criterion, value: object, verdict: str, shown: str) -> None:
    got, summary = criterion.measure(value)
    assert got == verdict
    assert criterion.format(summary) == shown


def test_monotone_reports_the_worst_step() -> None:
    dec = monotone("decreasing", why="Lemma 4.2")
    verdict, worst = dec.measure(np.array([[1.0, 1.0], [0.5, 0.9], [0.4, 0.95]]))
    assert verdict == "fails" and worst == pytest.approx(0.05)
    assert dec.measure([3.0, 2.0, 1.5])[0] == "holds"
    assert monotone("increasing", strict=False, why="w").measure([1, 1, 2])[0] == "holds"
    assert monotone("increasing", why="w").measure([1, 1, 2])[0] == "fails"


def _iv(tost: tuple[float, float], ci: tuple[float, float]) -> dict:
    return {"tost": tost, "ci": ci}


def test_ci_within_gives_four_verdicts() -> None:
    crit = ci_within(0.01, why="seed spread")
    assert crit.measure(_iv((-0.004, 0.006), (-0.005, 0.007)))[0] == "holds"
    assert crit.measure(_iv((-0.04, 0.03), (-0.05, 0.04)))[0] == "inconclusive"   # wide, contains 0
    assert crit.measure(_iv((-0.018, -0.004), (-0.019, -0.003)))[0] == "differs"  # below 0, overlaps the band
    assert crit.measure(_iv((-0.018, 0.001), (-0.019, 0.003)))[0] == "inconclusive"
    assert crit.measure(_iv((0.013, 0.019), (0.012, 0.02)))[0] == "fails"       # entirely outside
    assert crit.measure(_iv((-0.028, -0.012), (-0.03, -0.011)))[0] == "fails"
    assert crit.measure(_iv((-0.01, 0.01), (-0.011, 0.011)))[0] == "holds"       # the band is closed
    # equivalent *and* significantly non-zero: equivalence is what the test shows
    assert crit.measure(_iv((0.002, 0.008), (0.001, 0.009)))[0] == "holds"
    assert crit.measure(_iv((float("nan"),) * 2, (float("nan"),) * 2))[0] == "inconclusive"
    with pytest.raises(ValueError, match="low <= high"):
        crit.measure(_iv((0.02, 0.01), (0.0, 0.03)))
    with pytest.raises(ValueError, match="swapped"):
        crit.measure(_iv((-0.02, 0.02), (-0.01, 0.01)))
    with pytest.raises(ValueError, match="tost"):
        crit.measure((-0.01, 0.01))
    with pytest.raises(ValueError, match="level"):
        ci_within(0.01, level=0.4, why="w")
    assert "90% interval inside (TOST)" in crit.text and "at 5%" in crit.text


@pytest.mark.parametrize("seed", range(40))
def test_ci_within_is_tost_and_a_t_test(seed: int) -> None:
    """Against scipy's one-sided and two-sided t-tests, not against intervals: equivalence holds iff
    both one-sided tests (H0: mean <= -delta, H0: mean >= delta) reject at 5 % (Schuirmann's TOST);
    'differs' needs the two-sided test of mean = 0 to reject at 5 %; 'fails' needs a one-sided test
    that the mean is beyond the margin to reject at 2.5 %."""
    from sdlib.nn.results import t_interval

    rng = np.random.default_rng(seed)
    delta = 0.01
    d = rng.normal(rng.uniform(-0.025, 0.025), rng.uniform(0.002, 0.02), size=int(rng.integers(3, 12)))
    _, tl, th = t_interval(d, 0.90)
    _, cl, ch = t_interval(d, 0.95)
    verdict = ci_within(delta, why="w").measure(_iv((tl, th), (cl, ch)))[0]
    p_tost = max(stats.ttest_1samp(d, -delta, alternative="greater").pvalue,
                 stats.ttest_1samp(d, delta, alternative="less").pvalue)
    p_zero = stats.ttest_1samp(d, 0.0).pvalue
    p_out = min(stats.ttest_1samp(d, delta, alternative="greater").pvalue,
                stats.ttest_1samp(d, -delta, alternative="less").pvalue)
    assert (verdict == "holds") == (p_tost < 0.05)
    if verdict != "holds":
        assert (verdict == "fails") == (p_out < 0.025)
        if verdict != "fails":
            assert (verdict == "differs") == (p_zero < 0.05)


def test_ci_below_has_three_verdicts() -> None:
    crit = ci_below(0.0, why="a negative slope")
    assert crit.measure((-0.46, -0.33)) == ("holds", (-0.46, -0.33))
    assert crit.measure((-0.75, 0.15))[0] == "inconclusive"
    assert crit.measure((0.1, 0.3))[0] == "fails"
    assert crit.measure((float("nan"), float("nan")))[0] == "inconclusive"
    with pytest.raises(ValueError, match="low <= high"):
        crit.measure((0.3, 0.1))


def test_rounds_to_half_a_unit_of_the_last_decimal() -> None:
    crit = rounds_to(["0.16477", "0.1"], why="printed to 5 and 1 decimals")
    assert crit.measure([0.164774999, 0.14])[0] == "holds"
    assert crit.measure([0.1647751, 0.1])[0] == "fails"          # just past half a unit
    assert crit.measure([0.16477, 0.151])[0] == "fails"
    verdict, worst = crit.measure([0.164772, 0.1])
    assert verdict == "holds" and worst == pytest.approx(0.4)
    with pytest.raises(ValueError, match="printed"):
        rounds_to("n/a", why="w")
    with pytest.raises(ValueError, match="measured numbers"):
        crit.measure([0.1])


def test_standin_needs_its_setting_and_may_be_inconclusive() -> None:
    ledger = Claims("s")
    iv = _iv((-0.08, 0.08), (-0.1, 0.1))
    with pytest.raises(ValueError, match="setting"):
        ledger.check("c", "comparable", where="Sec. 5", measured=iv, kind="standin",
                     criterion=ci_within(0.01, why="w"))
    c = ledger.check("c", "comparable", where="Sec. 5", measured=iv, kind="standin",
                     setting="Fashion-MNIST, small CNN, CPU", criterion=ci_within(0.01, why="w"),
                     expect="inconclusive")
    assert c.status == "?" and c.measured == "90% [-0.08, 0.08]; 95% [-0.1, 0.1]"
    d = ledger.check("d", "comparable", where="Sec. 5", kind="standin", setting="CPU",
                     measured=_iv((-0.018, -0.004), (-0.019, -0.003)), criterion=ci_within(0.01, why="w"),
                     expect="differs")
    assert d.status == "≠" and ledger.counts() == {"standin": {"inconclusive": 1, "differs": 1}}


def test_external_claims_name_their_source_and_cannot_be_inconclusive() -> None:
    ledger = Claims("x")
    with pytest.raises(ValueError, match="source"):
        ledger.check("e", "published loss", where="README", kind="external", measured=0.16477,
                     criterion=rounds_to("0.16477", why="w"))
    with pytest.raises(ValueError, match="expect"):
        ledger.check("e", "published loss", where="README", kind="external", setting="README",
                     measured=0.16477, criterion=rounds_to("0.16477", why="w"), expect="inconclusive")
    c = ledger.check("e", "published loss", where="README", kind="external", setting="the authors' README",
                     measured=0.16477, criterion=rounds_to("0.16477", why="w"))
    assert c.status == "✓" and "| source: the authors' README" in ledger.line(c)
    assert ledger.table()["kind"].tolist() == ["external (the authors' README)"]


def test_sensitivity_reports_the_readings_where_it_holds() -> None:
    ledger = Claims("s")
    c = ledger.sensitivity("fn10", "fewer than 10 steps suffice", where="fn. 10", reading="tolerance",
                           values=[2e-2, 1e-2, 1e-3], measured=[8, 10, 16],
                           criterion=at_most(9, why="'less than 10'"))
    assert c.verdict == "depends" and c.status == "◐"
    assert c.measured.startswith("holds for tolerance = 0.02 of")
    assert [r["holds"] for r in c.readings] == [True, False, False]


def test_observation_has_no_verdict() -> None:
    c = Claims("o").observe("gap", "greedy vs grid", where="beyond the paper", measured=2e-4)
    assert c.verdict == "none" and c.status == "·" and c.criterion == ""


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="claims_mode"):
        Claims("t", mode="loud")
    with pytest.raises(ValueError, match="why"):
        at_most(1.0, why="")
    with pytest.raises(TypeError, match="Criterion"):
        Claims("t").check("k", "s", where="w", measured=1.0, criterion="<= 1")  # type: ignore[arg-type]
    ledger = Claims("t")
    ledger.check("k", "s", where="w", measured=1.0, criterion=at_most(2, why="w"))
    with pytest.raises(ValueError, match="twice"):
        ledger.check("k", "s", where="w", measured=1.0, criterion=at_most(2, why="w"))
    with pytest.raises(ValueError, match="kind"):
        ledger.check("k2", "s", where="w", measured=1.0, criterion=at_most(2, why="w"), kind="observation")


def test_glue_protocol_round_trip() -> None:
    ledger = Claims("thm41", chapter="Theorem 4.1", mode="report")
    ledger.check("a", "s", where="w", measured=np.float64(0.25), criterion=at_most(1, why="w"))
    ledger.check("b", "s", where="w", measured=2.0, criterion=at_most(1, why="w"))
    ledger.observe("c", "ours", where="w", measured=np.array([1.0, 3.0]))
    text = json.dumps(ledger.ledger(), ensure_ascii=False)
    glued = {C.ledger_key("thm41"): repr(text), C.status_key("thm41", "a"): "✓", C.table_key("thm41"): {}}
    assert C.glue_prefixes(glued) == ["thm41"]
    records = C.read_ledger(glued[C.ledger_key("thm41")])
    assert [(r["key"], r["kind"], r["status"]) for r in records] == [
        ("a", "paper", "✓"), ("b", "paper", "✗"), ("c", "observation", "·")]
    assert records[0]["value"] == 0.25 and records[1]["measured"] == "2"
    assert ledger.counts() == {"paper": {"holds": 1, "fails": 1}, "observation": {"none": 1}}


def test_sensitivity_with_the_reading_as_threshold() -> None:
    c = Claims("s").sensitivity("much_less", "differ much less", where="Sec. 4.5", reading="ratio below r",
                                values=[1.0, 0.5, 0.25], measured=[0.75, 0.75, 0.75],
                                criterion=lambda r: at_most(r, why="the reading r"))
    assert [r["holds"] for r in c.readings] == [True, False, False]
    assert c.readings[0]["measured"] == "0.75" and "≤ 1" in c.criterion and "≤ 0.25" in c.criterion


# ------------------------------------------------------------------------------------------------
# Limit claims: a finite chain either reaches the claimed limit (✓), shows that its own limit is
# elsewhere (✗), or has not converged far enough to tell (⟳). The chains here are iterated by hand
# (x <- rho x + (1 - rho) L*, a contraction with rate rho towards L*), not by the criterion.


def _chain(limit: float, rho: float, steps: int, start: float = 1.0) -> np.ndarray:
    x = [start]
    for _ in range(steps - 1):
        x.append(rho * x[-1] + (1 - rho) * limit)
    return np.array(x)


def _measured(x: np.ndarray, claimed: float) -> dict[str, float]:
    return {"distance": abs(x[-1] - claimed), "last_change": abs(x[-1] - x[-2])}


def test_limit_that_converges_holds() -> None:
    x = _chain(0.3, 0.5, 100)
    c = Claims("t").check("lim", "tends to 0.3", where="Thm 4.5", measured=_measured(x, 0.3),
                          criterion=C.tends_to(1e-9, steps=100, rate=0.5, why="geometric"))
    assert c.verdict == "holds" and c.status == "✓" and "at step 100" in c.measured


def test_limit_that_needs_more_steps_is_not_converged_rather_than_false(capsys: pytest.CaptureFixture) -> None:
    rho, tol = 0.99, 1e-9
    x = _chain(0.3, rho, 100)
    ledger = Claims("t", mode="report")
    c = ledger.check("lim", "tends to 0.3", where="Thm 4.5", measured=_measured(x, 0.3),
                     criterion=C.tends_to(tol, steps=100, rate=rho, why="geometric"))
    assert c.verdict == "unconverged" and c.status == "⟳" == C.STATUS["unconverged"]
    assert "not converged within 100 steps" in c.measured and "⟳ [paper] t.lim" in capsys.readouterr().out
    # the steps it says are needed do reach the tolerance, and one step fewer (from its bound) may not
    needed = int(c.measured.split("about ")[1].split(" steps")[0])
    y = _chain(0.3, rho, needed)
    assert abs(y[-1] - 0.3) <= tol
    assert needed > 100 and ledger.counts() == {"paper": {"unconverged": 1}}
    # in assert mode a chapter written for ✓ stops: the statement is not shown to hold
    with pytest.raises(ClaimFailed, match="derived 'unconverged'"):
        Claims("t").check("lim", "tends to 0.3", where="Thm 4.5", measured=_measured(x, 0.3),
                          criterion=C.tends_to(tol, steps=100, rate=rho, why="geometric"))


def test_wrong_limit_of_a_converged_chain_fails() -> None:
    x = _chain(0.3, 0.5, 100)        # converged to 0.3 to round-off
    c = Claims("t", mode="report").check("lim", "tends to 0.31", where="w", measured=_measured(x, 0.31),
                                         criterion=C.tends_to(1e-9, steps=100, rate=0.5, why="w"))
    assert c.verdict == "fails" and c.status == "✗"
    # a wrong limit of a slow chain that cannot yet tell the two apart is ⟳, not ✓
    y = _chain(0.3, 0.999, 50)
    assert C.tends_to(1e-9, steps=50, rate=0.999, why="w").measure(_measured(y, 0.31))[0] == "unconverged"


def test_limit_over_several_chains_and_bad_arguments() -> None:
    fast, slow, wrong = _chain(0.0, 0.5, 80), _chain(0.0, 0.99, 80), _chain(0.1, 0.5, 80)
    crit = C.tends_to(1e-9, steps=80, rate=[0.5, 0.99], why="w")
    both = lambda a, b: {"distance": [abs(a[-1]), abs(b[-1])],  # noqa: E731
                         "last_change": [abs(a[-1] - a[-2]), abs(b[-1] - b[-2])]}
    assert crit.measure(both(fast, slow))[0] == "unconverged"
    assert C.tends_to(1e-9, steps=80, rate=0.5, why="w").measure(both(fast, wrong))[0] == "fails"
    assert crit.measure(both(fast, slow))[1] == pytest.approx(abs(slow[-1]))
    with pytest.raises(ValueError, match="rate"):
        C.tends_to(1e-9, steps=10, rate=-0.1, why="w")
    with pytest.raises(ValueError, match="steps"):
        C.tends_to(1e-9, steps=0, rate=0.5, why="w")
    with pytest.raises(ValueError, match="last_change"):
        crit.measure(1e-3)
    with pytest.raises(ValueError, match="one entry per chain"):
        C.tends_to(1e-9, steps=10, rate=[0.5, 0.6, 0.7], why="w").measure({"distance": [1, 2],
                                                                                 "last_change": [1, 2]})


def test_held_names_the_readings_of_a_sensitivity_claim() -> None:
    ledger = Claims("s")
    ledger.sensitivity("r", "much less", where="w", reading="r", values=[1.0, 0.5, 0.25],
                       measured=[0.75, 0.75, 0.75], criterion=lambda r: at_most(r, why="w"))
    ledger.sensitivity("v", "one step", where="w", reading="set", values=["sine", "noisy 1"],
                       measured=[2, 3], criterion=equal_to(2, why="w"))
    ledger.sensitivity("n", "never", where="w", reading="r", values=[1.0], measured=[2.0],
                       criterion=at_most(1.0, why="w"))
    assert (ledger.held("r"), ledger.held("v"), ledger.held("n")) == ("1", "sine", "none")
    ledger.observe("o", "ours", where="w", measured=1.0)
    with pytest.raises(ValueError, match="sensitivity"):
        ledger.held("o")
