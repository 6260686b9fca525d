"""Self-distillation of kernel ridge regression in closed form, and of neural networks (Section 5)."""

from typing import TYPE_CHECKING, Any

__all__ = ["KernelSelfDistillation"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from sdlib.krr.estimator import KernelSelfDistillation


def __getattr__(name: str) -> Any:
    # PEP 562: scikit-learn is imported on first use, not by every `python -m sdlib` process.
    if name == "KernelSelfDistillation":
        from sdlib.krr.estimator import KernelSelfDistillation

        return KernelSelfDistillation
    raise AttributeError(f"module 'sdlib' has no attribute {name!r}")
