"""The interactive Figure 2 (sdlib.chapters.interactive): right frames, small and self-contained, and
sliders that move the curves in a real browser.

The frames are compared with oracles that share no code with the estimator's path: scikit-learn's
``KernelRidge`` (the first fit at ``lam``; the limit of Theorem 4.5, ridge regression with
``lam / alpha``) and :func:`sdlib.krr.reference.distill_refits` (every step refitted). The browser
test opens the self-contained HTML in Debian's Chromium (as tests/test_book.py does; skipped without
it, failed under ``CI=true``), reads the plotted data from the Bokeh document, moves each slider
with the keyboard and reads the data again: it must be the next frame, to the quantisation step.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge

from sdlib.chapters import interactive
from sdlib.experiments.examples import illustrative_example
from sdlib.krr import reference

LAMS = [0.05, 0.2, 1.0]
ALPHAS = np.linspace(0.0, 1.0, 5)
STEPS = 4


@pytest.fixture(scope="module")
def frames() -> interactive.Figure2Frames:
    ex = illustrative_example(41)
    return interactive.figure2_frames(ex.X, ex.y, ex.X_grid[:, 0], ex.f_grid, gamma=80.0, lams=LAMS,
                                      alphas=ALPHAS, steps=STEPS)


def test_frames_match_independent_oracles(frames: interactive.Figure2Frames) -> None:
    ex = illustrative_example(41)
    assert frames.curves.shape == (len(LAMS), len(ALPHAS), STEPS + 1, 41)
    assert frames.n_frames == len(LAMS) * len(ALPHAS)
    for i, lam in enumerate(LAMS):
        first = KernelRidge(alpha=lam, kernel="rbf", gamma=80.0).fit(ex.X, ex.y).predict(ex.X_grid)
        for j, alpha in enumerate(ALPHAS):
            scale = np.max(np.abs(first))
            np.testing.assert_allclose(frames.curves[i, j, 0], first, atol=1e-10 * scale)
            refits, _ = reference.distill_refits(X=ex.X, y=ex.y, Xq=ex.X_grid, lam=lam, gamma=80.0,
                                                 alphas=np.full(STEPS - 1, alpha))
            np.testing.assert_allclose(frames.curves[i, j, :STEPS], refits, atol=1e-9 * scale)
            if alpha == 0:
                np.testing.assert_array_equal(frames.curves[i, j, STEPS], 0.0)
            else:
                krr = KernelRidge(alpha=lam / alpha, kernel="rbf", gamma=80.0).fit(ex.X, ex.y)
                np.testing.assert_allclose(frames.curves[i, j, STEPS], krr.predict(ex.X_grid), atol=1e-10 * scale)
    # alpha = 1: every step refits the ground truth, so it is the first fit
    np.testing.assert_allclose(frames.curves[:, -1, :STEPS], np.repeat(frames.curves[:, -1, :1], STEPS, axis=1),
                               atol=1e-12)
    np.testing.assert_allclose(frames.mse, np.mean((frames.curves - ex.f_grid) ** 2, axis=-1))
    assert frames.seconds > 0


def test_frames_do_not_write_into_the_callers_arrays() -> None:
    ex = illustrative_example(11)
    X, y, x, f = ex.X.copy(), ex.y.copy(), ex.X_grid[:, 0].copy(), ex.f_grid.copy()
    lams, alphas = np.array(LAMS), ALPHAS.copy()
    out = interactive.figure2_frames(X, y, x, f, gamma=80.0, lams=lams, alphas=alphas, steps=2)
    for a, b in ((X, ex.X), (y, ex.y), (x, ex.X_grid[:, 0]), (f, ex.f_grid), (lams, np.array(LAMS)), (alphas, ALPHAS)):
        np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(out.lams, lams) and not np.shares_memory(out.y_train, y)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"lams": [0.1, 0.0]}, "lams"),
    ({"lams": [0.2, 0.1]}, "lams"),
    ({"lams": []}, "lams"),
    ({"alphas": [0.0, 1.5]}, "alphas"),
    ({"alphas": [-0.1, 0.5]}, "alphas"),
    ({"alphas": [0.5, float("nan")]}, "alphas"),
    ({"steps": 0}, "steps"),
    ({"steps": True}, "steps"),
    ({"gamma": -1.0}, "gamma"),
])
def test_bad_arguments_name_the_parameter(kwargs: dict, name: str) -> None:
    ex = illustrative_example(11)
    args = {"gamma": 80.0, "lams": LAMS, "alphas": ALPHAS, "steps": 2, **kwargs}
    with pytest.raises(ValueError, match=rf"^{name} must") as info:
        interactive.figure2_frames(ex.X, ex.y, ex.X_grid[:, 0], ex.f_grid, **args)
    assert "\n" not in str(info.value)


def test_shape_mismatches_are_one_line_errors() -> None:
    ex = illustrative_example(11)
    with pytest.raises(ValueError, match="truth has 10 values but x_grid has 11 points"):
        interactive.figure2_frames(ex.X, ex.y, ex.X_grid[:, 0], ex.f_grid[:10], gamma=80.0, lams=LAMS,
                                   alphas=ALPHAS, steps=2)
    with pytest.raises(ValueError, match="y has 10 targets but X has 11 inputs"):
        interactive.figure2_frames(ex.X, ex.y[:10], ex.X_grid[:, 0], ex.f_grid, gamma=80.0, lams=LAMS,
                                   alphas=ALPHAS, steps=2)


def test_quantise_round_trips_within_half_a_step() -> None:
    values = np.random.default_rng(0).normal(size=(3, 50)) * 1.7
    q, step = interactive.quantise(values)
    assert q.dtype == np.int16
    assert np.max(np.abs(q * step - values)) <= step / 2 + 1e-15
    assert np.max(np.abs(q)) == 32767
    q0, step0 = interactive.quantise(np.zeros(4))
    assert step0 == 1.0 and not q0.any()
    with pytest.raises(ValueError, match="finite"):
        interactive.quantise([1.0, np.inf])


def test_nearest_grid_index(frames: interactive.Figure2Frames) -> None:
    assert frames.index(0.2, 0.25) == (1, 1)
    assert frames.index(0.9, 0.9) == (2, 4)
    with pytest.raises(ValueError, match="^lam must be a finite number > 0"):
        frames.index(0.0, 0.5)


def _initial_curves(layout) -> dict:  # type: ignore[no-untyped-def]
    return dict(layout.select_one({"name": interactive.SOURCE_NAME}).data)


def test_explorer_starts_at_the_nearest_frame(frames: interactive.Figure2Frames) -> None:
    layout = interactive.explorer(frames, lam=0.2, alpha=0.25)
    data = _initial_curves(layout)
    for t in range(STEPS):
        np.testing.assert_allclose(data[f"tau{t + 1}"], frames.curves[1, 1, t], atol=frames.step / 2 + 1e-12)
    np.testing.assert_allclose(data["limit"], frames.curves[1, 1, STEPS], atol=frames.step / 2 + 1e-12)


def test_html_is_self_contained(frames: interactive.Figure2Frames, tmp_path: Path) -> None:
    html = interactive.explorer_html(interactive.explorer(frames, lam=0.2, alpha=0.25))
    assert "<script src=" not in html and "cdn.bokeh.org" not in html, "the HTML must not load a script"
    assert "Bokeh" in html and interactive.SOURCE_NAME in html
    out = interactive.write_html(tmp_path / "sub" / "figure2.html", html)
    assert out.read_text(encoding="utf8") == html
    assert [p.name for p in out.parent.iterdir()] == ["figure2.html"], "a temporary file was left behind"
    assert out.stat().st_mode & 0o044, "the written file is not readable by others"


def test_notebook_output_is_script_and_text_only(frames: interactive.Figure2Frames) -> None:
    """The reference notebooks keep text outputs only: the figure (1-2 MB of script) stays out of them."""
    view = interactive.Explorer(interactive.explorer(frames, lam=0.2, alpha=0.25))
    bundle = view._repr_mimebundle_()
    assert set(bundle) == {"application/javascript", "text/plain"}
    assert "document.currentScript" in bundle["application/javascript"]
    assert view.nbytes == len(bundle["application/javascript"].encode("utf8"))


# ------------------------------------------------------------------------------------------------
# In Chromium: the sliders move the curves

_READ = """
() => {
  const doc = window.Bokeh.documents[0];
  const src = doc.get_model_by_name(NAME);
  const out = {};
  for (const [k, v] of Object.entries(src.data)) out[k] = Array.from(v);
  out.alpha = doc.get_model_by_name(ALPHA).value;
  out.lam = doc.get_model_by_name(LAM).value;
  out.errors = doc.get_model_by_name(ERRORS).text;
  return out;
}
""".replace("NAME", repr(interactive.SOURCE_NAME)).replace("ALPHA", repr(interactive.ALPHA_SLIDER)) \
   .replace("LAM", repr(interactive.LAM_SLIDER)).replace("ERRORS", repr(interactive.ERRORS_DIV))


def _chromium_page(tmp_path: Path):  # type: ignore[no-untyped-def]
    import test_book  # the browser set-up of the book's tests: Debian's Chromium, never `playwright install`

    exe = test_book._chromium()
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but Chromium is not installed")
        pytest.skip("Debian's Chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    return sync_api, exe, test_book.CHROMIUM_ARGS


def _assert_frame(data: dict, frames: interactive.Figure2Frames, i: int, j: int) -> None:
    tol = frames.step / 2 + 1e-9
    for t in range(frames.steps):
        np.testing.assert_allclose(data[f"tau{t + 1}"], frames.curves[i, j, t], atol=tol, err_msg=f"tau{t + 1}")
    np.testing.assert_allclose(data["limit"], frames.curves[i, j, frames.steps], atol=tol, err_msg="limit")


@pytest.mark.slow
@pytest.mark.browser
def test_sliders_move_the_curves_in_chromium(frames: interactive.Figure2Frames, tmp_path: Path) -> None:
    sync_api, exe, args = _chromium_page(tmp_path)
    path = interactive.write_html(tmp_path / "figure2.html", interactive.explorer_html(
        interactive.explorer(frames, lam=0.2, alpha=0.25)))
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=args)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 800})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:", "blob:"))
                    else None)
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=30_000)
            page.wait_for_selector(".noUi-handle", timeout=30_000)
            before = page.evaluate(_READ)
            assert (before["lam"], before["alpha"]) == (1, 1)
            _assert_frame(before, frames, 1, 1)
            handles = page.locator(".noUi-handle")
            assert handles.count() == 2
            handles.nth(0).focus()
            page.keyboard.press("ArrowRight")  # alpha: the next grid value
            page.wait_for_function(f"() => Bokeh.documents[0].get_model_by_name({interactive.ALPHA_SLIDER!r})"
                                   ".value == 2")
            after_alpha = page.evaluate(_READ)
            _assert_frame(after_alpha, frames, 1, 2)
            assert not np.allclose(after_alpha["tau3"], before["tau3"]), "moving alpha did not change the curves"
            handles.nth(1).focus()
            page.keyboard.press("ArrowRight")  # lam: the next grid value
            page.wait_for_function(f"() => Bokeh.documents[0].get_model_by_name({interactive.LAM_SLIDER!r})"
                                   ".value == 2")
            after_lam = page.evaluate(_READ)
            _assert_frame(after_lam, frames, 2, 2)
            assert "λ = 1" in after_lam["errors"] and "α = 0.5" in after_lam["errors"], after_lam["errors"]
        finally:
            browser.close()
    assert not errors, errors
    assert not requests, f"the self-contained HTML made requests: {requests[:5]}"
