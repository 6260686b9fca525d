"""The mathematics of self-distilled kernel ridge regression (Section 4), on arrays and one estimator.

``theory`` (closed forms: Theorems 4.1-4.5, Lemma 4.2, eqs. 6-16), ``kernels`` (kernel functions and
checks), ``joint`` (jointly optimal weights, eq. 6, on arrays), ``gcv`` (weights without a hold-out
set), ``spectral`` (the steps as spectral filters), ``lowrank`` (the Nyström engine on arrays),
``lowrank_methods`` (the estimator's methods on it), ``deterministic`` (deterministic equivalents of
one step, linear kernel), ``reference`` (brute-force oracles for the tests and chapters), ``_blas``
(thread-safe BLAS/LAPACK calls), and ``estimator``
(:class:`~sdlib.krr.estimator.KernelSelfDistillation`, the scikit-learn estimator on top of them).
Nothing here imports the networks or the book machinery.
"""
