# IPython kernel settings of the companion's environment: `make` copies this file to
# .venv/etc/ipython/ipython_kernel_config.py, where every kernel of .venv reads it (the book's
# build, nbval, `python -m sdlib run`, `make lab`).
import os

# One OpenMP thread for torch (and anything else built on OpenMP) in the chapters: their networks
# are small, and on busy cores torch's default of a thread per core oversubscribes them (a width-4096
# fit of the NTK chapter took 240 s instead of 9 s on a loaded 2-core machine). numpy's OpenBLAS
# falls back on OMP_NUM_THREADS when OPENBLAS_NUM_THREADS is unset, so that one is pinned to every
# core this kernel may use, as before. A value already set by the user wins.
if "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(cores))

c = get_config()  # noqa: F821 - provided by IPython when it reads this file
# Figures are PNGs at twice their pixel density ("retina": the image carries its display size, so
# it stays sharp on high-density screens and in the PDF), on an opaque white background, so that
# they stay legible in the book's dark mode.
c.InlineBackend.figure_formats = {"retina"}
c.InlineBackend.rc = {"figure.facecolor": "white", "savefig.facecolor": "white", "savefig.transparent": False}
