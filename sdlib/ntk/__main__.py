"""``python -m sdlib.ntk``: write a width sweep of the NTK chapter (:func:`sdlib.ntk.width.main`)."""

from sdlib.ntk.width import main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
