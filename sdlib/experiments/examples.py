"""The data of the paper's illustrative example (Section 4.5), in one place.

Inputs ``X = {0, 0.1, ..., 1.0}``; targets ``sin(2 pi x)`` plus Gaussian noise of standard deviation
0.5: the same eleven values as Mobahi, Farajtabar and Bartlett (2020), whose example the paper
follows. The kernel is ``exp(-gamma ||x - x'||^2)`` with ``gamma = 80`` (the paper prints
``gamma = 1/80``: the bandwidth written the other way round; see the book's errata), ``lam = 0.2``.
The quality of a fit is its mean squared error against the noiseless ``sin(2 pi x)`` on the grid
``0, 0.01, ..., 1.00``, which also serves as the validation set of ``alpha*`` (Algorithm 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["IllustrativeExample", "TARGETS", "illustrative_example"]

#: The eleven noisy targets of Section 4.5, in the order of ``X = 0, 0.1, ..., 1.0``.
TARGETS = (
    0.38476636465198066, 1.2333967683416893, 1.33232242218057, 0.69201594888895180,
    -0.29756145531871736, -0.24189291901377769, -0.7964485769175675, -0.9616480167034174,
    -0.49672509509916934, -0.3469066003991437, 0.5589512650600734,
)


@dataclass(frozen=True)
class IllustrativeExample:
    """Section 4.5's problem: training data, the evaluation grid and the paper's kernel and ``lam``."""

    X: NDArray[np.float64]        # (11, 1) training inputs
    y: NDArray[np.float64]        # (11,) noisy targets
    X_grid: NDArray[np.float64]   # (101, 1) evaluation / validation inputs
    f_grid: NDArray[np.float64]   # (101,) the noiseless sin(2 pi x) on the grid
    gamma: float = 80.0
    lam: float = 0.2

    def mse(self, predictions: NDArray[np.float64]) -> NDArray[np.float64]:
        """Mean squared error against ``sin(2 pi x)`` on the grid, over the last axis."""
        return np.mean((np.asarray(predictions) - self.f_grid) ** 2, axis=-1)


def illustrative_example(n_grid: int = 101) -> IllustrativeExample:
    """The data of Section 4.5 (see the module docstring); ``n_grid`` points on ``[0, 1]``."""
    if isinstance(n_grid, bool) or not isinstance(n_grid, (int, np.integer)) or n_grid < 2:
        raise ValueError(f"n_grid must be an integer >= 2, got n_grid={n_grid!r}")
    X = np.linspace(0.0, 1.0, len(TARGETS))[:, None]
    X_grid = np.linspace(0.0, 1.0, int(n_grid))[:, None]
    return IllustrativeExample(X=X, y=np.array(TARGETS), X_grid=X_grid, f_grid=np.sin(2 * np.pi * X_grid[:, 0]))
