"""Feature 9, the buttons: the repository, and the download, Binder and Colab buttons of a chapter.

While ``repository.url`` is the placeholder of _config.yml (or not a GitHub URL), no button points
at it: the theme's repository, issues and edit buttons and Thebe are switched off
(``BOOK_REPOSITORY_URL`` overrides the URL: the Pages workflow sets it). Every chapter's executed
notebook is written next to its page (:mod:`sdlib_book.export`); the page's download button
offers it, and, once the repository is known, Binder and Colab buttons open it on the branch
``sdlib_notebooks_branch`` that the Pages workflow pushes the notebooks to.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

from ._shared import _executed_notebook, _glue_cache, _wants_gpu, logger
from .export import ExportContext, export_notebook

#: A repository URL containing this (any case) is the placeholder of _config.yml, not a repository.
PLACEHOLDER_MARK = "your-"
#: Launch providers whose buttons this extension draws itself (pointing at the exported notebooks).
_OWN_LAUNCHERS = ("binderhub_url", "colab_url", "jupyterhub_url", "deepnote_url", "jupyterlite_url")
_REPO_BUTTONS = ("use_repository_button", "use_issues_button", "use_edit_page_button", "use_source_button")
#: Environment variable that overrides ``repository.url`` (the Pages workflow sets it to the
#: repository it runs in, so that a fork publishes working buttons without editing _config.yml).
REPOSITORY_ENV = "BOOK_REPOSITORY_URL"


def repository_is_placeholder(url: str | None) -> bool:
    """True for an empty URL or the placeholder of _config.yml (no launch button may point at it)."""
    return not url or PLACEHOLDER_MARK in url.lower()


def _github_parts(url: str) -> tuple[str, str] | None:
    m = re.match(r"^https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$", url)
    return (m[1], m[2]) if m else None


def _configure_repository(app: Sphinx, config: Any) -> None:
    """Settle the repository once: its URL, or nothing at all while the URL is the placeholder.

    The theme's own Binder/Colab buttons point at the Jupytext sources (or at the nbval reference
    notebooks), which cannot run in Colab; they are switched off and :func:`_notebook_buttons` draws
    buttons that open the exported notebooks instead. While ``repository.url`` is the placeholder,
    every button that would point at it (repository, issues, edit, Binder, Colab, Thebe's live code)
    is switched off.
    """
    opts = dict(config.html_theme_options or {})
    url = (os.environ.get(REPOSITORY_ENV, "").strip() or str(opts.get("repository_url") or "")).rstrip("/")
    launch = dict(opts.get("launch_buttons") or {})
    providers = {k: str(launch.pop(k, "") or "").rstrip("/") for k in _OWN_LAUNCHERS}
    if repository_is_placeholder(url) or _github_parts(url) is None:
        if url and not repository_is_placeholder(url):
            logger.warning(f"repository.url {url!r} is not https://github.com/OWNER/NAME: no launch buttons")
        url = ""
        opts.pop("repository_url", None)
        for key in _REPO_BUTTONS:
            opts[key] = False
        launch["thebe"] = False
    else:
        opts["repository_url"] = url
    opts["launch_buttons"] = launch
    config.html_theme_options = opts
    config.sdlib_launch = {"repository": url, "binderhub_url": providers["binderhub_url"],
                           "colab_url": providers["colab_url"]}



def _execution_cache(app: Sphinx) -> Path | None:
    """myst-nb's execution cache, when the notebooks are executed in ``cache`` mode."""
    config = app.env.mystnb_config  # type: ignore[attr-defined]
    if getattr(config, "execution_mode", None) != "cache" or not getattr(config, "execution_cache_path", None):
        return None
    return Path(app.srcdir, config.execution_cache_path)


def _download_button(buttons: list[dict[str, Any]], url: str) -> None:
    """The page's download menu offers the executed notebook first (instead of the theme's)."""
    download = next((b for b in buttons if b.get("label") == "download-buttons"), None)
    if download is None:
        return
    download["buttons"] = [b for b in download["buttons"] if b.get("label") != "download-notebook-button"]
    download["buttons"].insert(0, {
        "type": "link", "url": url, "text": ".ipynb", "icon": "fas fa-code",
        "tooltip": "Download this chapter as an executed notebook (it runs in Jupyter and in Colab)",
        "label": "download-notebook-button",
    })


def _launch_links(launch: dict[str, str], branch: str, rel: str) -> list[dict[str, str]]:
    """Binder and Colab buttons that open the exported notebook ``rel`` on the notebooks branch."""
    parts = _github_parts(launch["repository"]) if launch["repository"] else None
    if parts is None:
        return []
    org, repo = parts
    links = []
    if launch["binderhub_url"]:
        links.append({"type": "link", "text": "Binder", "tooltip": "Launch this notebook on Binder",
                      "icon": "_static/images/logo_binder.svg", "label": "launch-binder-button",
                      "url": f"{launch['binderhub_url']}/v2/gh/{org}/{repo}/{branch}?urlpath=lab/tree/{rel}"})
    if launch["colab_url"]:
        links.append({"type": "link", "text": "Colab", "tooltip": "Open this notebook in Google Colab",
                      "icon": "_static/images/logo_colab.png", "label": "launch-colab-button",
                      "url": f"{launch['colab_url']}/github/{org}/{repo}/blob/{branch}/{rel}"})
    return links


def _notebook_buttons(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                      doctree: Any) -> None:
    """Export a chapter's executed notebook next to its page; download, Binder and Colab buttons."""
    executed = _executed_notebook(app, pagename)
    buttons = context.get("header_buttons")
    if executed is None or buttons is None or app.builder.format != "html" or app.builder.name != "html":
        return
    launch = app.config.sdlib_launch
    branch = app.config.sdlib_notebooks_branch
    rel = pagename + ".ipynb"
    export_notebook(executed, Path(app.outdir, *rel.split("/")), repository=launch["repository"],
                    branch=branch, gpu=_wants_gpu(app, pagename), glue=_glue_cache(app, pagename),
                    cache=_execution_cache(app), context=ExportContext.of(app, pagename))
    _download_button(buttons, context["pathto"](rel, 1))
    links = _launch_links(launch, branch, rel)
    if not links:
        return
    group = next((b for b in buttons if b.get("label") == "launch-buttons"), None)
    if group is None:
        group = {"type": "group", "tooltip": "Launch interactive content", "icon": "fas fa-rocket",
                 "buttons": [], "label": "launch-buttons"}
        buttons.append(group)
    group["buttons"][:0] = links
