"""Feature 10: ``{sdlib-reproduce}``.

Every result the book shows (each claim of each chapter's ledger, each figure caption, the other
numbers each chapter glues, each committed run under ``results/`` matched to its configuration
under ``configs/``, each benchmark result) with the command that recomputes it, its parameters,
its time when last run and its output path. Generated from the glue caches, the configuration and
result files; re-read when any of them changes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective

from ._shared import (
    FIGURES,
    _code,
    _commit,
    _executed_notebook,
    _glue_cache,
    _json_files,
    _ledger,
    _note_deps,
    _page_link,
    _parameter_names,
    _rel,
    _seconds,
    _simple_table,
    _store,
    _title_nodes,
    _toc_order,
    _wants_gpu,
    logger,
)
from .commands import (
    _config_comment,
    _config_matches,
    _config_output,
    _first_sentence,
    _subcommands,
    bench_command,
    config_command,
)
from .deps import _watch


def _record_figures(app: Sphinx, doctree: nodes.document) -> None:
    """Note the figure captions of every page (the reproduce page lists them)."""
    _store(app.env, FIGURES)[app.env.docname] = [_caption(c) for f in doctree.findall(nodes.figure)
                                                 for c in f.findall(nodes.caption)]


def _caption(caption: nodes.caption) -> nodes.paragraph:
    """A figure's caption as a paragraph: its text, and its math as math (typeset on this page too);
    other inline markup (a citation, a reference) as its text, resolved on the page it came from."""
    out = nodes.paragraph()
    for child in caption.children:
        if isinstance(child, (nodes.math, nodes.Text)):
            out += child.deepcopy()
        else:
            out += nodes.Text(child.astext())
    return out


class reproduce_table(nodes.General, nodes.Element):  # noqa: N801 - docutils node naming
    """Placeholder replaced by the reproduction tables when the page is written."""


class ReproduceDirective(SphinxDirective):
    """``{sdlib-reproduce}`` with options ``:results:``, ``:configs:``, ``:benchmarks:`` (folders)."""

    option_spec = {"results": directives.unchanged, "configs": directives.unchanged,
                   "benchmarks": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        src = Path(self.env.srcdir)
        folders = {k: self.options.get(k, d) for k, d in
                   (("results", "results"), ("configs", "configs"), ("benchmarks", "benchmarks/results"))}
        files = {
            "results": _watch(self.env, self.env.docname, src / folders["results"], "**/results.json"),
            "configs": _watch(self.env, self.env.docname, src / folders["configs"], "*.yaml"),
            "benchmarks": _watch(self.env, self.env.docname, src / folders["benchmarks"], "*.json"),
        }
        # Every other page may hold results: re-read this one whenever any is re-read.
        _note_deps(self.env, self.env.docname, sorted(set(self.env.found_docs) - {self.env.docname}))
        node = reproduce_table(files={k: [str(p) for p in v] for k, v in files.items()})
        self.set_source_info(node)
        return [node]


def _count_of(k: int, what: str) -> str:
    return f"{k} {what}" + ("" if k == 1 else "s")


def _claim_records(glue: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    from sdlib.chapters import claims as claims_api

    return [(prefix, r) for prefix in claims_api.glue_prefixes(glue) for r in _ledger(glue, prefix)]


def _other_numbers(glue: dict[str, Any], records: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The glued keys that are neither a claim's value or status, a ledger, a table nor a figure."""
    from sdlib.chapters import claims as claims_api

    claim_keys = {k for prefix, r in records
                  for k in (claims_api.value_key(prefix, r["key"]), claims_api.status_key(prefix, r["key"]))}
    tables = {claims_api.table_key(p) for p in claims_api.glue_prefixes(glue)}
    return sorted(k for k in glue if k not in claim_keys and not k.endswith(claims_api.ledger_key(""))
                  and k not in tables
                  and "image/png" not in (glue[k].get("data") or {})
                  and "image/svg+xml" not in (glue[k].get("data") or {}))


