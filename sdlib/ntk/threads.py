"""Torch's intra-op threads for the NTK package's work: one unless ``SDLIB_TORCH_THREADS`` says otherwise.

The fits, empirical kernels, paths and comparisons of :mod:`sdlib.ntk` run under
:func:`few_torch_threads`; torch's setting is restored afterwards. Small fits on busy cores are
otherwise oversubscribed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

__all__ = ["TORCH_THREADS_ENV", "torch_threads", "few_torch_threads"]

#: Environment variable: torch's intra-op threads for this package's fits and kernels (default 1).
TORCH_THREADS_ENV = "SDLIB_TORCH_THREADS"


def torch_threads() -> int:
    """The number of threads ``SDLIB_TORCH_THREADS`` asks for (default 1); anything else than an
    integer >= 1 is an error naming the variable."""
    raw = os.environ.get(TORCH_THREADS_ENV, "1")
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{TORCH_THREADS_ENV} must be an integer >= 1, got {TORCH_THREADS_ENV}={raw!r}")
    return n


def few_torch_threads(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``func`` with torch's intra-op threads set to ``SDLIB_TORCH_THREADS`` (default 1), then
    restore them. The fits here are small (networks of thousands to millions of parameters on a
    few hundred points): on a machine whose cores are busy, torch's default of one thread per core
    oversubscribes them and a fit becomes some thirtyfold slower, while one thread slows in
    proportion to the load. Set the variable higher for large problems on an idle machine."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch  # on call: `import sdlib.ntk` needs no torch (the analytic kernels are numpy)

        before, wanted = torch.get_num_threads(), torch_threads()
        if before == wanted:
            return func(*args, **kwargs)
        torch.set_num_threads(wanted)
        try:
            return func(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper
