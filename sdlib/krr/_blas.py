"""The engine's two kernels of work: one Cholesky factorisation and, per step, two triangular solves.

* :func:`one_thread`: BLAS on one thread for the sequential per-step work. A step is bound by
  reading the factor from memory once; split over threads, each of its calls waits for every
  thread, and when another process holds a core the waits dominate (measured in
  ``benchmarks/bench_krr.py``, idle and loaded). The limit is local (a context manager) and cheap.
* :func:`cho_solve_vector`: ``(L L^T)^-1 t`` by two BLAS ``trsv`` calls on the whole factor.
* :func:`cholesky_inplace`: LAPACK ``potrf`` on every core up to :data:`BLOCKED_FROM`; above, a
  right-looking blocked Cholesky from the same library's ``potrf``, ``trsm``, ``syrk`` and ``gemm``,
  in place, on every core. The reason is a defect of OpenBLAS's threaded ``syrk`` (the trailing
  update inside its threaded ``potrf``): each thread packs its whole share of the columns into one
  fixed-size buffer (``BUFFER_SIZE``, 32 MiB in scipy's wheel), without the limit the ``gemm``
  driver keeps. With 2 threads and the Haswell kernels' blocking (panels 256 deep: 31 MiB of the
  buffer hold 15,872 columns), the first thread's ~0.71 n columns overflow it from n of about
  22,700: it writes past the buffer into whatever memory follows (a segmentation fault in
  ``dgemm_otcopy`` under ``dsyrk_thread_LN`` in ``fit`` at n = 40,000; elsewhere, possibly,
  silent corruption). Here every ``syrk`` updates at most :data:`CHUNK` columns, far inside that
  buffer for any thread count; ``gemm`` does the rest. The factor is the same: the same kernels
  add the same products in the same order (bit for bit, as measured at n = 8,000).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import linalg
from scipy.linalg import cython_blas, cython_lapack

__all__ = ["BLOCKED_FROM", "CHUNK", "PANEL", "cho_solve_vector", "cholesky_inplace", "one_thread"]

FloatArray = NDArray[np.float64]

#: From this n on, :func:`cholesky_inplace` factorises by blocks (see the module's docstring): well
#: below the smallest n (about 22,700) at which the threaded ``potrf`` overflows its buffer here.
BLOCKED_FROM = 16384
#: Columns factorised per step of the blocked Cholesky (the depth of its ``syrk``/``gemm`` updates).
PANEL = 1024
#: Columns of the trailing matrix per ``syrk`` call: a thread packs at most 256 x CHUNK values.
CHUNK = 4096

_trsv = linalg.blas.get_blas_funcs("trsv", dtype=np.float64)


@functools.cache
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController

    # scanning the loaded libraries costs milliseconds (threadpool_limits does it every call); one
    # scan at first use sees numpy's and scipy's BLAS, both loaded by the imports above
    return ThreadpoolController()


@contextmanager
def one_thread() -> Iterator[None]:
    """BLAS limited to one thread inside the block, restored after (process-wide while it lasts)."""
    with _controller().limit(limits=1, user_api="blas"):
        yield


def cho_solve_vector(L: FloatArray, t: FloatArray) -> FloatArray:
    """``(L L^T)^-1 t`` for one vector and a lower Cholesky factor in Fortran order.

    Two ``trsv`` calls read the factor's triangle twice, ``n^2`` values, as one ``gemv`` with a
    full ``n x n`` matrix would: the memory floor of a step. Call it under :func:`one_thread`.
    """
    w = _trsv(L, t, lower=1)
    return _trsv(L, w, lower=1, trans=1, overwrite_x=1)


# ---------------------------------------------------------------------- blocked Cholesky, in place
def _capsule(module: Any, name: str, *argtypes: Any) -> Any:
    """The C function behind ``scipy.linalg.cython_blas``/``cython_lapack`` ``name`` (leading
    dimensions as arguments, so sub-blocks are updated in place, which the f2py wrappers cannot)."""
    capsule = module.__pyx_capi__[name]
    # items, not attributes, of ctypes.pythonapi: fresh function objects, so that setting their
    # types here changes nothing for other users of ctypes.pythonapi
    get_name = ctypes.pythonapi["PyCapsule_GetName"]
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi["PyCapsule_GetPointer"]
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return ctypes.CFUNCTYPE(None, *argtypes)(get_pointer(capsule, get_name(capsule)))


_C, _I, _D, _P = ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_double), ctypes.c_void_p


@functools.cache
def _routines() -> dict[str, Any]:
    return {
        "potrf": _capsule(cython_lapack, "dpotrf", _C, _I, _P, _I, _I),
        "trsm": _capsule(cython_blas, "dtrsm", _C, _C, _C, _C, _I, _I, _D, _P, _I, _P, _I),
        "syrk": _capsule(cython_blas, "dsyrk", _C, _C, _I, _I, _D, _P, _I, _D, _P, _I),
        "gemm": _capsule(cython_blas, "dgemm", _C, _C, _I, _I, _I, _D, _P, _I, _P, _I, _D, _P, _I),
    }


def _blocked_cholesky(A: FloatArray, panel: int, chunk: int) -> None:
    """Lower Cholesky factor of the Fortran-ordered ``A`` in its lower triangle, by blocks."""
    n = A.shape[0]
    f = _routines()
    base, lda = A.ctypes.data, ctypes.byref(ctypes.c_int(n))
    one, minus_one = ctypes.byref(ctypes.c_double(1.0)), ctypes.byref(ctypes.c_double(-1.0))

    def at(i: int, j: int) -> int:  # address of A[i, j]
        return base + 8 * (i + j * n)

    def int_(v: int) -> Any:
        return ctypes.byref(ctypes.c_int(v))

    info = ctypes.c_int(0)
    for j in range(0, n, panel):
        b = min(panel, n - j)
        f["potrf"](b"L", int_(b), at(j, j), lda, ctypes.byref(info))
        if info.value:
            raise linalg.LinAlgError(f"{j + info.value}-th leading minor of the array is not positive definite")
        m = n - j - b
        if not m:
            break
        # panel below the diagonal block: A21 <- A21 L11^-T
        f["trsm"](b"R", b"L", b"T", b"N", int_(m), int_(b), one, at(j, j), lda, at(j + b, j), lda)
        # trailing update A22 <- A22 - A21 A21^T (lower triangle), CHUNK columns at a time
        for c in range(j + b, n, chunk):
            w = min(chunk, n - c)
            f["syrk"](b"L", b"N", int_(w), int_(b), minus_one, at(c, j), lda, one, at(c, c), lda)
            r = n - c - w
            if r:
                f["gemm"](b"N", b"T", int_(r), int_(w), int_(b), minus_one, at(c + w, j), lda, at(c, j), lda,
                          one, at(c + w, c), lda)


def cholesky_inplace(A: FloatArray) -> FloatArray:
    """The lower Cholesky factor of the symmetric positive definite ``A`` (Fortran order), computed
    in place on every core; the strict upper triangle is left as it was. Raises
    :class:`scipy.linalg.LinAlgError` if ``A`` is not positive definite."""
    n = A.shape[0]
    if n < BLOCKED_FROM:
        L, _ = linalg.cho_factor(A, lower=True, overwrite_a=True, check_finite=False)
        return np.asfortranarray(L)
    if A.flags.c_contiguous and not A.flags.f_contiguous:
        A = A.T  # the same symmetric matrix, in Fortran order
    A = np.asfortranarray(A, dtype=np.float64)  # a copy only if A was neither
    _blocked_cholesky(A, PANEL, CHUNK)
    return A
