# IPython kernel settings of the companion's environment: `make` copies this file to
# .venv/etc/ipython/ipython_kernel_config.py, where every kernel of .venv reads it (the book's
# build, nbval, `python -m sdlib run`, `make lab`).
#
# Figures are PNGs at twice their pixel density ("retina": the image carries its display size, so
# it stays sharp on high-density screens and in the PDF), on an opaque white background, so that
# they stay legible in the book's dark mode.
c = get_config()  # noqa: F821 - provided by IPython when it reads this file
c.InlineBackend.figure_formats = {"retina"}
c.InlineBackend.rc = {"figure.facecolor": "white", "savefig.facecolor": "white", "savefig.transparent": False}
