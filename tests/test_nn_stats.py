"""The statistics of the Section 5 verdict (sdlib.nn.results): the t-interval against scipy's
one-sample t-test, the best fixed alpha chosen on the validation split and scored on the test split,
the seed pairing; and the figures draw from a results file without torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from sdlib.nn import results as R


def _doc(val: dict, test: dict, seeds: list[int]) -> dict:
    """A results document: ``val[chain][step]`` and ``test[chain][step]`` are per-seed accuracies."""
    recs = []
    for chain in val:
        for step in val[chain]:
            for i, s in enumerate(seeds):
                recs.append({"seed": s, "chain": chain, "step": step, "val_acc": val[chain][step][i],
                             "test_acc": test[chain][step][i], "train_acc": 0.9, "alpha_hat": None,
                             "seconds": 1.0, "shared_first": step == 1})
    return {"kind": R.RESULTS_KIND, "parameters": {"seeds": seeds, "alphas": [0.2, 0.8]},
            "results": {"records": recs, "helper_records": []}}


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_t_interval_equals_scipys_one_sample_t_test(level: float) -> None:
    x = np.random.default_rng(1).normal(0.01, 0.02, size=8)
    m, lo, hi = R.t_interval(x, level)
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(level)
    assert m == pytest.approx(x.mean()) and lo == pytest.approx(ci.low) and hi == pytest.approx(ci.high)
    assert np.isnan(R.t_interval([0.3], level)[1])


def test_best_fixed_alpha_is_chosen_on_validation_and_scored_on_test() -> None:
    seeds = [3, 1, 2]                                   # not sorted: pairing follows the run's seeds
    first = {1: [0.8, 0.8, 0.8]}
    val = {"alpha=0.2": {**first, 2: [0.90, 0.91, 0.92]}, "alpha=0.8": {**first, 2: [0.80, 0.81, 0.82]},
           "alpha_hat": {**first, 2: [0.85, 0.85, 0.85]}}
    test = {"alpha=0.2": {**first, 2: [0.70, 0.72, 0.74]}, "alpha=0.8": {**first, 2: [0.95, 0.95, 0.95]},
            "alpha_hat": {**first, 2: [0.71, 0.75, 0.73]}}
    [row] = R.paired_comparison(_doc(val, test, seeds), level=0.95)
    assert row["best_chain"] == "alpha=0.2" and row["oracle_chain"] == "alpha=0.8"
    d = np.array([0.71 - 0.70, 0.75 - 0.72, 0.73 - 0.74])   # seed by seed
    np.testing.assert_allclose(row["diff"], d, atol=1e-12)
    ci = stats.ttest_rel([0.71, 0.75, 0.73], [0.70, 0.72, 0.74]).confidence_interval(0.95)
    assert (row["lo"], row["hi"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert row["n"] == 3 and row["best_score"] == pytest.approx(0.72)
    ci90 = stats.ttest_rel([0.71, 0.75, 0.73], [0.70, 0.72, 0.74]).confidence_interval(0.90)
    assert (row["lo_tost"], row["hi_tost"]) == (pytest.approx(ci90.low), pytest.approx(ci90.high))
    assert row["p_t"] == pytest.approx(stats.ttest_rel([0.71, 0.75, 0.73], [0.70, 0.72, 0.74]).pvalue)
    assert (row["n_below"], row["n_above"]) == (1, 2)


def test_paired_tests_against_scipy_on_eight_seeds() -> None:
    """p-values of the paired t-test and of the exact Wilcoxon signed-rank test (8 seeds, no ties)
    from scipy's two-sample forms on the raw accuracies; the Wilcoxon p by enumerating the 2^8 sign
    patterns (its exact null distribution)."""
    import itertools

    rng = np.random.default_rng(5)
    seeds = list(range(8))
    first = {1: [0.8] * 8}
    b = rng.uniform(0.85, 0.9, 8)
    a = b + rng.normal(-0.01, 0.008, 8)
    val = {"alpha=0.2": {**first, 2: [0.9] * 8}, "alpha=0.8": {**first, 2: [0.8] * 8},
           "alpha_hat": {**first, 2: [0.85] * 8}}
    test = {"alpha=0.2": {**first, 2: list(b)}, "alpha=0.8": {**first, 2: [0.5] * 8},
            "alpha_hat": {**first, 2: list(a)}}
    [row] = R.paired_comparison(_doc(val, test, seeds))
    assert row["p_t"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    d = a - b
    ranks = stats.rankdata(np.abs(d))
    w = ranks[d > 0].sum()
    null = [sum(r for r, s in zip(ranks, signs, strict=True) if s) for signs in itertools.product([0, 1], repeat=8)]
    p_exact = min(1.0, 2 * min(np.mean(np.array(null) <= w), np.mean(np.array(null) >= w)))
    assert row["p_wilcoxon"] == pytest.approx(p_exact)
    with pytest.raises(ValueError, match="level"):
        R.paired_comparison(_doc(val, test, seeds), level=0.3)


def test_curves_band_is_the_interval_of_the_mean() -> None:
    seeds = [0, 1, 2, 3]
    v = {c: {1: [0.5, 0.6, 0.7, 0.8]} for c in ("alpha=0.2", "alpha=0.8", "alpha_hat")}
    c = R.curves(_doc(v, v, seeds), "test_acc", level=0.95)["alpha_hat"]
    ci = stats.t.interval(0.95, 3, loc=0.65, scale=stats.sem([0.5, 0.6, 0.7, 0.8]))
    assert (c["lo"][0], c["hi"][0]) == (pytest.approx(ci[0]), pytest.approx(ci[1]))
    assert (c["min"][0], c["max"][0]) == (0.5, 0.8)


def test_figures_draw_a_committed_run() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    from sdlib.chapters.section5_figures import comparison_figure, figure5

    doc = R.largest_run(Path(__file__).resolve().parents[1] / "results" / "section5")
    assert doc is not None
    fig = figure5(doc)
    assert [a.get_ylabel() for a in fig.axes] == ["training accuracy", "test accuracy"]
    rows = R.paired_comparison(doc)
    fig2 = comparison_figure(rows, 0.01)
    assert len(fig2.axes[0].get_xticks()) == len(rows)
    with pytest.raises(ValueError, match="band"):
        figure5(doc, band="sd")


def test_training_seconds_counts_each_fit_once() -> None:
    seeds = [0, 1]
    v = {c: {1: [0.5, 0.6], 2: [0.5, 0.6]} for c in ("alpha=0.2", "alpha=0.8", "alpha_hat")}
    doc = _doc(v, v, seeds)
    for r in doc["results"]["records"]:                  # distinct seconds per fit
        r["seconds"] = 100.0 * (r["seed"] + 1) if r["step"] == 1 else 1.0
    doc["results"]["helper_records"] = [{"seed": s, "step": 2, "seconds": 10.0} for s in seeds]
    # per seed: the first model once (not once per chain), 3 step-2 fits, 1 alpha = 0 helper fit
    assert R.training_seconds(doc) == pytest.approx(100 + 200 + 2 * 3 * 1.0 + 2 * 10.0)
    assert R.paper_fits(5, 10) == 41 + 8       # Figure 5: the grid's 41 fits, alpha-hat's 8 more


def test_the_chapters_default_run_is_a_trained_eight_seed_stand_in() -> None:
    """The committed run the chapter shows by default: >= 8 seeds, step-1 validation accuracy >= 0.80
    (a trained network, not an underfit one), provenance, and every checkpoint-free record in place."""
    root = Path(__file__).resolve().parents[1]
    doc = R.load_run(root / "results" / "section5" / "fmnist_cnn_spatial_8seeds" / "results.json")
    seeds = doc["parameters"]["seeds"]
    assert len(seeds) >= 8
    assert R.per_seed(doc, "alpha_hat", 1, "val_acc").mean() >= 0.80
    prov = doc["provenance"]
    assert prov["parameters"]["seeds"] == seeds and prov["packages"]["torch"] and prov["git_commit"]
    res = doc["results"]
    tau, g = doc["parameters"]["steps"], len(doc["parameters"]["alphas"])
    per_seed = R.fits_grid(tau, g) + R.fits_alpha_hat(tau) - 1     # one first model per seed
    assert res["fits_trained"] + res["fits_loaded"] == res["tasks"] == len(seeds) * per_seed
    raw = (root / "results" / "section5" / "fmnist_cnn_spatial_8seeds" / "results.json").read_text()
    assert str(root) not in raw and "/tmp/" not in raw     # no path of the machine that trained it
