"""``python -m sdlib``: the entry point of the command line, whose commands live in :mod:`sdlib.cli`.

Also the ``sdlib`` console script (``sdlib.__main__:main``). See :mod:`sdlib.cli` for the commands
``run``, ``params``, ``sweep`` and ``train``, their options and exit statuses.
"""

from __future__ import annotations

from sdlib.cli import COMMANDS, DRY_RUN, build_parser, exit_with, main

__all__ = ["COMMANDS", "DRY_RUN", "build_parser", "main"]

if __name__ == "__main__":
    exit_with(main())
