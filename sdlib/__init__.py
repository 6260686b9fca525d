from sdlib.krr import KernelSelfDistillation

__all__ = ["KernelSelfDistillation"]
__version__ = "0.1.0"
