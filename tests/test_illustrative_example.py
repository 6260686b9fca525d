"""The measurements of the illustrative example (sdlib.experiments.examples) and the reading helpers
(sdlib.chapters.reading), against oracles that share no code with them: the authors' printed
losses, hand-iterated chains, numpy's own eigendecomposition, and the chapter's parameters cell.
Also the chapter's shape as a lecture: at most half its former 80 cells, every labelled equation
cited and every citation labelled."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import numpy as np
import pytest

from sdlib import KernelSelfDistillation
from sdlib.chapters.reading import setting_label
from sdlib.experiments import examples

CHAPTER = Path(__file__).resolve().parents[1] / "notebooks" / "illustrative_example.md"


@pytest.fixture(scope="module")
def setting():  # type: ignore[no-untyped-def]
    ex = examples.illustrative_example()
    model = KernelSelfDistillation(kernel="rbf", gamma=80.0, lam=0.2).fit(ex.X, ex.y)
    return ex, model, examples.three_cases(model, ex, alpha_b=0.25, steps=6, steps_long=40)


def test_paper_setting_is_the_chapters_defaults() -> None:
    from sdlib.chapters.runner import notebook_parameters

    params = notebook_parameters(CHAPTER)
    assert {k: params[k].default for k in examples.PAPER_SETTING} == examples.PAPER_SETTING


def test_changed_setting_and_its_words() -> None:
    assert examples.changed_setting(gamma=80, lam=0.2, steps=6) == {}
    changed = examples.changed_setting(gamma=40.0, lam=0.2, alpha_b=0.25)
    assert changed == {"gamma": (80.0, 40.0)}
    assert setting_label({}) == "paper"
    assert setting_label(changed) == "rerun at γ = 40; the paper's: γ = 80"
    with pytest.raises(ValueError, match="steps_long"):
        examples.changed_setting(steps_long=10)
    with pytest.raises(ValueError, match="pair"):
        setting_label({"lam": 0.1})  # type: ignore[dict-item]


def test_losses_reproduce_the_authors_printed_numbers(setting) -> None:  # type: ignore[no-untyped-def]
    ex, model, _ = setting
    for (_, alpha), printed in examples.PUBLISHED_LOSSES.items():
        got = examples.losses(model, ex, alpha)
        assert np.all(np.abs(got - np.array(printed, dtype=float)) <= 0.5e-5 + 1e-12), alpha


def test_three_cases_against_refits_and_the_limits(setting) -> None:  # type: ignore[no-untyped-def]
    ex, model, cases = setting
    from sdlib.krr import reference

    P_ref, _ = reference.distill_refits(ex.X, ex.y, ex.X_grid, 0.2, np.full(5, 0.25), gamma=80.0)
    np.testing.assert_allclose(cases.paths["b"], P_ref, atol=1e-9)
    np.testing.assert_allclose(cases.mse["b"], np.mean((P_ref - np.sin(2 * np.pi * ex.X_grid[:, 0])) ** 2, axis=1))
    assert np.all(cases.limits["a"] == 0) and cases.alpha_inf == cases.a_star[-1]
    assert np.all((cases.a_star_clip >= 0) & (cases.a_star_clip <= 1)) and cases.a_star[0] < 0
    errs = examples.oracle_errors(model, ex, cases, steps=6, steps_long=40)
    assert errs["a"] < 1e-9 and errs["b"] < 1e-9 and errs["alpha_star"] < 1e-6 and errs["c"] < 1e-6


def test_step_changes_and_converged_at_by_hand() -> None:
    P = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 5.0]])
    np.testing.assert_allclose(examples.step_changes(P), [np.sqrt(12.5), np.sqrt(0.5)])
    a = np.array([0.5, 0.2, 0.31, 0.3, 0.3])        # alpha*(2..6)
    assert examples.converged_at(a, 0.02) == 4       # |0.2 - 0.3| > 0.02 at tau = 3
    assert examples.converged_at(a, 0.005) == 5
    assert examples.converged_at(a, 1.0) == 2
    with pytest.raises(ValueError, match="empty"):
        examples.converged_at([], 0.1)
    assert examples.listing([3, 1, 3], 1) == "2, 4" and examples.listing([]) == "none"


def test_real_steps_of_case_a_match_the_engine_at_integer_steps(setting) -> None:  # type: ignore[no-untyped-def]
    ex, model, cases = setting
    real = examples.RealStepsA(ex, gamma=80.0, lam=0.2)
    for t in range(1, 7):
        assert real.quality(t, "sin") == pytest.approx(cases.mse["a"][t - 1], rel=1e-10)
        y_t = model.train_path(steps=t, alpha=0.0)[-1]
        assert real.quality(t, "train") == pytest.approx(np.mean((ex.y - y_t) ** 2), rel=1e-10)
    best = real.best_step(40)
    assert 1 < best < 40 and real.quality(best, "sin") <= cases.mse["a"].min() + 1e-12
    share, pairs = real.smaller_share(model, [0.25, 0.5], steps=6, on="train", lo=1.0, hi=40.0)
    assert pairs == 10 and share.shape == (11,) and np.all((share >= 0) & (share <= 1))
    with pytest.raises(ValueError, match="on must be"):
        real.quality(2.0, "val")


def test_validation_sets_and_explained_share(setting) -> None:  # type: ignore[no-untyped-def]
    ex, model, _ = setting
    sets = examples.validation_sets(ex, n_noisy=2, seed=3)
    assert list(sets) == ["sine (this book)", "noisy 1", "noisy 2", "training points"]
    again = examples.validation_sets(ex, n_noisy=2, seed=3)
    np.testing.assert_array_equal(sets["noisy 2"][1], again["noisy 2"][1])
    by = examples.case_c_by_validation(model, ex, {"sine": sets["sine (this book)"]}, steps=6)
    assert by["sine"]["best step"] == 2
    share, path = examples.explained_share(ex, gamma=80.0, lam=0.2, steps=6)
    assert share == pytest.approx(1 - ex.mse(path).min() / 0.5, rel=2e-2)  # mean of sin^2 over a period
    assert examples.explained_share(ex, gamma=1 / 80, lam=0.2, steps=6)[0] < 0.25
    d = examples.limit_distances(model, ex, [0.25, 1.0])
    assert d[1] == pytest.approx(0.0, abs=1e-12) and d[0] > 0


# ------------------------------------------------------------------------------------------------
# The chapter as a lecture


def test_the_chapter_has_at_most_half_its_former_cells() -> None:
    nb = jupytext.read(CHAPTER)
    assert len(nb.cells) <= 40, f"{len(nb.cells)} cells (80 before issue 19: at most half)"


def test_every_labelled_equation_is_cited_and_every_citation_labelled() -> None:
    text = CHAPTER.read_text(encoding="utf8")
    labels = set(re.findall(r"^\s*:label: (ex45-[\w-]+)$", text, flags=re.M))
    cited = set(re.findall(r"\{eq\}`([\w-]+)`", text))
    assert len(labels) >= 8
    assert labels <= cited, f"labelled but never cited: {sorted(labels - cited)}"
    assert cited <= labels, f"cited but not labelled: {sorted(cited - labels)}"


def test_captions_follow_the_setting() -> None:
    text = CHAPTER.read_text(encoding="utf8")
    assert "(paper)" not in text, "a caption must say '(paper)' through the glued setting, not typed"
    figures = re.findall(r"```\{glue:figure\} (\w+)\n:name: [\w-]+\n\n(.*?)```", text, flags=re.S)
    assert len(figures) == 6
    for key, caption in figures:
        assert "{glue:text}`ex45_setting`" in caption, key
        prose = re.sub(r"\$[^$]*\$|\{[\w:]+\}`[^`]*`", "", caption)  # outside math and roles
        assert not re.search(r"\b(alpha|gamma|lambda|tau)\b|sin\(2 pi|\^\(", prose), (key, prose)  # no ASCII math
