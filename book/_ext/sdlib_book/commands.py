"""The commands that recompute a result, for the reproduce page (feature 10): a configuration's
command (from its own comment, or from what it configures), and a benchmark's recorded command
without the options that only say where it wrote."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sdlib.provenance import recomputing_argv


def _first_sentence(comment: str, limit: int = 160) -> str:
    """The first clause of a comment: up to the first '. ' or ': ' outside parentheses."""
    text = " ".join(comment.split())
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and ch in ".:" and (i + 1 == len(text) or text[i + 1] == " "):
            text = text[: i + (ch == ".")]
            break
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + " …"


def _config_matches(cfg: dict[str, Any], params: dict[str, Any]) -> bool:
    """A run's parameters agree with every key of ``cfg`` they have (the chapter's own keys, such
    as ``train``, are not the run's), and they have most of them."""
    shared = [k for k in cfg if k in params]
    return len(shared) * 2 > len(cfg) and all(params[k] == cfg[k] for k in shared)


def _config_output(cfg: dict[str, Any], stem: str) -> str:
    """Where a configuration's run goes: its ``results_dir`` (relative to notebooks/), else runs/."""
    target = cfg.get("results_dir")
    if isinstance(target, str) and target:
        return Path(os.path.normpath(Path("notebooks", target))).as_posix()
    return f"runs/{stem}"


_COMMAND = re.compile(r"python3? -m sdlib[\w.]*(?: +[\w./=:-]+)+")


def _subcommands() -> set[str]:
    """The subcommands of ``python -m sdlib`` (read from the package, not typed here)."""
    try:
        from sdlib import __main__ as cli
    except ImportError:
        return set()
    return set(getattr(cli, "COMMANDS", {}) or {})


def config_command(rel: str, cfg: dict[str, Any], comment: str, out: str,
                   notebooks: dict[str, set[str]], subcommands: set[str], *, force_out: bool = False) -> str:
    """The command that runs the configuration ``rel`` (a path such as configs/NAME.yaml).

    1. The command the file's own comment gives for it (``python -m sdlib ... configs/NAME.yaml ...``),
       its output folder replaced by ``out`` when ``force_out`` (a committed run's folder).
    2. A grid (``grid:`` or ``points:``) of the chapter whose parameters it sweeps: ``sdlib sweep``.
    3. A Section 5 experiment (``dataset`` and ``arch``): ``sdlib train``, where the package has it.
    4. Parameters of the chapter whose parameters cell has every key: ``sdlib run``.
    """
    # one logical line at a time (a command may continue over lines ending in a backslash)
    logical = re.sub(r"\\\n\s*", " ", comment).splitlines()
    for m in (m for line in logical for m in _COMMAND.finditer(line)):
        if rel in m[0].split():
            tokens = m[0].split()
            if force_out and "-o" in tokens and tokens.index("-o") + 1 < len(tokens):
                tokens[tokens.index("-o") + 1] = out
            return " ".join(tokens)
    keys = set(cfg)
    if keys & {"grid", "points"}:
        swept = set(cfg.get("grid") or {}) | {k for p in (cfg.get("points") or []) if isinstance(p, dict) for k in p}
        nb = next((n for n, names in notebooks.items() if swept and swept <= names), None)
        if nb and "sweep" in subcommands:
            return f"python -m sdlib sweep {nb} -g {rel} -o {out}"
    elif {"dataset", "arch"} <= keys and "train" in subcommands:
        return f"python -m sdlib train -f {rel} -o {out}"
    nb = next((n for n, names in notebooks.items() if keys and keys <= names), None)
    if nb:
        return f"python -m sdlib run {nb} -f {rel} -o {out}"
    return "not known: see the file's comment"


def _config_comment(path: Path) -> str:
    """The comment heading a configuration file, one line per comment line."""
    lines = []
    for line in path.read_text(encoding="utf8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return "\n".join(lines)



def bench_command(command: str) -> str:
    """The command that recomputes a committed benchmark file: its recorded command without the
    options that only say where to write (``--out``) or that the tree may be dirty."""
    return " ".join(recomputing_argv(command.split()))

