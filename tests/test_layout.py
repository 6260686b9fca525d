"""The package's walls: import arrows point one way, modules stay small, the design page is true.

The import graph is read from the source (``ast``), not by importing: every ``import`` of a module
of ``sdlib`` or of the book's extension counts as an arrow, wherever it stands (at the top, inside a
function, under ``TYPE_CHECKING``), so a lazy import cannot hide a circle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXT = ROOT / "book" / "_ext"

#: Layers from the ground up: a module may import its own layer's modules and lower layers' only.
LAYERS: list[tuple[str, ...]] = [
    ("sdlib.errors", "sdlib.provenance"),
    ("sdlib.krr",),
    ("sdlib.experiments", "sdlib.ntk", "sdlib.nn"),
    ("sdlib.chapters", "sdlib.sweeps"),
    ("sdlib.cli", "sdlib.__main__", "sdlib"),
]
#: Modules that state in their docstring why they are longer than this.
MAX_LINES = 500
LONG_REASON = "Longer than 500 lines because"


def _modules() -> dict[str, Path]:
    """Every module of sdlib and of the book extension, by dotted name."""
    found: dict[str, Path] = {}
    for path in sorted((ROOT / "sdlib").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    for path in sorted(EXT.rglob("*.py")):
        parts = path.relative_to(EXT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _ours(name: str) -> bool:
    return name == "sdlib" or name.startswith("sdlib.")


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str, path: Path) -> set[str]:
    """The project's modules that ``name`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    tree = ast.parse(path.read_text(encoding="utf8"))
    out: set[str] = set()
    package = _package_of(name, path)
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            # the longest prefix that is one of our modules
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layer(name: str) -> int:
    best, level = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best:
                best, level = len(p), i
    return level


def test_the_oracle_of_this_test_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    cycles = _cycles(GRAPH)
    assert not cycles, "import circles (every import counts, lazy or TYPE_CHECKING): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_every_arrow_points_down_the_layers() -> None:
    bad = []
    for name, targets in GRAPH.items():
        if not _ours(name):
            continue
        for t in targets:
            if _ours(t) and t != "sdlib" and _layer(t) > _layer(name):
                bad.append(f"{name} (layer {_layer(name)}) imports {t} (layer {_layer(t)})")
    assert not bad, "\n".join(bad)


def test_every_module_has_a_layer() -> None:
    assert not [n for n in MODULES if _ours(n) and _layer(n) < 0]


def test_nothing_in_the_package_imports_the_book_the_tests_or_the_notebooks() -> None:
    bad = []
    for name, path in MODULES.items():
        if not _ours(name):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{name}: {m}" for m in mods if m.split(".")[0] in {"tests", "notebooks", "sdlib_book", "book"}]
    assert not bad, bad


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_small_or_say_why(name: str) -> None:
    path = MODULES[name]
    n = len(path.read_text(encoding="utf8").splitlines())
    if n <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf8"))) or ""
    assert LONG_REASON in doc, (f"{path.relative_to(ROOT)} has {n} lines (> {MAX_LINES}) and its docstring does not "
                                f"say why ('{LONG_REASON} ...')")


def _design_table() -> set[str]:
    text = (ROOT / "book" / "design.md").read_text(encoding="utf8")
    return set(re.findall(r"^\| `(sdlib[A-Za-z0-9_.]*)` \|", text, flags=re.M))


def test_the_design_page_lists_every_module_and_no_other() -> None:
    listed = _design_table()
    public = {n for n in MODULES if not n.rpartition(".")[2].startswith("__")}
    missing = sorted(public - listed)
    stale = sorted(listed - public)
    assert not missing and not stale, f"book/design.md's module table: missing {missing}, lists what is gone {stale}"


def test_every_package_and_module_has_a_docstring() -> None:
    bare = [n for n, p in MODULES.items() if not ast.get_docstring(ast.parse(p.read_text(encoding="utf8")))]
    assert not bare, bare
