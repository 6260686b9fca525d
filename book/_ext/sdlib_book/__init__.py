"""Sphinx extension of the companion book (loaded through ``sphinx.local_extensions`` in _config.yml).

One module a feature; the helpers several of them use are in :mod:`sdlib_book._shared`.

===================  ==========================================================================
module               feature
===================  ==========================================================================
``deps``             1. pages re-read when the notebooks, files and folders they are made of change
``claims_summary``   2. ``{sdlib-claims-summary}``: the report's table of verdicts per chapter
``claims_tables``    the claims tables in full, ✗ linked to its erratum; ``{sdlib-claims-table}``
``parameters``       3. ``{sdlib-notebook-parameters}``: a chapter's parameters cell as a table
``html_fixes``       4.-7. duplicate scripts, the paper's numbers on the boxes, MathJax, ``\\tag``
``benchmarks``       8. ``{sdlib-benchmarks}``: every benchmark result file
``launch``           9. the repository, the download, Binder and Colab buttons
``export``           9. every chapter as an executed notebook that runs and reads anywhere
``myst_markdown``    9. MyST Markdown written out as plain Markdown (``names``: the book's names)
``reproduce``        10. ``{sdlib-reproduce}``: every result with its command (``commands``)
``citation``         11. ``{sdlib-citation}``: the paper's BibTeX entry and the companion's
``results_json``     12. ``{sdlib-json}`` and the benchmark's figure and comparison table
``integrity``        13. no false green: a failed build fails the next one too
===================  ==========================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

from . import (
    benchmarks,
    citation,
    claims_summary,
    claims_tables,
    deps,
    html_fixes,
    integrity,
    launch,
    parameters,
    reproduce,
    results_json,
)

#: (event, handler, priority) of every feature; Sphinx's default priority is 500.
EVENTS = (
    ("config-inited", launch._configure_repository, 400),  # before the theme reads its options
    ("config-inited", html_fixes._numfig_off, 900),
    ("builder-inited", integrity._start_build, 500),
    ("build-finished", integrity._finish_build, 500),
    ("env-purge-doc", deps._purge, 500),
    ("env-merge-info", deps._merge, 500),
    ("env-get-outdated", deps._outdated, 500),
    ("doctree-read", deps._record_glue_refs, 500),
    ("doctree-read", integrity._failed_chapter_page, 100),
    ("doctree-read", claims_tables._record_errata, 500),
    ("doctree-read", claims_tables._note_claims_outputs, 500),
    ("doctree-read", html_fixes._unnumber_proofs, 500),
    ("doctree-read", html_fixes._tags_outside_split, 500),
    ("doctree-read", html_fixes._book_equation_numbers, 500),
    ("doctree-read", reproduce._record_figures, 500),
    ("html-page-context", html_fixes._dedupe_scripts, 100),
    ("html-page-context", launch._notebook_buttons, 900),
)
#: Directives by name, and the placeholder node each may leave for its post-transform.
DIRECTIVES = {
    "sdlib-claims-summary": claims_summary.ClaimsSummaryDirective,
    "sdlib-claims-table": claims_tables.ClaimsTableDirective,
    "sdlib-notebook-parameters": parameters.NotebookParametersDirective,
    "sdlib-benchmarks": benchmarks.BenchmarksDirective,
    "sdlib-reproduce": reproduce.ReproduceDirective,
    "sdlib-citation": citation.CitationDirective,
    "sdlib-benchmark-figure": results_json.BenchmarkFigureDirective,
    "sdlib-benchmark-comparison": results_json.BenchmarkComparisonDirective,
}
NODES = (claims_summary.claims_summary, claims_tables.claims_table, reproduce.reproduce_table)
POST_TRANSFORMS = (claims_summary.FillClaimsSummary, claims_tables.FillClaimsTables, reproduce.FillReproduce,
                   html_fixes.MathInLinkTexts)
#: name, default, rebuild, types
CONFIG_VALUES = (
    ("sdlib_errata_doc", "book/errata", "env", [str]),      # the page whose sections the ✗ link to
    ("sdlib_notebooks_branch", "notebooks", "html", [str]),  # the branch Binder and Colab open
    ("sdlib_launch", {}, "html", []),                        # set by launch._configure_repository
)


def _static_files(app: Sphinx, config: Any) -> None:
    config.html_static_path = [*config.html_static_path, str(Path(__file__).parent / "static")]


def setup(app: Sphinx) -> dict[str, Any]:
    # MathJax on every page (feature 6): chapter titles with math appear in every page's navigation.
    app.set_html_assets_policy("always")
    app.connect("config-inited", _static_files)
    app.add_css_file("sdlib_book.css")
    for name, default, rebuild, types in CONFIG_VALUES:
        app.add_config_value(name, default, rebuild, types=types)
    for node in NODES:
        app.add_node(node)
    for name, directive in DIRECTIVES.items():
        app.add_directive(name, directive)
    for transform in POST_TRANSFORMS:
        app.add_post_transform(transform)
    app.add_role("sdlib-json", results_json._json_role)
    for event, handler, priority in EVENTS:
        app.connect(event, handler, priority=priority)
    return {"version": "0.2", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 3}
