"""Datasets tava can make or fetch: the built-in docstring corpus and BEIR downloads."""
