"""Measuring models: metrics on a split, calibration, reports, plots, comparisons, ensembles."""
