"""The width rate of the NTK chapter (sdlib.ntk.width_fit): intervals that respect a design of a few
widths with several seeds each, checked against scipy/numpy fits and by coverage on simulated data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sdlib import ntk


def _design(rng: np.random.Generator, mean_log_gap, widths, seeds: int, sd: float):  # type: ignore[no-untyped-def]
    w = np.repeat(widths, seeds).astype(float)
    return w, np.exp(np.repeat(mean_log_gap, seeds) + rng.normal(0, sd, w.size))


def test_means_slope_and_curvature_equal_scipy_and_numpy() -> None:
    rng = np.random.default_rng(3)
    widths = 2.0 ** np.arange(6, 12)
    w, g = _design(rng, -0.4 * np.log(widths), widths, 3, 0.2)
    fit = ntk.width_fit(w, g, n_boot=200)
    lx = np.log(widths)
    means = np.array([np.log(g[w == u]).mean() for u in widths])
    lr = stats.linregress(lx, means)
    half = stats.t.ppf(0.975, widths.size - 2) * lr.stderr
    assert fit["means"] == pytest.approx((lr.slope, lr.slope - half, lr.slope + half))
    coef, cov = np.polyfit(lx, means, 2, cov=True)
    half2 = stats.t.ppf(0.975, widths.size - 3) * np.sqrt(cov[0, 0])
    assert fit["curvature"] == pytest.approx((coef[0], coef[0] - half2, coef[0] + half2))
    np.testing.assert_allclose(fit["local"], np.diff(means) / np.diff(lx))
    assert fit["points"] == pytest.approx(ntk.width_exponent(w, g))
    assert fit["n_seeds"].tolist() == [3] * widths.size


def test_per_width_interval_has_its_coverage_where_the_pointwise_one_does_not() -> None:
    """Designs whose per-width means leave the line by a random amount (lack of fit, shared by every
    seed of a width) plus small seed noise: the t interval on the means covers the true slope in
    about 95 % of the designs (its model is exactly this one); the pointwise interval, which takes
    the seeds for replicates of a line, is too narrow and covers it far less often."""
    rng = np.random.default_rng(0)
    widths = 2.0 ** np.arange(6, 11)
    lx = np.log(widths)
    n, cover_means, cover_points = 300, 0, 0
    for _ in range(n):
        means = -0.4 * lx + rng.normal(0.0, 0.2, widths.size)
        w, g = _design(rng, means, widths, 4, 0.05)
        fit = ntk.width_fit(w, g, n_boot=100)
        cover_means += fit["means"][1] <= -0.4 <= fit["means"][2]
        cover_points += fit["points"][1] <= -0.4 <= fit["points"][2]
    assert 0.90 <= cover_means / n <= 0.99      # 95 % +- 3 binomial sd of 300 designs
    assert cover_points / n < 0.85


def test_bootstrap_collapses_without_seed_noise_and_bad_input_is_refused() -> None:
    widths = np.repeat([64.0, 256.0, 1024.0, 4096.0], 2)
    g = widths**-0.5 * np.exp(np.tile([0.0, 0.0], 4))
    fit = ntk.width_fit(widths, g, n_boot=100)
    assert fit["bootstrap"] == pytest.approx((-0.5, -0.5, -0.5))
    assert abs(fit["curvature"][0]) < 1e-10
    with pytest.raises(ValueError, match="distinct widths"):
        ntk.width_fit([64, 64, 256, 256], [0.1, 0.2, 0.1, 0.2])
    with pytest.raises(ValueError, match="n_boot"):
        ntk.width_fit(widths, g, n_boot=10)
    with pytest.raises(ValueError, match="> 0"):
        ntk.width_fit(widths, -g)


def test_the_committed_sweep_has_its_design_and_provenance() -> None:
    """The sweep the NTK chapter judges the rate on: >= 8 seeds at every width, widths spanning at least
    64..16384, every record finite, provenance with torch's version, the commit and one torch thread."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    path = root / "results" / "ntk" / "width_sweep.json"
    doc = ntk.load_width_sweep(str(path))
    recs = doc["results"]["records"]
    widths = sorted({r["width"] for r in recs})
    assert widths[0] <= 64 and widths[-1] >= 16384
    for w in widths:
        assert len({r["seed"] for r in recs if r["width"] == w}) >= 8
    keys = ("gap_empirical", "gap_analytic", "kernel_gap", "start_error")
    assert all(np.isfinite(r[k]) and r[k] > 0 for r in recs for k in keys)
    prov = doc["provenance"]
    assert prov["packages"]["torch"] and prov["git_commit"] and prov["torch_threads"] == 1
    raw = path.read_text()
    assert str(root) not in raw and "/tmp/" not in raw


def test_sweep_files_are_not_replaced_and_are_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "sweep.json"
    target.write_text("{}")
    with pytest.raises(FileExistsError, match="overwrite"):
        ntk.write_width_sweep(str(target), widths=[16, 32, 64], seeds=[0])
    assert target.read_text() == "{}"
    with pytest.raises(ValueError, match="not a width-sweep file"):
        ntk.load_width_sweep(str(target))
