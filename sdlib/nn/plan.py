"""The fits of a Section 5 experiment and what each reads: the plan the task graph schedules.

The fits of one seed ``s`` (Section 5.1; :mod:`sdlib.nn.alpha_hat` describes the chains):

* ``first`` (step 1): eq. (18) with alpha = 1, no teacher; shared by every chain of the seed;
* ``alpha=a`` step tau >= 2: teacher = that chain's step tau - 1 (the first model at tau = 2);
* ``alpha_hat/alpha=0`` step tau: the alpha = 0 student of the alpha-hat chain's step tau - 1;
* ``alpha_hat`` step tau: needs its ``alpha = 0`` fit of step tau and the first model (their
  validation probabilities give alpha-hat by eq. 16) and its own step tau - 1 as the teacher.

Every fit of step tau of seed s starts from the same initialisation and sees the same batches and
augmentations (:func:`fit_seed`), whatever its chain. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sdlib.nn.config import ExperimentConfig, chain_name

__all__ = ["AH", "ALPHA0", "FitKey", "Task", "plan", "teacher_of", "needs_of", "alpha_of", "fit_seed"]

#: The alpha-hat chain, and its alpha = 0 fits.
AH = chain_name(None)
ALPHA0 = f"{AH}/alpha=0"


def fit_seed(seed: int, step: int) -> int:
    """The one integer seeding every fit of step ``step`` of seed ``seed`` (initialisation, data order)."""
    return 1000 * seed + step


@dataclass(frozen=True)
class FitKey:
    """One fit: ``chain`` is ``"first"`` (step 1), ``"alpha=a"``, ``"alpha_hat/alpha=0"`` or ``"alpha_hat"``."""

    seed: int
    chain: str
    step: int

    def path(self, ckpt_dir: Path) -> Path:
        d = Path(ckpt_dir) / f"seed{self.seed}"
        if self.chain == "first":
            return d / "first.pt"
        if self.chain == ALPHA0:
            return d / AH / f"step{self.step}_alpha0.pt"
        return d / self.chain / f"step{self.step}.pt"

    @property
    def name(self) -> str:
        return f"seed{self.seed}-{self.chain}-step{self.step}"


def teacher_of(key: FitKey) -> FitKey | None:
    """The fit whose model is ``key``'s teacher (None for the first model)."""
    if key.chain == "first":
        return None
    if key.step == 2:
        return FitKey(key.seed, "first", 1)
    return FitKey(key.seed, AH if key.chain in (AH, ALPHA0) else key.chain, key.step - 1)


def needs_of(key: FitKey) -> list[FitKey]:
    """The fits whose checkpoints ``key`` reads: its teacher, and for alpha-hat its alpha = 0 fit and
    the first model."""
    out = [t] if (t := teacher_of(key)) is not None else []
    if key.chain == AH:
        out += [FitKey(key.seed, ALPHA0, key.step), FitKey(key.seed, "first", 1)]
    return list(dict.fromkeys(out))


def alpha_of(key: FitKey) -> float | None:
    """The weight of eq. (18) of a fit: 1 for the first model, 0 for alpha-hat's helper, ``a`` for
    ``alpha=a``; None for the alpha-hat fit (estimated from the fits it needs)."""
    if key.chain == "first":
        return 1.0
    if key.chain == ALPHA0:
        return 0.0
    if key.chain == AH:
        return None
    return float(key.chain.split("=", 1)[1])


@dataclass
class Task:
    """Fits trained by one call (one fit, or the stack of a step with ``chains_together``)."""

    fits: list[FitKey]
    deps: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        f = self.fits[0]
        return f.name if len(self.fits) == 1 else f"seed{f.seed}-together-step{f.step}"


def plan(cfg: ExperimentConfig) -> list[Task]:
    """The tasks of ``cfg`` in a topological order, each with the names of the tasks it waits for."""
    tasks: list[Task] = []
    for s in cfg.seeds:
        tasks.append(Task([FitKey(s, "first", 1)]))
        for tau in range(2, cfg.steps + 1):
            group = [FitKey(s, c, tau) for c in cfg.chains[:-1]] + [FitKey(s, ALPHA0, tau)]
            if cfg.chains_together:
                tasks.append(Task(group))
            else:
                tasks.extend(Task([k]) for k in group)
            tasks.append(Task([FitKey(s, AH, tau)]))
    owner = {k: t.name for t in tasks for k in t.fits}
    for t in tasks:
        t.deps = list(dict.fromkeys(owner[d] for k in t.fits for d in needs_of(k) if owner[d] != t.name))
    return tasks
