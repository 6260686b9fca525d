"""Parameter sweeps over chapters and the Dask cluster they (and the Section 5 fits) run on."""
