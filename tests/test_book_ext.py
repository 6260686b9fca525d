"""The helpers of the book's extension (the package book/_ext/sdlib_book) that do not need a build.

* The repository URL: the placeholder of _config.yml is recognised, and while it is set no button
  is made (the theme's are switched off too); a real URL (or ``BOOK_REPOSITORY_URL``) gives Binder
  and Colab buttons that open the chapter's exported notebook on the notebooks branch.
* The first cell of every exported notebook: executed with a stand-in ``google.colab`` module and a
  recording ``subprocess.run``, it clones the repository's notebooks branch, installs it and moves
  into its ``notebooks/`` folder; outside Colab it does nothing.
* Exporting a notebook keeps the build's outputs, puts the Colab cell first and writes the glued
  numbers into the prose; a chapter with a CUDA ``device`` parameter asks Colab for a GPU.
* The exported prose is plain Markdown: MyST's roles, label targets and directive fences are
  written out (citations, equation numbers, titles, pasted values); the claims table of a chapter
  (pandas' HTML, cut cells and an index) is recognised and drawn whole from the glued ledger.
* The companion's BibTeX (from CITATION.cff) parses as BibTeX; the paper's entry is read verbatim
  from book/references.bib; a configuration file is matched to the committed run it made.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


#: The modules of the extension whose helpers these tests call.
MODULES = ("launch", "export", "myst_markdown", "names", "claims_tables", "citation", "commands", "results_json",
           "claims_summary")


@pytest.fixture(scope="module")
def ext() -> types.SimpleNamespace:
    """The helpers of the extension's modules, as one namespace (each name is defined once)."""
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        modules = [importlib.import_module(f"sdlib_book.{m}") for m in MODULES]
    finally:
        sys.path.pop(0)
    return types.SimpleNamespace(**{k: v for m in modules for k, v in vars(m).items() if not k.startswith("__")})


def _config_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def test_placeholder_is_recognised(ext: types.ModuleType) -> None:
    url = _config_url()
    if "your-" in url.lower():  # the repository's own placeholder, whatever its exact text
        assert ext.repository_is_placeholder(url)
    assert ext.repository_is_placeholder("https://github.com/YOUR-GITHUB-USER/YOUR-FORK-OF-THIS-REPOSITORY")
    assert ext.repository_is_placeholder("")
    assert not ext.repository_is_placeholder("https://github.com/kennethborup/companion")


class _Config:
    def __init__(self, url: str) -> None:
        self.html_theme_options = {
            "repository_url": url, "use_repository_button": True, "use_issues_button": True,
            "launch_buttons": {"binderhub_url": "https://mybinder.org/", "colab_url": "https://colab.research.google.com",
                               "thebe": True, "notebook_interface": "jupyterlab"},
        }


@pytest.mark.parametrize("env_url", [None, "https://github.com/some-org/some-repo"])
def test_placeholder_switches_every_repository_button_off(ext: types.ModuleType, monkeypatch: pytest.MonkeyPatch,
                                                          env_url: str | None) -> None:
    if env_url is None:
        monkeypatch.delenv(ext.REPOSITORY_ENV, raising=False)
    else:
        monkeypatch.setenv(ext.REPOSITORY_ENV, env_url)
    config = _Config("https://github.com/YOUR-GITHUB-USER/YOUR-FORK-OF-THIS-REPOSITORY")
    ext._configure_repository(None, config)
    opts = config.html_theme_options
    # The theme's own Binder/Colab buttons are always replaced by the extension's.
    assert "binderhub_url" not in opts["launch_buttons"] and "colab_url" not in opts["launch_buttons"]
    assert config.sdlib_launch["binderhub_url"] == "https://mybinder.org"
    if env_url is None:
        assert "repository_url" not in opts
        assert not opts["use_repository_button"] and not opts["use_issues_button"]
        assert opts["launch_buttons"]["thebe"] is False
        assert config.sdlib_launch["repository"] == ""
    else:  # the Pages workflow sets the URL of the repository it runs in
        assert opts["repository_url"] == env_url and config.sdlib_launch["repository"] == env_url
        assert opts["use_repository_button"] and opts["launch_buttons"]["thebe"] is True