class _Report:
    """The reproduce page's tables, built in steps: chapters, committed runs, benchmarks."""

    def __init__(self, app: Sphinx, document: nodes.document) -> None:
        self.app, self.env, self.document = app, app.env, document
        self.src = Path(self.env.srcdir)
        self.cores = os.cpu_count()
        self.here = self.env.docname

    def chapters(self) -> list[str]:
        return [doc for doc in _toc_order(self.env, self.app.config.root_doc)
                if doc != self.here and _executed_notebook(self.app, doc) is not None]

    def build(self, files: dict[str, list[str]]) -> list[nodes.Node]:
        summary, sections = [], []
        for doc in self.chapters():
            row, section = self.chapter(doc)
            summary.append(row)
            sections.append(section)
        out: list[nodes.Node] = [_simple_table(
            ["Chapter", "Results", "Command", "Parameters", f"Time (last execution; {self.cores} CPU cores)",
             "GPU", "Output"], summary, ["sdlib-reproduce", "sdlib-reproduce-summary"])]
        out += self.runs(files)
        out += self.benchmarks(files)
        return out + sections

    # -- one chapter: its summary row and its section of results
    def chapter(self, doc: str) -> tuple[list[nodes.Node | str], nodes.section]:
        from myst_nb.sphinx_ import NbMetadataCollector

        from sdlib.chapters import claims as claims_api

        glue = _glue_cache(self.app, doc)
        path = _rel(self.env.doc2path(doc), self.src)
        name = Path(path).stem
        outdir = f"runs/{name}"
        records = _claim_records(glue)
        other = _other_numbers(glue, records)
        captions = (getattr(self.env, FIGURES, None) or {}).get(doc, [])
        exec_data = NbMetadataCollector.get_exec_data(self.env, doc) or {}
        runtime = _seconds(exec_data.get("runtime")) if exec_data else "not executed in this build"
        command = f"python -m sdlib run {path} -o {outdir}"
        counts = ((len(records), "claim"), (len(captions), "figure"), (len(other), "other number"))
        row: list[nodes.Node | str] = [
            nodes.paragraph("", "", _page_link(self.app, self.here, doc)),
            ", ".join(_count_of(k, w) for k, w in counts), _code(command), "the defaults of its parameters cell",
            runtime, "optional (parameter device; see the runs below)" if _wants_gpu(self.app, doc) else "not needed",
            _code(f"{outdir}/results.json")]
        rows: list[list[nodes.Node | str]] = [
            [r.get("statement", ""), r.get("kind", ""), r.get("where", ""),
             _code(f"claims: {claims_api.value_key(prefix, r['key'])}")] for prefix, r in records]
        rows += [[cap.deepcopy(), "figure", "", _code(f"{outdir}/figures/")] for cap in captions]
        if other:
            rows.append([f"{len(other)} further numbers quoted in the prose", "numbers", "",
                         _code("results: " + ", ".join(other))])
        sec = nodes.section(ids=[f"reproduce-{name}"])
        sec += nodes.title("", "", *_title_nodes(self.env, doc))
        sec += nodes.paragraph("", "", nodes.Text("Recomputed by "), nodes.literal(text=command),
                               nodes.Text(f" (about {runtime} when last executed for this book; this "
                                          f"build ran on {self.cores} logical CPU cores); each row is an entry of "),
                               nodes.literal(text=f"{outdir}/results.json"), nodes.Text("."))
        if rows:
            sec += _simple_table(["Result", "Kind", "In the paper", "Output"], rows, ["sdlib-reproduce"])
        return row, sec

    # -- committed runs and the configurations that make them
    def _configs(self, files: list[str]) -> dict[Path, Any]:
        import yaml

        configs = {}
        for c in files:
            try:
                configs[Path(c)] = yaml.safe_load(Path(c).read_text(encoding="utf8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                logger.warning(f"sdlib-reproduce: cannot read {c}: {exc}", location=self.document)
        return configs

    def runs(self, files: dict[str, list[str]]) -> list[nodes.Node]:
        configs = self._configs(files["configs"])
        subcommands = _subcommands()
        notebooks = {_rel(self.env.doc2path(d), self.src): _parameter_names(self.env.doc2path(d))
                     for d in self.chapters()}

        def command_for(cfg: Path | None, out_dir: str, committed: bool) -> str:
            if cfg is None:
                return "not known: no configuration file matches its parameters"
            return config_command(_rel(cfg, self.src), configs[cfg], _config_comment(cfg), out_dir, notebooks,
                                  subcommands, force_out=committed)

        matched: set[Path] = set()
        run_rows: list[list[nodes.Node | str]] = []
        for f, doc in _json_files(files["results"], "sdlib-reproduce", self.document):
            params, prov = doc.get("parameters") or {}, doc.get("provenance") or {}
            cfg = next((p for p, c in configs.items() if isinstance(c, dict) and _config_matches(c, params)), None)
            matched.update([cfg] if cfg is not None else [])
            folder = _rel(f.parent, self.src)
            device = str(prov.get("device", ""))
            when = f"{_seconds(prov.get('seconds'))} ({device})"
            on_gpu = device.startswith("cuda")
            run_rows.append([_code(f"{folder}/results.json"),
                             _first_sentence(_config_comment(cfg)) if cfg else str(doc.get("kind", "")),
                             _code(command_for(cfg, folder, True)),
                             _rel(cfg, self.src) if cfg else "none matches; its parameters are in results.json",
                             "" if on_gpu else when, when if on_gpu else "", _commit(prov)])
        for cfg in sorted(set(configs) - matched):
            rel = _rel(cfg, self.src)
            run_rows.append([f"not run (no committed result for {rel})", _first_sentence(_config_comment(cfg)),
                             _code(command_for(cfg, _config_output(configs[cfg], cfg.stem), False)),
                             rel, "", "", ""])
        if not run_rows:
            return []
        return [nodes.rubric(text="Committed runs and their configurations"),
                _simple_table(["Output", "What it is", "Command", "Parameters file", "Time on a CPU",
                               "Time on a GPU", "Made from commit"], run_rows, ["sdlib-reproduce"])]

    # -- benchmarks
    def benchmarks(self, files: dict[str, list[str]]) -> list[nodes.Node]:
        bench_rows: list[list[nodes.Node | str]] = []
        for f, data in _json_files(files["benchmarks"], "sdlib-reproduce", self.document):
            prov = data.get("provenance") or {}
            name = data.get("benchmark") or str(data.get("kind", "")).rsplit("/", 1)[-1]
            command = (bench_command(data["command"]) if data.get("command") else
                       f"python benchmarks/bench_{name}.py" if (self.src / f"benchmarks/bench_{name}.py").exists()
                       else "not recorded")
            params = prov.get("parameters") or {}
            bench_rows.append([_code(_rel(f, self.src)), data.get("title") or f"speed benchmark {name!r}",
                               _code(command), ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults",
                               f"{_seconds(prov.get('seconds'))} ({prov.get('device', '')})", _commit(prov)])
        if not bench_rows:
            return []
        return [nodes.rubric(text="Benchmarks"),
                _simple_table(["Output", "What it is", "Command", "Parameters", "Time", "Made from commit"],
                              bench_rows, ["sdlib-reproduce"])]


class FillReproduce(SphinxPostTransform):
    """Replace each ``reproduce_table`` node by the tables (after every notebook was executed)."""

    default_priority = 6

    def apply(self, **kwargs: Any) -> None:
        for node in list(self.document.findall(reproduce_table)):
            node.replace_self(_Report(self.app, self.document).build(node["files"]))
