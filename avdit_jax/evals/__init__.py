"""Evaluators: the Gaussian toy against exact conditionals, probes and metrics on decoded media, FVD/FAD
features. Imports inference and the layers below it."""