def _run_cell(source: str, colab: bool, monkeypatch: pytest.MonkeyPatch, missing: tuple[str, ...] = ()) -> list[Any]:
    """Execute the set-up cell with ``subprocess.run`` and ``os.chdir`` recorded, in a stand-in Colab
    or not, with the modules ``missing`` reported as not installed."""
    calls: list[Any] = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(("run", a[0], k)))
    import os

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else find_spec(name, *a))

    monkeypatch.setattr(os, "chdir", lambda path: calls.append(("chdir", path)))
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(source, "<colab cell>", "exec"), {})  # noqa: S102 - the cell the book writes
    return calls


def test_colab_cell_installs_only_in_colab(ext: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://github.com/some-org/some-repo"
    source = ext.colab_setup_cell(url, "notebooks")
    assert _run_cell(source, colab=False, monkeypatch=monkeypatch) == []
    calls = _run_cell(source, colab=True, monkeypatch=monkeypatch)
    clone, pip, chdir = calls
    assert clone[1][:2] == ["git", "clone"] and clone[1][-2:] == [url, "/content/companion"]
    assert clone[1][clone[1].index("--branch") + 1] == "notebooks" and clone[2]["check"]
    assert pip[1][:4] == [sys.executable, "-m", "pip", "install"] and "/content/companion" in pip[1]
    assert "myst-nb" in pip[1] and pip[2]["check"]
    assert chdir == ("chdir", "/content/companion/notebooks")


def test_colab_cell_without_repository_says_so(ext: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a repository the cell still works wherever sdlib is installed; it raises, naming
    # repository.url, only where sdlib is missing and there is nothing to fetch it from.
    source = ext.colab_setup_cell("", "notebooks")
    assert _run_cell(source, colab=False, monkeypatch=monkeypatch) == []
    calls = _run_cell(source, colab=True, monkeypatch=monkeypatch, missing=("pandas",))
    assert [c[1][-1] for c in calls] == ["pandas"]  # what is missing is installed, no clone
    for colab in (True, False):
        with pytest.raises(RuntimeError, match="repository.url"):
            _run_cell(source, colab=colab, monkeypatch=monkeypatch, missing=("sdlib",))


def test_setup_cell_installs_what_a_bare_environment_lacks(ext: types.ModuleType,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://github.com/some-org/some-repo"
    source = ext.colab_setup_cell(url, "notebooks", {"pandas": "pandas", "matplotlib": "matplotlib",
                                                     "myst_nb": "myst-nb", "yaml": "pyyaml"})
    (pip,) = _run_cell(source, colab=False, monkeypatch=monkeypatch,
                       missing=("sdlib", "pandas", "matplotlib", "myst_nb", "yaml"))
    assert pip[1][:5] == [sys.executable, "-m", "pip", "install", "--quiet"]
    assert pip[1][5:] == [f"git+{url}@notebooks", "pandas", "matplotlib", "myst-nb", "pyyaml"]


def test_chapter_needs_what_it_imports(ext: types.ModuleType) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import numpy as np\nfrom sdlib.nn import graph\n%matplotlib inline"),
                nbformat.v4.new_code_cell("import yaml\nfrom myst_nb import glue")]
    needs = ext.chapter_needs(nb)
    assert needs["pandas"] == "pandas" and needs["matplotlib"] == "matplotlib" and needs["myst_nb"] == "myst-nb"
    assert needs["yaml"] == "pyyaml" and needs["torch"] == "torch"  # sdlib.nn needs the nn extra
    assert "numpy" not in needs  # a dependency of sdlib itself


def test_myst_is_written_out_as_markdown(ext: types.ModuleType) -> None:
    text = ("(sec-x)=\nAs {cite}`borup2021teacher` and {cite:t}`lee2019wide` show, eq. {eq}`eq-six` and "
            "{prf:ref}`thm-41` hold (see {doc}`lemma42` and {doc}`the errata <../book/errata>`); "
            "{glue:text}`../notebooks/lemma42.md::lem42_x:.2f`, {sdlib-json}`f.json#a:.1f`, {math}`x^2`.\n\n"
            "````{prf:theorem} Theorem 4.1 (Borup & Andersen, 2021)\n:label: thm-41\n\nFor every $x$:\n\n"
            "$$\nf(x) = 1 \\tag{6}\n$$ (eq-six)\n````\n")
    names = ext.Names(cite=lambda key, textual: {"borup2021teacher": "Borup & Andersen, 2021"}.get(key),
                      eq=lambda label: "(6)" if label == "eq-six" else None,
                      ref=lambda label: "Theorem 4.1" if label == "thm-41" else None,
                      doc=lambda target: ("Lemma 4.2", "lemma42.ipynb") if target == "lemma42" else None,
                      glue=lambda spec: "0.25" if spec.endswith("lem42_x:.2f") else None,
                      json=lambda spec: "3.0")
    out = ext.to_markdown(text, names)
    assert ext.raw_myst(out) == [], out
    assert "As (Borup & Andersen, 2021) and lee2019wide show, eq. (6) and Theorem 4.1 hold" in out
    assert "[Lemma 4.2](lemma42.ipynb)" in out and "*the errata*" in out
    assert "0.25, 3.0, $x^2$." in out
    assert "> **Theorem 4.1 (Borup & Andersen, 2021).**" in out and "> f(x) = 1 \\tag{6}" in out
    assert ":label:" not in out and "(sec-x)=" not in out and "$$ (eq-six)" not in out
    assert ext.raw_myst(text) and ext.to_markdown("plain $x$ and `code`") == "plain $x$ and `code`"


def test_glued_figures_and_tables_are_pasted(ext: types.ModuleType) -> None:
    text = "Before.\n\n```{glue:figure} fig_a\n:figwidth: 80%\n\nFigure 2 (paper): $f$ for {cite}`k`.\n```\n\nAfter."
    glue = {"fig_a": {"data": {"image/png": "iVBORw0KGgo=\n"}, "metadata": {"image/png": {"width": 640}}},
            "html": {"data": {"text/html": "<b>x</b>", "text/plain": "x"}}}
    out = ext.to_markdown(text, ext.Names(block=lambda key: ext.glue_markdown(glue, key)))
    assert '<img src="data:image/png;base64,iVBORw0KGgo=" alt="fig_a" width="640"/>' in out
    assert "*Figure 2 (paper): $f$ for (k).*" in out and ":figwidth:" not in out and ext.raw_myst(out) == []
    assert ext.glue_markdown(glue, "html") == "<b>x</b>" and ext.glue_markdown(glue, "missing") is None
    assert "(not computed)" in ext.to_markdown("```{glue:any} missing\n```")


def _ledger_glue(records: list[dict[str, Any]], prefix: str = "thm41") -> dict[str, Any]:
    import json

    from sdlib.chapters import claims as api

    return {api.ledger_key(prefix): {"data": {"text/plain": repr(json.dumps(records))}}}


def test_claims_table_is_drawn_whole(ext: types.ModuleType) -> None:
    from sdlib.chapters.claims import Claims, at_most

    claims = Claims("thm41", chapter="Theorem 4.1", mode="report")
    long = "Eq. (6) equals step-by-step refits on the training points of Section 4.5, for every alpha"
    claims.check("eq6", long, where="eq. (6)", measured=1e-16, criterion=at_most(1e-9, why="float64 round-off"))
    claims.check("bad", "a statement that does not hold as printed, long enough to be cut by pandas",
                 where="eq. (7)", measured=1.0, criterion=at_most(1e-9, why="float64 round-off"), expect="fails")
    glue = _ledger_glue(claims.ledger())
    import pandas as pd

    shown = pd.DataFrame(claims.table())._repr_html_()
    assert "..." in shown and "<th>0</th>" in shown  # what plain pandas shows: cut cells, an index
    live = claims.table()._repr_html_()  # what a chapter shows in Jupyter or Colab: whole, no index
    assert long in live and "..." not in live and "<th>0</th>" not in live
    assert ext.claims_output_prefix(live, glue) == "thm41"
    assert ext.claims_output_prefix(shown, glue) == "thm41"
    styled = claims.table().style.hide(axis="index").format(escape="html").to_html()  # the glued table
    assert ext.claims_output_prefix(styled, glue) == "thm41"
    assert ext.claims_output_prefix(shown.replace("verdict", "outcome"), glue) is None
    assert ext.claims_output_prefix(shown, _ledger_glue(claims.ledger()[:1])) is None
    full = ext.claims_html(glue, "thm41")
    assert long in full and "..." not in full and "…" not in full
    assert "<th>0</th>" not in full and full.count("<tr>") == 3


def test_paste_glue_formats_like_myst_nb(ext: types.ModuleType) -> None:
    glue = {"a": {"data": {"text/plain": "0.123456"}}, "s": {"data": {"text/plain": "'✓'"}},
            "n": {"data": {"text/plain": "42"}}}
    text = ("x {glue:text}`a:.3f`, {glue:text}`s`, {glue}`n`, {glue:text}`n:d`, {glue:text}`missing:.2f`, "
            "{glue:text}`../other.md::a:.1f`")
    assert ext.paste_glue(text, glue) == ("x 0.123, ✓, 42, 42, {glue:text}`missing:.2f`, "
                                          "{glue:text}`../other.md::a:.1f`")


def _executed(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["jupytext"] = {"text_representation": {"format_name": "myst"}}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("The mean is {glue:text}`m:.2f`."),
                nbformat.v4.new_code_cell("lam = 0.2", execution_count=1),
                nbformat.v4.new_code_cell("print(lam)", execution_count=2,
                                          outputs=[nbformat.v4.new_output("stream", name="stdout", text="0.2\n")])]
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)
    return path


def test_export_keeps_outputs_and_puts_the_colab_cell_first(ext: types.ModuleType, tmp_path: Path) -> None:
    target = tmp_path / "html" / "notebooks" / "ch.ipynb"
    glue = {"m": {"data": {"text/plain": "0.5"}}}
    executed = _executed(tmp_path)
    assert ext.export_notebook(executed, target, repository="https://github.com/o/r", branch="nb",
                               gpu=True, glue=glue)
    nb = nbformat.read(target, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].metadata["tags"] == [ext.COLAB_TAG]
    assert "google.colab" in nb.cells[0].source and "https://github.com/o/r" in nb.cells[0].source
    assert nb.cells[1].source == "The mean is 0.50."
    assert nb.cells[3].outputs[0]["text"] == "0.2\n" and nb.cells[3].execution_count == 2
    assert "jupytext" not in nb.metadata and nb.metadata["accelerator"] == "GPU"
    # unchanged: not written again
    assert not ext.export_notebook(executed, target, repository="https://github.com/o/r", branch="nb",
                                   gpu=True, glue=glue)


def test_export_takes_the_outputs_from_the_execution_cache(ext: types.ModuleType, tmp_path: Path) -> None:
    # myst-nb (execute_notebooks: cache) writes the page's notebook without outputs; they are in
    # the cache, matched by the code of the cells.
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    executed = _executed(tmp_path)
    cache_dir = tmp_path / ".jupyter_cache"
    get_cache(str(cache_dir)).cache_notebook_bundle(
        CacheBundleIn(nbformat.read(executed, as_version=4), str(executed)), check_validity=False)
    bare = nbformat.read(executed, as_version=4)
    for c in bare.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    page_nb = tmp_path / "page.ipynb"
    nbformat.write(bare, page_nb)
    target = tmp_path / "out.ipynb"
    ext.export_notebook(page_nb, target, repository="", branch="nb", gpu=False, cache=cache_dir)
    code = [c for c in nbformat.read(target, as_version=4).cells if c.cell_type == "code"][1:]
    assert [c.execution_count for c in code] == [1, 2] and code[1].outputs[0]["text"] == "0.2\n"
    # without a cache (or a record for this code) the notebook is exported as it is
    other = tmp_path / "other.ipynb"
    bare.cells[1].source = "lam = 0.3"
    nbformat.write(bare, other)
    ext.export_notebook(other, target, repository="", branch="nb", gpu=False, cache=cache_dir)
    assert not any(c.outputs for c in nbformat.read(target, as_version=4).cells if c.cell_type == "code")
    assert ext.merge_cached_outputs(bare, tmp_path / "no_cache") is bare


class _Env:
    def __init__(self, folder: Path, doc: str) -> None:
        self.mystnb_config = types.SimpleNamespace(output_folder=str(folder))
        self.metadata = {doc: {"kernelspec": {"name": "python3"}}}

    def doc2path(self, doc: str) -> str:
        return str(ROOT / f"{doc}.md")


def _page(ext: types.ModuleType, tmp_path: Path, repository: str) -> list[dict]:
    doc = "notebooks/ch"
    execute = tmp_path / "jupyter_execute"
    (execute / "notebooks").mkdir(parents=True)
    _executed(tmp_path).rename(execute / "notebooks" / "ch.ipynb")
    app = types.SimpleNamespace(
        env=_Env(execute, doc), outdir=str(tmp_path / "html"),
        builder=types.SimpleNamespace(format="html", name="html"),
        config=types.SimpleNamespace(sdlib_notebooks_branch="notebooks", sdlib_launch={
            "repository": repository, "binderhub_url": "https://mybinder.org",
            "colab_url": "https://colab.research.google.com"}),
    )
    buttons = [{"type": "group", "label": "download-buttons", "buttons": [
        {"label": "download-source-button", "url": "../_sources/notebooks/ch.md"}]}]
    context = {"header_buttons": buttons, "pathto": lambda name, resource=0: name.split("/")[-1]}
    ext._notebook_buttons(app, doc, "page.html", context, None)
    assert (tmp_path / "html" / "notebooks" / "ch.ipynb").is_file()
    return buttons


def test_chapter_page_buttons_without_repository(ext: types.ModuleType, tmp_path: Path) -> None:
    buttons = _page(ext, tmp_path, "")
    assert [b["label"] for b in buttons] == ["download-buttons"]
    first = buttons[0]["buttons"][0]
    assert first["label"] == "download-notebook-button" and first["url"] == "ch.ipynb"


def test_chapter_page_buttons_with_repository(ext: types.ModuleType, tmp_path: Path) -> None:
    buttons = _page(ext, tmp_path, "https://github.com/o/r")
    launch = next(b for b in buttons if b["label"] == "launch-buttons")
    urls = {b["text"]: b["url"] for b in launch["buttons"]}
    assert urls == {"Binder": "https://mybinder.org/v2/gh/o/r/notebooks?urlpath=lab/tree/notebooks/ch.ipynb",
                    "Colab": "https://colab.research.google.com/github/o/r/blob/notebooks/notebooks/ch.ipynb"}


def test_companion_bibtex_parses(ext: types.ModuleType) -> None:
    from pybtex.database import parse_string

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf8"))
    entry = parse_string(ext.cff_to_bibtex(cff), "bibtex").entries["companion"]
    assert entry.type == "software"
    assert entry.fields["version"] == str(cff["version"])
    assert entry.fields["title"] == cff["title"]


def test_paper_bibtex_is_read_verbatim(ext: types.ModuleType) -> None:
    from pybtex.database import parse_string

    text = (ROOT / "book" / "references.bib").read_text(encoding="utf8")
    raw = ext.bib_entry(text, "borup2021teacher")
    assert raw in text and raw.startswith("@inproceedings")
    entry = parse_string(raw, "bibtex").entries["borup2021teacher"]
    assert entry.fields["year"] == "2021" and "Teacher Needs Guidance" in entry.fields["title"]
    with pytest.raises(KeyError):
        ext.bib_entry(text, "no_such_key")


def test_config_matches_its_run(ext: types.ModuleType) -> None:
    run = {"dataset": "fashion_mnist", "epochs": 6, "alphas": [0.0, 0.2], "device": "cpu", "amp": "bf16"}
    assert ext._config_matches({"dataset": "fashion_mnist", "epochs": 6, "alphas": [0.0, 0.2], "train": True}, run)
    assert not ext._config_matches({"dataset": "fashion_mnist", "epochs": 3, "alphas": [0.0, 0.2]}, run)
    assert not ext._config_matches({"train": True, "results_dir": "x", "epochs": 6}, run)  # too few shared
    assert ext._config_output({"results_dir": "../results/section5/run"}, "x") == "results/section5/run"
    assert ext._config_output({}, "smoke") == "runs/smoke"


def test_config_command(ext: types.ModuleType) -> None:
    notebooks = {"notebooks/a.md": {"lam", "gamma", "claims_mode"}, "notebooks/s5.md": {"dataset", "arch", "epochs"}}
    subs = {"run", "sweep", "train"}
    comment = ("A run.\nRun it with\n  python -m sdlib train -f configs/x.yaml \\\n"
               "      -o results/x --workers 2\nmore text")
    args = ("configs/x.yaml", {"dataset": "d", "arch": "a"}, comment)
    assert ext.config_command(*args, "runs/x", notebooks, subs) == (
        "python -m sdlib train -f configs/x.yaml -o results/x --workers 2")
    assert ext.config_command(*args, "results/y", notebooks, subs, force_out=True) == (
        "python -m sdlib train -f configs/x.yaml -o results/y --workers 2")
    assert ext.config_command("configs/g.yaml", {"grid": {"lam": [1, 2]}}, "", "runs/g", notebooks, subs) == (
        "python -m sdlib sweep notebooks/a.md -g configs/g.yaml -o runs/g")
    assert ext.config_command("configs/t.yaml", {"dataset": "d", "arch": "a"}, "", "runs/t", notebooks, subs) == (
        "python -m sdlib train -f configs/t.yaml -o runs/t")
    assert ext.config_command("configs/t.yaml", {"dataset": "d", "arch": "a"}, "", "runs/t", notebooks, {"run"}) == (
        "python -m sdlib run notebooks/s5.md -f configs/t.yaml -o runs/t")
    assert ext.config_command("configs/p.yaml", {"lam": 0.1}, "", "runs/p", notebooks, subs) == (
        "python -m sdlib run notebooks/a.md -f configs/p.yaml -o runs/p")
    assert ext.config_command("configs/q.yaml", {"nothing": 1}, "", "runs/q", notebooks, subs).startswith("not known")


def test_first_sentence(ext: types.ModuleType) -> None:
    assert ext._first_sentence("A run (see: here). More.") == "A run (see: here)."
    assert ext._first_sentence("Figure 5 (x: y): details follow") == "Figure 5 (x: y)"
    assert ext._first_sentence("word " * 60).endswith(" …") and len(ext._first_sentence("word " * 60)) <= 160


def test_json_value(ext: types.ModuleType) -> None:
    data = {"a": {"rows": [{"n": 1}, {"n": 8000}]}}
    assert ext.json_value(data, "a.rows.-1.n") == 8000
    with pytest.raises(KeyError):
        ext.json_value(data, "a.missing")


def test_bench_command_drops_where_to_write(ext: types.ModuleType) -> None:
    recorded = "python benchmarks/bench_krr.py --sizes 500 1000 --allow-dirty --out /tmp/x.json --repeats 2"
    assert ext.bench_command(recorded) == "python benchmarks/bench_krr.py --sizes 500 1000 --repeats 2"
    assert ext.bench_command("python b.py --out=/tmp/y.json") == "python b.py"


def _bench_data(p_n: float, p_tau: float) -> dict[str, Any]:
    ns, taus = [500, 1000, 2000], [10, 100, 1000]
    rows = [{"n": n, "ours": 1e-9 * n ** p_n, "kernelridge": 2e-9 * n ** p_n, "authors": 1e-7 * n ** p_n}
            for n in ns]
    return {"sizes": {"steps": 100, "m": 1000, "authors_timed_steps": 2, "rows": rows,
                      "slopes": {"ours": p_n, "kernelridge": p_n, "authors": p_n}},
            "steps": {"n": 2000, "kernelridge": 0.5, "rows": [{"steps": t, "ours": 0.1, "authors": 1e-2 * t ** p_tau}
                                                              for t in taus],
                      "slopes": {"ours": 0.0, "authors": p_tau}}}


def test_benchmark_figure_is_a_scalable_svg(ext: types.ModuleType) -> None:
    import xml.etree.ElementTree as ET

    svg = ext.benchmark_figure_svg(_bench_data(3.0, 1.0))
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg") and len(root.attrib["viewBox"].split()) == 4  # scales with the column
    # the same result file draws the same bytes (no date, fixed ids): the page is rebuilt only on change
    assert svg == ext.benchmark_figure_svg(_bench_data(3.0, 1.0))
    assert svg != ext.benchmark_figure_svg(_bench_data(2.0, 1.0))
    with pytest.raises(KeyError):
        ext.benchmark_figure_svg({"sizes": {"rows": []}})


def test_the_headline_sums_the_paper_columns(ext: types.SimpleNamespace) -> None:
    """``{sdlib-claims-summary}`` with ``:headline:``: the paper claims' totals in one sentence,
    counted from the same columns as the table (two chapters' counts, summed by hand here)."""
    cs = sys.modules["sdlib_book.claims_summary"]  # imported with the modules of the fixture

    heads = [h for h, _, _ in cs.SUMMARY_COLUMNS]
    a = [0] * len(heads)
    b = [0] * len(heads)
    a[heads.index("Paper ✓")], a[heads.index("Paper ✗")], a[heads.index("Observations")] = 5, 1, 7
    b[heads.index("Paper ✓")], b[heads.index("Stand-in ✓")] = 3, 2
    text = cs._headline([("x", a), ("y", b)]).astext()
    assert text == "8 of the paper's 9 claims checked at its setting reproduce (✓); 1 do not (✗)."
    b[heads.index("Paper ⟳")] = 2
    assert "and 2 did not converge within the steps taken (⟳)" in cs._headline([("x", a), ("y", b)]).astext()
